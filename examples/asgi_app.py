"""A plain ASGI API (no framework) protected by scopegate's ASGI middleware.

Routes (see shared/contract/EXAMPLES.md): ``GET /public``, ``GET /me``, ``GET /items``
(``items:read``), ``POST /items`` (``items:write``), ``GET /admin`` (``items:read`` and
``admin``), and the WebSocket ``/ws`` (``items:read``) that echoes text frames.

Run it with ``python examples/serve.py asgi --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_AUDIENCE`` (and optionally ``SCOPEGATE_JWKS_URI``,
``SCOPEGATE_RESOURCE`` for RFC 9728 metadata, ``SCOPEGATE_DPOP`` for DPoP).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from _common import (
    BAD_JSON,
    ITEMS,
    MAX_BODY,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    aclose,
    configured,
    dumps,
    me,
    parse_json_object,
)

from scopegate import current_token, require_scope
from scopegate.asgi import BearerAuthMiddleware

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Handler = Callable[[Receive], Awaitable[tuple[int, Any]]]


async def read_body(receive: Receive) -> bytes | None:
    """The request body, or ``None`` when it exceeds MAX_BODY."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def public(receive: Receive) -> tuple[int, Any]:
    return 200, {"ok": True}


async def get_me(receive: Receive) -> tuple[int, Any]:
    return 200, me(current_token())


@require_scope("items:read")
async def list_items(receive: Receive) -> tuple[int, Any]:
    return 200, ITEMS


@require_scope("items:write")
async def create_item(receive: Receive) -> tuple[int, Any]:
    body = await read_body(receive)
    if body is None:
        return 413, TOO_LARGE
    item = parse_json_object(body)
    if item is None:
        return 400, BAD_JSON
    return 201, item


@require_scope("items:read", "admin")
async def admin(receive: Receive) -> tuple[int, Any]:
    return 200, {"admin": True, "sub": current_token().subject}  # type: ignore[union-attr]


ROUTES: dict[str, dict[str, Handler]] = {
    "/public": {"GET": public},
    "/me": {"GET": get_me},
    "/items": {"GET": list_items, "POST": create_item},
    "/admin": {"GET": admin},
}


async def send_json(send: Send, status: int, data: Any, headers: list[Any] | None = None) -> None:
    body = dumps(data)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def http(scope: Scope, receive: Receive, send: Send) -> None:
    methods = ROUTES.get(scope["path"])
    if methods is None:
        await send_json(send, 404, NOT_FOUND)
        return
    handler = methods.get(scope["method"])
    if handler is None:
        allow = ", ".join(sorted(methods)).encode()
        await send_json(send, 405, METHOD_NOT_ALLOWED, [(b"allow", allow)])
        return
    # A BearerError raised by @require_scope is rendered by the middleware (401/403).
    status, data = await handler(receive)
    await send_json(send, status, data)


@require_scope("items:read")
async def echo_socket(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()  # websocket.connect
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        elif message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def websocket(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/ws":
        await echo_socket(scope, receive, send)
    else:
        await receive()
        await send({"type": "websocket.close", "code": 1000})


def create_app() -> BearerAuthMiddleware:
    """Build the protected ASGI app from the SCOPEGATE_* environment."""
    verifier, options = configured()

    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await aclose(verifier, options)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await http(scope, receive, send)
        elif scope["type"] == "websocket":
            await websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await lifespan(receive, send)

    return BearerAuthMiddleware(app, verifier=verifier, options=options)
