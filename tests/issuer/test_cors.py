"""Opt-in CORS: preflights and actual requests from allowed and refused origins."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from scopegate._errors import ConfigurationError
from scopegate.issuer import HTTPResponse, IssuerConfig
from tests.issuer.conftest import AUDIENCE, ISSUER, SECRET, Caller, make_issuer
from tests.servers import free_port, run_process

APP = "http://127.0.0.1:8000"
EVIL = "https://evil.example"
CC = {"grant_type": "client_credentials"}
WELL_KNOWN = "/.well-known/oauth-authorization-server"
# What Swagger UI's "Authorize" (client credentials, Basic) makes the browser send first.
SWAGGER_PREFLIGHT = {
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization,content-type,x-requested-with",
}


def headers_of(response: HTTPResponse) -> dict[str, str]:
    return dict(response.headers)


def preflight(call: Caller, path: str, origin: str, **extra: str) -> HTTPResponse:
    headers = {"origin": origin, **SWAGGER_PREFLIGHT, **extra}
    return call.request(path, None, method="OPTIONS", auth=None, headers=headers, content_type=None)


def test_without_cors_origins_the_token_endpoint_is_not_cross_origin() -> None:
    """Default: no CORS on /token (a preflight is an ordinary non-POST: 400)."""
    call = Caller(make_issuer())
    response = preflight(call, "/token", APP)
    assert response.status == 400
    assert "access-control-allow-origin" not in headers_of(response)
    ok = call.token(CC, headers={"origin": APP})
    assert "access-control-allow-origin" not in headers_of(ok)
    # The public documents stay readable from anywhere, as before.
    document = call.request(WELL_KNOWN, method="GET", headers={"origin": EVIL})
    assert headers_of(document)["access-control-allow-origin"] == "*"


def test_allowed_origin_preflight_and_request() -> None:
    """An allowed origin: 204 preflight with the allow headers; ACAO on the response."""
    call = Caller(make_issuer(cors_origins=(APP,)))
    response = preflight(call, "/token", APP)
    assert response.status == 204
    headers = headers_of(response)
    assert headers["access-control-allow-origin"] == APP
    assert headers["access-control-allow-methods"] == "POST"
    assert set(headers["access-control-allow-headers"].split(", ")) >= {
        "authorization",
        "content-type",
        "x-requested-with",
    }
    assert "Origin" in headers["vary"]
    assert "access-control-allow-credentials" not in headers
    token = call.token(CC, headers={"origin": APP})
    assert token.status == 200
    assert headers_of(token)["access-control-allow-origin"] == APP
    assert headers_of(token)["vary"] == "Origin"
    # Errors are readable by the allowed page too (it must see invalid_client).
    refused = call.token(CC, auth=("svc", "wrong"), headers={"origin": APP})
    assert refused.status == 401
    assert headers_of(refused)["access-control-allow-origin"] == APP


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param(EVIL, id="other-origin"),
        pytest.param(APP + "/", id="trailing-slash"),
        pytest.param("http://127.0.0.1:8001", id="other-port"),
        pytest.param("https://127.0.0.1:8000", id="other-scheme"),
        pytest.param("null", id="null"),
    ],
)
def test_refused_origin(origin: str) -> None:
    """A refused origin: 403 preflight without allow headers; no ACAO on responses."""
    call = Caller(make_issuer(cors_origins=(APP,)))
    response = preflight(call, "/token", origin)
    assert response.status == 403
    assert not any(name.startswith("access-control-") for name in headers_of(response))
    token = call.token(CC, headers={"origin": origin})
    assert token.status == 200  # the server answers; the browser withholds it
    assert "access-control-allow-origin" not in headers_of(token)
    assert headers_of(token)["vary"] == "Origin"
    document = call.request(WELL_KNOWN, method="GET", headers={"origin": origin})
    assert "access-control-allow-origin" not in headers_of(document)


def test_preflight_for_another_method_or_header_is_refused() -> None:
    """Only the endpoint's methods and the listed request headers are allowed."""
    call = Caller(make_issuer(cors_origins=(APP,)))
    assert preflight(call, "/token", APP, **{"access-control-request-method": "PUT"}).status == 403
    response = preflight(call, "/token", APP, **{"access-control-request-headers": "x-secret"})
    assert response.status == 403


def test_documents_follow_cors_origins() -> None:
    """Metadata and JWKS: 204 preflight (GET) for allowed origins, ACAO on the answer."""
    call = Caller(make_issuer(cors_origins=(APP,)))
    for path in (WELL_KNOWN, "/jwks.json"):
        response = preflight(
            call,
            path,
            APP,
            **{
                "access-control-request-method": "GET",
                "access-control-request-headers": "mcp-protocol-version",
            },
        )
        assert response.status == 204
        assert headers_of(response)["access-control-allow-methods"] == "GET, HEAD"
        document = call.request(path, method="GET", headers={"origin": APP})
        assert document.status == 200
        assert headers_of(document)["access-control-allow-origin"] == APP
        assert headers_of(document)["vary"] == "Origin"


def test_introspection_and_revocation_never_answer_cross_origin() -> None:
    """Server-to-server endpoints: no preflight answer, no ACAO."""
    call = Caller(make_issuer(cors_origins=("*",)))
    for path in ("/introspect", "/revoke"):
        response = preflight(call, path, APP)
        assert response.status == 400
        assert "access-control-allow-origin" not in headers_of(response)
        answer = call.request(path, {"token": "x"}, headers={"origin": APP})
        assert "access-control-allow-origin" not in headers_of(answer)


def test_wildcard_only_when_configured_alone() -> None:
    """["*"] allows any origin with ACAO *, never with credentials; "*" cannot be mixed."""
    call = Caller(make_issuer(cors_origins=("*",)))
    response = preflight(call, "/token", EVIL)
    assert response.status == 204
    assert headers_of(response)["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in headers_of(response)
    with pytest.raises(ConfigurationError, match=r"\*"):
        IssuerConfig(issuer=ISSUER, audience=AUDIENCE, cors_origins=("*", APP))


@pytest.mark.parametrize(
    "origin",
    [
        pytest.param("http://127.0.0.1:8000/", id="trailing-slash"),
        pytest.param("http://127.0.0.1:8000/docs", id="path"),
        pytest.param("127.0.0.1:8000", id="no-scheme"),
        pytest.param("ftp://files.example", id="other-scheme"),
        pytest.param("https://App.example", id="upper-case"),
        pytest.param("https://u@app.example", id="userinfo"),
        pytest.param("null", id="null"),
    ],
)
def test_cors_origins_are_checked(origin: str) -> None:
    """Configured origins must be exact serialised origins."""
    with pytest.raises(ConfigurationError, match="cors_origins"):
        IssuerConfig(issuer=ISSUER, audience=AUDIENCE, cors_origins=(origin,))


CONFIG = """
audience = "api://demo"
cors_origins = ["{origin}"]

[[clients]]
id = "svc"
secret = "{secret}"
scopes = ["items:read"]
"""


@contextlib.contextmanager
def cli_issuer(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "issuer.toml"
    config.write_text(CONFIG.format(origin=APP, secret=SECRET))
    args = [sys.executable, "-m", "scopegate", "issuer", "serve", "--config", str(config),
            "--port", str(port)]  # fmt: skip
    with run_process(args, port, ready_path=WELL_KNOWN):
        yield f"http://127.0.0.1:{port}"


def test_cli_issuer_cors(tmp_path: Path) -> None:
    """The real server: Swagger-style preflight and token request from allowed/refused origins."""
    with cli_issuer(tmp_path) as base:

        def options(origin: str) -> Any:
            return httpx.options(f"{base}/token", headers={"origin": origin, **SWAGGER_PREFLIGHT})

        allowed = options(APP)
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == APP
        token = httpx.post(
            f"{base}/token",
            data=CC,
            auth=("svc", SECRET),
            headers={"origin": APP, "x-requested-with": "XMLHttpRequest"},
        )
        assert token.status_code == 200
        assert token.headers["access-control-allow-origin"] == APP
        refused = options(EVIL)
        assert refused.status_code == 403
        assert "access-control-allow-origin" not in refused.headers
        token = httpx.post(f"{base}/token", data=CC, auth=("svc", SECRET), headers={"origin": EVIL})
        assert "access-control-allow-origin" not in token.headers
