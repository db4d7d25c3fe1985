"""FastAPI after ``install``: the token is judged before the body, through real uvicorn.

FastAPI reads and validates the body before it solves dependencies; ``BearerRoute``
(installed by ``install``) runs the ``BearerAuth`` dependencies first. The app has one
protected ``POST`` per way a route can get its class: registered before ``install``,
after it, in a router included later, and guarded by an include-level dependency.
"""

import socket
import time
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Body, FastAPI, Security
from fastapi.routing import APIRoute

from scopegate._token import AccessToken
from scopegate.integrations.fastapi import BearerAuth, BearerRoute, install
from tests.integrations._fakes import FakeVerifier, access_token, bearer
from tests.servers import run_asgi

SCOPES = {"items:read": "Read items", "items:write": "Write items"}
PATHS = ["/before", "/after", "/router/items", "/guarded/items"]
PATH_IDS = ["registered-before-install", "registered-after", "router-included", "include-level"]
BROKEN_JSON = b'{"name": '
TEN_MB = 10 * 1024 * 1024

Item = Annotated[dict[str, Any], Body()]


class BodyCounter:
    """ASGI middleware counting the body bytes the application pulled with receive()."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        async def counting() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                self.received += len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


def build_app(verifier: FakeVerifier) -> FastAPI:
    auth = BearerAuth(verifier, token_url="https://issuer.example/token", scopes=SCOPES)
    overridden = BearerAuth(verifier, token_url="https://issuer.example/token")
    write = Security(auth, scopes=["items:write"])
    app = FastAPI()

    @app.post("/before", status_code=201)
    async def before(token: Annotated[AccessToken, write], item: Item) -> dict[str, Any]:
        return item

    install(app)

    @app.post("/after", status_code=201)
    async def after(token: Annotated[AccessToken, write], item: Item) -> dict[str, Any]:
        return item

    @app.post("/overridden", status_code=201)
    async def fake(
        token: Annotated[AccessToken, Security(overridden, scopes=["items:write"])], item: Item
    ) -> dict[str, Any]:
        return {"sub": token.subject}

    app.dependency_overrides[overridden] = lambda: access_token("tok-write")

    router = APIRouter()

    @router.post("/items", status_code=201)
    async def router_items(token: Annotated[AccessToken, write], item: Item) -> dict[str, Any]:
        return item

    guarded = APIRouter()

    @guarded.post("/items", status_code=201)
    async def guarded_items(item: Item) -> dict[str, Any]:
        return item

    app.include_router(router, prefix="/router")
    app.include_router(guarded, prefix="/guarded", dependencies=[write])
    return app


@pytest.fixture(scope="module")
def counter() -> BodyCounter:
    """The counting wrapper around the module's app."""
    return BodyCounter(build_app(FakeVerifier()))


@pytest.fixture(scope="module")
def base_url(counter: BodyCounter) -> Iterator[str]:
    """The app served by uvicorn for the whole module."""
    with run_asgi(counter) as url:
        yield url


def post(base_url: str, path: str, body: bytes, token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return httpx.post(base_url + path, content=body, headers=headers, timeout=10)


def raw_post_head(base_url: str, path: str, extra: bytes = b"", body: bytes = b"") -> bytes:
    """Send a POST head announcing a 10 MB JSON body (plus *body*, a start of it) and
    return what the server answers within 5 s, without sending the rest."""
    port = int(base_url.rsplit(":", 1)[1])
    head = (
        (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {TEN_MB}\r\n"
        ).encode()
        + extra
        + b"\r\n"
    )
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(head + body)
        deadline = time.monotonic() + 5
        try:
            while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except (TimeoutError, ConnectionResetError):
            pass  # the server may close after answering, with our body unread
    return answer


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_no_token_broken_json_is_401(base_url: str, path: str) -> None:
    """An unauthenticated POST with broken JSON gets the 401 challenge, not a 422."""
    response = post(base_url, path, BROKEN_JSON)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"] == "unauthorized"
    assert response.headers["vary"] == "Authorization"


@pytest.mark.parametrize(
    ("token", "status", "error"),
    [
        pytest.param("nope", 401, "invalid_token", id="invalid-token"),
        pytest.param("tok-read", 403, "insufficient_scope", id="missing-scope"),
    ],
)
@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_refused_token_broken_json(
    base_url: str, path: str, token: str, status: int, error: str
) -> None:
    """A bad token or a missing scope is answered before the body is judged."""
    response = post(base_url, path, BROKEN_JSON, token)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert f'error="{error}"' in response.headers["www-authenticate"]


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_authenticated_broken_json_is_422(base_url: str, path: str) -> None:
    """With a good token, FastAPI still validates the body: 422, varying on Authorization."""
    response = post(base_url, path, BROKEN_JSON, "tok-write")
    assert response.status_code == 422
    assert response.headers["vary"] == "Authorization"


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_authenticated_post_is_201_with_vary(base_url: str, path: str) -> None:
    """A good token and body: 201 with Vary: Authorization."""
    response = post(base_url, path, b'{"name": "x"}', "tok-write")
    assert response.status_code == 201
    assert response.json() == {"name": "x"}
    assert response.headers["vary"] == "Authorization"


@pytest.mark.parametrize("path", PATHS, ids=PATH_IDS)
def test_large_body_is_not_read(base_url: str, counter: BodyCounter, path: str) -> None:
    """A 10 MB unauthenticated POST: 401 while the client has sent only 64 KiB of it, and
    the application never pulled a byte of the body."""
    before = counter.received
    answer = raw_post_head(base_url, path, body=b"x" * 65536)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
    assert b'\r\nwww-authenticate: Bearer realm="api"\r\n' in answer
    assert counter.received == before


def test_expect_100_continue_gets_401_first(base_url: str, counter: BodyCounter) -> None:
    """A client that waits for 100 Continue (curl does for large bodies) gets the 401 as
    the first answer: the server never asked for the body."""
    before = counter.received
    answer = raw_post_head(base_url, "/after", extra=b"Expect: 100-continue\r\n")
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:100]
    assert counter.received == before


def test_dependency_override_is_respected(base_url: str) -> None:
    """An overridden BearerAuth (a test's fake token) is not called before the body."""
    response = post(base_url, "/overridden", b'{"name": "x"}')
    assert response.status_code == 201
    assert response.json() == {"sub": "user-tok-write"}


def test_routes_became_bearer_routes(counter: BodyCounter, base_url: str) -> None:
    """Every plain APIRoute, included routers' too, is a BearerRoute once serving."""
    routes = list(counter.app.router.routes)
    for route in counter.app.router.routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x
        routes += included.routes if included is not None else []
    api_routes = [r for r in routes if isinstance(r, APIRoute)]
    assert len(api_routes) >= len(PATHS)
    assert all(isinstance(r, BearerRoute) for r in api_routes)


def test_openapi_keeps_scheme_and_scopes(base_url: str) -> None:
    """The OpenAPI document still declares the scheme, its scopes and each route's scopes."""
    schema = httpx.get(base_url + "/openapi.json", timeout=10).json()
    scheme = schema["components"]["securitySchemes"]["OAuth2ClientCredentials"]
    assert scheme["flows"]["clientCredentials"]["scopes"] == SCOPES
    for path in PATHS:
        security = schema["paths"][path]["post"]["security"]
        assert security == [{"OAuth2ClientCredentials": ["items:write"]}], path


def test_install_twice_and_alias() -> None:
    """install() is idempotent, and add_exception_handlers is the same call."""
    from scopegate.integrations.fastapi import add_exception_handlers

    app = FastAPI()
    install(app)
    add_exception_handlers(app)
    assert add_exception_handlers is install
    assert len(app.user_middleware) == 1
