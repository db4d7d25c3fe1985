"""The examples contract as a FastAPI application.

Run it with ``python examples/serve.py fastapi --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_AUDIENCE`` (see examples/README.md); open
``/docs`` to see the OAuth 2.0 client-credentials lock and each route's scopes.

``SCOPEGATE_TOKEN_URL`` sets the token endpoint shown in the OpenAPI document; it
defaults to ``<issuer>/token`` (the companion issuer's). The dependency's options come
from the environment too: with ``SCOPEGATE_RESOURCE`` set, ``install()`` serves the
RFC 9728 metadata; ``SCOPEGATE_DPOP`` accepts DPoP-bound tokens.
"""

import os
from typing import Annotated, Any

from fastapi import Body, FastAPI, Security, WebSocket, WebSocketDisconnect

from scopegate import AccessToken, from_env, options_from_env, settings_from_env
from scopegate.integrations.fastapi import BearerAuth, install

ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]


def create_app() -> FastAPI:
    """Build the protected app from the SCOPEGATE_* environment."""
    settings = settings_from_env(os.environ)
    auth = BearerAuth(
        from_env(os.environ),
        token_url=os.environ.get("SCOPEGATE_TOKEN_URL") or settings.issuer.rstrip("/") + "/token",
        scopes={
            "items:read": "Read items",
            "items:write": "Create items",
            "admin": "Administer the API",
        },
        # Realm, SCOPEGATE_RESOURCE (RFC 9728), SCOPEGATE_DPOP (RFC 9449), SCOPEGATE_PUBLIC_URL...
        options=options_from_env(os.environ),
    )
    app = FastAPI(title="scopegate FastAPI example")
    install(app, realm=settings.realm)  # also serves the metadata when a resource is set

    @app.get("/public")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(token: Annotated[AccessToken, Security(auth)]) -> dict[str, Any]:
        return {"sub": token.subject, "client_id": token.client_id, "scopes": sorted(token.scopes)}

    @app.get("/items")
    async def list_items(
        token: Annotated[AccessToken, Security(auth, scopes=["items:read"])],
    ) -> list[dict[str, Any]]:
        return ITEMS

    @app.post("/items", status_code=201)
    async def create_item(
        token: Annotated[AccessToken, Security(auth, scopes=["items:write"])],
        item: Annotated[dict[str, Any], Body()],
    ) -> dict[str, Any]:
        return item

    @app.get("/admin")
    async def admin(
        token: Annotated[AccessToken, Security(auth, scopes=["items:read", "admin"])],
    ) -> dict[str, Any]:
        return {"admin": True, "sub": token.subject}

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket,
        token: Annotated[AccessToken, Security(auth, scopes=["items:read"])],
    ) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            return

    return app
