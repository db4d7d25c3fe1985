"""The official MCP Python client (mcp 2.x) against a real `scopegate issuer serve` process.

The client's auth flow is driven for real: a request to a small resource server on
127.0.0.1 gets a 401 naming its RFC 9728 metadata, the client reads that metadata, then
the issuer's RFC 8414 metadata (which it accepts only with an ``authorization_endpoint``
and an ``issuer`` string-identical to the one it was given), then asks the issuer's token
endpoint for a token with ``resource=`` (RFC 8707), and retries with it. The resource
server checks the token with scopegate's ``JWTVerifier`` against that resource as the
audience. No MCP server is needed for that: the flow is the client's HTTP auth layer.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scopegate import JWTVerifier
from tests.servers import free_port, run_asgi, run_process

mcp_auth = pytest.importorskip("mcp.client.auth")
httpx2 = pytest.importorskip("httpx2")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
    from mcp.shared.auth import OAuthMetadata

WELL_KNOWN = "/.well-known/oauth-authorization-server"
CONFIG = """
audience = "api://demo"
scope_policy = "{policy}"

[[clients]]
id = "writer"
secret = "writer-secret"
scopes = ["items:read", "items:write"]
resources = ["{resource}"]

[[clients]]
id = "reader"
secret = "reader-secret"
scopes = ["items:read"]
resources = ["{resource}"]

[[clients]]
id = "mcp-app"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["http://127.0.0.1:8765/callback"]
scopes = ["items:read"]
resources = ["{resource}"]

[[users]]
username = "alice"
password = "alice-pw"
scopes = ["items:read"]
"""


class MemoryTokenStorage:
    """The mcp.client.auth.TokenStorage protocol, in memory."""

    def __init__(self) -> None:
        self.tokens: Any = None
        self.client_info: Any = None

    async def get_tokens(self) -> Any:
        return self.tokens

    async def set_tokens(self, tokens: Any) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> Any:
        return self.client_info

    async def set_client_info(self, info: Any) -> None:
        self.client_info = info


def resource_server(base: str, issuer: str) -> Any:
    """An RFC 9728 resource at ``base/mcp`` that wants ``items:read`` (or ``X-Need``)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    resource = f"{base}/mcp"
    metadata_url = f"{base}/.well-known/oauth-protected-resource/mcp"
    verifier = JWTVerifier(issuer=issuer, audience=resource)

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "resource": resource,
                "authorization_servers": [issuer],
                "scopes_supported": ["items:read", "items:write"],
            }
        )

    async def protected(request: Request) -> JSONResponse:
        need = request.headers.get("x-need", "items:read")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        challenge = f'Bearer resource_metadata="{metadata_url}", scope="items:read"'
        if scheme.lower() != "bearer" or not token:
            return JSONResponse({"error": "unauthorized"}, 401, {"www-authenticate": challenge})
        try:
            verified = await verifier.averify(token)
        except Exception:
            return JSONResponse({"error": "invalid_token"}, 401, {"www-authenticate": challenge})
        if need not in verified.scopes:
            step_up = (
                f'Bearer error="insufficient_scope", scope="{need}", '
                f'resource_metadata="{metadata_url}"'
            )
            return JSONResponse({"error": "insufficient_scope"}, 403, {"www-authenticate": step_up})
        return JSONResponse({"aud": verified.claims["aud"], "scopes": sorted(verified.scopes)})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await verifier.aclose()  # its HTTP client lives in the server's event loop

    return Starlette(
        routes=[
            Route("/.well-known/oauth-protected-resource/mcp", metadata),
            Route("/mcp", protected, methods=["GET", "POST"]),
        ],
        lifespan=lifespan,
    )


@contextlib.contextmanager
def stack(tmp_path: Path, policy: str) -> Iterator[tuple[str, str]]:
    """The issuer as a CLI process and the resource server; yields (issuer, resource)."""
    rs_port, as_port = free_port(), free_port()
    rs_base, issuer = f"http://127.0.0.1:{rs_port}", f"http://127.0.0.1:{as_port}"
    config = tmp_path / "issuer.toml"
    config.write_text(CONFIG.format(policy=policy, resource=f"{rs_base}/mcp"))
    args = [sys.executable, "-m", "scopegate", "issuer", "serve", "--config", str(config),
            "--port", str(as_port)]  # fmt: skip
    with (
        run_process(args, as_port, ready_path=WELL_KNOWN),
        run_asgi(resource_server(rs_base, issuer), port=rs_port),
    ):
        yield issuer, f"{rs_base}/mcp"


class Recorder:
    """httpx2 event hooks: every request and response the auth flow exchanges."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.responses: list[Any] = []

    async def on_request(self, request: Any) -> None:
        self.requests.append(request)

    async def on_response(self, response: Any) -> None:
        self.responses.append(response)

    def token_requests(self) -> list[dict[str, list[str]]]:
        from urllib.parse import parse_qs

        return [
            parse_qs(request.content.decode())
            for request in self.requests
            if request.method == "POST" and request.url.path == "/token"
        ]


def client(issuer: str, resource: str, client_id: str, recorder: Recorder) -> Any:
    provider = ClientCredentialsOAuthProvider(
        server_url=resource,
        storage=MemoryTokenStorage(),
        client_id=client_id,
        client_secret=f"{client_id}-secret",
        issuer=issuer,
    )
    return httpx2.AsyncClient(
        auth=provider,
        timeout=30,
        event_hooks={"request": [recorder.on_request], "response": [recorder.on_response]},
    )


@pytest.mark.anyio
async def test_official_client_discovers_metadata_and_gets_a_resource_token(
    tmp_path: Path,
) -> None:
    """ClientCredentialsOAuthProvider: PRM -> AS metadata -> token with resource -> 200."""
    with stack(tmp_path, "strict") as (issuer, resource):
        async with httpx.AsyncClient() as plain:
            metadata = (await plain.get(f"{issuer}{WELL_KNOWN}")).json()
        assert metadata["issuer"] == issuer  # no trailing slash added
        OAuthMetadata.model_validate(metadata)  # the client's own model accepts it
        recorder = Recorder()
        async with client(issuer, resource, "writer", recorder) as http:
            response = await http.get(resource)
        assert response.status_code == 200, response.text
        assert response.json() == {"aud": resource, "scopes": ["items:read"]}
        paths = [(r.method, str(r.url)) for r in recorder.requests]
        assert ("GET", f"{issuer}{WELL_KNOWN}") in paths
        assert recorder.token_requests() == [
            {"grant_type": ["client_credentials"], "resource": [resource], "scope": ["items:read"]}
        ]
        statuses = [r.status_code for r in recorder.responses]
        assert statuses[0] == 401
        assert statuses[-1] == 200


@pytest.mark.anyio
async def test_official_client_step_up_with_allowed_scope(tmp_path: Path) -> None:
    """A 403 insufficient_scope: the client asks for the union and, when allowed, gets it."""
    with stack(tmp_path, "strict") as (issuer, resource):
        recorder = Recorder()
        async with client(issuer, resource, "writer", recorder) as http:
            assert (await http.get(resource)).status_code == 200
            response = await http.post(resource, headers={"x-need": "items:write"})
        assert response.status_code == 200, response.text
        assert response.json()["scopes"] == ["items:read", "items:write"]
        assert recorder.token_requests()[-1]["scope"] == ["items:read items:write"]


@pytest.mark.anyio
async def test_official_client_step_up_strict_vs_narrow(tmp_path: Path) -> None:
    """Strict: the union is invalid_scope and the client's flow fails; narrow: a clean 403."""
    from mcp.client.auth import OAuthTokenError

    with stack(tmp_path, "strict") as (issuer, resource):
        recorder = Recorder()
        async with client(issuer, resource, "reader", recorder) as http:
            assert (await http.get(resource)).status_code == 200
            with pytest.raises(OAuthTokenError, match="invalid_scope"):
                await http.post(resource, headers={"x-need": "items:write"})
    with stack(tmp_path, "narrow") as (issuer, resource):
        recorder = Recorder()
        async with client(issuer, resource, "reader", recorder) as http:
            assert (await http.get(resource)).status_code == 200
            response = await http.post(resource, headers={"x-need": "items:write"})
            assert response.status_code == 403
            # The connection survives: the next ordinary request still works.
            assert (await http.get(resource)).status_code == 200
        asked = recorder.token_requests()[-1]
        assert asked["scope"] == ["items:read items:write"]
        assert asked["resource"] == [resource]


@pytest.mark.anyio
async def test_official_client_authorization_code_flow(tmp_path: Path) -> None:
    """OAuthClientProvider (a person signs in): PKCE, state and RFC 9207 iss all check out."""
    from mcp.client.auth import OAuthClientProvider
    from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull
    from mcp.shared.auth import OAuthClientMetadata as ClientMetadata

    from tests.issuer.authz_support import form_token, query_of

    callback = "http://127.0.0.1:8765/callback"
    with stack(tmp_path, "strict") as (issuer, resource):
        storage = MemoryTokenStorage()
        # Pre-registered public client (the issuer has no dynamic registration).
        storage.client_info = OAuthClientInformationFull(
            client_id="mcp-app",
            redirect_uris=[callback],
            grant_types=["authorization_code", "refresh_token"],
            token_endpoint_auth_method="none",
        )
        redirected: dict[str, str] = {}

        async def sign_in(url: str) -> None:
            """The person's browser: open the page, sign in, land on the callback."""
            async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
                page = await browser.get(url)
                assert page.status_code == 200, page.text
                done = await browser.post(
                    f"{issuer}/authorize",
                    data={
                        "request_token": form_token(page.text),
                        "username": "alice",
                        "password": "alice-pw",
                    },
                )
            assert done.status_code == 303, done.text
            redirected.update(query_of(done.headers["location"]))

        async def callback_handler() -> Any:
            return AuthorizationCodeResult(
                code=redirected["code"], state=redirected.get("state"), iss=redirected.get("iss")
            )

        provider = OAuthClientProvider(
            server_url=resource,
            client_metadata=ClientMetadata(
                redirect_uris=[callback],
                grant_types=["authorization_code", "refresh_token"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=sign_in,
            callback_handler=callback_handler,
        )
        recorder = Recorder()
        async with httpx2.AsyncClient(
            auth=provider,
            timeout=30,
            event_hooks={"request": [recorder.on_request], "response": [recorder.on_response]},
        ) as http:
            response = await http.get(resource)
        assert response.status_code == 200, response.text
        assert response.json() == {"aud": resource, "scopes": ["items:read"]}
        assert redirected["iss"] == issuer
        (token_request,) = recorder.token_requests()
        assert token_request["grant_type"] == ["authorization_code"]
        assert token_request["resource"] == [resource]
        assert token_request["client_id"] == ["mcp-app"]
