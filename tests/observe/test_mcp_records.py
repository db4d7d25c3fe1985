"""The MCP gate's own refusals (a tool's scopes, a body over the cap) are logged and
recorded like every other: they are decided after the guard, at the endpoint."""

from __future__ import annotations

import logging

import pytest

from scopegate import _observe
from tests.integrations._mcp_support import call, client_for, modern_headers
from tests.integrations.test_mcp import gate, token
from tests.observe.stack import Records

pytestmark = pytest.mark.anyio

#: The reason codes proved here rather than in test_reasons' table (the MCP gate is
#: neither of that table's stacks).
MCP_REASONS = {"tool_scope": 403, "body_too_large": 413}


async def test_mcp_refusals_are_records_and_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="scopegate.rejections")
    async with client_for(gate(max_body=1024)) as client:
        with Records() as records:
            scoped = await call(client, token("items:read"), "create_item", {"name": "x"})
            large = await client.post(
                "/mcp", content=b" " * 2048, headers=modern_headers(token("items:read"))
            )
    assert (scoped.status_code, large.status_code) == (403, 413)
    refused = {r.reason: r for r in records.named("decision") if r.outcome == "rejected"}
    assert set(refused) == set(MCP_REASONS)
    for reason, status in MCP_REASONS.items():
        record = refused[reason]
        assert record.attributes["status"] == status
        assert record.outcome == _observe.refusal(status)
        assert record.attributes["issuer"] is None
        assert record.attributes["client_id"] is None
    assert refused["tool_scope"].attributes["stage"] == "endpoint"
    assert refused["tool_scope"].attributes["kind"] == "jwt"
    lines = [r.getMessage() for r in caplog.records if r.name == "scopegate.rejections"]
    assert "endpoint 403 insufficient_scope (tool_scope)" in lines
    assert "guard 413 invalid_request (body_too_large)" in lines
