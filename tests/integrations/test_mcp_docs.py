"""The 10-line server of docs/mcp.md runs as written and answers as the page says."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from scopegate.testing import IssuerServer
from tests.integrations._mcp_support import RESOURCE, call, challenge, client_for

pytestmark = pytest.mark.anyio

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"
_SNIPPET = re.compile(r"<!-- snippet: mcp-server -->\n```python\n(.*?)```", re.DOTALL)


def snippet() -> str:
    """The marked server snippet of docs/mcp.md."""
    match = _SNIPPET.search(DOC.read_text())
    assert match is not None
    return match.group(1)


def test_snippet_is_ten_lines() -> None:
    """The page promises a protected MCP server in 10 lines."""
    assert len([line for line in snippet().splitlines() if line.strip()]) <= 10


async def test_snippet_server_answers_as_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    """401 naming items:read, list_items with items:read, create_item 403 naming items:write."""
    with IssuerServer(audience=RESOURCE) as issuer:
        for name, value in {**issuer.env(), "SCOPEGATE_RESOURCE": RESOURCE}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("SCOPEGATE_AUDIENCE")
        module = types.ModuleType("server")
        exec(compile(snippet(), "docs/mcp.md", "exec"), module.__dict__)
        reader = issuer.make_token(["items:read"])
        async with client_for(module.app) as client:
            missing = await call(client, None, "list_items")
            listed = await call(client, reader, "list_items")
            refused = await call(client, reader, "create_item", {"name": "x"})
    assert missing.status_code == 401
    assert 'scope="items:read"' in challenge(missing)
    assert listed.status_code == 200
    assert "hammer" in listed.text
    assert refused.status_code == 403
    assert 'scope="items:write"' in challenge(refused)
