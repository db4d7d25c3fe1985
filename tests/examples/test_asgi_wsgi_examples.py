"""The framework-free examples (asgi, wsgi) run as real processes via examples/serve.py
against a real JWKS server, checked route by route against the examples contract."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.core.tokens import AUDIENCE, EC_KEY, ISSUER, RSA_KEY, mint
from tests.servers import ROOT, free_port, run_process, run_wsgi


def _jwks_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = json.dumps({"keys": [RSA_KEY.jwk()]}).encode()
    if environ["PATH_INFO"] != "/jwks.json":
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found"]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


@pytest.fixture(scope="module")
def jwks_uri() -> Iterator[str]:
    """A real JWKS endpoint (waitress) publishing RSA_KEY."""
    with run_wsgi(_jwks_app) as base:
        yield f"{base}/jwks.json"


def _env(jwks_uri: str) -> dict[str, str]:
    return {
        "SCOPEGATE_ISSUER": ISSUER,
        "SCOPEGATE_AUDIENCE": AUDIENCE,
        "SCOPEGATE_JWKS_URI": jwks_uri,
    }


@pytest.fixture(scope="module", params=["asgi", "wsgi"])
def example(request: pytest.FixtureRequest, jwks_uri: str) -> Iterator[tuple[str, str]]:
    """The example process (name, base URL) served by examples/serve.py."""
    port = free_port()
    args = [sys.executable, "examples/serve.py", request.param, "--port", str(port)]
    with run_process(args, port, env=_env(jwks_uri), ready_path="/public"):
        yield request.param, f"http://127.0.0.1:{port}"


def bearer(**claims: Any) -> dict[str, str]:
    """An Authorization header with a freshly minted token."""
    return {"Authorization": f"Bearer {mint(**claims)}"}


def challenge_error(response: httpx.Response) -> str | None:
    """The error code of the WWW-Authenticate challenge."""
    value = response.headers["www-authenticate"]
    assert value.startswith('Bearer realm="api"')
    return value.split('error="', 1)[1].split('"', 1)[0] if 'error="' in value else None


def test_list_prints_every_example() -> None:
    """serve.py --list prints one name per line, including asgi and wsgi."""
    out = subprocess.run(
        [sys.executable, "examples/serve.py", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert {"asgi", "wsgi", "starlette", "fastapi", "flask", "django"} <= set(out)


def test_public_ignores_authorization(example: tuple[str, str]) -> None:
    """GET /public answers 200 without a token and ignores a garbage Authorization header."""
    _, base = example
    assert httpx.get(f"{base}/public").json() == {"ok": True}
    response = httpx.get(f"{base}/public", headers={"Authorization": "Bearer !!garbage"})
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_me_requires_a_token(example: tuple[str, str]) -> None:
    """GET /me without a token is 401 with a challenge and no error code."""
    _, base = example
    response = httpx.get(f"{base}/me")
    assert response.status_code == 401
    assert challenge_error(response) is None
    assert response.json()["error_description"]


def test_me_returns_the_token_identity(example: tuple[str, str]) -> None:
    """GET /me returns sub, client_id and the sorted scopes."""
    _, base = example
    response = httpx.get(f"{base}/me", headers=bearer(scope="items:write items:read"))
    assert response.status_code == 200
    assert response.json() == {
        "sub": "alice",
        "client_id": "svc-a",
        "scopes": ["items:read", "items:write"],
    }
    assert "Authorization" in response.headers["vary"]


def test_invalid_tokens_are_401_invalid_token(example: tuple[str, str]) -> None:
    """Expired, wrong-audience and unknown-key tokens get 401 invalid_token."""
    _, base = example
    for headers in (
        bearer(exp=1_000, iat=900),
        bearer(aud="api://other"),
        {"Authorization": f"Bearer {mint(EC_KEY)}"},
        {"Authorization": "Bearer not-a-jwt"},
    ):
        response = httpx.get(f"{base}/me", headers=headers)
        assert response.status_code == 401, headers
        assert challenge_error(response) == "invalid_token"


def test_items_read(example: tuple[str, str]) -> None:
    """GET /items needs items:read: 200 array with it, 403 insufficient_scope without."""
    _, base = example
    ok = httpx.get(f"{base}/items", headers=bearer(scope="items:read"))
    assert ok.status_code == 200
    assert isinstance(ok.json(), list)
    denied = httpx.get(f"{base}/items", headers=bearer(scope="items:write"))
    assert denied.status_code == 403
    assert challenge_error(denied) == "insufficient_scope"
    assert 'scope="items:read"' in denied.headers["www-authenticate"]


def test_items_create(example: tuple[str, str]) -> None:
    """POST /items needs items:write and echoes the posted JSON with 201."""
    _, base = example
    item = {"name": "drill", "tags": ["x"]}
    created = httpx.post(f"{base}/items", json=item, headers=bearer(scope="items:write"))
    assert created.status_code == 201
    assert created.json() == item
    denied = httpx.post(f"{base}/items", json=item, headers=bearer(scope="items:read"))
    assert denied.status_code == 403
    assert challenge_error(denied) == "insufficient_scope"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"{not json", id="malformed"),
        pytest.param(b"[1, 2]", id="array"),
        pytest.param(b"\xff\xfe", id="not-utf8"),
        pytest.param(b"[" * 100_000, id="deep-nesting"),
        pytest.param(b"", id="empty"),
    ],
)
def test_items_create_bad_json_is_400(example: tuple[str, str], body: bytes) -> None:
    """A body that is not a JSON object is a JSON 400, never a 500."""
    _, base = example
    response = httpx.post(
        f"{base}/items",
        content=body,
        headers={**bearer(scope="items:write"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_admin_needs_both_scopes(example: tuple[str, str]) -> None:
    """GET /admin needs items:read AND admin."""
    _, base = example
    assert httpx.get(f"{base}/admin", headers=bearer(scope="items:read admin")).status_code == 200
    for scope in ("items:read", "admin"):
        response = httpx.get(f"{base}/admin", headers=bearer(scope=scope))
        assert response.status_code == 403
        assert 'scope="items:read admin"' in response.headers["www-authenticate"]


def test_unknown_route_and_method_are_json(example: tuple[str, str]) -> None:
    """Unknown routes are JSON 404 and unknown methods JSON 405 (with a valid token)."""
    _, base = example
    headers = bearer(scope="items:read")
    missing = httpx.get(f"{base}/nope", headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = httpx.delete(f"{base}/items", headers=headers)
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


def test_transport_attacks_through_example(example: tuple[str, str]) -> None:
    """Header plus query token is 400; a query-only token is ignored (401, no error)."""
    _, base = example
    token = mint()
    both = httpx.get(f"{base}/me", params={"access_token": token}, headers=bearer())
    assert both.status_code == 400
    assert challenge_error(both) == "invalid_request"
    query_only = httpx.get(f"{base}/me", params={"access_token": token})
    assert query_only.status_code == 401
    assert challenge_error(query_only) is None


@pytest.mark.parametrize("example", ["asgi"], indirect=True)
def test_websocket_echo_and_refusal(example: tuple[str, str]) -> None:
    """WS /ws (asgi only) echoes with items:read and is refused without a valid token."""
    _, base = example
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    url = base.replace("http://", "ws://") + "/ws"
    with connect(url, additional_headers=bearer(scope="items:read")) as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
    with pytest.raises(InvalidStatus) as missing:
        connect(url)
    assert missing.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as scope:
        connect(url, additional_headers=bearer(scope="items:write"))
    assert scope.value.response.status_code == 403


@pytest.mark.parametrize("name", ["asgi", "wsgi"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_clean_exit_on_signal(name: str, sig: signal.Signals, jwks_uri: str) -> None:
    """serve.py exits with status 0 on SIGTERM and SIGINT."""
    port = free_port()
    args = [sys.executable, "examples/serve.py", name, "--port", str(port)]
    with run_process(args, port, env=_env(jwks_uri), ready_path="/public") as proc:
        proc.send_signal(sig)
        assert proc.wait(15) == 0
