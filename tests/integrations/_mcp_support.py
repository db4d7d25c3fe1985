"""Helpers for the MCP tests: an items server, its lifespan, and raw JSON-RPC requests.

The servers are the SDK's own streamable-HTTP app (or FastMCP's), driven in process
through ``httpx.ASGITransport`` with their lifespan run by :func:`lifespan`; tokens come
from :class:`scopegate.testing.LocalIssuer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.mcpserver import MCPServer

from scopegate import current_token

RESOURCE = "http://127.0.0.1:8000/mcp"
ISSUER = "https://issuer.example"
METADATA_URL = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"
MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]
TOOL_SCOPES = {"list_items": ["items:read"], "create_item": ["items:write"]}


def items_server(**kwargs: Any) -> MCPServer:
    """An MCPServer with the examples' two tools and a ``whoami`` tool showing the token."""
    mcp = MCPServer("items", **kwargs)

    @mcp.tool()
    def list_items() -> str:
        return json.dumps(ITEMS)

    @mcp.tool()
    def create_item(name: str) -> dict[str, str]:
        return {"name": name}

    @mcp.tool()
    def whoami() -> dict[str, Any]:
        sdk = get_access_token()
        ours = current_token()
        return {
            "sdk": None if sdk is None else sdk.model_dump(exclude={"token", "claims"}),
            "sdk_iss": None if sdk is None else (sdk.claims or {}).get("iss"),
            "scopegate": None if ours is None else ours.subject,
        }

    return mcp


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run *app*'s ASGI lifespan (startup before, shutdown after) around the block."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


@contextlib.asynccontextmanager
async def client_for(app: Any, *, raise_errors: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client talking to *app* in process, its lifespan running.

    ``raise_errors=False``: an exception escaping the app is the 500 a server would send.
    """
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_errors)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
            yield c
    # A gate's verifier holds an HTTP connection pool (JWKS, introspection): close it in
    # the loop that opened it.
    guard = getattr(app, "guard", None)
    if guard is not None:
        await guard.verifier.aclose()


def tool_call(
    name: str, arguments: dict[str, Any] | None = None, rpc_id: Any = 1
) -> dict[str, Any]:
    """A 2026-07-28 ``tools/call`` request object."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": name, "arguments": arguments or {}, "_meta": meta}
    return {"jsonrpc": "2.0", "id": rpc_id, "method": "tools/call", "params": params}


def modern_headers(token: str | None = None, name: str | None = None) -> dict[str, str]:
    """Headers of a 2026-07-28 POST (``Mcp-Name`` as given: tests may lie with it)."""
    headers = {"accept": ACCEPT, "content-type": "application/json", "mcp-protocol-version": MODERN}
    if name is not None:
        headers |= {"mcp-method": "tools/call", "mcp-name": name}
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return headers


async def call(
    client: httpx.AsyncClient, token: str | None, name: str, arguments: dict[str, Any] | None = None
) -> httpx.Response:
    """POST a modern ``tools/call`` of *name* with *token*."""
    return await client.post(
        "/mcp", json=tool_call(name, arguments), headers=modern_headers(token, name)
    )


def sse_messages(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON-RPC messages of an SSE (or plain JSON) response."""
    if response.headers.get("content-type", "").startswith("application/json"):
        return [response.json()]
    return [
        json.loads(line[5:])
        for line in response.text.splitlines()
        if line.startswith("data:") and line[5:].strip()
    ]


class LegacySession:
    """A 2025-11-25 session opened with ``initialize`` (``Mcp-Session-Id``)."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.token = token
        self.session_id = ""

    def headers(self, token: str | None = None) -> dict[str, str]:
        headers = {
            "accept": ACCEPT,
            "content-type": "application/json",
            "authorization": f"Bearer {token or self.token}",
        }
        if self.session_id:
            headers |= {"mcp-session-id": self.session_id, "mcp-protocol-version": LEGACY}
        return headers

    async def open(self) -> LegacySession:
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": LEGACY,
                "capabilities": {},
                "clientInfo": {"name": "tests", "version": "1"},
            },
        }
        response = await self.client.post("/mcp", json=init, headers=self.headers())
        assert response.status_code == 200, response.text
        self.session_id = response.headers["mcp-session-id"]
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await self.client.post("/mcp", json=note, headers=self.headers())
        assert response.status_code == 202, response.text
        return self

    async def post(
        self, message: dict[str, Any], token: str | None = None, **headers: str
    ) -> httpx.Response:
        return await self.client.post(
            "/mcp", json=message, headers={**self.headers(token), **headers}
        )

    async def call(self, name: str, token: str | None = None, **headers: str) -> httpx.Response:
        message = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": name, "arguments": {"name": "x"} if name == "create_item" else {}},
        }
        return await self.post(message, token, **headers)


def challenge(response: httpx.Response) -> str:
    """The ``WWW-Authenticate`` value."""
    return response.headers.get("www-authenticate", "")
