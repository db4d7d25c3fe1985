"""MCP integration: OAuth-protected MCP servers on the official MCP Python SDK.

Install with ``pip install 'scopegate[mcp]'``.

An MCP server reached over streamable HTTP is an OAuth 2.0 resource server (MCP
authorization spec): it answers 401 with a challenge pointing at its RFC 9728 metadata,
so a client that knows only the server URL finds the authorization server and the
scopes to ask for; it refuses a token lacking a scope with 403 ``insufficient_scope``,
which makes the client step up. Two ways to get there:

:class:`MCPGate` (recommended)
    scopegate's pure ASGI middleware in front of the SDK's streamable-HTTP app. It
    serves the RFC 9728 metadata, decides every request with a
    :class:`~scopegate.BearerGuard` (exact RFC 6750 challenges with ``scope`` and
    ``resource_metadata``, 503 + ``Retry-After`` when the authorization server is
    unreachable) and reads the JSON-RPC body of each ``POST`` to refuse a
    ``tools/call`` whose tool needs scopes the token lacks, with an HTTP 403 the client
    can step up from. The tool sees the token through the SDK's ``get_access_token()``
    and scopegate's :func:`~scopegate.current_token`; legacy sessions are bound to the
    token's principal.

:class:`MCPTokenVerifier`
    a scopegate verifier as the SDK's own ``TokenVerifier``, for servers that keep the
    SDK's ``auth=`` settings. :func:`install_unavailable_handler` makes an outage a 503
    instead of the SDK's 500. The SDK then writes the challenges (no ``scope``, and
    ``error="invalid_token"`` even without a token) and has no per-tool scopes.

Example::

    from mcp.server.mcpserver import MCPServer
    from scopegate import GuardOptions, JWTVerifier, ProtectedResource
    from scopegate.integrations.mcp import MCPGate

    RESOURCE = "https://mcp.example.com/mcp"         # the URL clients are given
    mcp = MCPServer("items")                          # no auth= here: the gate does it
    # ... @mcp.tool() functions ...
    app = MCPGate(
        mcp.streamable_http_app(host="mcp.example.com"),
        verifier=JWTVerifier(issuer="https://auth.example.com", audience=RESOURCE),
        options=GuardOptions(
            resource=ProtectedResource(
                resource=RESOURCE, authorization_servers=["https://auth.example.com"]
            ),
            required_scopes=["items:read"],           # every request; named in the 401
        ),
        tool_scopes={"create_item": ["items:write"]},
    )

Security caveats: keep the SDK app whole (its lifespan runs the session manager) and
put the gate outside it. The tool check reads the request **body** (what the SDK
executes), never the ``Mcp-Name``/``Mcp-Method`` headers, which the legacy protocol does
not check against the body. A tool absent from ``tool_scopes`` needs the
``required_scopes`` only. Only ``POST`` requests to the streamable-HTTP endpoint are
checked: the deprecated HTTP+SSE transport posts its messages elsewhere, so do not serve
it behind a gate that relies on ``tool_scopes``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from scopegate._extras import missing_extra

try:
    import pydantic_core
    from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
    from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
    from mcp.server.auth.provider import AccessToken as SDKAccessToken
    from starlette.applications import Starlette
    from starlette.authentication import AuthenticationError
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection
    from starlette.responses import Response
except ImportError as exc:  # pragma: no cover - exercised by a test that hides mcp
    raise missing_extra(__name__, "the MCP Python SDK") from exc

from scopegate import _observe, asgi
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    HTTPResponse,
    InsufficientScopeError,
    InsufficientUserAuthenticationError,
    InvalidRequestError,
    MissingTokenError,
    ServiceUnavailableError,
    check_realm,
)
from scopegate._guard import BearerGuard, GuardOptions, check_binding
from scopegate._resource import ProtectedResource
from scopegate._scopes import Requirement, validated_scopes
from scopegate._settings import boolean, whole
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier
from scopegate.integrations.starlette import BearerAuthMiddleware

__all__ = [
    "DEFAULT_MAX_BODY",
    "INSUFFICIENT_SCOPE_CODE",
    "MCPGate",
    "MCPTokenVerifier",
    "VerifierUnavailableError",
    "install_unavailable_handler",
    "issued_resource",
    "jsonrpc_error",
    "sdk_access_token",
    "unavailable_handler",
]

#: Largest JSON-RPC body the gate buffers to read its tool name (the SDK's own cap).
DEFAULT_MAX_BODY: Final = 4 * 1024 * 1024

#: JSON-RPC ``error.code`` of a refused ``tools/call`` (implementation-defined server
#: error range of JSON-RPC 2.0 §5.1; the SDK uses -32000, -32001, -32020..-32022, -32042).
INSUFFICIENT_SCOPE_CODE: Final = -32003

_NO_ID: Any = object()


class _BodyTooLargeError(InvalidRequestError):
    """413: a request body over the gate's cap (no authentication challenge)."""

    status = 413


_TOO_LARGE = _BodyTooLargeError("The request body is too large", reason="body_too_large")


def issued_resource(token: AccessToken, resource: str | None) -> str | None:
    """The token's audience entry naming *resource* (RFC 8707), or ``None``.

    Audiences are compared as the SDK compares them, a trailing slash aside. Without a
    *resource*, a token with a single string ``aud`` gives that audience.
    """
    aud = token.claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if resource is None:
        return aud if isinstance(aud, str) else None
    wanted = resource.rstrip("/")
    for entry in audiences:
        if isinstance(entry, str) and entry.rstrip("/") == wanted:
            return entry
    return None


def sdk_access_token(
    token: AccessToken,
    resource: str | None = None,
    *,
    cls: type[SDKAccessToken] = SDKAccessToken,
) -> SDKAccessToken:
    """*token* as the SDK's ``AccessToken`` (what ``get_access_token()`` returns in tools).

    ``client_id`` falls back to the subject; ``subject`` and ``claims["iss"]`` are
    filled so the SDK binds legacy sessions to the principal (client, issuer, subject);
    ``resource`` is the token's audience entry for *resource* (:func:`issued_resource`).

    Args:
        token: A verified scopegate token.
        resource: This server's resource identifier.
        cls: The SDK ``AccessToken`` class or a subclass (FastMCP's).
    """
    claims = dict(token.claims)
    if token.issuer is not None:
        claims.setdefault("iss", token.issuer)
    return cls(
        token=token.token,
        client_id=token.client_id or token.subject or "",
        scopes=sorted(token.scopes),
        expires_at=token.expires_at,
        resource=issued_resource(token, resource),
        subject=token.subject,
        claims=claims,
    )


# -- the gate ---------------------------------------------------------------------------


def _mcp_path(mcp_path: str | None, resource: ProtectedResource) -> str:
    if mcp_path is None:
        from urllib.parse import urlsplit

        mcp_path = urlsplit(resource.resource).path.rstrip("/") or "/mcp"
    if not isinstance(mcp_path, str) or not mcp_path.startswith("/") or "?" in mcp_path:
        raise ConfigurationError("mcp_path must be a path starting with '/'")
    return mcp_path


ToolRequirement = Sequence[str] | Requirement


def _tool_scopes(
    tool_scopes: Mapping[str, ToolRequirement] | None,
) -> tuple[dict[str, frozenset[str]], dict[str, Requirement]]:
    """Each tool's scopes, and the step-up requirements of the tools that have one."""
    if tool_scopes is None:
        return {}, {}
    if not isinstance(tool_scopes, Mapping):
        raise ConfigurationError("tool_scopes must map tool names to lists of scopes")
    checked: dict[str, frozenset[str]] = {}
    strength: dict[str, Requirement] = {}
    for name, scopes in tool_scopes.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError("tool_scopes keys must be tool names")
        if isinstance(scopes, Requirement):
            if scopes.any_of:
                raise ConfigurationError(f"tool_scopes[{name!r}]: a tool needs all its scopes")
            if scopes.step_up:
                # Authentication strength only: the scopes keep their own check below.
                strength[name] = Requirement(acr_values=scopes.acr_values, max_age=scopes.max_age)
            if not scopes.scopes:
                raise ConfigurationError(f"tool_scopes[{name!r}] needs at least one scope")
            scopes = scopes.scopes
        if isinstance(scopes, str):
            raise ConfigurationError(f"tool_scopes[{name!r}] must be a list of scopes, not a str")
        checked[name] = frozenset(validated_scopes(tuple(scopes), f"tool_scopes[{name!r}]"))
    return checked, strength


def _parse(body: bytes) -> Any:
    """The JSON value of *body* as either of the SDK's parsers sees it, or ``None``.

    The SDK parses with ``json.loads`` (2026-07-28 era) or ``pydantic_core.from_json``
    (legacy sessions). ``json.loads`` accepts strictly more (UTF-16, a BOM, deeper
    nesting); the fallback exists so that no body one of them accepts escapes the check.
    """
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        pass
    try:
        return pydantic_core.from_json(body)
    except ValueError:
        return None


def _tool_calls(message: Any) -> list[tuple[Any, str]]:
    """``(id, tool name)`` of every ``tools/call`` in a JSON-RPC message or batch.

    The id is that of a single request; a batch (which the SDK refuses anyway) is
    answered as a whole, with the plain RFC 6750 body.
    """
    batch = isinstance(message, list)
    calls = []
    for item in message if batch else (message,):
        if not isinstance(item, dict) or item.get("method") != "tools/call":
            continue
        params = item.get("params")
        name = params.get("name") if isinstance(params, dict) else None
        if isinstance(name, str):
            calls.append((_NO_ID if batch else item.get("id", _NO_ID), name))
    return calls


async def _send(send: asgi.Send, response: HTTPResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _with_body(response: HTTPResponse, body: bytes, status: int | None = None) -> HTTPResponse:
    headers = tuple(
        (name, str(len(body)) if name == "content-length" else value)
        for name, value in response.headers
    )
    return HTTPResponse(status or response.status, headers, body)


def jsonrpc_error(rpc_id: Any, rendered: HTTPResponse, scopes: Sequence[str]) -> bytes:
    """The JSON-RPC error object answering request *rpc_id* with a refusal.

    ``error.data`` is the RFC 6750 error object of *rendered* (``error``,
    ``error_description``, ``scope``); the official client raises it as an ``MCPError``.
    A step-up refusal (RFC 9470) gets the same code with its own message.
    """
    data = json.loads(rendered.body)
    if data.get("error") == "insufficient_user_authentication":
        message = (
            "insufficient_user_authentication: this tool needs a stronger or more recent login"
        )
    else:
        message = f"insufficient_scope: this tool needs {' '.join(scopes)}"
    error = {"code": INSUFFICIENT_SCOPE_CODE, "message": message, "data": data}
    return json.dumps(
        {"jsonrpc": "2.0", "id": rpc_id, "error": error}, separators=(",", ":")
    ).encode()


class MCPGate(BearerAuthMiddleware):
    """scopegate's ASGI gate in front of an MCP streamable-HTTP app, with per-tool scopes.

    It is :class:`scopegate.integrations.starlette.BearerAuthMiddleware` (every request is
    decided by one :class:`~scopegate.BearerGuard`; ``lifespan`` passes through, so the
    SDK's session manager runs) plus three MCP duties:

    * the RFC 9728 metadata of ``options.resource`` at its well-known URLs, and a
      ``resource_metadata`` pointer in every challenge (the guard's ``resource``);
    * for a ``POST`` to the MCP endpoint, the JSON-RPC body is buffered (at most
      *max_body* bytes, else 413) and every ``tools/call`` is checked against
      *tool_scopes*: a token lacking them gets 403 ``insufficient_scope`` whose
      challenge's ``scope`` names the tool's scopes (the client steps up to them) and
      whose body is a JSON-RPC error object for the request's ``id`` with the RFC 6750
      fields in ``error.data`` (:func:`jsonrpc_error`). The body is then replayed to the
      app. Batches are checked element by element; a body that is not JSON is passed on
      for the SDK to refuse;
    * the token is published the SDK's way: ``scope["user"]`` is the SDK's
      ``AuthenticatedUser`` and ``scope["auth"]`` an ``AuthCredentials`` (so legacy
      sessions are bound to the token's principal and a session id presented by another
      principal is a 404), the SDK's ``get_access_token()`` works in tools, as do
      :func:`scopegate.current_token` and ``scope["scopegate.token"]``.

    Every path needs a token (fail closed) except ``exclude_paths``; ``GET`` and
    ``DELETE`` on the MCP endpoint (legacy SSE stream, session end) need the
    ``required_scopes`` only.

    Args:
        app: The SDK's Starlette app, ``MCPServer(...).streamable_http_app(...)``, or
            FastMCP's ``mcp.http_app(...)`` built without ``auth``. Keep it whole.
        verifier: A :class:`~scopegate.TokenVerifier` whose audience is the resource.
        options: :class:`~scopegate.GuardOptions` with a ``resource`` (required) and the
            ``required_scopes`` every request needs (announced in every 401).
        guard: A ready :class:`~scopegate.BearerGuard` instead of verifier and options.
        tool_scopes: Tool name -> scopes a ``tools/call`` of that tool needs, or a
            :class:`~scopegate.Requirement` adding authentication strength (RFC 9470:
            ``Requirement(("items:delete",), acr_values=("urn:example:mfa",),
            max_age=300)``). A token too weak or too old for the tool gets 401
            ``insufficient_user_authentication`` with ``acr_values`` / ``max_age``,
            before its scopes are judged. MCP clients do not implement RFC 9470: an
            official client answers any 401 by authorizing again, which satisfies
            ``max_age`` (a new login) but asks for no ``acr``; see ``docs/issuers.md``.
        mcp_path: The MCP endpoint's path; default: the resource identifier's path, or
            ``/mcp`` when it has none.
        max_body: Largest JSON-RPC body buffered (4 MiB, the SDK's limit).
        challenge_all_scopes: Name ``required_scopes`` and the tool's scopes together in
            a tool's 403 (for clients that replace their scope on step-up instead of
            adding to it). Default: the tool's scopes only, as the MCP spec suggests.
        **settings: Any :class:`~scopegate.GuardOptions` field, overriding *options*.

    Raises:
        ConfigurationError: No resource, or an unusable setting.
    """

    def __init__(
        self,
        app: asgi.ASGIApp,
        *,
        verifier: TokenVerifier | None = None,
        options: GuardOptions | None = None,
        guard: BearerGuard | None = None,
        tool_scopes: Mapping[str, ToolRequirement] | None = None,
        mcp_path: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        challenge_all_scopes: bool = False,
        **settings: Any,
    ) -> None:
        super().__init__(app, verifier=verifier, options=options, guard=guard, **settings)
        resource = self.guard.options.resource
        if resource is None:
            raise ConfigurationError(
                "MCPGate needs the server's ProtectedResource: GuardOptions(resource=...), "
                "or SCOPEGATE_RESOURCE with options_from_env(); MCP clients discover the "
                "authorization server through it"
            )
        self.resource = resource
        self.tool_scopes, self._tool_strength = _tool_scopes(tool_scopes)
        self.mcp_path = _mcp_path(mcp_path, resource)
        self.max_body = whole("max_body", max_body, low=1)
        self.challenge_all_scopes = boolean("challenge_all_scopes", challenge_all_scopes)
        self._required = tuple(self.guard.options.required_scopes)
        self._paths = frozenset({self.mcp_path, self.mcp_path.rstrip("/") + "/"})
        # The app runs behind the SDK's AuthContextMiddleware, which sets the context
        # variable get_access_token() reads from the user this gate publishes.
        self.mcp_app = app
        self.app = self._check_tools
        self._downstream = AuthContextMiddleware(app)

    def populate_scope(self, scope: asgi.Scope, token: AccessToken | None) -> None:
        """Publish *token* as ``scopegate.token``, the SDK's ``user`` and ``auth``."""
        super().populate_scope(scope, token)
        if token is not None:
            sdk_token = sdk_access_token(token, self.resource.resource)
            scope["user"] = AuthenticatedUser(sdk_token)

    def _is_mcp(self, scope: asgi.Scope) -> bool:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        # Starlette routes on the path below root_path; check both spellings.
        return path in self._paths or (
            bool(root) and path.startswith(root) and path[len(root) :] in self._paths
        )

    async def _check_tools(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if (
            not self.tool_scopes
            or scope["type"] != "http"
            or scope.get("method") != "POST"
            or not self._is_mcp(scope)
        ):
            await self._downstream(scope, receive, send)
            return
        read = await self._read(scope, receive)
        if read is None:
            return  # the client went away before the body was complete
        if isinstance(read, HTTPResponse):
            await _send(send, read)
            return
        messages, body = read
        token: AccessToken | None = scope.get(asgi.SCOPE_KEY)
        refusal = self._refusal(token, body)
        if refusal is not None:
            await _send(send, refusal)
            return
        upstream = receive  # captured: replay() must not call itself

        async def replay() -> asgi.Message:
            if messages:
                return messages.pop(0)
            return await upstream()

        await self._downstream(scope, replay, send)

    async def _read(
        self, scope: asgi.Scope, receive: asgi.Receive
    ) -> tuple[list[asgi.Message], bytes] | HTTPResponse | None:
        """The request's messages and body; 413 above ``max_body``; ``None`` on disconnect."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    break
                if declared > self.max_body:
                    return self._too_large()
        messages: list[asgi.Message] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message.get("type") != "http.request":
                return None
            messages.append(message)
            chunk = message.get("body", b"") or b""
            size += len(chunk)
            if size > self.max_body:
                return self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                return messages, b"".join(chunks)

    def _too_large(self) -> HTTPResponse:
        _observe.refused(_TOO_LARGE, None, "guard")
        rendered = _TOO_LARGE.to_response(self.guard.realm)
        # A body-size refusal is no authentication challenge.
        headers = tuple(h for h in rendered.headers if h[0] != "www-authenticate")
        return HTTPResponse(rendered.status, headers, rendered.body)

    def _refusal(self, token: AccessToken | None, body: bytes) -> HTTPResponse | None:
        """The 401/403 for the first ``tools/call`` in *body* the token may not make."""
        granted = token.scopes if token is not None else frozenset()
        for rpc_id, name in _tool_calls(_parse(body)):
            needed = self.tool_scopes.get(name)
            strength = self._tool_strength.get(name)
            if needed is None or (needed <= granted and strength is None):
                continue
            scopes = sorted(needed)
            if self.challenge_all_scopes:
                scopes = [*self._required, *(s for s in scopes if s not in self._required)]
            error: BearerError
            if token is None:
                # optional mode or an excluded MCP path: a scoped tool still needs a token
                error = MissingTokenError(scopes=scopes)
            else:
                try:
                    if strength is not None:
                        # RFC 9470: strength before scopes, as for every other route.
                        strength.check(token)
                    if needed <= granted:
                        continue
                    error = InsufficientScopeError(scopes, reason="tool_scope")
                except InsufficientUserAuthenticationError as step_up:
                    error = step_up
            _observe.refused(error, token)
            rendered = self.guard.render(error)
            if rpc_id is _NO_ID:
                return rendered
            return _with_body(rendered, jsonrpc_error(rpc_id, rendered, scopes))
        return None


# -- the SDK's own auth stack ------------------------------------------------------------


class VerifierUnavailableError(AuthenticationError):
    """The verifier could not decide (keys, metadata or introspection unreachable).

    A Starlette ``AuthenticationError``, so the SDK's ``AuthenticationMiddleware`` hands
    it to its ``on_error`` (see :func:`install_unavailable_handler`) instead of failing
    the request with a 500.

    Attributes:
        error: The scopegate :class:`~scopegate.ServiceUnavailableError` (its
            ``retry_after`` and rendering).
    """

    def __init__(self, error: ServiceUnavailableError) -> None:
        self.error = error
        super().__init__(error.description)


class MCPTokenVerifier:
    """A scopegate verifier as the MCP SDK's ``TokenVerifier`` protocol.

    ``verify_token`` verifies with the scopegate verifier (caches, single flights,
    audience) and returns the SDK's ``AccessToken`` with ``resource`` set to the token's
    audience entry for *resource*, so the SDK's ``validate_token_resource`` check
    passes; a token whose ``aud`` does not name *resource* is refused here already,
    even with that SDK setting off (``resource=None`` leaves the audience to the
    verifier alone). A token bound to a DPoP key is refused (the SDK accepts Bearer
    only). An unreachable authorization server raises :class:`VerifierUnavailableError`
    (a 503 once :func:`install_unavailable_handler` is applied; never a silent 401 that
    would make the client throw its good token away).

    Args:
        verifier: A :class:`~scopegate.TokenVerifier`.
        resource: This server's resource identifier (``AuthSettings.resource_server_url``).

    Example::

        mcp = MCPServer(
            "items",
            token_verifier=MCPTokenVerifier(verifier, resource=RESOURCE),
            auth=AuthSettings(
                issuer_url=ISSUER,                   # str, not AnyHttpUrl: no added "/"
                resource_server_url=RESOURCE,
                required_scopes=["items:read"],
                validate_token_resource=True,
            ),
        )
        app = install_unavailable_handler(mcp.streamable_http_app())
    """

    def __init__(self, verifier: TokenVerifier, *, resource: str | None = None) -> None:
        if not callable(getattr(verifier, "averify", None)):
            raise ConfigurationError("verifier must have an averify() method")
        if resource is not None and not isinstance(resource, str):
            raise ConfigurationError("resource must be a str")
        self.verifier = verifier
        self.resource = resource

    def __repr__(self) -> str:
        return f"MCPTokenVerifier({self.verifier!r}, resource={self.resource!r})"

    async def verify_token(self, token: str) -> SDKAccessToken | None:
        """The SDK token for *token*; ``None`` when it is not acceptable.

        Raises:
            VerifierUnavailableError: The verifier could not reach what it needs.
        """
        verified = await self.averify(token)
        return None if verified is None else sdk_access_token(verified, self.resource)

    async def averify(self, token: str) -> AccessToken | None:
        """The scopegate token for *token*, or ``None``; shared with the FastMCP adapter."""
        try:
            verified = check_binding(await self.verifier.averify(token))
        except ServiceUnavailableError as exc:
            raise VerifierUnavailableError(exc) from exc
        except BearerError:
            return None
        if self.resource is not None and issued_resource(verified, self.resource) is None:
            # RFC 8707: not issued for this server, whatever the verifier was told.
            return None
        return verified


def unavailable_handler(realm: str = "api") -> Callable[[HTTPConnection, Exception], Response]:
    """An ``AuthenticationMiddleware`` ``on_error`` rendering scopegate's answers.

    :class:`VerifierUnavailableError` becomes the RFC 6750 503 with ``Retry-After``
    (never ``invalid_token``); any other ``AuthenticationError`` a 400
    ``invalid_request`` (Starlette's default would echo the exception text).
    """
    check_realm(realm)

    def on_error(conn: HTTPConnection, exc: Exception) -> Response:
        error: BearerError = (
            exc.error if isinstance(exc, VerifierUnavailableError) else InvalidRequestError()
        )
        rendered = error.to_response(realm)
        headers = {**dict(rendered.headers), "vary": "Authorization"}
        return Response(rendered.body, status_code=rendered.status, headers=headers)

    return on_error


def install_unavailable_handler(app: Starlette, *, realm: str = "api") -> Starlette:
    """Make the SDK's auth stack answer an outage with 503 + ``Retry-After``.

    Sets :func:`unavailable_handler` as the ``on_error`` of every
    ``AuthenticationMiddleware`` the app declares (the SDK app built with
    ``token_verifier=`` and ``auth=``, or FastMCP's with ``auth=``). Call it before the
    app serves its first request: Starlette builds its middleware stack then.

    Returns:
        *app*, for chaining.

    Raises:
        ConfigurationError: The app declares no ``AuthenticationMiddleware``, or its
            middleware stack is already built.
    """
    if getattr(app, "middleware_stack", None) is not None:
        raise ConfigurationError("install_unavailable_handler() must run before the first request")
    on_error = unavailable_handler(realm)
    found = False
    for middleware in getattr(app, "user_middleware", ()):
        if isinstance(middleware.cls, type) and issubclass(
            middleware.cls, AuthenticationMiddleware
        ):
            middleware.kwargs["on_error"] = on_error
            found = True
    if not found:
        raise ConfigurationError(
            "the app has no AuthenticationMiddleware: build it with token_verifier= and auth="
        )
    return app
