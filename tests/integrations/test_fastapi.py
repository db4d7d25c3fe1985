"""FastAPI integration, through a real uvicorn server, plus its OpenAPI document."""

import importlib
import sys
import threading
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import FastAPI, Security, WebSocket

from scopegate._errors import InsufficientScopeError
from scopegate._scopes import require_scope
from scopegate._token import AccessToken
from scopegate.asgi import BearerAuthMiddleware
from scopegate.integrations.fastapi import BearerAuth, add_exception_handlers, install
from tests.integrations._fakes import (
    OUTAGE_TOKEN,
    FakeVerifier,
    bearer,
    ws_echo,
    ws_refusal,
)
from tests.servers import run_asgi

SCOPES = {"items:read": "Read items", "items:write": "Write items", "admin": "Administer"}


def build_app(verifier: FakeVerifier, *, handlers: bool = True) -> FastAPI:
    auth = BearerAuth(verifier, token_url="https://issuer.example/token", scopes=SCOPES)
    maybe = BearerAuth(
        verifier, token_url="https://issuer.example/token", auto_error=False, scheme_name="Optional"
    )
    app = FastAPI()
    if handlers:
        add_exception_handlers(app)

    @app.get("/public")
    async def public() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/me")
    async def me(token: Annotated[AccessToken, Security(auth)]) -> dict[str, Any]:
        return {"sub": token.subject, "scopes": sorted(token.scopes)}

    @app.get("/items")
    async def items(
        token: Annotated[AccessToken, Security(auth, scopes=["items:read"])],
    ) -> list[str]:
        return ["widget"]

    @app.get("/admin")
    async def admin(
        token: Annotated[AccessToken, Security(auth, scopes=["items:read", "admin"])],
    ) -> dict[str, bool]:
        return {"admin": True}

    @app.get("/twice", dependencies=[Security(auth, scopes=["items:read"])])
    async def twice(
        token: Annotated[AccessToken, Security(auth, scopes=["admin"])],
    ) -> dict[str, bool]:
        return {"ok": True}

    @app.get("/maybe")
    async def optional(token: Annotated[AccessToken | None, Security(maybe)]) -> dict[str, Any]:
        return {"sub": token.subject if token else None}

    @app.get("/core-decorator")
    @require_scope("admin")
    async def core(token: Annotated[AccessToken, Security(auth)]) -> dict[str, bool]:
        # The core decorator needs current_token(), set by the ASGI middleware only.
        return {"ok": True}

    @app.get("/raises")
    async def raises(token: Annotated[AccessToken, Security(auth)]) -> None:
        raise InsufficientScopeError(("admin",))

    @app.websocket("/ws")
    async def ws(
        websocket: WebSocket,
        token: Annotated[AccessToken, Security(auth, scopes=["items:read"])],
    ) -> None:
        await websocket.accept()
        await websocket.send_text(await websocket.receive_text())

    return app


@pytest.fixture(scope="module")
def verifier() -> FakeVerifier:
    """One fake verifier shared by the module's server."""
    return FakeVerifier()


@pytest.fixture(scope="module")
def base_url(verifier: FakeVerifier) -> Iterator[str]:
    """The test application served by uvicorn for the whole module."""
    with run_asgi(build_app(verifier)) as url:
        yield url


def get(base_url: str, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(base_url + path, headers=bearer(token) if token else None, timeout=10)


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        pytest.param("/public", None, 200, id="public"),
        pytest.param("/me", "tok-none", 200, id="any-token"),
        pytest.param("/items", "tok-read", 200, id="granted"),
        pytest.param("/items", "tok-write", 403, id="missing-scope"),
        pytest.param("/admin", "tok-read-admin", 200, id="all-of"),
        pytest.param("/admin", "tok-admin", 403, id="all-of-partial"),
        pytest.param("/twice", "tok-read-admin", 200, id="router-and-route-scopes"),
        pytest.param("/twice", "tok-admin", 403, id="router-scope-missing"),
        pytest.param("/items", None, 401, id="no-token"),
        pytest.param("/items", "nope", 401, id="invalid-token"),
        pytest.param("/items", OUTAGE_TOKEN, 503, id="outage"),
    ],
)
def test_security_dependency(base_url: str, path: str, token: str | None, status: int) -> None:
    """Security(auth, scopes=[...]) gives the RFC 6750 status for each case."""
    assert get(base_url, path, token).status_code == status


def test_responses_are_rfc6750(base_url: str) -> None:
    """Errors carry the challenge and the RFC 6750 JSON body, not FastAPI's detail."""
    missing = get(base_url, "/items")
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
    assert missing.json() == {"error": "unauthorized", "error_description": "Bearer token required"}
    refused = get(base_url, "/admin", "tok-admin")
    assert 'scope="items:read admin"' in refused.headers["www-authenticate"]
    assert refused.json()["error"] == "insufficient_scope"
    assert refused.headers["vary"] == "Authorization"


def test_me_returns_the_access_token(base_url: str) -> None:
    """The dependency returns the verified AccessToken."""
    assert get(base_url, "/me", "tok-read").json() == {
        "sub": "user-tok-read",
        "scopes": ["items:read"],
    }


def test_optional_dependency(base_url: str) -> None:
    """auto_error=False: anonymous requests get None, a bad token is still 401."""
    assert get(base_url, "/maybe").json() == {"sub": None}
    assert get(base_url, "/maybe", "tok-read").json() == {"sub": "user-tok-read"}
    assert get(base_url, "/maybe", "nope").status_code == 401


def test_bare_bearer_error_is_rendered(base_url: str) -> None:
    """A BearerError raised in an endpoint is rendered by add_exception_handlers."""
    response = get(base_url, "/raises", "tok-read")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_verification_is_async(base_url: str, verifier: FakeVerifier) -> None:
    """The dependency awaits averify: the sync verify (blocking) is never called."""
    calls = verifier.calls
    get(base_url, "/items", "tok-read")
    assert verifier.calls == calls
    assert verifier.async_calls > 0


def test_websocket(base_url: str) -> None:
    """The dependency guards a WebSocket route: accept with the scope, refuse otherwise."""
    assert ws_echo(base_url, "/ws", "tok-read", "hi") == "hi"
    assert ws_refusal(base_url, "/ws", None) == 401
    assert ws_refusal(base_url, "/ws", "tok-write") == 403


def test_openapi_declares_scheme_and_route_scopes(verifier: FakeVerifier) -> None:
    """The OpenAPI document has the client-credentials scheme and per-route scopes."""
    schema = build_app(verifier).openapi()
    scheme = schema["components"]["securitySchemes"]["OAuth2ClientCredentials"]
    assert scheme == {
        "type": "oauth2",
        "flows": {
            "clientCredentials": {"tokenUrl": "https://issuer.example/token", "scopes": SCOPES}
        },
    }
    paths = schema["paths"]
    assert paths["/items"]["get"]["security"] == [{"OAuth2ClientCredentials": ["items:read"]}]
    assert paths["/admin"]["get"]["security"] == [
        {"OAuth2ClientCredentials": ["items:read", "admin"]}
    ]
    assert paths["/me"]["get"]["security"] == [{"OAuth2ClientCredentials": []}]
    assert "security" not in paths["/public"]["get"]


def test_docs_page_is_served(base_url: str) -> None:
    """/docs and /openapi.json are public and show the lock's scheme."""
    assert get(base_url, "/docs").status_code == 200
    assert "OAuth2ClientCredentials" in get(base_url, "/openapi.json").text


def test_without_handlers_status_and_challenge_still_right(verifier: FakeVerifier) -> None:
    """Without add_exception_handlers FastAPI's own handler still sends the challenge."""
    with run_asgi(build_app(verifier, handlers=False)) as url:
        response = httpx.get(url + "/admin", headers=bearer("tok-admin"), timeout=10)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert response.json() == {"detail": "The access token lacks the required scope"}


def test_reuses_token_from_asgi_middleware(verifier: FakeVerifier) -> None:
    """Behind scopegate.asgi middleware the token is verified once, and the core
    decorator works on FastAPI endpoints."""
    inner = FakeVerifier()
    app = BearerAuthMiddleware(build_app(inner), verifier=verifier, exclude_paths=["/public"])
    before = verifier.async_calls
    with run_asgi(app) as url:
        ok = httpx.get(url + "/core-decorator", headers=bearer("tok-admin"), timeout=10)
        refused = httpx.get(url + "/core-decorator", headers=bearer("tok-read"), timeout=10)
    assert (ok.status_code, refused.status_code) == (200, 403)
    assert inner.async_calls == 0
    assert verifier.async_calls == before + 2


def test_concurrent_requests_do_not_mix_tokens(base_url: str) -> None:
    """Parallel requests each get their own token."""
    results: dict[str, Any] = {}

    def call(token: str) -> None:
        results[token] = get(base_url, "/me", token).json()["sub"]

    threads = [
        threading.Thread(target=call, args=(t,)) for t in ("tok-read", "tok-write", "tok-all")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {t: f"user-{t}" for t in ("tok-read", "tok-write", "tok-all")}


def test_import_without_fastapi_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the integration without FastAPI says which extra to install."""
    for name in list(sys.modules):
        if name == "fastapi" or name.startswith("fastapi."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "scopegate.integrations.fastapi")
    with pytest.raises(ImportError, match=r"pip install 'scopegate\[fastapi\]'"):
        importlib.import_module("scopegate.integrations.fastapi")


def test_example_app_openapi(monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/fastapi_app.py advertises the issuer's token URL and each route's scopes."""
    import importlib.util

    from tests.servers import ROOT

    monkeypatch.setenv("SCOPEGATE_ISSUER", "https://issuer.example")
    monkeypatch.setenv("SCOPEGATE_AUDIENCE", "api://items")
    monkeypatch.setenv("SCOPEGATE_JWKS_URI", "https://issuer.example/jwks.json")
    monkeypatch.delenv("SCOPEGATE_TOKEN_URL", raising=False)
    monkeypatch.delenv("SCOPEGATE_INTROSPECTION_URI", raising=False)
    path = ROOT / "examples" / "fastapi_app.py"
    spec = importlib.util.spec_from_file_location("fastapi_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    schema = module.create_app().openapi()
    flows = schema["components"]["securitySchemes"]["OAuth2ClientCredentials"]["flows"]
    assert flows["clientCredentials"]["tokenUrl"] == "https://issuer.example/token"
    assert set(flows["clientCredentials"]["scopes"]) == {"items:read", "items:write", "admin"}
    security = {
        (path, method): op.get("security")
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    assert security[("/items", "get")] == [{"OAuth2ClientCredentials": ["items:read"]}]
    assert security[("/items", "post")] == [{"OAuth2ClientCredentials": ["items:write"]}]
    assert security[("/admin", "get")] == [{"OAuth2ClientCredentials": ["items:read", "admin"]}]
    assert security[("/public", "get")] is None


RESOURCE = "https://api.example/v1"


def resource_app() -> tuple[FastAPI, BearerAuth]:
    """A resource's BearerAuth used only as an included router's dependency, and an
    endpoint raising a bare BearerError."""
    from fastapi import APIRouter

    from scopegate import DPoPPolicy, ProtectedResource

    auth = BearerAuth(
        FakeVerifier(),
        token_url="https://issuer.example/token",
        resource=ProtectedResource(resource=RESOURCE, authorization_servers=["https://as.example"]),
        dpop=DPoPPolicy(),
    )
    router = APIRouter()

    @router.get("/items")
    async def items() -> list[str]:
        return ["widget"]

    app = FastAPI()
    install(app)
    app.include_router(router, prefix="/v1", dependencies=[Security(auth, scopes=["items:read"])])

    @app.get("/raises")
    async def raises() -> None:
        raise InsufficientScopeError(("admin",))

    return app, auth


def test_install_serves_the_resource_metadata() -> None:
    """install() finds the resource's BearerAuth in an included router's dependencies and
    serves its RFC 9728 document at both well-known paths (GET only, not in OpenAPI);
    errors, bare ones included, point at it and offer DPoP."""
    app, _ = resource_app()
    metadata = "https://api.example/.well-known/oauth-protected-resource/v1"
    with run_asgi(app) as url:
        for path in (
            "/.well-known/oauth-protected-resource/v1",
            "/.well-known/oauth-protected-resource",
        ):
            response = httpx.get(url + path, timeout=10)
            assert response.status_code == 200
            assert response.json()["resource"] == RESOURCE
            assert response.headers["cache-control"] == "public, max-age=3600"
            assert "vary" not in response.headers
        assert (
            httpx.post(url + "/.well-known/oauth-protected-resource", timeout=10).status_code == 405
        )
        missing = httpx.get(url + "/v1/items", timeout=10)
        bare = httpx.get(url + "/raises", timeout=10)
        openapi = httpx.get(url + "/openapi.json", timeout=10).json()
    assert missing.status_code == 401
    assert f'resource_metadata="{metadata}"' in missing.headers["www-authenticate"]
    assert bare.status_code == 403
    assert f'resource_metadata="{metadata}"' in bare.headers["www-authenticate"]
    assert 'DPoP realm="api", algs="' in bare.headers["www-authenticate"]
    assert not any(path.startswith("/.well-known") for path in openapi["paths"])
    scheme = openapi["components"]["securitySchemes"]["OAuth2ClientCredentials"]
    assert "Authorization: DPoP" in scheme["description"]


def test_install_on_a_running_app_serves_the_metadata_at_once() -> None:
    """install() after the app built its middleware stack adds the routes immediately,
    once however often it runs."""
    _, auth = resource_app()
    app = FastAPI()

    @app.get("/items")
    async def items(token: Annotated[AccessToken, Security(auth)]) -> list[str]:
        return []

    app.middleware_stack = app.build_middleware_stack()
    install(app)
    install(app)
    paths = [getattr(route, "path", "") for route in app.router.routes]
    assert paths.count("/.well-known/oauth-protected-resource") == 1
    with run_asgi(app) as url:
        response = httpx.get(url + "/.well-known/oauth-protected-resource/v1", timeout=10)
    assert response.status_code == 200


def test_dpop_required_describes_itself_in_openapi() -> None:
    """With DPoP required the security scheme says Bearer tokens are refused; an explicit
    description is kept."""
    from scopegate import DPoPPolicy

    verifier = FakeVerifier()
    required = BearerAuth(verifier, token_url="https://x/token", dpop=DPoPPolicy(mode="required"))
    assert "Bearer tokens are refused" in str(required.model.description)
    own = BearerAuth(verifier, token_url="https://x/token", dpop=DPoPPolicy(), description="Mine")
    assert own.model.description == "Mine"
    assert BearerAuth(verifier, token_url="https://x/token").model.description is None
