"""A subset of the attacks.md A/F/I matrix through real servers: uvicorn (ASGI middleware)
and waitress (WSGI middleware), over real sockets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.core.test_attacks_support import (
    GOOD,
    FakeVerifier,
    Result,
    asgi_app,
    raw_get,
    raw_request,
    wsgi_app,
)
from tests.core.tokens import mint, static_verifier
from tests.servers import run_asgi, run_wsgi

SERVERS = [
    pytest.param("asgi", id="uvicorn"),
    pytest.param("wsgi", id="waitress"),
]


VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "query": {"allow_query_token": True},
    "form": {"allow_form_token": True},
    "crash": {"verifier": FakeVerifier(TypeError("x"))},
}


def _variant_apps(kind: str) -> Any:
    """One server for every middleware configuration, picked by the X-Variant header
    (fewer server start/stop cycles)."""
    make = asgi_app if kind == "asgi" else wsgi_app
    apps = {name: make(**options) for name, options in VARIANTS.items()}
    if kind == "asgi":

        async def asgi_dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
            variant = dict(scope.get("headers", [])).get(b"x-variant", b"default").decode()
            await apps[variant](scope, receive, send)

        return run_asgi(asgi_dispatch)

    def wsgi_dispatch(environ: dict[str, Any], start_response: Any) -> Any:
        return apps[environ.get("HTTP_X_VARIANT", "default")](environ, start_response)

    return run_wsgi(wsgi_dispatch)


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(kind, base URL) of the protected test app under a real server, fake verifier."""
    with _variant_apps(request.param) as base:
        yield request.param, base


@pytest.fixture(scope="module", params=SERVERS)
def jwt_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(kind, base URL) of the protected test app verifying real JWTs (static keys)."""
    app = asgi_app(static_verifier()) if request.param == "asgi" else wsgi_app(static_verifier())
    with (run_asgi if request.param == "asgi" else run_wsgi)(app) as base:
        yield request.param, base


def error_of(response: httpx.Response | Result) -> str | None:
    """The challenge's error code."""
    value = (
        response.headers["www-authenticate"]
        if isinstance(response, httpx.Response)
        else (response.header("www-authenticate") or "")
    )
    return value.split('error="', 1)[1].split('"', 1)[0] if 'error="' in value else None


@pytest.mark.parametrize(
    ("path", "headers", "params", "status", "error"),
    [
        pytest.param("/me", {}, {}, 401, None, id="A1-no-header"),
        pytest.param("/me", {"Authorization": "Basic dXNlcjpwYXNz"}, {}, 401, None, id="A2-basic"),
        pytest.param("/me", {"Authorization": "Bearer"}, {}, 401, "invalid_token", id="A3-empty"),
        pytest.param("/me", {"authorization": f"bEaReR {GOOD}"}, {}, 200, None, id="A4-case"),
        pytest.param(
            "/me",
            {"Authorization": f"Bearer {GOOD}"},
            {"access_token": GOOD},
            400,
            "invalid_request",
            id="A6-header-and-query",
        ),
        pytest.param("/me", {}, {"access_token": GOOD}, 401, None, id="A8-query-disabled"),
        pytest.param("/me", {"Authorization": f"Bearer  {GOOD}"}, {}, 200, None, id="A10-two-sp"),
        pytest.param(
            "/me", {"Authorization": f"Bearer\t{GOOD}"}, {}, 401, "invalid_token", id="A11-tab"
        ),
        pytest.param(
            "/me", {"Authorization": f"Bearer {GOOD} x"}, {}, 401, "invalid_token", id="A11-junk"
        ),
        pytest.param(
            "/me", {"Authorization": "Bearer a;b"}, {}, 401, "invalid_token", id="A13-semicolon"
        ),
        pytest.param("/me", {"Cookie": f"access_token={GOOD}"}, {}, 401, None, id="A16-cookie"),
        pytest.param(
            "/admin",
            {"Authorization": f"Bearer {GOOD}"},
            {},
            403,
            "insufficient_scope",
            id="F1-missing-scope",
        ),
        pytest.param(
            "/items",
            {"Authorization": "Bearer upper-token"},
            {},
            403,
            "insufficient_scope",
            id="F3-case",
        ),
        pytest.param("/items", {"Authorization": f"Bearer {GOOD}"}, {}, 200, None, id="F-granted"),
        pytest.param(
            "/public", {"Authorization": "Bearer !!"}, {}, 200, None, id="excluded-ignores-header"
        ),
    ],
)
def test_matrix_subset_through_real_server(
    server: tuple[str, str],
    path: str,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
    error: str | None,
) -> None:
    """Real servers give the same RFC 6750 outcomes as the in-process matrix."""
    _, base = server
    response = httpx.get(f"{base}{path}", headers=headers, params=params)
    assert response.status_code == status
    if status >= 400:
        assert response.headers["www-authenticate"].startswith('Bearer realm="api"')
        assert error_of(response) == error
        assert response.json()["error_description"]
    if path != "/public":  # excluded responses do not depend on Authorization
        assert "Authorization" in response.headers["vary"]


def test_form_post_through_real_server(server: tuple[str, str]) -> None:
    """A7 and the form transport over real sockets, body replayed to the app."""
    _, base = server
    form = {"X-Variant": "form"}
    ok = httpx.post(f"{base}/echo", data={"access_token": GOOD, "x": "1"}, headers=form)
    assert ok.status_code == 200
    assert ok.json()["body"] == f"access_token={GOOD}&x=1"
    both = httpx.post(
        f"{base}/echo",
        data={"access_token": GOOD},
        headers={**form, "Authorization": f"Bearer {GOOD}"},
    )
    assert both.status_code == 400
    assert error_of(both) == "invalid_request"


def test_duplicate_authorization_under_real_server(server: tuple[str, str]) -> None:
    """A-5: uvicorn keeps both fields (400 invalid_request); waitress merges them into one
    value that fails the grammar (401 invalid_token)."""
    kind, base = server
    result = raw_get(base, "/me", [("Authorization", f"Bearer {GOOD}")] * 2)
    expected = (400, "invalid_request") if kind == "asgi" else (401, "invalid_token")
    assert (result.status, error_of(result)) == expected


@pytest.mark.parametrize(
    ("target", "status"),
    [
        pytest.param("/public", 200, id="exact"),
        pytest.param("/public?x=1", 200, id="with-query"),
        pytest.param("/public/", 401, id="trailing-slash"),
        pytest.param("//public", 401, id="double-slash"),
        pytest.param("/public/../items", 401, id="dot-dot"),
        pytest.param("/public/%2e%2e/items", 401, id="encoded-dot-dot"),
        pytest.param("/%70ublic", 401, id="percent-encoded"),
        pytest.param("/PUBLIC", 401, id="uppercase"),
        pytest.param("/public%00", 401, id="nul"),
    ],
)
def test_excluded_path_tricks_through_real_server(
    server: tuple[str, str], target: str, status: int
) -> None:
    """Only the exact raw path /public skips authentication under a real server."""
    _, base = server
    result = raw_get(base, target)
    assert result.status in ({status} if status == 200 else {401, 400, 404})
    if status == 401 and result.status == 401:
        assert result.header("www-authenticate") is not None


def test_oversized_header_never_500(server: tuple[str, str]) -> None:
    """A-15: a 100 KB token is refused (server 431/400 or our 401), never a 500."""
    _, base = server
    result = raw_get(base, "/me", [("Authorization", "Bearer " + "a" * 100_000)])
    assert result.status in {400, 401, 413, 431}


def test_query_token_enabled_through_real_server(server: tuple[str, str]) -> None:
    """A-8 with query transport on: 200 and Cache-Control: private."""
    _, base = server
    response = httpx.get(
        f"{base}/me", params={"access_token": GOOD}, headers={"X-Variant": "query"}
    )
    assert response.status_code == 200
    assert "private" in response.headers["cache-control"]


@pytest.mark.parametrize(
    ("make_token", "status", "error"),
    [
        pytest.param(lambda: mint(scope="items:read"), 200, None, id="valid-jwt"),
        pytest.param(
            lambda: mint(scope="items:read  items:read "),
            200,
            None,
            id="F6-repeated-and-padded-scope",
        ),
        pytest.param(
            lambda: mint(scope="items:readonly read:all"),
            403,
            "insufficient_scope",
            id="F2-prefix-scopes",
        ),
        pytest.param(lambda: mint(scope="ITEMS:READ"), 403, "insufficient_scope", id="F3-case"),
        pytest.param(lambda: mint(scope=None), 403, "insufficient_scope", id="F5-no-scope"),
        pytest.param(
            lambda: mint().replace("-", "+").replace("_", "/") + "==",
            401,
            "invalid_token",
            id="A14-b64token-not-jws",
        ),
        pytest.param(lambda: mint(exp=10, iat=5), 401, "invalid_token", id="expired"),
        pytest.param(
            lambda: mint(header={"kid": 'a"\r\nSet-Cookie: x=y'}),
            401,
            "invalid_token",
            id="I2-crlf-kid",
        ),
        pytest.param(
            lambda: mint(header={"crit": ['x"\r\ny'], 'x"\r\ny': 1}),
            401,
            "invalid_token",
            id="I2-crit-quote",
        ),
    ],
)
def test_real_jwts_through_real_server(
    jwt_server: tuple[str, str], make_token: Callable[[], str], status: int, error: str | None
) -> None:
    """Real JWTs: F-2/F-3/F-5/F-6, A-14 and I-2 through uvicorn and waitress."""
    _, base = jwt_server
    response = httpx.get(f"{base}/items", headers={"Authorization": f"Bearer {make_token()}"})
    assert response.status_code == status
    if error is not None:
        assert error_of(response) == error
        assert "Set-Cookie" not in response.headers
        assert "\r" not in response.headers["www-authenticate"]


def test_i1_crashing_verifier_through_real_server(server: tuple[str, str]) -> None:
    """I-1: a verifier raising a non-scopegate exception is 401, never 500."""
    _, base = server
    response = httpx.get(
        f"{base}/me", headers={"Authorization": f"Bearer {GOOD}", "X-Variant": "crash"}
    )
    assert response.status_code == 401
    assert error_of(response) == "invalid_token"


def test_raw_request_helper_reads_status(server: tuple[str, str]) -> None:
    """raw_request parses the status line of a real server's answer."""
    _, base = server
    result = raw_request(base, b"GET /public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert result.status == 200
