"""scopegate.integrations.fastmcp: the FastMCP auth provider, in process.

FastMCP's own app (``mcp.http_app``) with its lifespan running; tokens from
:class:`scopegate.testing.LocalIssuer`. The official clients against the FastMCP example
(MCPGate around FastMCP) are in tests/conformance/test_mcp_examples.py.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import pytest
from fastmcp import FastMCP
from fastmcp.server.auth import TokenVerificationError
from fastmcp.server.dependencies import get_access_token

from scopegate import ConfigurationError, JWTVerifier
from scopegate.integrations.fastmcp import ScopegateAuthProvider, ScopegateTokenVerifier
from scopegate.integrations.mcp import MCPGate
from scopegate.testing import IssuerServer, LocalIssuer
from tests.integrations._mcp_support import (
    ISSUER,
    METADATA_URL,
    RESOURCE,
    TOOL_SCOPES,
    call,
    challenge,
    client_for,
    sse_messages,
)
from tests.integrations.test_mcp import options

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:8000"
ISS = LocalIssuer(issuer=ISSUER, audience=RESOURCE)
# Minted at import: valid for a day, however late in the session the tests run.
READER = ISS.make_token(["items:read"], sub="alice", expires_in=86400)


def server(auth: Any = None) -> FastMCP:
    """A FastMCP items server (with a whoami tool reading FastMCP's get_access_token)."""
    mcp: FastMCP = FastMCP("items", auth=auth)

    @mcp.tool
    def list_items() -> str:
        return json.dumps([{"id": 1}])

    @mcp.tool
    def create_item(name: str) -> dict[str, str]:
        return {"name": name}

    @mcp.tool
    def whoami() -> dict[str, Any]:
        token = get_access_token()
        assert token is not None
        return {"sub": token.subject, "resource": token.resource, "iss": token.claims["iss"]}

    return mcp


def provider(verifier: Any = None, **kwargs: Any) -> ScopegateAuthProvider:
    """The provider as the docs show it."""
    kwargs.setdefault("required_scopes", ["items:read"])
    kwargs.setdefault("scopes_supported", ["items:read", "items:write"])
    return ScopegateAuthProvider(
        verifier or ISS.verifier(), base_url=BASE, authorization_servers=[ISSUER], **kwargs
    )


def app(verifier: Any = None, **kwargs: Any) -> Any:
    return server(provider(verifier, **kwargs)).http_app(path="/mcp")


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/.well-known/oauth-protected-resource/mcp", id="path-inserted"),
        pytest.param("/.well-known/oauth-protected-resource", id="root"),
    ],
)
async def test_provider_serves_scopegates_metadata(path: str) -> None:
    """The RFC 9728 document, verbatim strings, at both well-known URLs."""
    async with client_for(app()) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "resource": RESOURCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": ["items:read", "items:write"],
        "bearer_methods_supported": ["header"],
    }


async def test_provider_challenges_are_fastmcps() -> None:
    """401 names the base scope and the metadata (FastMCP's format: no realm, no error)."""
    async with client_for(app()) as client:
        missing = await call(client, None, "list_items")
        invalid = await call(client, "garbage", "list_items")
        other = await call(client, ISS.make_token(["items:read"], audience="api://x"), "list_items")
        lacking = await call(client, ISS.make_token(["items:write"]), "list_items")
    assert missing.status_code == 401
    assert challenge(missing) == f'Bearer scope="items:read", resource_metadata="{METADATA_URL}"'
    assert invalid.status_code == other.status_code == 401
    assert 'error="invalid_token"' in challenge(invalid)
    assert lacking.status_code == 403
    assert 'error="insufficient_scope"' in challenge(lacking)


async def test_provider_lets_good_tokens_reach_the_tools() -> None:
    """A token for the resource reaches the tool, which sees FastMCP's AccessToken."""
    async with client_for(app()) as client:
        response = await call(client, READER, "whoami")
    assert response.status_code == 200
    assert sse_messages(response)[0]["result"]["structuredContent"] == {
        "sub": "alice",
        "resource": RESOURCE,
        "iss": ISSUER,
    }


async def test_provider_answers_an_outage_with_503() -> None:
    """Keys unreachable and nothing cached: 503 + Retry-After (FastMCP alone: 401 or 500)."""
    with IssuerServer(audience=RESOURCE) as issuer:
        issuer.available = False
        verifier = issuer.verifier()
        async with client_for(app(verifier)) as client:
            response = await call(client, issuer.make_token(["items:read"]), "list_items")
        await verifier.aclose()
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert response.json()["error"] == "temporarily_unavailable"


async def test_other_verification_errors_are_503_too() -> None:
    """Any FastMCP TokenVerificationError under the provider is a 503, not a 500."""

    class Flaky(ScopegateTokenVerifier):
        async def verify_token(self, token: str) -> Any:
            raise TokenVerificationError("upstream down")

    auth = provider()
    auth.token_verifier = Flaky(ISS.verifier())
    async with client_for(server(auth).http_app(path="/mcp")) as client:
        response = await call(client, READER, "list_items")
    assert response.status_code == 503


def test_provider_checks_the_audience_when_the_path_is_known() -> None:
    """A verifier not accepting base_url + path as audience is a start-up error."""
    verifier = JWTVerifier(issuer=ISSUER, audience="api://other", keys=ISS.jwks())
    with pytest.raises(ConfigurationError, match="audience"):
        app(verifier)


def test_provider_settings_are_checked() -> None:
    """Mistyped provider settings are start-up errors."""
    with pytest.raises(ConfigurationError):
        ScopegateAuthProvider(ISS.verifier(), base_url=1, authorization_servers=[ISSUER])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ScopegateAuthProvider(ISS.verifier(), base_url=BASE, authorization_servers=ISSUER)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        ScopegateAuthProvider(ISS.verifier(), base_url="ftp://x", authorization_servers=[ISSUER])
    with pytest.raises(ConfigurationError):
        ScopegateTokenVerifier(ISS.verifier(), required_scopes="items:read")


async def test_token_verifier_results() -> None:
    """FastMCP's AccessToken for a good token, None for others; an outage raises."""
    verifier = ScopegateTokenVerifier(ISS.verifier(), resource=RESOURCE)
    token = await verifier.verify_token(READER)
    assert token is not None
    assert (token.subject, token.resource, token.claims["iss"]) == ("alice", RESOURCE, ISSUER)
    assert await verifier.verify_token("garbage") is None
    with IssuerServer(audience=RESOURCE) as issuer:
        issuer.available = False
        down = ScopegateTokenVerifier(issuer.verifier(), resource=RESOURCE)
        with pytest.raises(TokenVerificationError):
            await down.verify_token(issuer.make_token(["items:read"]))
        await down.verifier.aclose()


async def test_gate_around_fastmcp_gives_per_tool_403() -> None:
    """MCPGate around mcp.http_app() (no auth=): the tool's 403 that FastMCP cannot give."""
    gated = MCPGate(
        server().http_app(path="/mcp"),
        verifier=ISS.verifier(),
        options=options(),
        tool_scopes=TOOL_SCOPES,
    )
    async with client_for(gated) as client:
        listed = await call(client, READER, "list_items")
        refused = await call(client, READER, "create_item", {"name": "x"})
        whoami = await call(client, READER, "whoami")
    assert listed.status_code == 200
    assert refused.status_code == 403
    assert 'scope="items:write"' in challenge(refused)
    assert sse_messages(whoami)[0]["result"]["structuredContent"]["sub"] == "alice"


def test_import_without_fastmcp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the integration without FastMCP says which extra to install."""
    for name in list(sys.modules):
        if name == "fastmcp" or name.startswith("fastmcp."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "scopegate.integrations.fastmcp", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'scopegate\[fastmcp\]'"):
        importlib.import_module("scopegate.integrations.fastmcp")
