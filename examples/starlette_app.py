"""The examples contract as a Starlette application.

Run it with ``python examples/serve.py starlette --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_AUDIENCE`` (see examples/README.md).

The middleware verifies every request except ``/public`` and fills Starlette's
``request.auth`` / ``request.user``; the scope decorators guard each endpoint, the sync
``/admin`` one and the WebSocket one included.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from scopegate import from_env, options_from_env
from scopegate.integrations.starlette import BearerAuthMiddleware, TokenUser, require_scope

ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]
MAX_BODY = 1 << 20


def _error(status: int, description: str) -> Response:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description}, status_code=status
    )


async def public(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def me(request: Request) -> Response:
    user = request.user
    assert isinstance(user, TokenUser)  # the middleware lets no anonymous request in
    token = user.token
    return JSONResponse(
        {"sub": token.subject, "client_id": token.client_id, "scopes": sorted(token.scopes)}
    )


class Items(HTTPEndpoint):
    @require_scope("items:read")
    async def get(self, request: Request) -> Response:
        return JSONResponse(ITEMS)

    @require_scope("items:write")
    async def post(self, request: Request) -> Response:
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY:
                return _error(413, "The body is too large")
        try:
            item = json.loads(body)
        except (ValueError, RecursionError):
            item = None
        if not isinstance(item, dict):
            return _error(400, "The body must be a JSON object")
        return JSONResponse(item, status_code=201)


@require_scope("items:read", "admin")
def admin(request: Request) -> Response:
    # A sync endpoint: Starlette runs it in a thread; the decorator still sees the token.
    return JSONResponse({"admin": True, "sub": request.user.identity})


@require_scope("items:read")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


def create_app() -> Starlette:
    """Build the protected app from the SCOPEGATE_* environment."""
    verifier = from_env(os.environ)
    # Realm, SCOPEGATE_RESOURCE (RFC 9728), SCOPEGATE_DPOP (RFC 9449), SCOPEGATE_PUBLIC_URL...
    options = options_from_env(os.environ, exclude_paths=["/public"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        # The clients opened on this loop: the verifier's, the DPoP replay store's (Redis).
        for resource in (verifier, options.dpop.replay if options.dpop else None):
            aclose = getattr(resource, "aclose", None)
            if aclose is not None:
                await aclose()

    return Starlette(
        routes=[
            Route("/public", public),
            Route("/me", me),
            Route("/items", Items),
            Route("/admin", admin),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, options=options)],
        lifespan=lifespan,
    )
