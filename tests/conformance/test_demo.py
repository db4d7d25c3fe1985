"""`make demo` (examples/demo.py) runs the whole flow, exits 0, and teaches it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.servers import ROOT

# A JWT, or any base64url run long enough to be a whole token or refresh token.
_RAW_TOKEN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+|[\w-]{40,}")


@pytest.fixture(scope="module")
def transcript() -> str:
    """The demo's output, run once as ``make demo`` runs it."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_demo_runs_every_outcome_and_exits_zero(transcript: str) -> None:
    """The demo starts the issuer and the example APIs, sees every expected outcome,
    prints no token in full, stops what it started and exits 0."""
    assert "[FAIL]" not in transcript
    assert re.search(r"All \d+ outcomes as expected", transcript)
    for seen in ('error="insufficient_scope"', 'error="invalid_token"', "-> 201", "invalid_grant"):
        assert seen in transcript
    assert not _RAW_TOKEN.search(transcript), "a raw token reached the transcript"


def test_demo_names_the_three_parties(transcript: str) -> None:
    """The transcript opens with client, authorization server and resource server, and
    says which process plays each."""
    intro = transcript.split("Act 1", 1)[0]
    for party in ("client", "authorization server", "resource server"):
        assert re.search(rf"^  {party} +\S", intro, re.MULTILINE), party
    assert "started the authorization server" in intro
    assert "started the resource server" in intro


def test_demo_plays_the_steps_of_each_grant(transcript: str) -> None:
    """Client credentials, password with its refresh token, and the MCP client's discovery
    appear as steps, in order, each naming the party it talks to."""
    acts = re.split(r"^Act \d - ", transcript, flags=re.MULTILINE)[1:]
    assert [act.split("\n", 1)[0].split(":", 1)[0] for act in acts] == [
        "the client-credentials grant",
        "the password grant and its refresh token",
        "an MCP client (official MCP Python SDK) that knows only a URL",
        "opaque access tokens, checked by introspection (RFC 7662)",
    ]
    steps = {
        0: ["POST /token to the authorization server (grant_type=client_credentials",
            "service: GET /items -> 200"],
        1: ["(grant_type=password username=alice", "(grant_type=refresh_token) -> 200",
            "alice's refreshed token: GET /admin -> 200", "(the used refresh token, again) -> 400"],
        2: ["POST /mcp to the resource server (server/discover) -> 401",
            "GET /.well-known/oauth-protected-resource/mcp to the resource server -> 200",
            "GET /.well-known/oauth-authorization-server to the authorization server -> 200",
            "POST /token to the authorization server (grant_type=client_credentials "
            "scope=items:read resource=http://127.0.0.1:",
            "(tools/call list_items) -> 200", "(tools/call create_item) -> 403",
            "the SDK raised MCPError -32003"],
        3: ["POST /revoke to the authorization server", "its revoked token: GET /items -> 401"],
    }  # fmt: skip
    for index, expected in steps.items():
        position = 0
        for step in expected:
            found = acts[index].find(step, position)
            assert found >= 0, f"act {index + 1}: {step!r} missing or out of order"
            position = found


def test_demo_says_what_each_status_means(transcript: str) -> None:
    """Every exchange is followed by one plain line saying what it means for the client."""
    exchanges = re.findall(r"^    \[ok  \] .* -> (\d{3})\n.*\n +means: (.+)$", transcript, re.M)
    assert len(exchanges) == len(re.findall(r"^    \[ok  \] ", transcript, re.MULTILINE))
    meanings = dict(exchanges)
    assert "lacks the scope" in meanings["403"]
    assert "get a new one" in meanings["401"] or "no token" in meanings["401"]
    assert any("no token was sent" in m for s, m in exchanges if s == "401")
    assert any("forged, expired, revoked or never issued" in m for s, m in exchanges)


def test_demo_labels_the_last_call_truthfully(transcript: str) -> None:
    """The last call is a token the issuer never issued, and says so: GET /admin -> 401."""
    calls = re.findall(r"^    \[ok  \] (.+)$", transcript, re.MULTILINE)
    assert calls[-1] == "a stranger, with a token the issuer never issued: GET /admin -> 401"
