"""Helpers for the authorization-code tests: an issuer with browser clients, a PKCE pair,
and a tiny "browser" over the sans-io core or over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from scopegate.issuer import (
    Client,
    HTTPRequest,
    HTTPResponse,
    Issuer,
    IssuerConfig,
    IssuerStore,
    SigningKeySet,
    User,
)
from tests.issuer.conftest import ALICE_HASH, AUDIENCE, BOB_HASH, ISSUER, RS_KEY, FakeClock

WEB_CB = "https://app.example/cb"
LOOPBACK_CB = "http://127.0.0.1:8765/callback"
SPA_CB = "https://spa.example/cb?tenant=1"
MCP = "http://127.0.0.1:8000/mcp"
CODE_GRANTS = frozenset({"authorization_code", "refresh_token"})


def pkce() -> tuple[str, str]:
    """A fresh (verifier, S256 challenge) pair (RFC 7636 §4.1-§4.2)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def browser_clients() -> list[Client]:
    return [
        Client(
            "web",
            ("web-secret",),
            grant_types=CODE_GRANTS,
            scopes=frozenset({"read", "write"}),
            redirect_uris=(WEB_CB, LOOPBACK_CB),
            resources=frozenset({MCP}),
        ),
        Client(
            "spa",
            grant_types=CODE_GRANTS,
            scopes=frozenset({"read"}),
            redirect_uris=(SPA_CB,),
            auth_methods=frozenset({"none"}),
        ),
        Client(
            "web2",
            ("web2-secret",),
            grant_types=frozenset({"authorization_code"}),
            scopes=frozenset({"read"}),
            redirect_uris=("https://other.example/cb",),
        ),
        Client(
            "nocode",
            ("nocode-secret",),
            scopes=frozenset({"read"}),
            redirect_uris=("https://nocode.example/cb",),
        ),
        Client("rs", ("rs-secret",), grant_types=frozenset(), introspect=True),
    ]


def browser_users() -> list[User]:
    return [
        User("user-1", "alice", ALICE_HASH, scopes=frozenset({"read", "write"})),
        User("user-2", "bob", BOB_HASH, scopes=frozenset({"read"}), acr="urn:example:mfa"),
    ]


def build_issuer(
    *,
    issuer: str = ISSUER,
    clock: Any = None,
    store: IssuerStore | None = None,
    **settings: Any,
) -> Issuer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            IssuerConfig(issuer=issuer, audience=AUDIENCE, **settings),
            clients=browser_clients(),
            users=browser_users(),
            keys=SigningKeySet(current=RS_KEY),
            clock=clock or FakeClock(),
            store=store,
        )


_TOKEN_FIELD = re.compile(r'name="request_token" value="([^"]+)"')


def form_token(body: bytes | str) -> str:
    text = body.decode() if isinstance(body, bytes) else body
    match = _TOKEN_FIELD.search(text)
    assert match, text
    return unescape(match.group(1))


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class Browser:
    """A user agent on the sans-io core: keeps cookies, never follows redirects."""

    issuer: Issuer
    address: str = "198.51.100.7"
    cookies: dict[str, str] = field(default_factory=dict)

    def _send(self, request: HTTPRequest) -> HTTPResponse:
        response = self.issuer.handle(request)
        for name, value in response.headers:
            if name == "set-cookie":
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                if "Max-Age=0" in value:
                    self.cookies.pop(key, None)
                else:
                    self.cookies[key] = val
        return response

    def authorize(self, params: Mapping[str, str] | list[tuple[str, str]]) -> HTTPResponse:
        query = urlencode(params if isinstance(params, list) else list(params.items()))
        return self._send(HTTPRequest("GET", "/authorize", query, {}, b"", self.address))

    def post(
        self, form: Mapping[str, str], cookies: Mapping[str, str] | None = None
    ) -> HTTPResponse:
        jar = self.cookies if cookies is None else cookies
        headers = {"content-type": "application/x-www-form-urlencoded"}
        if jar:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in jar.items())
        body = urlencode(dict(form)).encode()
        return self._send(HTTPRequest("POST", "/authorize", "", headers, body, self.address))

    def login(
        self, page: HTTPResponse, username: str = "alice", password: str = "alice-pw"
    ) -> HTTPResponse:
        assert page.status in (200, 400), page.body
        token = form_token(page.body)
        return self.post({"request_token": token, "username": username, "password": password})


def auth_params(
    client_id: str = "web",
    redirect_uri: str = WEB_CB,
    challenge: str | None = None,
    **extra: str,
) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": "st-123",
        "code_challenge_method": "S256",
    }
    if challenge is not None:
        params["code_challenge"] = challenge
    params.update(extra)
    return params


def location(response: HTTPResponse) -> str:
    return dict(response.headers)["location"]


def browser_login(
    base: str, authorize_url: str, username: str = "alice", password: str = "alice-pw"
) -> httpx.Response:
    """What a browser does: GET the form, POST the credentials (cookies kept), no redirects."""
    with httpx.Client(follow_redirects=False, timeout=30) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        assert page.headers["x-frame-options"] == "DENY"
        return browser.post(
            f"{base}/authorize",
            data={
                "request_token": form_token(page.text),
                "username": username,
                "password": password,
            },
        )
