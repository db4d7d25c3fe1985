"""Measured: scopegate's MCP gate against the SDK's and FastMCP's built-in bearer auth.

Every cell of the comparison table in docs/mcp.md is asserted here, on three stacks
protecting the same items server with the same authorization server:

* ``scopegate``: :class:`~scopegate.integrations.mcp.MCPGate` with scopegate's
  ``IntrospectionVerifier`` (opaque tokens) or ``JWTVerifier``;
* ``sdk``: the MCP SDK's own auth stack (``MCPServer(token_verifier=..., auth=AuthSettings
  (...))`` with its defaults). The SDK ships no verifier; ``SDKStyleIntrospection`` does
  what its simple-auth example does: one RFC 7662 request per ``verify_token``, ``None``
  when that fails;
* ``fastmcp``: FastMCP's ``RemoteAuthProvider`` with its built-in
  ``IntrospectionTokenVerifier`` / ``JWTVerifier``, defaults unless a test says otherwise;
* ``sdk+scopegate`` and ``fastmcp+scopegate``: scopegate's adapters inside those stacks
  (``MCPTokenVerifier`` with ``install_unavailable_handler``, ``ScopegateAuthProvider``),
  showing what each path of docs/mcp.md gives.

The authorization server is scopegate's issuer (opaque tokens, RFC 8707 ``aud``), served
by uvicorn on 127.0.0.1; a wrapper counts its introspection requests and can fail them
(an outage).
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastmcp import FastMCP
from fastmcp.server.auth import RemoteAuthProvider
from fastmcp.server.auth.providers.introspection import IntrospectionTokenVerifier
from fastmcp.server.auth.providers.jwt import JWTVerifier as FastMCPJWTVerifier
from mcp.server.auth.provider import AccessToken as SDKAccessToken
from mcp.server.auth.settings import AuthSettings

from scopegate import ConfigurationError, IntrospectionVerifier, JWTVerifier
from scopegate.integrations.fastmcp import ScopegateAuthProvider
from scopegate.integrations.mcp import MCPGate, MCPTokenVerifier, install_unavailable_handler
from scopegate.issuer import Client, Issuer, IssuerConfig, create_asgi_app
from scopegate.testing import IssuerServer
from tests.integrations._mcp_support import (
    RESOURCE,
    TOOL_SCOPES,
    call,
    challenge,
    client_for,
    items_server,
)
from tests.integrations.test_mcp import options
from tests.servers import free_port, run_asgi

pytestmark = pytest.mark.anyio

BASE = RESOURCE.removesuffix("/mcp")
OTHER = "http://127.0.0.1:8001/mcp"
METADATA_URL = f"{BASE}/.well-known/oauth-protected-resource/mcp"
RS_CLIENT = ("rs", "rs-secret-2f9d41")
SVC_CLIENT = ("svc", "svc-secret-7b03c5")


class CountingAS:
    """The issuer app, counting introspection requests; ``down`` makes them fail (503)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.introspections = 0
        self.down = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/introspect":
            self.introspections += 1
            if self.down:
                await send({"type": "http.response.start", "status": 503, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


@dataclass
class AuthServer:
    """The running issuer and a way to get tokens from it."""

    url: str
    counting: CountingAS
    minted: list[str] = field(default_factory=list)

    @property
    def introspection_uri(self) -> str:
        return f"{self.url}/introspect"

    def token(self, scope: str = "items:read", resource: str = RESOURCE) -> str:
        """A fresh opaque token (never seen by any verifier)."""
        response = httpx.post(
            f"{self.url}/token",
            data={"grant_type": "client_credentials", "scope": scope, "resource": resource},
            auth=SVC_CLIENT,
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    @contextlib.contextmanager
    def counted(self) -> Iterator[Callable[[], int]]:
        """Yields a function giving the introspection requests since the block started."""
        start = self.counting.introspections
        yield lambda: self.counting.introspections - start


@pytest.fixture(scope="module")
def auth_server() -> Iterator[AuthServer]:
    """scopegate's issuer with opaque tokens, on 127.0.0.1, counted."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    issuer = Issuer(
        IssuerConfig(issuer=url, audience=RESOURCE, token_format="opaque"),
        clients=[
            Client(
                SVC_CLIENT[0],
                (SVC_CLIENT[1],),
                scopes=frozenset({"items:read", "items:write"}),
                resources=frozenset({RESOURCE, OTHER}),
            ),
            Client(RS_CLIENT[0], (RS_CLIENT[1],), introspect=True),
        ],
    )
    counting = CountingAS(create_asgi_app(issuer))
    with run_asgi(counting, port=port):
        yield AuthServer(url, counting)


@pytest.fixture(autouse=True)
def _up(auth_server: AuthServer) -> Iterator[None]:
    auth_server.counting.down = False
    yield
    auth_server.counting.down = False


class SDKStyleIntrospection:
    """What the SDK's simple-auth example verifier does: introspect on every call."""

    def __init__(self, uri: str, *, raise_on_error: bool = False) -> None:
        self.uri = uri
        self.raise_on_error = raise_on_error

    async def verify_token(self, token: str) -> SDKAccessToken | None:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(self.uri, data={"token": token}, auth=RS_CLIENT)
        if response.status_code != 200:
            if self.raise_on_error:
                raise RuntimeError("introspection failed")
            return None
        data = response.json()
        if not data.get("active"):
            return None
        return SDKAccessToken(
            token=token,
            client_id=data.get("client_id", ""),
            scopes=str(data.get("scope", "")).split(),
            expires_at=data.get("exp"),
            resource=data.get("aud"),
            subject=data.get("sub"),
            claims=data,
        )


def scopegate_introspection(server: AuthServer) -> IntrospectionVerifier:
    """scopegate's introspection verifier for RESOURCE, with its defaults."""
    return IntrospectionVerifier(
        introspection_uri=server.introspection_uri,
        client_id=RS_CLIENT[0],
        client_secret=RS_CLIENT[1],
        audience=RESOURCE,
    )


def fastmcp_items(auth: Any) -> Any:
    """FastMCP's items server behind *auth*, as its app."""
    mcp: FastMCP = FastMCP("items", auth=auth)

    @mcp.tool
    def list_items() -> str:
        return "[]"

    @mcp.tool
    def create_item(name: str) -> dict[str, str]:
        return {"name": name}

    return mcp.http_app(path="/mcp")


def build(stack: str, server: AuthServer, closers: list[Any], **variant: Any) -> Any:
    """A fresh items server protected by *stack*, with that stack's defaults.

    ``sdk+scopegate`` and ``fastmcp+scopegate`` are scopegate's adapters inside those
    stacks (MCPTokenVerifier, ScopegateAuthProvider).
    """
    if stack == "scopegate":
        verifier = scopegate_introspection(server)
        closers.append(verifier)
        return MCPGate(
            items_server().streamable_http_app(),
            verifier=verifier,
            options=options(),
            tool_scopes=TOOL_SCOPES,
        )
    if stack == "sdk+scopegate":
        verifier = scopegate_introspection(server)
        closers.append(verifier)
        mcp = items_server(
            token_verifier=MCPTokenVerifier(verifier, resource=RESOURCE),
            auth=AuthSettings(
                issuer_url=server.url,
                resource_server_url=RESOURCE,
                required_scopes=["items:read"],
                validate_token_resource=True,
            ),
        )
        return install_unavailable_handler(mcp.streamable_http_app())
    if stack == "fastmcp+scopegate":
        verifier = scopegate_introspection(server)
        closers.append(verifier)
        return fastmcp_items(
            ScopegateAuthProvider(
                verifier,
                base_url=BASE,
                authorization_servers=[server.url],
                required_scopes=["items:read"],
            )
        )
    if stack == "sdk":
        with warnings.catch_warnings():
            # validate_token_resource left at its default: the SDK warns that it is off.
            warnings.simplefilter("ignore")
            settings = AuthSettings(
                issuer_url=server.url, resource_server_url=RESOURCE, required_scopes=["items:read"]
            )
            mcp = items_server(
                token_verifier=SDKStyleIntrospection(server.introspection_uri, **variant),
                auth=settings,
            )
        return mcp.streamable_http_app()
    fastmcp_verifier = IntrospectionTokenVerifier(
        introspection_url=server.introspection_uri,
        client_id=RS_CLIENT[0],
        client_secret=RS_CLIENT[1],
        required_scopes=["items:read"],
        **variant,
    )
    auth = RemoteAuthProvider(
        token_verifier=fastmcp_verifier,
        authorization_servers=[server.url],  # type: ignore[list-item]
        base_url=BASE,
    )
    return fastmcp_items(auth)


@contextlib.asynccontextmanager
async def stack_client(stack: str, server: AuthServer, **variant: Any) -> AsyncIterator[Any]:
    closers: list[Any] = []
    app = build(stack, server, closers, **variant)
    async with client_for(app, raise_errors=False) as client:
        yield client
    for verifier in closers:
        await verifier.aclose()


# -- caching and single flight -------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "variant", "expected"),
    [
        pytest.param("scopegate", {}, 1, id="scopegate"),
        pytest.param("sdk", {}, 10, id="sdk"),
        pytest.param("fastmcp", {}, 10, id="fastmcp"),
        pytest.param("fastmcp", {"cache_ttl_seconds": 60}, 1, id="fastmcp-cache-ttl"),
        pytest.param("sdk+scopegate", {}, 1, id="sdk-with-mcptokenverifier"),
        pytest.param("fastmcp+scopegate", {}, 1, id="fastmcp-with-scopegate-provider"),
    ],
)
async def test_introspections_for_ten_sequential_requests(
    auth_server: AuthServer, stack: str, variant: dict[str, Any], expected: int
) -> None:
    """Caching: introspection requests for 10 sequential tool calls with one token."""
    token = auth_server.token()
    async with stack_client(stack, auth_server, **variant) as client:
        with auth_server.counted() as count:
            for _ in range(10):
                assert (await call(client, token, "list_items")).status_code == 200
            assert count() == expected


@pytest.mark.parametrize(
    ("stack", "variant", "expected"),
    [
        pytest.param("scopegate", {}, 1, id="scopegate"),
        pytest.param("sdk", {}, 10, id="sdk"),
        pytest.param("fastmcp", {}, 10, id="fastmcp"),
        pytest.param("fastmcp", {"cache_ttl_seconds": 60}, 10, id="fastmcp-cache-ttl"),
        pytest.param("sdk+scopegate", {}, 1, id="sdk-with-mcptokenverifier"),
        pytest.param("fastmcp+scopegate", {}, 1, id="fastmcp-with-scopegate-provider"),
    ],
)
async def test_introspections_for_ten_concurrent_requests(
    auth_server: AuthServer, stack: str, variant: dict[str, Any], expected: int
) -> None:
    """Single flight: introspection requests for 10 concurrent calls with a new token."""
    token = auth_server.token()
    async with stack_client(stack, auth_server, **variant) as client:
        with auth_server.counted() as count:
            responses = await asyncio.gather(
                *(call(client, token, "list_items") for _ in range(10))
            )
            assert [r.status_code for r in responses] == [200] * 10
            assert count() == expected


# -- outage ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "variant", "expected"),
    [
        pytest.param("scopegate", {}, 503, id="scopegate"),
        pytest.param("sdk", {}, 401, id="sdk-example-verifier"),
        pytest.param("sdk", {"raise_on_error": True}, 500, id="sdk-raising-verifier"),
        pytest.param("fastmcp", {}, 401, id="fastmcp"),
        pytest.param("sdk+scopegate", {}, 503, id="sdk-with-mcptokenverifier"),
        pytest.param("fastmcp+scopegate", {}, 503, id="fastmcp-with-scopegate-provider"),
    ],
)
async def test_status_while_introspection_is_down(
    auth_server: AuthServer, stack: str, variant: dict[str, Any], expected: int
) -> None:
    """Outage: the status a client gets when introspection fails, nothing cached."""
    token = auth_server.token()
    async with stack_client(stack, auth_server, **variant) as client:
        auth_server.counting.down = True
        response = await call(client, token, "list_items")
    assert response.status_code == expected
    if expected == 503:
        assert response.headers["retry-after"].isdigit()


@pytest.mark.parametrize(
    ("stack", "expected"),
    [pytest.param("scopegate", 503, id="scopegate"), pytest.param("fastmcp", 401, id="fastmcp")],
)
async def test_status_while_the_jwks_is_down(stack: str, expected: int) -> None:
    """Outage, JWT flavour: the JWKS unreachable and nothing cached."""
    with IssuerServer(audience=RESOURCE) as keys:
        keys.available = False
        if stack == "scopegate":
            app = MCPGate(
                items_server().streamable_http_app(), verifier=keys.verifier(), options=options()
            )
        else:
            verifier = FastMCPJWTVerifier(
                jwks_uri=keys.jwks_uri, issuer=keys.issuer, required_scopes=["items:read"]
            )
            auth = RemoteAuthProvider(
                token_verifier=verifier,
                authorization_servers=[keys.issuer],  # type: ignore[list-item]
                base_url=BASE,
            )
            app = FastMCP("items", auth=auth).http_app(path="/mcp")
        async with client_for(app) as client:
            response = await call(client, keys.make_token(["items:read"]), "list_items")
    assert response.status_code == expected


# -- challenges ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        pytest.param(
            "scopegate",
            f'Bearer realm="api", scope="items:read", resource_metadata="{METADATA_URL}"',
            id="scopegate",
        ),
        pytest.param(
            "sdk",
            'Bearer error="invalid_token", error_description="Authentication required", '
            f'resource_metadata="{METADATA_URL}"',
            id="sdk",
        ),
        pytest.param(
            "fastmcp",
            f'Bearer scope="items:read", resource_metadata="{METADATA_URL}"',
            id="fastmcp",
        ),
        pytest.param(
            "sdk+scopegate",
            'Bearer error="invalid_token", error_description="Authentication required", '
            f'resource_metadata="{METADATA_URL}"',
            id="sdk-with-mcptokenverifier",
        ),
        pytest.param(
            "fastmcp+scopegate",
            f'Bearer scope="items:read", resource_metadata="{METADATA_URL}"',
            id="fastmcp-with-scopegate-provider",
        ),
    ],
)
async def test_challenge_without_a_token(
    auth_server: AuthServer, stack: str, expected: str
) -> None:
    """The 401 for a request without a token (RFC 6750 §3.1: no error attribute)."""
    async with stack_client(stack, auth_server) as client:
        response = await call(client, None, "list_items")
    assert response.status_code == 401
    assert challenge(response) == expected


@pytest.mark.parametrize(
    ("stack", "status", "error", "names_scope"),
    [
        pytest.param("scopegate", 403, "insufficient_scope", True, id="scopegate"),
        pytest.param("sdk", 403, "insufficient_scope", False, id="sdk"),
        # FastMCP's verifiers refuse a token without their required_scopes themselves.
        pytest.param("fastmcp", 401, "invalid_token", True, id="fastmcp"),
        pytest.param(
            "sdk+scopegate", 403, "insufficient_scope", False, id="sdk-with-mcptokenverifier"
        ),
        pytest.param(
            "fastmcp+scopegate",
            403,
            "insufficient_scope",
            True,
            id="fastmcp-with-scopegate-provider",
        ),
    ],
)
async def test_challenge_for_a_token_without_the_base_scope(
    auth_server: AuthServer, stack: str, status: int, error: str, names_scope: bool
) -> None:
    """A token lacking items:read: 403 insufficient_scope naming it, or not."""
    token = auth_server.token("items:write")
    async with stack_client(stack, auth_server) as client:
        response = await call(client, token, "list_items")
    assert response.status_code == status
    assert f'error="{error}"' in challenge(response)
    assert ('scope="items:read"' in challenge(response)) is names_scope


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        pytest.param("scopegate", 403, id="scopegate"),
        pytest.param("sdk", 200, id="sdk"),
        pytest.param("fastmcp", 200, id="fastmcp"),
        pytest.param("sdk+scopegate", 200, id="sdk-with-mcptokenverifier"),
        pytest.param("fastmcp+scopegate", 200, id="fastmcp-with-scopegate-provider"),
    ],
)
async def test_status_of_a_tool_call_outside_the_token_scopes(
    auth_server: AuthServer, stack: str, expected: int
) -> None:
    """create_item with an items:read token: an HTTP 403 only through the gate."""
    token = auth_server.token()
    async with stack_client(stack, auth_server) as client:
        response = await call(client, token, "create_item", {"name": "x"})
    assert response.status_code == expected


# -- audience ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        pytest.param("scopegate", 401, id="scopegate"),
        pytest.param("sdk", 200, id="sdk"),
        pytest.param("fastmcp", 200, id="fastmcp"),
        pytest.param("sdk+scopegate", 401, id="sdk-with-mcptokenverifier"),
        pytest.param("fastmcp+scopegate", 401, id="fastmcp-with-scopegate-provider"),
    ],
)
async def test_token_for_another_resource_by_default(
    auth_server: AuthServer, stack: str, expected: int
) -> None:
    """Audience by default: a token the AS issued for another MCP server (aud = OTHER)."""
    token = auth_server.token(resource=OTHER)
    async with stack_client(stack, auth_server) as client:
        response = await call(client, token, "list_items")
    assert response.status_code == expected


def test_scopegate_has_no_audience_less_jwt_verifier() -> None:
    """scopegate's JWTVerifier cannot be built without an audience."""
    with pytest.raises((ConfigurationError, TypeError)):
        JWTVerifier(issuer="https://issuer.example")  # type: ignore[call-arg]
