"""The README quickstart, copied out of README.md at test time and served by real servers.

The ASGI quickstart decorates the whole app with ``require_scope`` and excludes
``/health``: a request there must get the RFC 6750 401, not a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.core.tokens import AUDIENCE, ISSUER, RSA_KEY, mint
from tests.servers import ROOT, run_asgi, run_wsgi

_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)


def quickstart() -> dict[str, str]:
    """The README's quickstart code blocks, by the line that introduces each."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = _BLOCK.findall(section)
    assert len(blocks) == 2, "the quickstart has an ASGI and a WSGI block"
    asgi, wsgi = blocks
    assert "scopegate.asgi" in asgi
    assert "scopegate.wsgi" in wsgi
    return {"asgi": asgi, "wsgi": wsgi}


def run_block(code: str) -> Any:
    """Execute a quickstart block as a module would; return its ``app``."""
    namespace: dict[str, Any] = {"__name__": "quickstart"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace["app"]


def _jwks_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"keys": [RSA_KEY.jwk()]}).encode()]


@pytest.fixture(scope="module")
def asgi_url() -> Iterator[str]:
    """The ASGI quickstart as written, under uvicorn."""
    with run_asgi(run_block(quickstart()["asgi"])) as url:
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(None, id="no-token"),
        pytest.param({"Authorization": "Bearer ignored-on-excluded-paths"}, id="token-ignored"),
    ],
)
def test_asgi_quickstart_health_is_401(asgi_url: str, headers: dict[str, str] | None) -> None:
    """GET /health (excluded, behind require_scope) answers 401 with the challenge."""
    response = httpx.get(f"{asgi_url}/health", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api", scope="items:read"'
    assert response.headers["vary"] == "Authorization"
    assert response.json()["error"] == "unauthorized"


def test_asgi_quickstart_protected_path_is_401(asgi_url: str) -> None:
    """Any other path needs a token: the middleware answers 401 itself."""
    response = httpx.get(f"{asgi_url}/items", timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'


@pytest.fixture(scope="module")
def wsgi_url() -> Iterator[str]:
    """The WSGI quickstart as written (verifier from SCOPEGATE_*), under waitress."""
    with pytest.MonkeyPatch.context() as env, run_wsgi(_jwks_app) as jwks:
        env.setenv("SCOPEGATE_ISSUER", ISSUER)
        env.setenv("SCOPEGATE_AUDIENCE", AUDIENCE)
        env.setenv("SCOPEGATE_JWKS_URI", f"{jwks}/jwks.json")
        app = run_block(quickstart()["wsgi"])
        try:
            with run_wsgi(app) as url:
                yield url
        finally:
            app.guard.verifier.close()  # its JWKS connection


@pytest.mark.parametrize(
    ("scope", "status"),
    [
        pytest.param("items:read", 200, id="granted"),
        pytest.param("items:write", 403, id="decorator-refuses"),
    ],
)
def test_wsgi_quickstart(wsgi_url: str, scope: str, status: int) -> None:
    """The decorated WSGI app serves a token with the scope; without it, 403 (not 500)."""
    token = mint(scope=scope)
    response = httpx.get(wsgi_url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == status
    if status == 403:
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_wsgi_quickstart_without_token_is_401(wsgi_url: str) -> None:
    """No token: the RFC 6750 401 with the bare challenge."""
    response = httpx.get(wsgi_url, timeout=10)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
