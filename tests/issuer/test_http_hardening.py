"""Issue 14 against real HTTP servers on 127.0.0.1: the issuer's Starlette app under
uvicorn and its WSGI app under waitress, driven by real OAuth clients (requests-oauthlib,
Authlib): no redirects, and both advertised client authentication methods."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import httpx
import pytest
from oauthlib.oauth2 import LegacyApplicationClient
from requests_oauthlib import OAuth2Session

from scopegate.issuer import (
    Client,
    Issuer,
    IssuerConfig,
    SigningKey,
    SigningKeySet,
    User,
    create_wsgi_app,
)
from tests.issuer.conftest import ALICE_HASH, ALL_GRANTS, run_waitress
from tests.servers import free_port, run_asgi

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
WELL_KNOWN = "/.well-known/oauth-authorization-server"


# -- finding 5: no redirects ----------------------------------------------------------------


def build_issuer(base: str) -> Issuer:
    config = IssuerConfig(issuer=base, audience="api://demo", allow_password_grant=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            config,
            clients=[
                Client("svc", ("svc-secret",), grant_types=ALL_GRANTS, scopes=frozenset({"read"})),
                Client(
                    "basic-only",
                    ("basic-secret",),
                    scopes=frozenset({"read"}),
                    auth_methods=frozenset({"client_secret_basic"}),
                ),
                Client("rs", ("rs-secret",), grant_types=frozenset(), introspect=True),
            ],
            users=[User("user-1", "alice", ALICE_HASH, scopes=frozenset({"read"}))],
            keys=SigningKeySet(current=SigningKey.generate("ES256")),
        )


@pytest.fixture(
    params=[pytest.param("asgi", id="starlette-uvicorn"), pytest.param("wsgi", id="wsgi-waitress")]
)
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The issuer served by its Starlette app and by its WSGI app."""
    port = free_port()
    issuer = build_issuer(f"http://127.0.0.1:{port}")
    if request.param == "asgi":
        from scopegate.issuer import create_asgi_app

        with run_asgi(create_asgi_app(issuer), port=port) as url:
            yield url
    else:
        with run_waitress(create_wsgi_app(issuer), port=port) as url:
            yield url


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("POST", "/token/", id="token"),
        pytest.param("POST", "/introspect/", id="introspect"),
        pytest.param("POST", "/revoke/", id="revoke"),
        pytest.param("GET", "/jwks.json/", id="jwks"),
        pytest.param("GET", WELL_KNOWN + "/", id="metadata"),
    ],
)
def test_trailing_slash_is_404_never_a_redirect(server: str, method: str, path: str) -> None:
    """POST /token/ with any Host: 404, no Location; the secret is never re-posted elsewhere."""
    response = httpx.request(
        method,
        f"{server}{path}",
        data={"grant_type": "client_credentials"} if method == "POST" else None,
        auth=("svc", "svc-secret"),
        headers={"host": "evil.example"},
        follow_redirects=False,
    )
    assert response.status_code == 404
    assert "location" not in response.headers


@pytest.mark.parametrize(
    "path", ["//token", "/token/.", "/Token", "/token%2F", "/./token/", "/token//"]
)
def test_path_variants_are_never_redirected(server: str, path: str) -> None:
    """Odd spellings of an endpoint path are never answered with a redirect (any server)."""
    response = httpx.post(
        f"{server}{path}",
        data={"grant_type": "client_credentials"},
        auth=("svc", "svc-secret"),
        headers={"host": "evil.example"},
        follow_redirects=False,
    )
    assert not 300 <= response.status_code < 400
    assert "location" not in response.headers


# -- finding 9: client authentication methods ---------------------------------------------


def test_textbook_password_request_with_post_credentials(server: str) -> None:
    """The RFC 6749 §4.3.2 textbook request, client credentials in the body, gets tokens."""
    response = httpx.post(
        f"{server}/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "alice-pw",
            "scope": "read",
            "client_id": "svc",
            "client_secret": "svc-secret",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]


def test_requests_oauthlib_defaults_in_body(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests-oauthlib: LegacyApplicationClient with the client in the body, default refresh."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with OAuth2Session(client=LegacyApplicationClient(client_id="svc")) as session:
        token = session.fetch_token(
            f"{server}/token",
            username="alice",
            password="alice-pw",
            client_id="svc",
            client_secret="svc-secret",
            include_client_id=True,
        )
        refreshed = session.refresh_token(
            f"{server}/token",
            refresh_token=token["refresh_token"],
            client_id="svc",
            client_secret="svc-secret",
        )
    assert refreshed["access_token"] != token["access_token"]


def test_authlib_client_secret_post(server: str) -> None:
    """Authlib with token_endpoint_auth_method="client_secret_post" gets and refreshes tokens."""
    with OAuth2Client(
        "svc", "svc-secret", token_endpoint_auth_method="client_secret_post", scope="read"
    ) as client:
        token = client.fetch_token(f"{server}/token", grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        user = client.fetch_token(
            f"{server}/token", grant_type="password", username="alice", password="alice-pw"
        )
        refreshed = client.refresh_token(f"{server}/token", refresh_token=user["refresh_token"])
        assert refreshed["refresh_token"] != user["refresh_token"]


def test_two_methods_at_once_still_refused(server: str) -> None:
    """RFC 6749 §2.3: Basic and client_secret in the body together -> 400 invalid_request."""
    response = httpx.post(
        f"{server}/token",
        data={"grant_type": "client_credentials", "client_secret": "svc-secret"},
        auth=("svc", "svc-secret"),
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_client_limited_to_basic_refuses_post(server: str) -> None:
    """A client registered with auth_methods = ["client_secret_basic"] refuses post (401)."""
    form = {"grant_type": "client_credentials", "client_id": "basic-only"}
    refused = httpx.post(f"{server}/token", data={**form, "client_secret": "basic-secret"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Basic realm=")
    accepted = httpx.post(
        f"{server}/token",
        data={"grant_type": "client_credentials"},
        auth=("basic-only", "basic-secret"),
    )
    assert accepted.status_code == 200
