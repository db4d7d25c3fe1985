"""The MCP examples with the official clients, all real processes on 127.0.0.1.

``scopegate issuer serve`` (TOML config, ``scope_policy = "narrow"``) and
``examples/serve.py mcp|fastmcp`` run as processes; the official MCP Python client
(``ClientCredentialsOAuthProvider`` given only the server URL, the issuer and its
credentials) and the FastMCP client connect to each example, discover everything from
the 401 and the RFC 9728 metadata, get a token whose ``aud`` is the resource, list the
tools, call the read tool, and are refused the write tool with ``insufficient_scope``
after their step-up attempt (a client allowed ``items:write`` gets it by stepping up).
A token for another resource is a 401; with the issuer's keys unreachable the client
sees 503, not 401. Each example's metadata document is checked against RFC 9728.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from tests.servers import ROOT, free_port, run_process

httpx2 = pytest.importorskip("httpx2")
pytest.importorskip("mcp")
pytest.importorskip("fastmcp")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastmcp import Client as FastMCPClient
    from fastmcp.client.auth import ClientCredentialsOAuthProvider as FastMCPCredentials
    from fastmcp.client.transports import StreamableHttpTransport
    from mcp import Client, ClientSession, MCPError
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.auth import ProtectedResourceMetadata

pytestmark = pytest.mark.anyio

WELL_KNOWN_AS = "/.well-known/oauth-authorization-server"
EXAMPLES = ("mcp", "fastmcp")
CLIENTS = ("sdk", "fastmcp")
ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]
#: client id -> (secret, scopes); every client may ask for both examples' resources.
ISSUER_CLIENTS = {
    "reader": ("reader-secret-5d1c", ["items:read"]),
    "writer": ("writer-secret-9a7e", ["items:read", "items:write"]),
}


@dataclass
class Stack:
    """The issuer and both examples, running."""

    issuer: str
    servers: dict[str, str]  # example name -> MCP URL (= its resource identifier)
    other_resource: str
    spare_port: int  # for examples started by one test; its /mcp URL is an allowed resource


def issuer_config(resources: list[str]) -> str:
    clients = "\n".join(
        f"""
[[clients]]
id = "{cid}"
secret = "{secret}"
grant_types = ["client_credentials"]
scopes = {json.dumps(scopes)}
resources = {json.dumps(resources)}
"""
        for cid, (secret, scopes) in ISSUER_CLIENTS.items()
    )
    # narrow: a step-up request for more than the client may have gets what it may have,
    # so the client's retry ends in a clean MCPError instead of OAuthTokenError.
    return f'audience = "api://unused"\nscope_policy = "narrow"\n{clients}'


@contextlib.contextmanager
def run_example(name: str, port: int, env: dict[str, str]) -> Iterator[str]:
    """``examples/serve.py NAME --port PORT``; yields the MCP URL."""
    args = [sys.executable, str(ROOT / "examples" / "serve.py"), name, "--port", str(port)]
    with run_process(args, port, env=env, ready_path="/public"):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """``scopegate issuer serve`` and ``serve.py mcp`` / ``serve.py fastmcp``."""
    workdir = tmp_path_factory.mktemp("mcp-stack")
    ports = {name: free_port() for name in EXAMPLES}
    urls = {name: f"http://127.0.0.1:{port}/mcp" for name, port in ports.items()}
    other = f"http://127.0.0.1:{free_port()}/mcp"
    spare = free_port()
    config = workdir / "issuer.toml"
    config.write_text(issuer_config([*urls.values(), other, f"http://127.0.0.1:{spare}/mcp"]))
    as_port = free_port()
    issuer = f"http://127.0.0.1:{as_port}"
    args = [sys.executable, "-m", "scopegate", "issuer", "serve", "--config", str(config),
            "--host", "127.0.0.1", "--port", str(as_port)]  # fmt: skip
    with contextlib.ExitStack() as stack:
        stack.enter_context(run_process(args, as_port, ready_path=WELL_KNOWN_AS))
        for name, port in ports.items():
            env = {"SCOPEGATE_ISSUER": issuer, "SCOPEGATE_RESOURCE": urls[name]}
            stack.enter_context(run_example(name, port, env))
        yield Stack(issuer, urls, other, spare)


class Recorder:
    """httpx2 event hooks: what the client's auth flow exchanged."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.responses: list[Any] = []

    async def on_request(self, request: Any) -> None:
        self.requests.append(request)

    async def on_response(self, response: Any) -> None:
        self.responses.append(response)

    @property
    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.on_request], "response": [self.on_response]}

    def token_requests(self) -> list[dict[str, list[str]]]:
        return [
            parse_qs(request.content.decode())
            for request in self.requests
            if request.method == "POST" and request.url.path == "/token"
        ]

    def challenges(self, status: int) -> list[str]:
        return [
            r.headers.get("www-authenticate", "")
            for r in self.responses
            if r.status_code == status and r.request.url.path == "/mcp"
        ]

    def bearer_claims(self) -> list[dict[str, Any]]:
        """The claims of every distinct bearer token the client sent to the server."""
        seen: dict[str, dict[str, Any]] = {}
        for request in self.requests:
            value = request.headers.get("authorization", "")
            if value.startswith("Bearer ") and value not in seen:
                seen[value] = json.loads(_padded(value[7:].split(".")[1]))
        return list(seen.values())


def _padded(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass
class Outcome:
    """What one client session observed."""

    tools: list[str]
    listed: Any
    created: Any
    refusal: BaseException | None


@contextlib.asynccontextmanager
async def sdk_client(
    url: str, issuer: str, client_id: str, recorder: Recorder
) -> AsyncIterator[Any]:
    """The official client: ClientCredentialsOAuthProvider + mcp.Client (2026-07-28)."""
    from tests.issuer.test_mcp_client import MemoryTokenStorage

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryTokenStorage(),
        client_id=client_id,
        client_secret=ISSUER_CLIENTS[client_id][0],
        issuer=issuer,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30, event_hooks=recorder.hooks) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


@contextlib.asynccontextmanager
async def fastmcp_client(
    url: str, issuer: str, client_id: str, recorder: Recorder
) -> AsyncIterator[Any]:
    """The FastMCP client with FastMCP's client-credentials provider."""

    def factory(**kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 30)
        return httpx2.AsyncClient(**kwargs, event_hooks=recorder.hooks)

    auth = FastMCPCredentials(
        client_id=client_id, client_secret=ISSUER_CLIENTS[client_id][0], issuer=issuer
    )
    transport = StreamableHttpTransport(url, auth=auth, httpx_client_factory=factory)
    async with FastMCPClient(transport) as client:
        yield client


async def session(kind: str, url: str, issuer: str, client_id: str, recorder: Recorder) -> Outcome:
    """Connect, list the tools, call list_items, then create_item."""
    opener = sdk_client if kind == "sdk" else fastmcp_client
    async with opener(url, issuer, client_id, recorder) as client:
        listing = await client.list_tools()
        tools = [t.name for t in (listing.tools if kind == "sdk" else listing)]
        listed = await client.call_tool("list_items", {})
        created: Any = None
        refusal: BaseException | None = None
        try:
            created = await client.call_tool("create_item", {"name": "drill", "quantity": 3})
        except MCPError as exc:
            refusal = exc
    return Outcome(tools, listed, created, refusal)


def text_of(result: Any) -> str:
    return str(result.content[0].text)


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("example", EXAMPLES)
async def test_reader_discovers_lists_reads_and_is_refused_the_write_tool(
    stack: Stack, example: str, kind: str
) -> None:
    """Reader: 401 -> metadata -> aud-bound token -> tools -> list_items; create_item 403."""
    url = stack.servers[example]
    recorder = Recorder()
    outcome = await session(kind, url, stack.issuer, "reader", recorder)

    # Discovery from the 401 challenge and the RFC 9728 metadata.
    metadata_url = url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")
    assert recorder.challenges(401)[0] == (
        f'Bearer realm="api", scope="items:read", resource_metadata="{metadata_url}"'
    )
    fetched = [str(r.url) for r in recorder.requests if r.method == "GET"]
    assert metadata_url in fetched
    assert f"{stack.issuer}{WELL_KNOWN_AS}" in fetched
    # The first token: items:read for this resource, aud = the resource.
    asked = recorder.token_requests()
    assert asked[0] == {
        "grant_type": ["client_credentials"],
        "resource": [url],
        "scope": ["items:read"],
    }
    first = recorder.bearer_claims()[0]
    assert first["aud"] == url
    assert first["scope"] == "items:read"

    assert {"list_items", "create_item"} <= set(outcome.tools)
    assert json.loads(text_of(outcome.listed)) == ITEMS

    # create_item: a 403 naming items:write, a step-up for the union (narrowed by the
    # issuer to items:read), a second 403, then the JSON-RPC error surfaces.
    assert outcome.created is None
    refusals = recorder.challenges(403)
    assert len(refusals) == 2
    assert all('error="insufficient_scope"' in c and 'scope="items:write"' in c for c in refusals)
    assert asked[-1]["scope"] == ["items:read items:write"]
    # Both clients surface the gate's JSON-RPC error object; the connection survives.
    assert isinstance(outcome.refusal, MCPError)
    assert outcome.refusal.code == -32003
    assert outcome.refusal.error.data["scope"] == "items:write"


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("example", EXAMPLES)
async def test_writer_steps_up_and_creates(stack: Stack, example: str, kind: str) -> None:
    """Writer: the 403 makes the client ask for items:write too, and the retry succeeds."""
    url = stack.servers[example]
    recorder = Recorder()
    outcome = await session(kind, url, stack.issuer, "writer", recorder)
    assert outcome.refusal is None
    assert json.loads(text_of(outcome.created)) == {"name": "drill", "quantity": 3}
    assert len(recorder.challenges(403)) == 1
    scopes = [claims["scope"] for claims in recorder.bearer_claims()]
    assert scopes == ["items:read", "items:read items:write"]
    assert {claims["aud"] for claims in recorder.bearer_claims()} == {url}


@pytest.mark.parametrize("example", EXAMPLES)
async def test_legacy_session_with_the_official_client(stack: Stack, example: str) -> None:
    """ClientSession + initialize (2025-11-25 sessions) through the gate, step-up included."""
    url = stack.servers[example]
    from tests.issuer.test_mcp_client import MemoryTokenStorage

    provider = ClientCredentialsOAuthProvider(
        server_url=url,
        storage=MemoryTokenStorage(),
        client_id="writer",
        client_secret=ISSUER_CLIENTS["writer"][0],
        issuer=stack.issuer,
    )
    recorder = Recorder()
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30, event_hooks=recorder.hooks) as http,
        streamable_http_client(url, http_client=http) as (read, write),
        ClientSession(read, write) as mcp_session,
    ):
        init = await mcp_session.initialize()
        listed = await mcp_session.call_tool("list_items", {})
        created = await mcp_session.call_tool("create_item", {"name": "saw"})
    assert init.protocol_version == "2025-11-25"
    assert json.loads(text_of(listed)) == ITEMS
    assert json.loads(text_of(created)) == {"name": "saw", "quantity": 1}
    assert any(r.headers.get("mcp-session-id") for r in recorder.requests)
    assert len(recorder.challenges(403)) == 1


async def fetch_token(issuer: str, client_id: str, resource: str, scope: str) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{issuer}/token",
            data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
            auth=(client_id, ISSUER_CLIENTS[client_id][0]),
        )
    response.raise_for_status()
    return str(response.json()["access_token"])


@pytest.mark.parametrize("example", EXAMPLES)
async def test_token_for_another_resource_is_401(stack: Stack, example: str) -> None:
    """A token the issuer minted for another resource (aud) is refused: 401 invalid_token."""
    url = stack.servers[example]
    token = await fetch_token(stack.issuer, "writer", stack.other_resource, "items:read")
    own = await fetch_token(stack.issuer, "writer", url, "items:read")
    headers = {
        "accept": "application/json, text/event-stream",
        "content-type": "application/json",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/list",
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/list",
        "params": {
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
        },
    }
    async with httpx.AsyncClient() as http:
        foreign = await http.post(
            url, json=body, headers={**headers, "authorization": f"Bearer {token}"}
        )
        mine = await http.post(
            url, json=body, headers={**headers, "authorization": f"Bearer {own}"}
        )
    assert foreign.status_code == 401
    assert 'error="invalid_token"' in foreign.headers["www-authenticate"]
    assert mine.status_code == 200


@pytest.mark.parametrize("kind", CLIENTS)
@pytest.mark.parametrize("example", EXAMPLES)
async def test_keys_unreachable_is_503_not_401(stack: Stack, example: str, kind: str) -> None:
    """The issuer's keys unreachable, nothing cached: the client sees 503, keeps its token."""
    port = stack.spare_port
    url = f"http://127.0.0.1:{port}/mcp"
    env = {
        "SCOPEGATE_ISSUER": stack.issuer,
        "SCOPEGATE_RESOURCE": url,
        # Nothing listens there: every key fetch fails.
        "SCOPEGATE_JWKS_URI": f"http://127.0.0.1:{free_port()}/jwks.json",
    }
    recorder = Recorder()
    with run_example(example, port, env), pytest.raises(Exception) as failed:
        await session(kind, url, stack.issuer, "reader", recorder)
    # The SDK client fails its connect inside task groups, FastMCP's directly; both with
    # the transport's MCPError for a non-JSON-RPC error status.
    leaf: BaseException = failed.value
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, MCPError)
    assert leaf.code == -32603
    statuses = [r.status_code for r in recorder.responses if r.request.url.path == "/mcp"]
    assert statuses[0] == 401
    assert 503 in statuses
    assert statuses.count(401) == 1  # the token was never thrown away
    down = next(r for r in recorder.responses if r.status_code == 503)
    assert down.headers["retry-after"].isdigit()
    assert "invalid_token" not in down.headers.get("www-authenticate", "")
    assert len(recorder.token_requests()) == 1


# -- RFC 9728 metadata ---------------------------------------------------------------------

#: RFC 9728 §2: metadata members and the JSON type each must have.
RFC9728_TYPES: dict[str, str] = {
    "resource": "string",
    "authorization_servers": "array of strings",
    "jwks_uri": "string",
    "scopes_supported": "array of strings",
    "bearer_methods_supported": "array of strings",
    "resource_signing_alg_values_supported": "array of strings",
    "resource_name": "string",
    "resource_documentation": "string",
    "resource_policy_uri": "string",
    "resource_tos_uri": "string",
    "tls_client_certificate_bound_access_tokens": "boolean",
    "authorization_details_types_supported": "array of strings",
    "dpop_signing_alg_values_supported": "array of strings",
    "dpop_bound_access_tokens_required": "boolean",
}


def rfc9728_problems(document: Any, resource: str) -> list[str]:
    """What is wrong with *document* as RFC 9728 metadata for *resource* (empty: valid)."""
    if not isinstance(document, dict):
        return ["not a JSON object"]
    problems = []
    if document.get("resource") != resource:  # §3.3: MUST be identical
        problems.append(f"resource {document.get('resource')!r} is not {resource!r}")
    for name, kind in RFC9728_TYPES.items():
        if name not in document:
            continue
        value = document[name]
        ok = {
            "string": isinstance(value, str),
            "boolean": isinstance(value, bool),
            "array of strings": isinstance(value, list) and all(isinstance(v, str) for v in value),
        }[kind]
        if not ok:
            problems.append(f"{name} is not a JSON {kind}")
    methods = set(document.get("bearer_methods_supported", ()))
    if not methods <= {"header", "body", "query"}:  # §2, RFC 6750 §2 methods
        problems.append(f"unknown bearer methods {sorted(methods)}")
    return problems


@pytest.mark.parametrize("example", EXAMPLES)
async def test_metadata_documents_validate_against_rfc9728(stack: Stack, example: str) -> None:
    """Both well-known URLs serve a valid RFC 9728 document naming the resource."""
    url = stack.servers[example]
    origin = url.removesuffix("/mcp")
    async with httpx.AsyncClient() as http:
        for path in (
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource",
        ):
            response = await http.get(origin + path)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            document = response.json()
            assert rfc9728_problems(document, url) == []
            assert document["authorization_servers"] == [stack.issuer]
            assert document["scopes_supported"] == ["items:read", "items:write"]
            ProtectedResourceMetadata.model_validate(document)  # the SDK client's model too
        public = await http.get(origin + "/public", headers={"authorization": "Bearer junk"})
    assert public.json() == {"ok": True}


def test_rfc9728_checker_catches_problems() -> None:
    """The checker itself: a wrong resource and mistyped members are reported."""
    assert rfc9728_problems([], "x") == ["not a JSON object"]
    problems = rfc9728_problems(
        {"resource": "y", "scopes_supported": "a b", "bearer_methods_supported": ["cookie"]}, "x"
    )
    assert len(problems) == 3
