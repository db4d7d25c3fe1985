"""Starlette integration: bearer-token middleware that speaks Starlette's auth idiom.

Install with ``pip install 'scopegate[starlette]'``.

:class:`BearerAuthMiddleware` is :class:`scopegate.asgi.BearerAuthMiddleware` (pure ASGI,
``http`` and ``websocket``, non-blocking verification, RFC 6750 responses) that also fills
the keys of Starlette's ``AuthenticationMiddleware``:

* ``request.auth`` is an ``AuthCredentials`` holding the token's scopes, so Starlette's own
  ``@requires("items:read")`` works unchanged;
* ``request.user`` is a :class:`TokenUser` (``is_authenticated``, ``identity`` = ``sub``,
  ``.token``), or ``UnauthenticatedUser`` for excluded paths and anonymous requests.

:func:`require_scope` / :func:`require_any_scope` (the core decorators, re-exported) work
on sync and async HTTP endpoints and on WebSocket endpoints: the middleware renders their
errors as RFC 6750 responses and refuses WebSocket handshakes (HTTP 401/403 where the
server supports denial responses, close code 1008 otherwise). Unlike Starlette's
``requires``, a failure carries the ``WWW-Authenticate`` challenge with ``scope=``.

Example::

    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from scopegate import from_env
    from scopegate.integrations.starlette import BearerAuthMiddleware, require_scope

    @require_scope("items:read")
    async def items(request):
        return JSONResponse([{"id": 1, "owner": request.user.identity}])

    app = Starlette(
        routes=[Route("/items", items)],
        middleware=[Middleware(BearerAuthMiddleware, verifier=from_env())],
    )

:data:`exception_handlers` renders a ``BearerError`` raised where the middleware is not in
the way (for example from a handler of a mounted sub-application):
``Starlette(..., exception_handlers=exception_handlers)``.
"""

from __future__ import annotations

from typing import Any

from scopegate._extras import missing_extra

try:
    from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
    from starlette.requests import HTTPConnection
    from starlette.responses import Response
    from starlette.websockets import WebSocket
except ImportError as exc:  # pragma: no cover - exercised by a test that hides starlette
    raise missing_extra(__name__, "Starlette") from exc

from scopegate import asgi
from scopegate._errors import BearerError, check_realm
from scopegate._scopes import require_any_scope, require_scope
from scopegate._token import AccessToken

__all__ = [
    "BearerAuthMiddleware",
    "TokenUser",
    "bearer_error_handler",
    "exception_handlers",
    "require_any_scope",
    "require_scope",
]

# RFC 6455 §7.4.1: 1008 = policy violation.
WS_POLICY_VIOLATION = 1008


class TokenUser(BaseUser):
    """The Starlette ``request.user`` of a request with a verified token.

    Attributes:
        token: The verified :class:`~scopegate.AccessToken`.
    """

    __slots__ = ("token",)

    def __init__(self, token: AccessToken) -> None:
        self.token = token

    def __repr__(self) -> str:
        return f"TokenUser(identity={self.identity!r})"

    @property
    def is_authenticated(self) -> bool:
        """Always true: the token was verified."""
        return True

    @property
    def identity(self) -> str:
        """The token's ``sub`` (or its client id for a token without one)."""
        return self.token.subject or self.token.client_id or ""

    @property
    def display_name(self) -> str:
        """Same as :attr:`identity`; tokens carry no display name of their own."""
        return self.identity

    @property
    def scopes(self) -> frozenset[str]:
        """The granted scopes."""
        return self.token.scopes


class BearerAuthMiddleware(asgi.BearerAuthMiddleware):
    """:class:`scopegate.asgi.BearerAuthMiddleware` plus Starlette's ``scope["auth"]`` and
    ``scope["user"]``; takes the same keyword arguments.

    Use it as ``Middleware(BearerAuthMiddleware, verifier=..., exclude_paths=[...])``.
    """

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        if scope["type"] in ("http", "websocket"):
            # Anonymous until a token is verified: excluded paths and optional mode still
            # get the keys, so request.auth / request.user never raise.
            scope["auth"] = AuthCredentials()
            scope["user"] = UnauthenticatedUser()
        await super().__call__(scope, receive, send)

    def populate_scope(self, scope: asgi.Scope, token: AccessToken | None) -> None:
        """Publish *token* as ``scopegate.token``, ``auth`` and ``user``."""
        super().populate_scope(scope, token)
        if token is not None:
            scope["auth"] = AuthCredentials(sorted(token.scopes))
            scope["user"] = TokenUser(token)


def _handler(realm: str) -> Any:
    async def handle(conn: HTTPConnection, exc: Exception) -> Response | None:
        if not isinstance(exc, BearerError):  # pragma: no cover - registered for BearerError only
            raise exc
        rendered = exc.to_response(realm)
        headers = {**dict(rendered.headers), "vary": "Authorization"}
        if isinstance(conn, WebSocket) and "websocket.http.response" not in conn.scope.get(
            "extensions", {}
        ):
            await conn.close(code=WS_POLICY_VIOLATION)
            return None
        return Response(rendered.body, status_code=rendered.status, headers=headers)

    return handle


def bearer_error_handler(realm: str = "api") -> Any:
    """A Starlette exception handler rendering :class:`~scopegate.BearerError` (RFC 6750 §3).

    Args:
        realm: The ``realm`` of the challenge.

    Returns:
        ``async handler(conn, exc)`` for ``exception_handlers={BearerError: handler}``.
        A WebSocket gets the denial response if the server supports it, else close 1008.
    """
    return _handler(check_realm(realm))


#: ``Starlette(exception_handlers=exception_handlers)`` with the default realm ``"api"``.
exception_handlers: dict[Any, Any] = {BearerError: bearer_error_handler()}
