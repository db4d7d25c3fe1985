"""Every example, as a real process, against the real companion issuer, in both token modes.

The same checks run against all six examples (``examples/serve.py NAME``): once with the
issuer minting RFC 9068 JWTs (verified locally through discovery and the JWKS), once
with opaque tokens (verified by RFC 7662 introspection). The issuer starts once per mode
and each example once per mode.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.conformance._stack import (
    ASGI_EXAMPLES,
    EXAMPLES,
    MODES,
    Issuer,
    Issuers,
    raw_request,
    run_example,
)
from tests.integrations._fakes import ws_echo, ws_refusal
from tests.servers import free_port


@dataclass(frozen=True)
class Deployment:
    """One example process trusting one issuer."""

    name: str
    mode: str
    url: str
    issuer: Issuer

    def token(self, name: str) -> str:
        return self.issuer.tokens[name]

    def get(self, path: str, token: str | None = None, **kwargs: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(
    scope="module",
    params=[pytest.param((mode, name), id=f"{mode}-{name}") for mode in MODES for name in EXAMPLES],
)
def app(request: pytest.FixtureRequest, issuers: Issuers) -> Iterator[Deployment]:
    """Example NAME served by examples/serve.py, trusting the issuer of MODE."""
    mode, name = request.param
    issuer = issuers.get(mode)
    with run_example(name, issuer) as url:
        yield Deployment(name=name, mode=mode, url=url, issuer=issuer)


def challenge(response: httpx.Response) -> str:
    value = response.headers["www-authenticate"]
    assert value.startswith('Bearer realm="api"')
    return value


def test_public_without_token(app: Deployment) -> None:
    """GET /public answers 200 {"ok": true} to anyone."""
    response = app.get("/public")
    assert response.status_code == 200
    assert response.json() == {"ok": True}


def test_public_ignores_authorization(app: Deployment) -> None:
    """Any Authorization header on /public is ignored, even a malformed one."""
    for value in ("Bearer not-a-real-token", "Bearer !!", "Basic Zm9vOmJhcg=="):
        response = httpx.get(app.url + "/public", headers={"Authorization": value}, timeout=10)
        assert response.status_code == 200, value


@pytest.mark.parametrize("path", ["/me", "/items", "/admin"])
def test_missing_token_is_401(app: Deployment, path: str) -> None:
    """No token: 401 with a bare Bearer challenge and a JSON error body."""
    response = app.get(path)
    assert response.status_code == 401
    assert "error=" not in challenge(response)
    assert set(response.json()) >= {"error", "error_description"}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="opaque-garbage"),
        pytest.param("a.b.c", id="jws-shaped-garbage"),
    ],
)
def test_invalid_token_is_401_invalid_token(app: Deployment, token: str) -> None:
    """A token the issuer never issued: 401 invalid_token."""
    response = app.get("/items", token)
    assert response.status_code == 401
    assert 'error="invalid_token"' in challenge(response)
    assert response.json()["error"] == "invalid_token"


def test_tampered_token_is_401(app: Deployment) -> None:
    """A real token with one character changed is refused with invalid_token."""
    token = app.token("read")
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    response = app.get("/items", tampered)
    assert response.status_code == 401
    assert 'error="invalid_token"' in challenge(response)


def test_get_items_with_scope(app: Deployment) -> None:
    """GET /items with items:read: 200 and a JSON array."""
    response = app.get("/items", app.token("read"))
    assert response.status_code == 200
    assert isinstance(response.json(), list)
    assert response.json()


def test_post_items_with_scope(app: Deployment) -> None:
    """POST /items with items:write: 201 echoing the posted object."""
    item = {"name": "spanner", "size": 13}
    response = httpx.post(
        app.url + "/items",
        json=item,
        headers={"Authorization": f"Bearer {app.token('write')}"},
        timeout=10,
    )
    assert response.status_code == 201
    assert response.json() == item


@pytest.mark.parametrize(
    ("method", "token_name", "needed"),
    [
        pytest.param("GET", "write", "items:read", id="get-needs-read"),
        pytest.param("POST", "read", "items:write", id="post-needs-write"),
    ],
)
def test_wrong_scope_is_403(app: Deployment, method: str, token_name: str, needed: str) -> None:
    """A valid token without the route's scope: 403 insufficient_scope with scope=."""
    response = httpx.request(
        method,
        app.url + "/items",
        json={"name": "x"} if method == "POST" else None,
        headers={"Authorization": f"Bearer {app.token(token_name)}"},
        timeout=10,
    )
    assert response.status_code == 403
    value = challenge(response)
    assert 'error="insufficient_scope"' in value
    assert f'scope="{needed}"' in value
    assert response.json()["error"] == "insufficient_scope"


@pytest.mark.parametrize(
    ("token_name", "status"),
    [
        pytest.param("read_admin", 200, id="both"),
        pytest.param("all", 200, id="superset"),
        pytest.param("read", 403, id="read-only"),
        pytest.param("admin", 403, id="admin-only"),
    ],
)
def test_admin_needs_all_scopes(app: Deployment, token_name: str, status: int) -> None:
    """/admin needs items:read AND admin; the 403 challenge names both."""
    response = app.get("/admin", app.token(token_name))
    assert response.status_code == status
    if status == 403:
        value = challenge(response)
        assert 'error="insufficient_scope"' in value
        scope = value.split('scope="', 1)[1].split('"', 1)[0]
        assert set(scope.split()) == {"items:read", "admin"}


def test_me_content(app: Deployment) -> None:
    """/me returns sub, client_id and the sorted scopes of the token."""
    response = app.get("/me", app.token("read_admin"))
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == "svc-conformance"
    assert body["sub"]
    assert body["scopes"] == ["admin", "items:read"]


def test_query_token_not_accepted(app: Deployment) -> None:
    """?access_token= is off by default (RFC 6750 §2.3): the request is anonymous."""
    response = app.get("/items", params={"access_token": app.token("read")})
    assert response.status_code == 401


def test_bearer_scheme_is_case_insensitive(app: Deployment) -> None:
    """'bearer' in lower case is the same scheme (RFC 9110 §11.1)."""
    response = httpx.get(
        app.url + "/items", headers={"Authorization": f"bearer {app.token('read')}"}, timeout=10
    )
    assert response.status_code == 200


def test_websocket(app: Deployment) -> None:
    """ASGI examples echo on /ws with items:read and refuse the handshake otherwise;
    WSGI examples have no WebSocket and refuse it too."""
    if app.name in ASGI_EXAMPLES:
        assert ws_echo(app.url, "/ws", app.token("read"), "hello") == "hello"
        assert ws_refusal(app.url, "/ws", None) in (401, 403)
        assert ws_refusal(app.url, "/ws", app.token("write")) == 403
        assert ws_refusal(app.url, "/ws", "garbage") in (401, 403)
    else:
        assert ws_refusal(app.url, "/ws", app.token("read")) >= 400


@pytest.fixture
def protected_items(app: Deployment) -> bytes:
    """The protected /items body, to look for in responses that must not contain it."""
    return app.get("/items", app.token("read")).content


@pytest.mark.parametrize(
    ("method", "target"),
    [
        pytest.param("GET", "/public/../items", id="dot-dot"),
        pytest.param("GET", "/public/%2e%2e/items", id="encoded-dot-dot"),
        pytest.param("GET", "/items/", id="trailing-slash"),
        pytest.param("GET", "//items", id="double-slash"),
        pytest.param("GET", "/%69tems", id="percent-encoded"),
        pytest.param("GET", "/public?/../items", id="query-trick"),
        pytest.param("GET", "/public;/items", id="matrix-param"),
        pytest.param("HEAD", "/items", id="head"),
        pytest.param("OPTIONS", "/items", id="options"),
        pytest.param("GET", "/ITEMS", id="upper-case"),
    ],
)
def test_path_tricks_never_leak(
    app: Deployment, protected_items: bytes, method: str, target: str
) -> None:
    """Unusual spellings of a protected path, without a token, never return its data."""
    response = raw_request(app.url, method, target)
    assert protected_items not in response.body
    assert b"hammer" not in response.body
    if 200 <= response.status < 300:
        # Only the public route (or an empty answer) may succeed without a token.
        assert not response.body.strip() or json.loads(response.body) == {"ok": True}


def test_head_without_token_is_refused(app: Deployment) -> None:
    """HEAD on a protected route without a token is not a success."""
    assert raw_request(app.url, "HEAD", "/items").status >= 400


@pytest.mark.parametrize("mode", MODES)
def test_issuer_mints_the_mode_s_token_format(issuers: Issuers, mode: str) -> None:
    """JWT mode really sends compact JWS tokens and opaque mode opaque ones, so both
    verification paths (JWKS and introspection) are the ones exercised above."""
    token = issuers.get(mode).token_format and issuers.get(mode).tokens["read"]
    assert (token.count(".") == 2) is (mode == "jwt")


def test_token_sent_twice_is_400(app: Deployment) -> None:
    """A token in the header and in the query is a malformed request (RFC 6750 §2)."""
    response = app.get("/items", app.token("read"), params={"access_token": app.token("read")})
    assert response.status_code == 400
    assert 'error="invalid_request"' in challenge(response)
    assert response.json()["error"] == "invalid_request"


@pytest.mark.parametrize("name", EXAMPLES)
def test_unreachable_authorization_server_is_503(issuers: Issuers, name: str) -> None:
    """When discovery/JWKS or introspection cannot be reached the example answers 503
    with Retry-After, never invalid_token."""
    jwt_token = issuers.get("jwt").tokens["read"]
    closed = f"http://127.0.0.1:{free_port()}"
    dead = Issuer(
        url=closed,
        token_format="opaque",
        metadata={"introspection_endpoint": closed + "/introspect"},
    )
    with run_example(name, dead) as url:
        for token in (jwt_token, "an-opaque-token"):
            response = httpx.get(
                url + "/items", headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            assert response.status_code == 503, token[:8]
            assert int(response.headers["retry-after"]) >= 1
            assert "invalid_token" not in response.text
