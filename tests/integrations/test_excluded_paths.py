"""``require_scope`` on a handler behind an excluded path: an RFC 6750 answer, never a 500.

Every adapter is served by a real server on 127.0.0.1 (uvicorn for ASGI, Starlette and
FastAPI; waitress for WSGI and Flask; Django has its own in test_django.py). Each app has
``/health``, excluded from authentication but decorated with the core
``scopegate.require_scope("items:read")``, and ``/items``, protected and decorated alike.

An excluded path ignores the ``Authorization`` header (the examples contract), so the
decorator there sees an anonymous request: 401 with the bare challenge, token or not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from scopegate import require_scope
from tests.integrations._fakes import FakeVerifier, bearer
from tests.servers import run_asgi, run_wsgi

EXCLUDED = ["/health"]
OK = b'{"ok":true}'


def _asgi() -> Any:
    from scopegate.asgi import BearerAuthMiddleware

    @require_scope("items:read")
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": OK})

    return BearerAuthMiddleware(app, verifier=FakeVerifier(), exclude_paths=EXCLUDED)


def _wsgi() -> Any:
    from scopegate.wsgi import BearerAuthMiddleware

    @require_scope("items:read")
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [OK]

    return BearerAuthMiddleware(app, verifier=FakeVerifier(), exclude_paths=EXCLUDED)


def _starlette_routes() -> list[Any]:
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from scopegate.integrations.starlette import require_scope as starlette_require_scope

    @starlette_require_scope("items:read")
    async def endpoint(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    @starlette_require_scope("items:read")
    def sync_endpoint(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    return [Route("/health", endpoint), Route("/items", sync_endpoint)]


def _starlette() -> Any:
    """The documented set-up: the middleware inside the application."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    from scopegate.integrations.starlette import BearerAuthMiddleware

    middleware = [Middleware(BearerAuthMiddleware, verifier=FakeVerifier(), exclude_paths=EXCLUDED)]
    return Starlette(routes=_starlette_routes(), middleware=middleware)


def _starlette_wrapped() -> Any:
    """The middleware around the application: Starlette's own error middleware sits in
    between, so the app renders BearerError itself with ``exception_handlers``."""
    from starlette.applications import Starlette

    from scopegate.integrations.starlette import BearerAuthMiddleware, exception_handlers

    app = Starlette(routes=_starlette_routes(), exception_handlers=exception_handlers)
    return BearerAuthMiddleware(app, verifier=FakeVerifier(), exclude_paths=EXCLUDED)


def _fastapi_app() -> Any:
    from fastapi import FastAPI

    from scopegate.integrations.fastapi import install

    app = FastAPI()
    install(app)

    @app.get("/health")
    @require_scope("items:read")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items")
    @require_scope("items:read")
    def items() -> dict[str, bool]:
        return {"ok": True}

    return app


def _fastapi() -> Any:
    """The ASGI middleware around a FastAPI app set up with ``install``."""
    from scopegate.asgi import BearerAuthMiddleware

    return BearerAuthMiddleware(_fastapi_app(), verifier=FakeVerifier(), exclude_paths=EXCLUDED)


def _fastapi_add_middleware() -> Any:
    """The ASGI middleware added with ``app.add_middleware``."""
    from scopegate.asgi import BearerAuthMiddleware

    app = _fastapi_app()
    app.add_middleware(BearerAuthMiddleware, verifier=FakeVerifier(), exclude_paths=EXCLUDED)
    return app


def _flask() -> Any:
    """A Flask app with the ScopeGate extension behind the WSGI middleware."""
    from flask import Flask

    from scopegate.integrations.flask import ScopeGate
    from scopegate.wsgi import BearerAuthMiddleware

    app = Flask(__name__)
    ScopeGate(app, verifier=FakeVerifier())

    @app.get("/health")
    @require_scope("items:read")
    def health() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items")
    @require_scope("items:read")
    def items() -> dict[str, bool]:
        return {"ok": True}

    app.wsgi_app = BearerAuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, verifier=FakeVerifier(), exclude_paths=EXCLUDED
    )
    return app


Server = Callable[[Any], AbstractContextManager[str]]
ADAPTERS: dict[str, tuple[Callable[[], Any], Server]] = {
    "asgi": (_asgi, run_asgi),
    "wsgi": (_wsgi, run_wsgi),
    "starlette": (_starlette, run_asgi),
    "starlette-wrapped": (_starlette_wrapped, run_asgi),
    "fastapi": (_fastapi, run_asgi),
    "fastapi-add-middleware": (_fastapi_add_middleware, run_asgi),
    "flask": (_flask, run_wsgi),
}


@pytest.fixture(scope="module", params=sorted(ADAPTERS))
def base_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each adapter's app, served by its real server."""
    build, serve = ADAPTERS[request.param]
    with serve(build()) as url:
        yield url


def get(base_url: str, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(base_url + path, headers=bearer(token) if token else None, timeout=10)


@pytest.mark.parametrize("token", [None, "tok-read"], ids=["no-token", "token-ignored"])
def test_decorator_on_excluded_path_is_401(base_url: str, token: str | None) -> None:
    """A decorated handler on an excluded path answers 401 with the RFC 6750 challenge."""
    response = get(base_url, "/health", token)
    assert response.status_code == 401
    # The decorator names the scope it needs, so the client knows what to ask for.
    assert response.headers["www-authenticate"] == 'Bearer realm="api", scope="items:read"'
    assert response.json()["error"] == "unauthorized"


def test_decorator_without_the_scope_is_403(base_url: str) -> None:
    """A verified token without the decorator's scope gets 403 insufficient_scope."""
    response = get(base_url, "/items", "tok-write")
    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert 'scope="items:read"' in challenge
    assert response.json()["error"] == "insufficient_scope"


def test_decorator_with_the_scope_is_200(base_url: str) -> None:
    """The same decorated handler runs for a token with the scope."""
    response = get(base_url, "/items", "tok-read")
    assert response.status_code == 200
    assert response.json() == {"ok": True}
