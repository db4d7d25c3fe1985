"""The FastMCP example: a FastMCP server behind scopegate's MCP gate.

The same server as ``mcp_app.py`` (see shared/contract/EXAMPLES.md): streamable HTTP at
``/mcp`` with ``list_items`` (``items:read``, returns a JSON list) and ``create_item``
(``items:write``, echoes its arguments), and ``GET /public`` without a token. FastMCP's
app is built without ``auth=`` and wrapped whole in
:class:`~scopegate.integrations.mcp.MCPGate`: that is the way to get an HTTP 403
``insufficient_scope`` per tool (FastMCP's own tool auth hides the tool or answers an
``isError`` result, which no client steps up from). For the base scope only,
``FastMCP(auth=ScopegateAuthProvider(...))`` is the FastMCP-native alternative
(:mod:`scopegate.integrations.fastmcp`).

Run it with ``python examples/serve.py fastmcp --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_RESOURCE=http://127.0.0.1:8000/mcp``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from _mcp_common import BASE_SCOPE, PUBLIC_PATHS, TOOL_SCOPES, gate_options, items_json
from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from scopegate import from_env
from scopegate.integrations.mcp import MCPGate


def create_app() -> MCPGate:
    """Build the gated FastMCP server from the SCOPEGATE_* environment."""
    verifier = from_env(os.environ)

    @contextlib.asynccontextmanager
    async def lifespan(server: FastMCP) -> AsyncIterator[None]:
        yield
        aclose = getattr(verifier, "aclose", None)
        if aclose is not None:
            await aclose()

    mcp: FastMCP = FastMCP("items", lifespan=lifespan)

    @mcp.tool
    def list_items() -> str:
        """List the items (needs items:read)."""
        return items_json()

    @mcp.tool
    def create_item(name: str, quantity: int = 1) -> dict[str, object]:
        """Create an item (needs items:write); echoes its arguments."""
        return {"name": name, "quantity": quantity}

    @mcp.custom_route("/public", methods=["GET"])
    async def public(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return MCPGate(
        mcp.http_app(path="/mcp"),  # no auth=: the gate decides, per tool too
        verifier=verifier,
        options=gate_options(os.environ, exclude_paths=PUBLIC_PATHS, required_scopes=[BASE_SCOPE]),
        tool_scopes=TOOL_SCOPES,
    )
