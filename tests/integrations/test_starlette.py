"""Starlette integration, through a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.endpoints import HTTPEndpoint
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from scopegate._context import current_token
from scopegate._errors import InsufficientScopeError
from scopegate.integrations.starlette import (
    BearerAuthMiddleware,
    TokenUser,
    bearer_error_handler,
    exception_handlers,
    require_any_scope,
    require_scope,
)
from tests.integrations._fakes import (
    OUTAGE_TOKEN,
    FakeVerifier,
    access_token,
    bearer,
    ws_echo,
    ws_refusal,
)
from tests.servers import run_asgi


async def public(request: Request) -> Response:
    return JSONResponse({"ok": True, "authenticated": request.user.is_authenticated})


async def me(request: Request) -> Response:
    return JSONResponse(
        {
            "identity": request.user.identity,
            "scopes": request.auth.scopes,
            "display": request.user.display_name,
        }
    )


@require_scope("items:read")
async def items(request: Request) -> Response:
    return JSONResponse(["widget"])


@require_scope("items:read")
def sync_items(request: Request) -> Response:
    token = current_token()
    return JSONResponse({"sub": token.subject if token else None})


@require_scope("items:read", "admin")
async def admin(request: Request) -> Response:
    return JSONResponse({"admin": True})


@require_any_scope("admin", "items:write")
async def any_of(request: Request) -> Response:
    return JSONResponse({"ok": True})


@requires("items:read")
async def starlette_requires(request: Request) -> Response:
    return JSONResponse({"ok": True})


class Things(HTTPEndpoint):
    @require_scope("items:write")
    async def post(self, request: Request) -> Response:
        return JSONResponse({"created": True}, status_code=201)


@require_scope("items:read")
async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(await websocket.receive_text())


@requires("items:read")
async def ws_starlette(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("starlette:" + await websocket.receive_text())


def build_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/public", public),
            Route("/me", me),
            Route("/items", items),
            Route("/sync", sync_items),
            Route("/admin", admin),
            Route("/any", any_of),
            Route("/requires", starlette_requires),
            Route("/things", Things),
            WebSocketRoute("/ws", ws),
            WebSocketRoute("/ws-starlette", ws_starlette),
        ],
        middleware=[
            Middleware(BearerAuthMiddleware, verifier=FakeVerifier(), exclude_paths=["/public"])
        ],
    )


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """The test application served by uvicorn for the whole module."""
    with run_asgi(build_app()) as url:
        yield url


def get(base_url: str, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(base_url + path, headers=bearer(token) if token else None, timeout=10)


def test_public_route_is_anonymous(base_url: str) -> None:
    """An excluded path is served with Starlette's UnauthenticatedUser, token or not."""
    for token in (None, "garbage"):
        response = get(base_url, "/public", token)
        assert response.status_code == 200
        assert response.json() == {"ok": True, "authenticated": False}


def test_missing_token_is_401_without_error(base_url: str) -> None:
    """No credentials: 401 with a bare challenge (RFC 6750 §3.1)."""
    response = get(base_url, "/items")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


def test_invalid_token_is_401_invalid_token(base_url: str) -> None:
    """An unknown token: 401 invalid_token."""
    response = get(base_url, "/items", "nope")
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.json()["error"] == "invalid_token"


def test_request_user_and_auth(base_url: str) -> None:
    """request.user is a TokenUser and request.auth holds the sorted scopes."""
    response = get(base_url, "/me", "tok-read-admin")
    assert response.json() == {
        "identity": "user-tok-read-admin",
        "scopes": ["admin", "items:read"],
        "display": "user-tok-read-admin",
    }


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        pytest.param("/items", "tok-read", 200, id="async-granted"),
        pytest.param("/items", "tok-write", 403, id="async-missing-scope"),
        pytest.param("/sync", "tok-read", 200, id="sync-granted"),
        pytest.param("/sync", "tok-admin", 403, id="sync-missing-scope"),
        pytest.param("/admin", "tok-read-admin", 200, id="all-of-granted"),
        pytest.param("/admin", "tok-read", 403, id="all-of-partial"),
        pytest.param("/any", "tok-write", 200, id="any-of-one"),
        pytest.param("/any", "tok-read", 403, id="any-of-none"),
    ],
)
def test_scope_decorators(base_url: str, path: str, token: str, status: int) -> None:
    """require_scope / require_any_scope on sync and async endpoints."""
    assert get(base_url, path, token).status_code == status


def test_insufficient_scope_challenge_lists_scopes(base_url: str) -> None:
    """403 names every required scope in the challenge and the JSON body."""
    response = get(base_url, "/admin", "tok-read")
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="items:read admin"' in challenge
    assert response.json()["scope"] == "items:read admin"


def test_sync_endpoint_sees_current_token(base_url: str) -> None:
    """A sync endpoint, run in Starlette's thread pool, still sees current_token()."""
    assert get(base_url, "/sync", "tok-read").json() == {"sub": "user-tok-read"}


def test_http_endpoint_method(base_url: str) -> None:
    """The decorator works on HTTPEndpoint methods."""
    ok = httpx.post(base_url + "/things", headers=bearer("tok-write"), timeout=10)
    refused = httpx.post(base_url + "/things", headers=bearer("tok-read"), timeout=10)
    assert (ok.status_code, refused.status_code) == (201, 403)


def test_starlette_requires_reads_request_auth(base_url: str) -> None:
    """Starlette's own @requires works off the scopes the middleware put in request.auth."""
    assert get(base_url, "/requires", "tok-read").status_code == 200
    assert get(base_url, "/requires", "tok-write").status_code == 403


def test_outage_is_503(base_url: str) -> None:
    """A key-server outage is 503 with Retry-After, never invalid_token."""
    response = get(base_url, "/items", OUTAGE_TOKEN)
    assert response.status_code == 503
    assert "retry-after" in response.headers


def test_websocket_accepts_with_scope(base_url: str) -> None:
    """A token with the scope opens the decorated WebSocket endpoint."""
    assert ws_echo(base_url, "/ws", "tok-read", "hello") == "hello"


@pytest.mark.parametrize(
    ("token", "status"),
    [
        pytest.param(None, 401, id="no-token"),
        pytest.param("nope", 401, id="invalid-token"),
        pytest.param("tok-write", 403, id="missing-scope"),
    ],
)
def test_websocket_refused(base_url: str, token: str | None, status: int) -> None:
    """The handshake is refused with the RFC 6750 status before accept."""
    assert ws_refusal(base_url, "/ws", token) == status


def test_starlette_requires_on_websocket(base_url: str) -> None:
    """Starlette's @requires also works on WebSocket endpoints behind the middleware."""
    assert ws_echo(base_url, "/ws-starlette", "tok-read", "x") == "starlette:x"


async def raises(request: Request) -> Response:
    raise InsufficientScopeError(("admin",))


async def ws_raises(websocket: WebSocket) -> None:
    raise InsufficientScopeError(("admin",))


def test_exception_handler_without_middleware() -> None:
    """exception_handlers renders a BearerError raised where no middleware catches it."""
    app = Starlette(
        routes=[Route("/raise", raises), WebSocketRoute("/ws", ws_raises)],
        exception_handlers=exception_handlers,
    )
    with run_asgi(app) as url:
        response = httpx.get(url + "/raise", timeout=10)
        assert response.status_code == 403
        assert 'realm="api", error="insufficient_scope"' in response.headers["www-authenticate"]
        assert response.headers["vary"] == "Authorization"
        assert ws_refusal(url, "/ws", None) == 403


def test_exception_handler_realm() -> None:
    """bearer_error_handler renders with the realm it was built for."""
    app = Starlette(
        routes=[Route("/raise", raises)],
        exception_handlers={InsufficientScopeError: bearer_error_handler("shop")},
    )
    with run_asgi(app) as url:
        assert (
            httpx.get(url + "/raise", timeout=10)
            .headers["www-authenticate"]
            .startswith('Bearer realm="shop"')
        )


def test_token_user_repr_hides_token() -> None:
    """TokenUser's repr shows the identity, never the raw token."""
    user = TokenUser(access_token("tok-read"))
    assert "tok-read" not in repr(user).replace("user-tok-read", "")
    assert user.scopes == frozenset({"items:read"})


def test_import_without_starlette_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the integration without Starlette says which extra to install."""
    for name in list(sys.modules):
        if name == "starlette" or name.startswith("starlette."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "scopegate.integrations.starlette")
    with pytest.raises(ImportError, match=r"pip install 'scopegate\[starlette\]'"):
        importlib.import_module("scopegate.integrations.starlette")
