"""The Starlette and FastAPI error handlers on WebSocket handshakes without the
denial-response extension: the connection is closed with 1008 before accept."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.websockets import WebSocket

from scopegate._errors import InsufficientScopeError, MissingTokenError
from scopegate.integrations import fastapi as sg_fastapi
from scopegate.integrations import starlette as sg_starlette


def _websocket(extensions: dict[str, Any]) -> tuple[WebSocket, list[dict[str, Any]]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "extensions": extensions}
    return WebSocket(scope, receive, send), sent


@pytest.mark.anyio
async def test_starlette_handler_closes_1008_without_denial_extension() -> None:
    """No websocket.http.response extension: close with 1008, no HTTP response."""
    websocket, sent = _websocket({})
    handler = sg_starlette.bearer_error_handler()
    assert await handler(websocket, MissingTokenError()) is None
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


@pytest.mark.anyio
async def test_fastapi_handler_closes_1008_without_denial_extension() -> None:
    """The FastAPI handler refuses the same way."""
    websocket, sent = _websocket({})
    error = InsufficientScopeError(("items:read",))
    exc = sg_fastapi.BearerHTTPException(error, error.to_response("api"))
    assert await sg_fastapi.bearer_exception_handler(websocket, exc) is None
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


@pytest.mark.anyio
async def test_handlers_return_denial_response_with_extension() -> None:
    """With the extension, both handlers return the RFC 6750 HTTP response."""
    websocket, _ = _websocket({"websocket.http.response": {}})
    response = await sg_starlette.bearer_error_handler()(websocket, MissingTokenError())
    assert response is not None
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
