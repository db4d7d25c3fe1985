"""The authorization-code flow against real servers (uvicorn, waitress, the CLI process,
two processes sharing a real redis-server), driven by real clients (httpx, Authlib)."""

from __future__ import annotations

import contextlib
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from scopegate.issuer import Issuer, RedisStore, create_wsgi_app
from tests.issuer.authz_support import (
    WEB_CB,
    auth_params,
    browser_login,
    build_issuer,
    form_token,
    pkce,
    query_of,
)
from tests.issuer.conftest import run_waitress
from tests.servers import RedisServer, free_port, run_asgi, run_process

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
WELL_KNOWN = "/.well-known/oauth-authorization-server"


@contextlib.contextmanager
def serve(kind: str, **settings: Any) -> Iterator[tuple[str, Issuer]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = build_issuer(issuer=base, **settings)
    if kind == "asgi":
        from scopegate.issuer import create_asgi_app

        with run_asgi(create_asgi_app(issuer), port=port) as url:
            yield url, issuer
    else:
        with run_waitress(create_wsgi_app(issuer), port=port) as url:
            yield url, issuer


@pytest.mark.parametrize(
    "kind", [pytest.param("asgi", id="starlette-uvicorn"), pytest.param("wsgi", id="wsgi-waitress")]
)
def test_round_trip_with_httpx(kind: str) -> None:
    """GET /authorize -> form -> POST -> redirect with code, state, iss -> tokens."""
    with serve(kind) as (base, _):
        verifier, challenge = pkce()
        url = httpx.URL(f"{base}/authorize", params=auth_params(challenge=challenge, scope="read"))
        redirect = browser_login(base, str(url))
        assert redirect.status_code == 303
        target = redirect.headers["location"]
        assert target.startswith(WEB_CB + "?")
        params = query_of(target)
        assert params["state"] == "st-123"
        assert params["iss"] == base
        token = httpx.post(
            f"{base}/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": WEB_CB,
                "code_verifier": verifier,
            },
            auth=("web", "web-secret"),
        )
        assert token.status_code == 200, token.text
        claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
        assert claims["iss"] == base
        assert claims["sub"] == "user-1"
        assert claims["acr"] == "urn:scopegate:pwd"
        again = httpx.post(
            f"{base}/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": WEB_CB,
                "code_verifier": verifier,
            },
            auth=("web", "web-secret"),
        )
        assert again.status_code == 400
        assert again.json()["error"] == "invalid_grant"
        look_alike = httpx.get(
            f"{base}/authorize",
            params=auth_params(redirect_uri=WEB_CB + "/", challenge=challenge),
            follow_redirects=False,
        )
        assert look_alike.status_code == 400
        assert "location" not in look_alike.headers


def test_authlib_oauth2client_with_pkce() -> None:
    """Authlib's OAuth2Client builds the request (S256) and redeems the code."""
    with serve("asgi") as (base, _):
        client = OAuth2Client(
            "web",
            "web-secret",
            redirect_uri=WEB_CB,
            scope="read write",
            code_challenge_method="S256",
        )
        verifier = pkce()[0]
        with client:
            url, state = client.create_authorization_url(
                f"{base}/authorize", code_verifier=verifier
            )
            redirect = browser_login(base, url)
            assert redirect.status_code == 303
            location = redirect.headers["location"]
            assert query_of(location)["state"] == state
            token = client.fetch_token(
                f"{base}/token", authorization_response=location, code_verifier=verifier
            )
            assert token["scope"] == "read write"
            assert "refresh_token" in token
            refreshed = client.refresh_token(f"{base}/token", refresh_token=token["refresh_token"])
            assert refreshed["access_token"] != token["access_token"]


def race(base_urls: list[str], code: str, verifier: str, racers: int = 20) -> list[httpx.Response]:
    barrier = threading.Barrier(racers)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def redeem(n: int) -> None:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            response = http.post(
                f"{base_urls[n % len(base_urls)]}/token",
                data={
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": WEB_CB,
                    "code_verifier": verifier,
                },
                auth=("web", "web-secret"),
            )
        with lock:
            results.append(response)

    threads = [threading.Thread(target=redeem, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def check_race(results: list[httpx.Response], introspect_at: str) -> None:
    statuses = Counter(r.status_code for r in results)
    assert statuses == {200: 1, 400: len(results) - 1}, statuses
    assert {r.json()["error"] for r in results if r.status_code == 400} == {"invalid_grant"}
    # The losers were replays: the winner's tokens are revoked (RFC 6749 §4.1.2).
    winner = next(r for r in results if r.status_code == 200).json()
    info = httpx.post(
        f"{introspect_at}/introspect",
        data={"token": winner["access_token"]},
        auth=("rs", "rs-secret"),
    )
    assert info.json() == {"active": False}


def test_concurrent_redemption_one_winner_memory() -> None:
    """Twenty threads redeem one code at a real server: exactly one 200."""
    with serve("asgi") as (base, _):
        for _ in range(3):
            verifier, challenge = pkce()
            url = httpx.URL(f"{base}/authorize", params=auth_params(challenge=challenge))
            code = query_of(browser_login(base, str(url)).headers["location"])["code"]
            check_race(race([base], code, verifier), base)


@pytest.mark.redis
def test_concurrent_redemption_one_winner_redis(redis_server: RedisServer) -> None:
    """Two issuer servers sharing Redis: the code made at one, raced at both, one 200."""
    from scopegate.issuer import create_asgi_app

    ports = [free_port(), free_port()]
    base = f"http://127.0.0.1:{ports[0]}"  # one issuer identifier behind two servers
    issuers = [build_issuer(issuer=base, store=RedisStore(redis_server.url)) for _ in ports]
    try:
        with (
            run_asgi(create_asgi_app(issuers[0]), port=ports[0]) as first,
            run_asgi(create_asgi_app(issuers[1]), port=ports[1]) as second,
        ):
            for _ in range(3):
                verifier, challenge = pkce()
                url = httpx.URL(f"{first}/authorize", params=auth_params(challenge=challenge))
                code = query_of(browser_login(first, str(url)).headers["location"])["code"]
                check_race(race([first, second], code, verifier), second)
    finally:
        for issuer in issuers:
            issuer.close()


def test_login_form_throttle_under_concurrent_wrong_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Twelve wrong passwords at once through the form: at most user_max_failures judged."""
    from scopegate.issuer import _login

    judged: list[str] = []
    real = _login.verify_secret

    def counting(stored: str, candidate: str) -> bool:
        if candidate.startswith("guess-"):
            judged.append(candidate)
        return real(stored, candidate)

    monkeypatch.setattr(_login, "verify_secret", counting)
    with serve("asgi", user_max_failures=3, address_max_failures=100) as (base, _):
        _, challenge = pkce()
        url = str(httpx.URL(f"{base}/authorize", params=auth_params(challenge=challenge)))
        browsers = [httpx.Client(follow_redirects=False, timeout=30) for _ in range(12)]
        try:
            tokens = [form_token(b.get(url).text) for b in browsers]
            barrier = threading.Barrier(len(browsers))
            statuses: list[int] = []

            def guess(n: int) -> None:
                barrier.wait()
                response = browsers[n].post(
                    f"{base}/authorize",
                    data={
                        "request_token": tokens[n],
                        "username": "alice",
                        "password": f"guess-{n}",
                    },
                )
                statuses.append(response.status_code)

            threads = [threading.Thread(target=guess, args=(n,)) for n in range(len(browsers))]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            assert len(statuses) == 12
            assert set(statuses) == {400}  # the form again, one message for all
            assert len(judged) <= 3, judged
            # The right password is refused too while the account waits.
            page = browsers[0].get(url)
            refused = browsers[0].post(
                f"{base}/authorize",
                data={"request_token": form_token(page.text), "username": "alice",
                      "password": "alice-pw"},
            )  # fmt: skip
            assert refused.status_code == 400
        finally:
            for b in browsers:
                b.close()


CONFIG = """
audience = "api://demo"
acr = "urn:example:password"
authorization_code_ttl = 30

[[clients]]
id = "spa"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["http://127.0.0.1:{cb_port}/callback"]
scopes = ["items:read"]

[[users]]
username = "alice"
password = "alice-pw"
scopes = ["items:read"]
"""


def test_cli_public_client_round_trip(tmp_path: Path) -> None:
    """`scopegate issuer serve` with a TOML public client: the whole flow with PKCE."""
    port, cb_port = free_port(), free_port()
    config = tmp_path / "issuer.toml"
    config.write_text(CONFIG.format(cb_port=cb_port))
    base = f"http://127.0.0.1:{port}"
    callback = f"http://127.0.0.1:{cb_port}/callback"
    args = [sys.executable, "-m", "scopegate", "issuer", "serve", "--config", str(config),
            "--port", str(port)]  # fmt: skip
    with run_process(args, port, ready_path=WELL_KNOWN):
        metadata = httpx.get(f"{base}{WELL_KNOWN}").json()
        assert "authorization_code" in metadata["grant_types_supported"]
        assert "none" in metadata["token_endpoint_auth_methods_supported"]
        verifier, challenge = pkce()
        url = httpx.URL(
            metadata["authorization_endpoint"],
            params=auth_params("spa", callback, challenge=challenge),
        )
        redirect = browser_login(base, str(url))
        params = query_of(redirect.headers["location"])
        token = httpx.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": callback,
                "code_verifier": verifier,
                "client_id": "spa",
            },
        )
        assert token.status_code == 200, token.text
        claims = jwt.decode(token.json()["access_token"], options={"verify_signature": False})
        assert claims["acr"] == "urn:example:password"
        assert claims["client_id"] == "spa"
