"""The MCP example: an MCP server on the official MCP Python SDK behind scopegate's gate.

Streamable HTTP at ``/mcp`` with two tools, ``list_items`` (``items:read``, returns a
JSON list) and ``create_item`` (``items:write``, echoes its arguments), and
``GET /public`` without a token (see shared/contract/EXAMPLES.md). Every request to
``/mcp`` needs ``items:read``; a ``create_item`` call without ``items:write`` is a 403
``insufficient_scope`` naming it, so an MCP client steps up.

Run it with ``python examples/serve.py mcp --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_RESOURCE=http://127.0.0.1:8000/mcp`` (the URL MCP
clients are given; tokens must be issued for it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from _mcp_common import BASE_SCOPE, PUBLIC_PATHS, TOOL_SCOPES, gate_options, items_json
from mcp.server.mcpserver import MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scopegate import from_env
from scopegate.integrations.mcp import MCPGate


def create_app() -> MCPGate:
    """Build the gated MCP server from the SCOPEGATE_* environment."""
    verifier = from_env(os.environ)

    @contextlib.asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[None]:
        yield
        aclose = getattr(verifier, "aclose", None)
        if aclose is not None:
            await aclose()

    mcp = MCPServer("items", lifespan=lifespan)

    @mcp.tool()
    def list_items() -> str:
        """List the items (needs items:read)."""
        return items_json()

    @mcp.tool()
    def create_item(name: str, quantity: int = 1) -> dict[str, object]:
        """Create an item (needs items:write); echoes its arguments."""
        return {"name": name, "quantity": quantity}

    @mcp.custom_route("/public", methods=["GET"])
    async def public(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return MCPGate(
        mcp.streamable_http_app(),  # the whole Starlette app: its lifespan runs the sessions
        verifier=verifier,
        options=gate_options(os.environ, exclude_paths=PUBLIC_PATHS, required_scopes=[BASE_SCOPE]),
        tool_scopes=TOOL_SCOPES,
    )
