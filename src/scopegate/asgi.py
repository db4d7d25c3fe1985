"""Pure ASGI bearer-token middleware (RFC 6750) for any ASGI application.

Usage::

    from scopegate.asgi import BearerAuthMiddleware
    from scopegate import JWTVerifier

    verifier = JWTVerifier(issuer="https://issuer.example", audience="api://items")
    app = BearerAuthMiddleware(app, verifier=verifier, exclude_paths=["/health"])

For ``http`` and ``websocket`` connections the middleware hands the request to a
:class:`~scopegate.BearerGuard`, which decides it without blocking the event loop, and
passes the :class:`~scopegate.AccessToken` downstream as ``scope["scopegate.token"]``
and through :func:`scopegate.current_token`. Failures become RFC 6750 §3 responses
(401/400/403/503 with ``WWW-Authenticate``). A WebSocket handshake without a valid token
is refused before it is accepted: with an HTTP 401/403 denial response when the server
offers the ``websocket.http.response`` extension (uvicorn does), otherwise by
``websocket.close`` with code 1008 (policy violation). ``lifespan`` and unknown scope
types pass through untouched.

A :class:`~scopegate.BearerError` raised by the application, for instance by
:func:`scopegate.require_scope` in a handler (also on an excluded path), is rendered the
same way as long as the response has not started; every other exception propagates
unchanged.

Security caveat: the middleware protects what sits *behind* it. Put it outside every
route that needs a token, and remember that ``exclude_paths`` match the raw path exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from scopegate._context import reset_current_token, set_current_token
from scopegate._errors import BearerError, HTTPResponse
from scopegate._guard import GuardedApp, Pending
from scopegate._token import AccessToken

__all__ = ["BearerAuthMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Scope key holding the verified :class:`~scopegate.AccessToken` (or ``None``).
SCOPE_KEY = "scopegate.token"

_VARY = (b"vary", b"Authorization")
_PRIVATE = (b"cache-control", b"private")


class ASGIRequest:
    """The guard's view of an ASGI ``http`` or ``websocket`` scope.

    The few headers the guard always reads are found in one pass over the raw header
    list; any other is looked up on demand. ASGI servers lower-case header names (ASGI
    HTTP spec); a server that did not would only hide headers from us, which fails
    closed (401).
    """

    __slots__ = (
        "_buffered",
        "_receive",
        "_scope",
        "authorization",
        "content_length",
        "content_type",
        "method",
        "query",
        "token_source",
    )

    def __init__(self, scope: Scope, receive: Receive, method: str | None = None) -> None:
        self._scope = scope
        self._receive = receive
        self._buffered: deque[Message] | None = None
        self.token_source: str | None = None
        self.method: str = method or scope.get("method", "GET")
        query = scope.get("query_string")
        self.query: str = query.decode("latin-1") if query else ""
        authorization: list[str] = []
        content_type = content_length = None
        for name, value in scope.get("headers", ()):
            # Length first: one int compare rejects most of the headers we do not read.
            size = len(name)
            if size == 13 and name == b"authorization":
                # Keep every field: a repeated Authorization header is a 400 (RFC 9110 §5.3).
                authorization.append(value.decode("latin-1"))
            elif size == 12 and name == b"content-type":
                content_type = value.decode("latin-1")
            elif size == 14 and name == b"content-length":
                content_length = value.decode("latin-1")
        self.authorization = authorization
        self.content_type = content_type
        self.content_length = content_length

    @property
    def scheme(self) -> str:
        """``http``, ``https``, ``ws`` or ``wss`` as the server received the request."""
        scheme = self._scope.get("scheme")
        if isinstance(scheme, str) and scheme:
            return scheme
        return "ws" if self._scope.get("type") == "websocket" else "http"

    @property
    def path(self) -> str:
        """The raw path (``raw_path`` without any query), else the decoded ``path``."""
        raw = self._scope.get("raw_path")
        if type(raw) is bytes:
            # Some servers include the query string in raw_path; we want the path only.
            if b"?" in raw:
                raw = raw.partition(b"?")[0]
            return raw.decode("latin-1")
        path = self._scope.get("path", "")
        return path if isinstance(path, str) else ""

    def header(self, name: str) -> list[str]:
        """Every value of header *name* (lower case)."""
        wanted = name.encode("latin-1")
        return [v.decode("latin-1") for k, v in self._scope.get("headers", ()) if k == wanted]

    async def read_body(self, limit: int) -> bytes | None:
        """Read a body of at most *limit* bytes, keeping every message for the app."""
        if self.content_length is not None:
            try:
                declared = int(self.content_length)
            except ValueError:
                declared = -1
            if declared > limit:
                return None  # too large to search: passed on unread
        messages: deque[Message] = deque()
        self._buffered = messages
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            messages.append(message)
            if message.get("type") != "http.request":
                return None  # the client went away; the app sees the disconnect
            chunk = message.get("body", b"") or b""
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def receive(self) -> Receive:
        """The ``receive`` the application gets: it replays what :meth:`read_body` read."""
        buffered = self._buffered
        if not buffered:
            return self._receive
        upstream = self._receive

        async def replay() -> Message:
            if buffered:
                return buffered.popleft()
            return await upstream()

        return replay


def _patch_headers(message: Message, private: bool) -> Message:
    headers = message.get("headers", ())
    has_vary = has_private = False
    for name, value in headers:
        # Length first: most headers are neither, and that test is cheaper than lower().
        size = len(name)
        if size == 4 and name.lower() == b"vary":
            fields = {f.strip().lower() for f in value.split(b",")}
            has_vary = has_vary or b"authorization" in fields or b"*" in fields
        elif private and size == 13 and name.lower() == b"cache-control":
            lvalue = value.lower()
            has_private = has_private or b"private" in lvalue or b"no-store" in lvalue
    if private and not has_private:
        # RFC 6750 §2.3: a response to a URI-query token must not be cached publicly.
        extra = (_PRIVATE,) if has_vary else (_VARY, _PRIVATE)
    elif not has_vary:
        # The response depends on who asked: shared caches must key on Authorization.
        extra = (_VARY,)
    else:
        return message
    # A new list and message: the app may reuse its header list between responses.
    patched = dict(message)
    patched["headers"] = [*headers, *extra]
    return patched


class BearerAuthMiddleware(GuardedApp[ASGIApp]):
    """ASGI middleware that requires (or, if ``optional``, accepts) an OAuth 2.0 bearer token.

    Args:
        app: The ASGI application to protect.
        verifier: A :class:`~scopegate.TokenVerifier`; its ``averify`` is used.
        options: A :class:`~scopegate.GuardOptions`.
        **settings: Any :class:`~scopegate.GuardOptions` field, overriding *options*
            (``realm``, ``exclude_paths``, ``optional``, ``allow_query_token``...).
        guard: A ready :class:`~scopegate.BearerGuard` instead of verifier and options.

    Raises:
        ConfigurationError: An unusable setting.

    Subclasses (framework integrations) may override :meth:`populate_scope` to publish the
    token under more keys, e.g. Starlette's ``scope["auth"]`` and ``scope["user"]``.
    """

    # Publishing the token costs one item assignment unless a subclass adds keys.
    _plain_scope = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._plain_scope = cls.populate_scope is BearerAuthMiddleware.populate_scope

    def populate_scope(self, scope: Scope, token: AccessToken | None) -> None:
        """Publish the verified token in *scope* (``scope["scopegate.token"]``).

        Override to add framework keys; call ``super().populate_scope(scope, token)``.
        """
        scope[SCOPE_KEY] = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope_type = scope["type"]
        if scope_type != "http":
            if scope_type == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request = ASGIRequest(scope, receive)
        guard = self.guard
        token = guard.decide_now(request)
        if type(token) is Pending:
            token = await guard.adecide_pending(token)
        if type(token) is HTTPResponse:
            await _send_response(send, token)
            return
        private = request.token_source == "query"  # noqa: S105 - a source name
        started = False

        # A plain function returning send's awaitable: no extra coroutine frame per message.
        def send_patched(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = _patch_headers(message, private)
            return send(message)

        if self._plain_scope:
            scope[SCOPE_KEY] = token
        else:
            self.populate_scope(scope, token)  # type: ignore[arg-type]
        marker = set_current_token(token)  # type: ignore[arg-type]
        try:
            await self.app(scope, request.receive(), send_patched)
        except BearerError as error:
            # A decorator's error (require_scope...), on any path: its RFC 6750 answer.
            if started:
                raise
            await _send_response(send, self.guard.render(error))
        finally:
            reset_current_token(marker)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A WebSocket handshake is a GET (RFC 6455 §4.1).
        request = ASGIRequest(scope, receive, method="GET")
        token = await self.guard.adecide(request)
        if type(token) is HTTPResponse:
            # Consume websocket.connect first so the server is ready for our answer.
            message = await receive()
            if message.get("type") == "websocket.connect":
                await _deny_websocket(scope, send, token)
            return
        state = "pending"

        async def send_tracked(message: Message) -> None:
            nonlocal state
            if state == "pending":
                kind = message["type"]
                if kind == "websocket.accept":
                    state = "accepted"
                elif kind in ("websocket.close", "websocket.http.response.start"):
                    state = "closed"
            await send(message)

        self.populate_scope(scope, token)  # type: ignore[arg-type]
        marker = set_current_token(token)  # type: ignore[arg-type]
        try:
            await self.app(scope, receive, send_tracked)
        except BearerError as error:
            if state == "pending":
                await _deny_websocket(scope, send, self.guard.render(error))
            elif state == "accepted":
                await send({"type": "websocket.close", "code": 1008})
            else:
                raise
        finally:
            reset_current_token(marker)


def _start(response: HTTPResponse, kind: str = "http.response.start") -> Message:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    return {"type": kind, "status": response.status, "headers": headers}


async def _send_response(send: Send, response: HTTPResponse) -> None:
    await send(_start(response))
    await send({"type": "http.response.body", "body": response.body})


async def _deny_websocket(scope: Scope, send: Send, response: HTTPResponse) -> None:
    extensions = scope.get("extensions") or {}
    if "websocket.http.response" in extensions:
        await send(_start(response, "websocket.http.response.start"))
        await send({"type": "websocket.http.response.body", "body": response.body})
    else:
        # 1008 policy violation (RFC 6455 §7.4.1); before accept servers answer 403.
        await send({"type": "websocket.close", "code": 1008})
