"""Pure ASGI bearer-token middleware (RFC 6750) for any ASGI application.

Usage::

    from scopegate.asgi import BearerAuthMiddleware
    from scopegate import JWTVerifier

    verifier = JWTVerifier(issuer="https://issuer.example", audience="api://items")
    app = BearerAuthMiddleware(app, verifier=verifier, exclude_paths=["/health"])

For ``http`` and ``websocket`` connections the middleware extracts the bearer token
(:mod:`scopegate._bearer`), verifies it without blocking the event loop
(``verifier.averify``) and hands the :class:`~scopegate.AccessToken` downstream as
``scope["scopegate.token"]`` and through :func:`scopegate.current_token`. Failures become
RFC 6750 §3 responses (401/400/403/503 with ``WWW-Authenticate``). A WebSocket handshake
without a valid token is refused before it is accepted: with an HTTP 401/403 denial
response when the server offers the ``websocket.http.response`` extension (uvicorn does),
otherwise by ``websocket.close`` with code 1008 (policy violation). ``lifespan`` and
unknown scope types pass through untouched.

A :class:`~scopegate.BearerError` raised by the application, for instance by
:func:`scopegate.require_scope` in a handler, is rendered the same way as long as the
response has not started; every other exception propagates unchanged.

Security caveat: the middleware protects what sits *behind* it. Put it outside every
route that needs a token, and remember that ``exclude_paths`` match the raw path exactly.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Container, Iterable, MutableMapping
from typing import Any

from scopegate._bearer import DEFAULT_MAX_TOKEN_LENGTH
from scopegate._context import _current, reset_current_token, set_current_token
from scopegate._errors import BearerError
from scopegate._guard import DEFAULT_MAX_FORM_BODY, BearerGuard
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier

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


# The request headers the guard reads.
_WANTED_LIST = (
    b"authorization",
    b"content-type",
    b"content-length",
    b"origin",
    b"access-control-request-method",
)
_WANTED = frozenset(_WANTED_LIST)


# authorization fields, content-type, content-length, has Origin, has
# Access-Control-Request-Method.
_Headers = tuple[list[str], str | None, str | None, bool, bool]


def _read_headers(
    raw: Iterable[tuple[bytes, bytes]], wanted: Container[bytes] = _WANTED
) -> _Headers:
    """The few request headers the guard needs, read in one pass over the raw list."""
    authorization: list[str] = []
    content_type: str | None = None
    content_length: str | None = None
    origin = request_method = False
    # ASGI servers lower-case header names (ASGI HTTP spec); a server that did not
    # would only hide headers from us, which fails closed (401).
    try:
        for name, value in raw:
            # One set lookup rejects each of the many headers we do not read.
            if name not in wanted:
                continue
            if name == b"authorization":
                # Keep every field: a repeated Authorization header is a 400 (RFC 9110 §5.3).
                authorization.append(value.decode("latin-1"))
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                content_length = value.decode("latin-1")
            elif name == b"origin":
                origin = True
            else:
                request_method = True
    except TypeError:
        if wanted is _WANTED_LIST:
            raise
        # Unhashable names (bytearray) from a lax server: compare them one by one.
        return _read_headers(raw, _WANTED_LIST)
    return authorization, content_type, content_length, origin, request_method


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        if b"?" in raw:
            # Some servers include the query string in raw_path; we want the path only.
            raw = raw.partition(b"?")[0]
        return raw.decode("latin-1")
    path = scope.get("path", "")
    return path if isinstance(path, str) else ""


def _query_string(scope: Scope) -> str:
    query = scope.get("query_string", b"")
    return query.decode("latin-1") if isinstance(query, (bytes, bytearray)) else ""


async def _buffer_form(
    receive: Receive, content_length: str | None, limit: int
) -> tuple[bytes | None, Receive]:
    """Read a form body of at most *limit* bytes; return it and a receive that replays it."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            declared = -1
        if declared > limit:
            # Too large to search: pass it on unread.
            return None, receive
    messages: deque[Message] = deque()
    chunks: list[bytes] = []
    size = 0
    body: bytes | None = None
    while True:
        message = await receive()
        messages.append(message)
        if message.get("type") != "http.request":
            break  # client went away; the app sees the disconnect when it reads
        chunk = message.get("body", b"") or b""
        size += len(chunk)
        if size > limit:
            break
        chunks.append(chunk)
        if not message.get("more_body", False):
            body = b"".join(chunks)
            break

    async def replay() -> Message:
        if messages:
            return messages.popleft()
        return await receive()

    return body, replay


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


class BearerAuthMiddleware:
    """ASGI middleware that requires (or, if ``optional``, accepts) an OAuth 2.0 bearer token.

    Args:
        app: The ASGI application to protect.
        verifier: A :class:`~scopegate.TokenVerifier`; its ``averify`` is used.
        realm: ``realm`` of the ``WWW-Authenticate`` challenge.
        exclude_paths: Raw paths served without authentication, matched exactly.
        optional: Let requests without credentials through with token ``None``.
        allow_query_token: Accept ``?access_token=`` on GET and WebSocket handshakes.
        allow_form_token: Accept an ``access_token`` field in POST form bodies.
        max_token_length: Longest token accepted (default 8192).
        allow_preflight: Let CORS preflight requests through unauthenticated.
        max_form_body: Largest form body buffered to look for ``access_token``.

    Raises:
        ConfigurationError: An unusable setting (see :class:`~scopegate.BearerGuard`).

    Subclasses (framework integrations) may override :meth:`populate_scope` to publish the
    token under more keys, e.g. Starlette's ``scope["auth"]`` and ``scope["user"]``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: TokenVerifier,
        realm: str = "api",
        exclude_paths: Iterable[str] = (),
        optional: bool = False,
        allow_query_token: bool = False,
        allow_form_token: bool = False,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
        allow_preflight: bool = False,
        max_form_body: int = DEFAULT_MAX_FORM_BODY,
    ) -> None:
        self.app = app
        self.guard = BearerGuard(
            verifier,
            realm=realm,
            exclude_paths=exclude_paths,
            optional=optional,
            allow_query_token=allow_query_token,
            allow_form_token=allow_form_token,
            max_token_length=max_token_length,
            allow_preflight=allow_preflight,
            max_form_body=max_form_body,
        )
        # Excluded paths as raw bytes: compared with raw_path without decoding it (they
        # are printable ASCII, checked by the guard).
        self._excluded = frozenset(p.encode("ascii") for p in self.guard.exclude_paths)

    def _is_excluded(self, scope: Scope) -> bool:
        raw = scope.get("raw_path")
        if type(raw) is bytes:
            if b"?" in raw:
                # Some servers include the query string in raw_path; we want the path only.
                raw = raw.partition(b"?")[0]
            return raw in self._excluded
        return self.guard.is_excluded(_raw_path(scope))

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
        # HTTP, inline: one coroutine frame per request instead of two.
        guard = self.guard
        method: str = scope.get("method", "GET")
        authorization, content_type, content_length, origin, request_method = _read_headers(
            scope.get("headers", ())
        )
        if (self._excluded and self._is_excluded(scope)) or (
            guard.allow_preflight
            and guard.is_preflight(method, origin=origin, request_method=request_method)
        ):
            # Anonymous by configuration: downstream code can still read the key.
            self.populate_scope(scope, None)
            await self.app(scope, receive, send)
            return
        try:
            body: bytes | None = None
            if content_type is not None and guard.wants_form_body(
                method, content_type, has_header=bool(authorization)
            ):
                body, receive = await _buffer_form(receive, content_length, guard.max_form_body)
            query = scope.get("query_string")
            private = False
            if not query and body is None and len(authorization) == 1:
                # The common request: one header, nothing to cross-check. A value whose
                # token verified before needs no parsing (BearerGuard.remember), and a
                # cache hit needs no coroutine.
                value = authorization[0]
                token = guard.cached_header(value)
                if token is None:
                    credentials = guard.header_credentials(value)
                    token = guard.cached(credentials)
                    if token is None:
                        token = await guard.averify(credentials)
                    if token is not None:
                        guard.remember(value, credentials)
            else:
                credentials = guard.extract(
                    authorization=authorization,
                    method=method,
                    query_string=query.decode("latin-1") if query else "",
                    form_body=body,
                )
                private = credentials.source == "query"
                token = guard.cached(credentials)
                if token is None:
                    token = await guard.averify(credentials)
        except BearerError as error:
            await self._send_error(send, error)
            return

        started = False

        # A plain function returning send's awaitable: no extra coroutine frame per message.
        def send_patched(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = _patch_headers(message, private)
            return send(message)

        self.populate_scope(scope, token)
        marker = _current.set(token)
        try:
            await self.app(scope, receive, send_patched)
        except BearerError as error:
            if started:
                raise
            await self._send_error(send, error)
        finally:
            _current.reset(marker)

    async def _send_error(self, send: Send, error: BearerError) -> None:
        start, body = self.guard.asgi_error_messages(error)
        await send(start)
        await send(body)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = self.guard
        if self._excluded and self._is_excluded(scope):
            self.populate_scope(scope, None)
            await self.app(scope, receive, send)
            return
        try:
            credentials = guard.extract(
                authorization=_read_headers(scope.get("headers", ()))[0],
                method="GET",  # a WebSocket handshake is a GET (RFC 6455 §4.1)
                query_string=_query_string(scope),
            )
            token = await guard.averify(credentials)
        except BearerError as error:
            # Consume websocket.connect first so the server is ready for our answer.
            message = await receive()
            if message.get("type") == "websocket.connect":
                await self._deny_websocket(scope, send, error)
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

        self.populate_scope(scope, token)
        marker = set_current_token(token)
        try:
            await self.app(scope, receive, send_tracked)
        except BearerError as error:
            if state == "pending":
                await self._deny_websocket(scope, send, error)
            elif state == "accepted":
                await send({"type": "websocket.close", "code": 1008})
            else:
                raise
        finally:
            reset_current_token(marker)

    async def _deny_websocket(self, scope: Scope, send: Send, error: BearerError) -> None:
        extensions = scope.get("extensions") or {}
        if "websocket.http.response" in extensions:
            start, body = self.guard.asgi_error_messages(error)
            await send({**start, "type": "websocket.http.response.start"})
            await send({**body, "type": "websocket.http.response.body"})
        else:
            # 1008 policy violation (RFC 6455 §7.4.1); before accept servers answer 403.
            await send({"type": "websocket.close", "code": 1008})
