"""scopegate.integrations.mcp: the MCP gate and the SDK TokenVerifier adapter, in process.

Every server here is the official SDK's streamable-HTTP app with its lifespan running;
the tokens are real RS256 JWTs from :class:`scopegate.testing.LocalIssuer`. The official
MCP clients against real processes are in tests/conformance/test_mcp_examples.py.
"""

from __future__ import annotations

import importlib
import json
import sys
from typing import Any

import httpx
import pytest
from mcp.server.auth.settings import AuthSettings
from starlette.applications import Starlette
from starlette.routing import Route

from scopegate import (
    AccessToken,
    ConfigurationError,
    GuardOptions,
    JWTVerifier,
    ProtectedResource,
    ServiceUnavailableError,
)
from scopegate.integrations.mcp import (
    INSUFFICIENT_SCOPE_CODE,
    MCPGate,
    MCPTokenVerifier,
    VerifierUnavailableError,
    install_unavailable_handler,
    issued_resource,
    sdk_access_token,
)
from scopegate.testing import IssuerServer, LocalIssuer
from tests.integrations._mcp_support import (
    ISSUER,
    METADATA_URL,
    RESOURCE,
    TOOL_SCOPES,
    LegacySession,
    call,
    challenge,
    client_for,
    items_server,
    modern_headers,
    sse_messages,
    tool_call,
)

pytestmark = pytest.mark.anyio

ISS = LocalIssuer(issuer=ISSUER, audience=RESOURCE)
DOCUMENT = {
    "resource": RESOURCE,
    "authorization_servers": [ISSUER],
    "scopes_supported": ["items:read", "items:write"],
    "bearer_methods_supported": ["header"],
}


def options(**settings: Any) -> GuardOptions:
    """The gate options of the examples: the resource, and items:read on every request."""
    resource = ProtectedResource(
        resource=RESOURCE,
        authorization_servers=[ISSUER],
        scopes_supported=["items:read", "items:write"],
    )
    return GuardOptions.of(
        GuardOptions(resource=resource, required_scopes=["items:read"]), **settings
    )


def gate(verifier: Any = None, *, settings: dict[str, Any] | None = None, **kwargs: Any) -> MCPGate:
    """A fresh SDK items server behind MCPGate (a session manager runs once per app)."""
    kwargs.setdefault("tool_scopes", TOOL_SCOPES)
    return MCPGate(
        items_server().streamable_http_app(),
        verifier=verifier or ISS.verifier(),
        options=options(**(settings or {})),
        **kwargs,
    )


def token(*scopes: str, **claims: Any) -> str:
    """A JWT for RESOURCE with *scopes*."""
    # A day: module-level tokens are minted at import, long before late tests run.
    return ISS.make_token(list(scopes), **{"expires_in": 86400, **claims})


READER = token("items:read")
WRITER = token("items:read", "items:write")


def rpc(response: httpx.Response) -> dict[str, Any]:
    """The single JSON-RPC message of a response."""
    (message,) = sse_messages(response)
    return message


# -- metadata and challenges -------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/.well-known/oauth-protected-resource/mcp", id="path-inserted"),
        pytest.param("/.well-known/oauth-protected-resource", id="root"),
    ],
)
async def test_metadata_is_served_without_a_token(path: str) -> None:
    """The RFC 9728 document is served at both well-known URLs, publicly cacheable."""
    async with client_for(gate()) as client:
        response = await client.get(path)
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert response.headers["cache-control"] == "public, max-age=3600"
    assert response.headers["access-control-allow-origin"] == "*"


async def test_no_token_is_a_401_without_error_naming_scope_and_metadata() -> None:
    """A request without a token: 401, no error attribute (RFC 6750 §3.1), scope + metadata."""
    async with client_for(gate()) as client:
        response = await call(client, None, "list_items")
    assert response.status_code == 401
    assert challenge(response) == (
        f'Bearer realm="api", scope="items:read", resource_metadata="{METADATA_URL}"'
    )


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        pytest.param("not-a-jwt", "malformed", id="malformed"),
        pytest.param(
            token("items:read", audience="http://127.0.0.1:9999/mcp"), "aud", id="other-resource"
        ),
        pytest.param(token("items:read", expires_in=-600), "exp", id="expired"),
        pytest.param(token("items:read", cnf={"jkt": "x" * 43}), "dpop", id="dpop-bound"),
    ],
)
async def test_unacceptable_tokens_are_401_invalid_token(raw: str, why: str) -> None:
    """Malformed, foreign-audience, expired and DPoP-bound tokens: 401 invalid_token."""
    async with client_for(gate()) as client:
        response = await call(client, raw, "list_items")
    assert response.status_code == 401, why
    value = challenge(response)
    assert 'error="invalid_token"' in value
    assert value.endswith(f'scope="items:read", resource_metadata="{METADATA_URL}"')


async def test_token_without_the_base_scope_is_403_naming_it() -> None:
    """A valid token without items:read: 403 insufficient_scope with scope="items:read"."""
    async with client_for(gate()) as client:
        response = await call(client, token("items:write"), "create_item", {"name": "x"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in challenge(response)
    assert f'scope="items:read", resource_metadata="{METADATA_URL}"' in challenge(response)


async def test_authorization_server_outage_is_503_with_retry_after() -> None:
    """Keys unreachable and nothing cached: 503 + Retry-After, never invalid_token."""
    with IssuerServer(audience=RESOURCE) as server:
        server.available = False
        verifier = server.verifier()
        async with client_for(gate(verifier)) as client:
            response = await call(client, server.make_token(["items:read"]), "list_items")
            metadata = await client.get(
                "/.well-known/oauth-protected-resource/mcp",
                headers={"authorization": f"Bearer {server.make_token(['items:read'])}"},
            )
    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert "invalid_token" not in challenge(response)
    assert metadata.status_code == 200  # discovery keeps working during the outage


# -- per-tool scopes ---------------------------------------------------------------------


async def test_tool_within_the_token_scopes_runs() -> None:
    """list_items with items:read: 200 and the tool's JSON list."""
    async with client_for(gate()) as client:
        response = await call(client, READER, "list_items")
    assert response.status_code == 200
    result = rpc(response)["result"]
    assert json.loads(result["content"][0]["text"])[0]["name"] == "hammer"


@pytest.mark.parametrize(
    "rpc_id",
    [pytest.param(7, id="int-id"), pytest.param("call-7", id="str-id")],
)
async def test_tool_outside_the_token_scopes_is_403_with_a_jsonrpc_error(rpc_id: Any) -> None:
    """create_item without items:write: 403 naming items:write; body a JSON-RPC error."""
    async with client_for(gate()) as client:
        response = await client.post(
            "/mcp",
            json=tool_call("create_item", {"name": "x"}, rpc_id),
            headers=modern_headers(READER, "create_item"),
        )
    assert response.status_code == 403
    assert challenge(response) == (
        'Bearer realm="api", error="insufficient_scope", '
        'error_description="The access token lacks the required scope", '
        f'scope="items:write", resource_metadata="{METADATA_URL}"'
    )
    assert response.headers["vary"] == "Authorization"
    assert response.headers["cache-control"] == "no-store"
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.json() == {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "error": {
            "code": INSUFFICIENT_SCOPE_CODE,
            "message": "insufficient_scope: this tool needs items:write",
            "data": {
                "error": "insufficient_scope",
                "error_description": "The access token lacks the required scope",
                "scope": "items:write",
            },
        },
    }


async def test_tool_with_its_scope_runs_and_sees_the_arguments() -> None:
    """create_item with items:write: the body replayed intact reaches the tool."""
    async with client_for(gate()) as client:
        response = await call(client, WRITER, "create_item", {"name": "drill"})
    assert response.status_code == 200
    assert rpc(response)["result"]["structuredContent"] == {"name": "drill"}


async def test_challenge_all_scopes_names_base_and_tool_scopes() -> None:
    """challenge_all_scopes=True: the tool's 403 asks for items:read and items:write."""
    async with client_for(gate(challenge_all_scopes=True)) as client:
        response = await call(client, READER, "create_item", {"name": "x"})
    assert response.status_code == 403
    assert 'scope="items:read items:write"' in challenge(response)


async def test_decision_follows_the_body_not_the_mcp_name_header() -> None:
    """Mcp-Name: list_items with a create_item body is refused (the body is what runs)."""
    async with client_for(gate()) as client:
        response = await client.post(
            "/mcp",
            json=tool_call("create_item", {"name": "x"}),
            headers=modern_headers(READER, "list_items"),
        )
    assert response.status_code == 403


async def test_unknown_tool_needs_the_base_scope_only() -> None:
    """A tool absent from tool_scopes reaches the SDK (which knows no such tool)."""
    async with client_for(gate()) as client:
        response = await call(client, READER, "no_such_tool")
    assert response.status_code == 200
    assert rpc(response)["result"]["isError"] is True


REFUSED_CALL = tool_call("create_item", {"name": "x"})


@pytest.mark.parametrize(
    ("body", "status", "answer"),
    [
        pytest.param(b"{not json", 400, None, id="invalid-json"),
        pytest.param(json.dumps([tool_call("list_items")]).encode(), 400, None, id="batch-allowed"),
        pytest.param(json.dumps([REFUSED_CALL]).encode(), 403, "plain", id="batch-refused"),
        pytest.param(
            b"\xef\xbb\xbf" + json.dumps(REFUSED_CALL).encode(), 403, "jsonrpc", id="bom-prefixed"
        ),
        pytest.param(json.dumps(REFUSED_CALL).encode("utf-16"), 403, "jsonrpc", id="utf-16"),
    ],
)
async def test_odd_bodies(body: bytes, status: int, answer: str | None) -> None:
    """Unparseable bodies go to the SDK (400); any parse that finds a refused call is 403.

    A single request is answered for its id, a batch with the plain RFC 6750 body.
    """
    async with client_for(gate()) as client:
        response = await client.post("/mcp", content=body, headers=modern_headers(READER))
    assert response.status_code == status, response.text
    if answer == "jsonrpc":
        assert response.json()["error"]["data"]["scope"] == "items:write"
    elif answer == "plain":
        assert response.json()["scope"] == "items:write"


async def test_tool_call_without_an_id_gets_the_plain_body() -> None:
    """A tools/call without an id (a notification) is refused with the RFC 6750 body."""
    message = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "create_item"}}
    async with client_for(gate()) as client:
        response = await client.post("/mcp", json=message, headers=modern_headers(READER))
    assert response.status_code == 403
    assert response.json()["scope"] == "items:write"


async def test_tool_name_that_is_not_a_string_goes_to_the_sdk() -> None:
    """params.name that is no string names no tool: the SDK refuses the request itself."""
    message = tool_call("create_item")
    message["params"]["name"] = ["create_item"]
    async with client_for(gate()) as client:
        response = await client.post(
            "/mcp", json=message, headers=modern_headers(READER, "create_item")
        )
    assert response.status_code == 400


async def test_unparseable_content_length_is_read_and_capped() -> None:
    """A Content-Length that is no number does not skip the body check."""
    body = json.dumps(tool_call("create_item", {"name": "x"})).encode()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(k.encode(), v.encode()) for k, v in modern_headers(READER).items()]
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "headers": [*headers, (b"content-length", b"many")],
    }
    await gate()(scope, receive, send)
    assert sent[0]["status"] == 403


async def test_duplicate_keys_are_read_as_the_sdk_reads_them() -> None:
    """{"name": "list_items", "name": "create_item"}: the last one counts, for both."""
    body = json.dumps(tool_call("list_items")).replace(
        '"name": "list_items"', '"name": "list_items", "name": "create_item"'
    )
    async with client_for(gate()) as client:
        response = await client.post("/mcp", content=body, headers=modern_headers(READER))
    assert response.status_code == 403


async def test_trailing_slash_path_is_checked_too() -> None:
    """POST /mcp/ (redirected by the SDK to /mcp) is checked like /mcp."""
    async with client_for(gate()) as client:
        response = await client.post(
            "/mcp/", json=tool_call("create_item", {"name": "x"}), headers=modern_headers(READER)
        )
    assert response.status_code == 403


async def test_percent_encoded_path_is_checked_as_routed() -> None:
    """/%6Dcp reaches the SDK's /mcp route, so its body is checked too."""
    app = gate()
    body = json.dumps(tool_call("create_item", {"name": "x"})).encode()
    sent: list[dict[str, Any]] = []
    headers = [(k.encode(), v.encode()) for k, v in modern_headers(READER).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/%6Dcp",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 403


async def test_body_over_the_cap_is_413() -> None:
    """A body larger than max_body is refused before parsing (declared or streamed)."""
    async with client_for(gate(max_body=1024)) as client:
        declared = await client.post("/mcp", content=b" " * 2048, headers=modern_headers(READER))

        async def chunks() -> Any:
            for _ in range(4):
                yield b" " * 400

        streamed = await client.post("/mcp", content=chunks(), headers=modern_headers(READER))
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"] == "invalid_request"
        assert "www-authenticate" not in response.headers


async def test_chunked_body_is_replayed_whole() -> None:
    """A body received in several messages reaches the SDK complete."""
    body = json.dumps(tool_call("create_item", {"name": "chunked"})).encode()

    async def chunks() -> Any:
        for i in range(0, len(body), 16):
            yield body[i : i + 16]

    async with client_for(gate()) as client:
        response = await client.post(
            "/mcp", content=chunks(), headers=modern_headers(WRITER, "create_item")
        )
    assert response.status_code == 200, response.text
    assert rpc(response)["result"]["structuredContent"] == {"name": "chunked"}


async def test_disconnect_while_reading_the_body_calls_nothing() -> None:
    """A client gone before its body is complete gets no answer and reaches no tool."""
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    mcp_gate = MCPGate(app, verifier=ISS.verifier(), options=options(), tool_scopes=TOOL_SCOPES)
    messages = iter(
        [
            {"type": "http.request", "body": b'{"jsonrpc"', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "headers": [(b"authorization", f"Bearer {READER}".encode())],
    }
    await mcp_gate(scope, receive, send)
    assert calls == []
    assert sent == []


async def test_other_methods_need_the_base_scope_only() -> None:
    """GET and DELETE on /mcp pass the gate with items:read (the SDK answers them)."""
    async with client_for(gate()) as client:
        get = await client.get(
            "/mcp", headers={"authorization": f"Bearer {READER}", "accept": "text/event-stream"}
        )
        delete = await client.delete("/mcp", headers={"authorization": f"Bearer {READER}"})
        anonymous = await client.get("/mcp")
    assert get.status_code not in (401, 403)
    assert delete.status_code not in (401, 403)
    assert anonymous.status_code == 401


async def test_optional_mode_still_needs_a_token_for_a_scoped_tool() -> None:
    """optional=True: an anonymous create_item call is a 401 naming items:write."""
    async with client_for(gate(settings={"optional": True, "required_scopes": ()})) as client:
        response = await call(client, None, "create_item", {"name": "x"})
    assert response.status_code == 401
    assert 'scope="items:write"' in challenge(response)
    assert "error=" not in challenge(response)


async def test_without_tool_scopes_the_body_is_not_buffered() -> None:
    """No tool_scopes: the gate only authenticates, the body streams to the SDK."""
    async with client_for(gate(tool_scopes=None)) as client:
        response = await call(client, READER, "create_item", {"name": "x"})
    assert response.status_code == 200


# -- what the tools see ------------------------------------------------------------------


async def test_tools_see_the_sdk_token_and_scopegate_token() -> None:
    """get_access_token() and current_token() both work inside a tool (modern era)."""
    raw = token("items:read", sub="alice", client_id="app-1")
    async with client_for(gate()) as client:
        response = await call(client, raw, "whoami")
    seen = rpc(response)["result"]["structuredContent"]
    assert seen["sdk"] == {
        "client_id": "app-1",
        "scopes": ["items:read"],
        "expires_at": seen["sdk"]["expires_at"],
        "resource": RESOURCE,
        "subject": "alice",
    }
    assert seen["sdk_iss"] == ISSUER
    assert seen["scopegate"] == "alice"


async def test_legacy_session_works_and_is_bound_to_its_principal() -> None:
    """2025-11-25 sessions: tools run, scopes are checked, Bob cannot use Alice's session."""
    alice = token("items:read", sub="alice")
    bob = token("items:read", "items:write", sub="bob")
    async with client_for(gate()) as client:
        session = await LegacySession(client, alice).open()
        listed = await session.call("list_items")
        whoami = await session.call("whoami")
        refused = await session.call("create_item")
        hijack = await session.call("create_item", token=bob)
        lying = await session.call("create_item", **{"mcp-name": "list_items"})
    assert listed.status_code == 200
    assert sse_messages(whoami)[0]["result"]["structuredContent"]["sdk"]["subject"] == "alice"
    assert refused.status_code == 403
    assert refused.json()["id"] == 2
    assert hijack.status_code == 404
    assert lying.status_code == 403


# -- configuration -----------------------------------------------------------------------


def test_gate_needs_a_resource() -> None:
    """Without a ProtectedResource the gate refuses to start, naming SCOPEGATE_RESOURCE."""
    with pytest.raises(ConfigurationError, match="SCOPEGATE_RESOURCE"):
        MCPGate(items_server().streamable_http_app(), verifier=ISS.verifier())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"tool_scopes": {"create_item": "items:write"}}, "not a str", id="str-scopes"),
        pytest.param(
            {"tool_scopes": {"create_item": ["two words"]}}, "scope-token", id="bad-scope"
        ),
        pytest.param({"tool_scopes": {"": ["items:write"]}}, "tool names", id="empty-name"),
        pytest.param({"tool_scopes": [("a", ["b"])]}, "map tool names", id="not-a-mapping"),
        pytest.param({"mcp_path": "mcp"}, "mcp_path", id="relative-path"),
        pytest.param({"max_body": 0}, "max_body", id="zero-body"),
        pytest.param({"challenge_all_scopes": "yes"}, "True or False", id="str-flag"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], message: str) -> None:
    """Mistyped gate settings are start-up errors."""
    with pytest.raises(ConfigurationError, match=message):
        gate(**kwargs)


def test_audience_must_include_the_resource() -> None:
    """A verifier for another audience is a start-up error (tokens would all fail)."""
    with pytest.raises(ConfigurationError, match="audience"):
        gate(JWTVerifier(issuer=ISSUER, audience="api://other", keys=ISS.jwks()))


def test_mcp_path_defaults_to_the_resource_path() -> None:
    """mcp_path comes from the resource identifier, else /mcp."""
    assert gate().mcp_path == "/mcp"
    resource = ProtectedResource(resource="http://127.0.0.1:8000", authorization_servers=[ISSUER])
    verifier = JWTVerifier(issuer=ISSUER, audience="http://127.0.0.1:8000", keys=ISS.jwks())
    origin = MCPGate(
        items_server().streamable_http_app(),
        verifier=verifier,
        options=GuardOptions(resource=resource),
    )
    assert origin.mcp_path == "/mcp"


def test_import_without_mcp_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the integration without the MCP SDK says which extra to install."""
    for name in list(sys.modules):
        if name == "mcp" or name.startswith("mcp."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "scopegate.integrations.mcp")
    with pytest.raises(ImportError, match=r"pip install 'scopegate\[mcp\]'"):
        importlib.import_module("scopegate.integrations.mcp")


# -- helpers -----------------------------------------------------------------------------


def _verified(**claims: Any) -> AccessToken:
    return AccessToken(
        subject=claims.get("sub", "alice"),
        client_id=claims.get("client_id"),
        scopes=frozenset({"items:read"}),
        expires_at=2_000_000_000,
        claims=claims,
        issuer=claims.get("iss"),
        token="raw",
    )


@pytest.mark.parametrize(
    ("aud", "resource", "expected"),
    [
        pytest.param(RESOURCE, RESOURCE, RESOURCE, id="string"),
        pytest.param(["api://x", RESOURCE + "/"], RESOURCE, RESOURCE + "/", id="list-slash"),
        pytest.param("api://x", RESOURCE, None, id="other"),
        pytest.param(None, RESOURCE, None, id="absent"),
        pytest.param("api://x", None, "api://x", id="no-resource"),
        pytest.param(["a", "b"], None, None, id="no-resource-list"),
    ],
)
def test_issued_resource(aud: Any, resource: str | None, expected: str | None) -> None:
    """The audience entry naming the resource, compared a trailing slash aside."""
    claims = {} if aud is None else {"aud": aud}
    assert issued_resource(_verified(**claims), resource) == expected


def test_sdk_access_token_fills_the_principal() -> None:
    """client_id falls back to the subject; iss lands in claims for session binding."""
    sdk = sdk_access_token(_verified(aud=RESOURCE, iss=ISSUER, sub="svc"), RESOURCE)
    assert (sdk.client_id, sdk.subject, sdk.resource) == ("svc", "svc", RESOURCE)
    assert (sdk.claims or {})["iss"] == ISSUER
    assert sdk.scopes == ["items:read"]
    anonymous = sdk_access_token(_verified(sub=None))
    assert (anonymous.client_id, anonymous.resource) == ("", None)
    assert "iss" not in (anonymous.claims or {})


# -- the SDK's own auth stack with MCPTokenVerifier -----------------------------------------


def sdk_app(verifier: Any, *, handler: bool = True) -> Starlette:
    """The SDK's auth stack (AuthSettings + token_verifier) with scopegate's verifier."""
    mcp = items_server(
        token_verifier=MCPTokenVerifier(verifier, resource=RESOURCE),
        auth=AuthSettings(
            issuer_url=ISSUER,
            resource_server_url=RESOURCE,
            required_scopes=["items:read"],
            validate_token_resource=True,
        ),
    )
    app = mcp.streamable_http_app()
    return install_unavailable_handler(app) if handler else app


async def test_token_verifier_adapter_in_the_sdk_stack() -> None:
    """Good token: 200; other resource: 401; outage: 503 + Retry-After (not 500)."""
    with IssuerServer(audience=RESOURCE) as server:
        verifier = server.verifier()
        async with client_for(sdk_app(verifier)) as client:
            good = await call(client, server.make_token(["items:read"]), "list_items")
            other = await call(
                client, server.make_token(["items:read"], audience="api://x"), "list_items"
            )
        await verifier.aclose()
        server.available = False
        verifier = server.verifier()
        async with client_for(sdk_app(verifier)) as client:
            down = await call(client, server.make_token(["items:read"]), "list_items")
        await verifier.aclose()
    assert good.status_code == 200
    assert other.status_code == 401
    assert down.status_code == 503
    assert down.headers["retry-after"].isdigit()
    assert down.json()["error"] == "temporarily_unavailable"


async def test_token_verifier_adapter_results() -> None:
    """verify_token: the SDK token; None for a foreign, bound or bad token; raises on outage."""
    adapter = MCPTokenVerifier(ISS.verifier(audience=[RESOURCE, "api://x"]), resource=RESOURCE)
    sdk = await adapter.verify_token(READER)
    assert sdk is not None
    assert sdk.resource == RESOURCE
    assert await adapter.verify_token(token("items:read", audience="api://x")) is None
    assert await adapter.verify_token(token("items:read", cnf={"jkt": "x" * 43})) is None
    assert await adapter.verify_token("garbage") is None
    loose = MCPTokenVerifier(ISS.verifier(audience=[RESOURCE, "api://x"]))
    assert await loose.verify_token(token("items:read", audience="api://x")) is not None

    class Down:
        def verify(self, raw: str) -> AccessToken:
            raise ServiceUnavailableError(retry_after=9)

        async def averify(self, raw: str) -> AccessToken:
            raise ServiceUnavailableError(retry_after=9)

    with pytest.raises(VerifierUnavailableError) as caught:
        await MCPTokenVerifier(Down()).verify_token(READER)
    assert caught.value.error.retry_after == 9
    assert "MCPTokenVerifier(" in repr(adapter)


def test_token_verifier_adapter_settings() -> None:
    """The adapter needs a verifier with averify() and a str resource."""
    with pytest.raises(ConfigurationError):
        MCPTokenVerifier(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        MCPTokenVerifier(ISS.verifier(), resource=1)  # type: ignore[arg-type]


async def test_install_unavailable_handler_refusals() -> None:
    """No AuthenticationMiddleware, or a stack already built: a clear start-up error."""
    with pytest.raises(ConfigurationError, match="no AuthenticationMiddleware"):
        install_unavailable_handler(Starlette(routes=[Route("/", lambda r: None)]))
    app = sdk_app(ISS.verifier(), handler=False)
    async with client_for(app) as client:
        await client.get("/.well-known/oauth-protected-resource/mcp")
    with pytest.raises(ConfigurationError, match="before the first request"):
        install_unavailable_handler(app)


async def test_unavailable_handler_answers_other_auth_errors_with_400() -> None:
    """Another AuthenticationError: 400 invalid_request, without its text."""
    from starlette.authentication import AuthenticationError

    from scopegate.integrations.mcp import unavailable_handler

    response = unavailable_handler("mcp")(None, AuthenticationError("secret detail"))  # type: ignore[arg-type]
    assert response.status_code == 400
    assert b"secret" not in response.body
    assert response.headers["www-authenticate"].startswith('Bearer realm="mcp"')
