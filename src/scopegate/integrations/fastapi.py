"""FastAPI integration: a security dependency that verifies bearer tokens and checks scopes.

Install with ``pip install 'scopegate[fastapi]'``.

:class:`BearerAuth` is a FastAPI security scheme (a ``fastapi.security.base.SecurityBase``):
used with ``Security(auth, scopes=[...])`` it verifies the request's bearer token with the
verifier's async method (the event loop is never blocked), checks that **every** scope
FastAPI collected for the route is granted (RFC 6749 §3.3, exact match), and returns the
:class:`~scopegate.AccessToken`. It declares an OAuth 2.0 client-credentials flow with its
token URL and scope descriptions, so the OpenAPI document and ``/docs`` show the lock and
each route's scopes.

Failures raise :class:`BearerHTTPException`, an ``HTTPException`` that already carries the
RFC 6750 §3 status and ``WWW-Authenticate`` challenge; :func:`add_exception_handlers`
makes the body the RFC 6750 JSON object and refuses WebSocket handshakes properly.

Example::

    from typing import Annotated
    from fastapi import FastAPI, Security
    from scopegate import AccessToken, from_env
    from scopegate.integrations.fastapi import BearerAuth, add_exception_handlers

    auth = BearerAuth(from_env(), token_url="https://issuer.example/token",
                      scopes={"items:read": "Read items"})
    app = FastAPI()
    add_exception_handlers(app)

    @app.get("/items")
    async def items(token: Annotated[AccessToken, Security(auth, scopes=["items:read"])]):
        return [{"id": 1}]

A token already verified by :class:`scopegate.asgi.BearerAuthMiddleware` for the same
request (``scope["scopegate.token"]``) is reused rather than verified twice. Tokens in
form bodies (RFC 6750 §2.2) are not read: a dependency must not consume the body; put the
ASGI middleware in front with ``allow_form_token=True`` if you need them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

try:
    from fastapi import FastAPI
    from fastapi.exceptions import HTTPException
    from fastapi.openapi.models import OAuth2 as OAuth2Model
    from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
    from starlette.requests import HTTPConnection
    from starlette.responses import Response
    from starlette.websockets import WebSocket
except ImportError as exc:  # pragma: no cover - exercised by a test that hides fastapi
    raise ImportError(
        "scopegate.integrations.fastapi needs FastAPI: pip install 'scopegate[fastapi]'"
    ) from exc

from scopegate._errors import BearerError, HTTPResponse, check_realm
from scopegate._guard import BearerGuard, GuardOptions
from scopegate._scopes import check_scopes
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier
from scopegate.asgi import ASGIRequest

__all__ = [
    "BearerAuth",
    "BearerHTTPException",
    "add_exception_handlers",
    "bearer_exception_handler",
]

#: Where the ASGI middleware and this dependency keep the verified token.
SCOPE_KEY = "scopegate.token"
# RFC 6455 §7.4.1: 1008 = policy violation, the close code for a refused handshake.
WS_POLICY_VIOLATION = 1008


class BearerHTTPException(HTTPException):
    """An ``HTTPException`` for an RFC 6750 outcome.

    FastAPI's default handler already sends its status and ``WWW-Authenticate`` header
    (with a ``{"detail": ...}`` body); :func:`bearer_exception_handler` sends the
    rendered RFC 6750 JSON body instead.

    Attributes:
        error: The :class:`~scopegate.BearerError` behind it.
        response: Its rendered :class:`~scopegate.HTTPResponse`.
    """

    def __init__(self, error: BearerError, response: HTTPResponse) -> None:
        self.error = error
        self.response = response
        headers = {k: v for k, v in response.headers if k not in {"content-type", "content-length"}}
        super().__init__(status_code=response.status, detail=error.description, headers=headers)


class BearerAuth(SecurityBase):
    """FastAPI security dependency: RFC 6750 bearer tokens, scopes from ``Security``.

    Args:
        verifier: The :class:`~scopegate.TokenVerifier` (its ``averify`` is awaited).
        token_url: The authorization server's token endpoint, shown in OpenAPI as the
            client-credentials flow's ``tokenUrl``.
        scopes: Scope name to description, advertised in OpenAPI.
        scheme_name: Name of the security scheme in the OpenAPI document.
        description: Description of the security scheme.
        auto_error: ``False`` returns ``None`` for requests without bearer credentials
            (a presented token that fails is still a 401).
        options: A :class:`~scopegate.GuardOptions`.
        **settings: Any :class:`~scopegate.GuardOptions` field (``realm``,
            ``allow_query_token``, ``max_token_length``...). Form-body tokens are not
            read: a dependency must not consume the body.

    Raises:
        ConfigurationError: An unusable setting.

    Calling it (FastAPI does) returns the :class:`~scopegate.AccessToken`, or raises
    :class:`BearerHTTPException` (401 / 400 / 403 ``insufficient_scope`` / 503).
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        token_url: str,
        scopes: Mapping[str, str] | None = None,
        scheme_name: str = "OAuth2ClientCredentials",
        description: str | None = None,
        auto_error: bool = True,
        options: GuardOptions | None = None,
        **settings: Any,
    ) -> None:
        settings.setdefault("optional", not auto_error)
        self.guard = BearerGuard(verifier, options, **settings)
        flows = OAuthFlows(
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl=token_url, scopes=dict(scopes or {})
            )
        )
        self.model = OAuth2Model(flows=flows, description=description)
        self.scheme_name = scheme_name
        self.auto_error = auto_error

    def _raise(self, error: BearerError) -> BearerHTTPException:
        return BearerHTTPException(error, self.guard.render(error))

    async def __call__(
        self, request: HTTPConnection, security_scopes: SecurityScopes
    ) -> AccessToken | None:
        """Verify the request's token and check the route's scopes (all of them)."""
        token: AccessToken | None = request.scope.get(SCOPE_KEY)
        try:
            if token is None:
                token = await self.guard.aauthenticate(_DependencyRequest(request))
                if token is None:  # anonymous, auto_error=False
                    return None
                request.scope[SCOPE_KEY] = token
            if security_scopes.scopes:
                check_scopes(token, tuple(security_scopes.scopes))
        except BearerError as exc:
            raise self._raise(exc) from None
        return token


class _DependencyRequest(ASGIRequest):
    """The ASGI view of the request, which never reads the body (FastAPI reads it)."""

    __slots__ = ()

    def __init__(self, request: HTTPConnection) -> None:
        # A WebSocket handshake is a GET (RFC 6455 §4.1).
        super().__init__(request.scope, _no_receive, request.scope.get("method", "GET"))

    async def read_body(self, limit: int) -> bytes | None:
        return None


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - never called
    raise RuntimeError("the dependency does not read the body")


async def bearer_exception_handler(conn: HTTPConnection, exc: Exception) -> Response | None:
    """Render a :class:`BearerHTTPException` (or a bare ``BearerError``) per RFC 6750 §3.

    A WebSocket handshake gets the same HTTP response when the server supports the ASGI
    denial-response extension, and is otherwise closed with code 1008 before accept.
    """
    if isinstance(exc, BearerHTTPException):
        rendered = exc.response
    elif isinstance(exc, BearerError):
        state = getattr(conn.scope.get("app"), "state", None)
        rendered = exc.to_response(getattr(state, "scopegate_realm", "api"))
    else:  # pragma: no cover - only registered for the two types above
        raise exc
    headers = {**dict(rendered.headers), "vary": "Authorization"}
    response = Response(rendered.body, status_code=rendered.status, headers=headers)
    if isinstance(conn, WebSocket) and "websocket.http.response" not in conn.scope.get(
        "extensions", {}
    ):
        await conn.close(code=WS_POLICY_VIOLATION)
        return None
    return response


def add_exception_handlers(app: FastAPI, *, realm: str = "api") -> None:
    """Register :func:`bearer_exception_handler` for :class:`BearerHTTPException` and
    :class:`~scopegate.BearerError` (raised by ``scopegate.require_scope`` in endpoints).

    Args:
        app: The FastAPI application.
        realm: Realm used to render a bare ``BearerError`` (a ``BearerHTTPException``
            already carries its dependency's realm).
    """
    app.state.scopegate_realm = check_realm(realm)
    handler: Any = bearer_exception_handler
    app.add_exception_handler(BearerHTTPException, handler)
    app.add_exception_handler(BearerError, handler)
