"""The authorization-code grant with PKCE, the login form and the redirect rules (sans-io)."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from scopegate._errors import ConfigurationError
from scopegate.issuer import Client, HTTPResponse, Issuer, IssuerConfig
from tests.issuer.authz_support import (
    LOOPBACK_CB,
    MCP,
    SPA_CB,
    WEB_CB,
    Browser,
    auth_params,
    build_issuer,
    form_token,
    location,
    pkce,
    query_of,
)
from tests.issuer.conftest import AUDIENCE, ISSUER, Caller, FakeClock

WEB = ("web", "web-secret")


def ok(response: HTTPResponse) -> dict[str, Any]:
    assert response.status == 200, response.body
    return dict(json.loads(response.body))


def error_of(response: HTTPResponse) -> str:
    return str(json.loads(response.body)["error"])


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def get_code(
    browser: Browser,
    challenge: str,
    username: str = "alice",
    password: str = "alice-pw",
    **extra: str,
) -> str:
    page = browser.authorize(auth_params(challenge=challenge, **extra))
    redirect = browser.login(page, username, password)
    assert redirect.status == 303, redirect.body
    return query_of(location(redirect))["code"]


def redeem(
    call: Caller,
    code: str,
    verifier: str,
    redirect_uri: str = WEB_CB,
    auth: tuple[str, str] | None = WEB,
    extra: list[tuple[str, str]] | None = None,
) -> HTTPResponse:
    form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier),
        *(extra or []),
    ]
    return call.token(form, auth=auth)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(clock: FakeClock) -> Issuer:
    return build_issuer(clock=clock)


@pytest.fixture
def browser(issuer: Issuer) -> Browser:
    return Browser(issuer)


@pytest.fixture
def call(issuer: Issuer) -> Caller:
    return Caller(issuer)


# -- the happy path --------------------------------------------------------------------


def test_round_trip(browser: Browser, call: Caller) -> None:
    """RFC 6749 §4.1: form, login, 303 with code+state+iss, code + verifier -> tokens."""
    verifier, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge, scope="read"))
    assert page.status == 200
    headers = dict(page.headers)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "form-action 'self' https://app.example" in csp
    assert "<script" not in page.body.decode()
    redirect = browser.login(page)
    assert redirect.status == 303  # RFC 9700 §4.12: never 307 after a credential post
    target = location(redirect)
    assert target.startswith(WEB_CB + "?")
    params = query_of(target)
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == "st-123"
    assert params["iss"] == ISSUER  # RFC 9207
    body = ok(redeem(call, params["code"], verifier))
    assert body["scope"] == "read"
    assert body["token_type"] == "Bearer"
    token = claims(body["access_token"])
    assert token["sub"] == "user-1"
    assert token["client_id"] == "web"
    assert token["aud"] == AUDIENCE
    assert token["acr"] == "urn:scopegate:pwd"
    assert isinstance(token["auth_time"], int)
    refreshed = ok(
        call.token(
            {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, auth=WEB
        )
    )
    assert claims(refreshed["access_token"])["acr"] == "urn:scopegate:pwd"
    assert claims(refreshed["access_token"])["auth_time"] == token["auth_time"]


def test_public_client_with_pkce(browser: Browser, call: Caller) -> None:
    """RFC 9700 §2.1.1: a public client redeems with client_id alone and its verifier."""
    verifier, challenge = pkce()
    page = browser.authorize(auth_params("spa", SPA_CB, challenge=challenge))
    redirect = browser.login(page)
    target = location(redirect)
    assert target.startswith(SPA_CB + "&")  # the registered query is kept
    code = query_of(target)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": SPA_CB,
        "code_verifier": verifier,
        "client_id": "spa",
    }
    body = ok(call.token(form, auth=None))
    assert claims(body["access_token"])["client_id"] == "spa"
    refreshed = call.token(
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"], "client_id": "spa"},
        auth=None,
    )
    assert ok(refreshed)["refresh_token"] != body["refresh_token"]


def test_public_client_cannot_introspect_or_use_other_grants(call: Caller) -> None:
    """A public client has no secret: no client credentials, no introspection."""
    form = {"grant_type": "client_credentials", "client_id": "spa"}
    assert call.token(form, auth=None).status == 400  # unauthorized_client
    response = call.request("/introspect", {"token": "x", "client_id": "spa"}, auth=None)
    assert response.status == 401
    # A confidential client sending client_id alone is still refused (CA-12).
    response = call.token({"grant_type": "client_credentials", "client_id": "web2"}, auth=None)
    assert response.status == 401


def test_user_acr_and_resource(browser: Browser, call: Caller) -> None:
    """A user's own acr wins; a resource named at /authorize becomes the aud (RFC 8707)."""
    verifier, challenge = pkce()
    code = get_code(browser, challenge, "bob", "bob-pw", resource=MCP)
    token = claims(ok(redeem(call, code, verifier))["access_token"])
    assert token["acr"] == "urn:example:mfa"
    assert token["aud"] == MCP


def test_token_resource_must_be_within_the_authorized_ones(browser: Browser, call: Caller) -> None:
    """RFC 8707 §2.2: the token request may not name a resource beyond the grant's."""
    verifier, challenge = pkce()
    code = get_code(browser, challenge)  # no resource: the default audience
    response = redeem(call, code, verifier, extra=[("resource", MCP)])
    assert error_of(response) == "invalid_target"


def test_opaque_introspection_reports_acr_and_auth_time(clock: FakeClock) -> None:
    """RFC 9470 §6: introspection tells how and when the user signed in."""
    issuer = build_issuer(clock=clock, token_format="opaque")
    browser, call = Browser(issuer), Caller(issuer)
    verifier, challenge = pkce()
    body = ok(redeem(call, get_code(browser, challenge), verifier))
    info = call.introspect(body["access_token"], auth=("rs", "rs-secret"))
    assert info["acr"] == "urn:scopegate:pwd"
    assert info["auth_time"] == int(clock.now)
    assert info["username"] == "alice"


# -- codes: one use, bound to client, redirect URI and verifier ------------------------


def test_replayed_code_is_refused_and_revokes_its_tokens(browser: Browser, call: Caller) -> None:
    """RFC 6749 §4.1.2: a second redemption fails and revokes what the first one issued."""
    verifier, challenge = pkce()
    code = get_code(browser, challenge)
    first = ok(redeem(call, code, verifier))
    replay = redeem(call, code, verifier)
    assert replay.status == 400
    assert error_of(replay) == "invalid_grant"
    assert call.introspect(first["access_token"], auth=("rs", "rs-secret")) == {"active": False}
    refresh = call.token(
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}, auth=WEB
    )
    assert error_of(refresh) == "invalid_grant"


def test_wrong_verifier_burns_the_code(browser: Browser, call: Caller) -> None:
    """RFC 7636 §4.6: a wrong verifier is invalid_grant, and the code is gone."""
    verifier, challenge = pkce()
    code = get_code(browser, challenge)
    other, _ = pkce()
    assert error_of(redeem(call, code, other)) == "invalid_grant"
    assert error_of(redeem(call, code, verifier)) == "invalid_grant"


@pytest.mark.parametrize(
    ("verifier", "error"),
    [
        pytest.param(None, "invalid_request", id="missing"),
        pytest.param("short", "invalid_request", id="too-short"),
        pytest.param("x" * 129, "invalid_request", id="too-long"),
        pytest.param("a b" * 20, "invalid_request", id="bad-characters"),
    ],
)
def test_malformed_verifier(
    browser: Browser, call: Caller, verifier: str | None, error: str
) -> None:
    """PKCE is mandatory: no or malformed code_verifier -> invalid_request (code kept)."""
    good, challenge = pkce()
    code = get_code(browser, challenge)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": WEB_CB}
    if verifier is not None:
        form["code_verifier"] = verifier
    assert error_of(call.token(form, auth=WEB)) == error
    assert ok(redeem(call, code, good))


def test_code_is_bound_to_client_and_redirect_uri(browser: Browser, call: Caller) -> None:
    """RFC 6749 §4.1.3: another client, or another registered redirect URI -> invalid_grant."""
    verifier, challenge = pkce()
    code = get_code(browser, challenge)
    assert error_of(redeem(call, code, verifier, auth=("web2", "web2-secret"))) == "invalid_grant"
    code = get_code(browser, challenge)
    assert error_of(redeem(call, code, verifier, redirect_uri=LOOPBACK_CB)) == "invalid_grant"
    code = get_code(browser, challenge)
    form = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    assert error_of(call.token(form, auth=WEB)) == "invalid_request"  # redirect_uri missing


def test_code_expires(browser: Browser, call: Caller, clock: FakeClock) -> None:
    """Codes are short-lived (authorization_code_ttl, 60 s by default)."""
    verifier, challenge = pkce()
    code = get_code(browser, challenge)
    clock.now += 61
    assert error_of(redeem(call, code, verifier)) == "invalid_grant"


def test_client_without_the_grant_cannot_redeem(browser: Browser, call: Caller) -> None:
    """A client not registered for authorization_code -> unauthorized_client."""
    form = {
        "grant_type": "authorization_code",
        "code": "x",
        "redirect_uri": "y",
        "code_verifier": "z" * 43,
    }
    assert error_of(call.token(form, auth=("nocode", "nocode-secret"))) == "unauthorized_client"


def test_unknown_code(call: Caller) -> None:
    """An unknown code -> invalid_grant."""
    verifier, _ = pkce()
    assert error_of(redeem(call, "nope", verifier)) == "invalid_grant"


# -- redirect URIs: exact match, never an open redirect --------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        pytest.param(WEB_CB + "/evil", id="prefix"),
        pytest.param(WEB_CB + "evil", id="prefix-no-slash"),
        pytest.param("https://app.example/c", id="shorter"),
        pytest.param("http://127.0.0.1:8766/callback", id="other-port"),
        pytest.param("http://app.example/cb", id="other-scheme"),
        pytest.param(WEB_CB + "/", id="trailing-slash"),
        pytest.param("https://user@app.example/cb", id="userinfo"),
        pytest.param("https://app.example@evil.example/cb", id="userinfo-host-swap"),
        pytest.param(WEB_CB + "#frag", id="fragment"),
        pytest.param(WEB_CB + "?x=1", id="extra-query"),
        pytest.param("https://APP.example/cb", id="host-case"),
        pytest.param("https://app.example/%63b", id="percent-encoded"),
        pytest.param("https://app.example:443/cb", id="explicit-port"),
        pytest.param("https://evil.example/", id="open-redirect"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("//evil.example/cb", id="scheme-relative"),
        pytest.param("", id="empty"),
    ],
)
def test_unregistered_redirect_uri_gets_an_error_page(browser: Browser, redirect_uri: str) -> None:
    """RFC 6749 §4.1.2.1 / RFC 9700 §4.1: no exact match -> error page, never a redirect."""
    _, challenge = pkce()
    response = browser.authorize(auth_params(redirect_uri=redirect_uri, challenge=challenge))
    assert response.status == 400
    headers = dict(response.headers)
    assert "location" not in headers
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["x-frame-options"] == "DENY"
    assert b"evil" not in response.body


@pytest.mark.parametrize(
    "params",
    [
        pytest.param([("client_id", "web"), ("response_type", "code")], id="redirect-uri-missing"),
        pytest.param(
            [
                ("client_id", "web"),
                ("redirect_uri", WEB_CB),
                ("redirect_uri", "https://evil.example/"),
            ],
            id="redirect-uri-repeated",
        ),
        pytest.param([("client_id", "ghost"), ("redirect_uri", WEB_CB)], id="unknown-client"),
        pytest.param(
            [("client_id", "web"), ("client_id", "spa"), ("redirect_uri", WEB_CB)],
            id="client-repeated",
        ),
        pytest.param([("redirect_uri", WEB_CB)], id="client-missing"),
    ],
)
def test_untrusted_request_gets_an_error_page(
    browser: Browser, params: list[tuple[str, str]]
) -> None:
    """Without one known client and one of its redirect URIs, nothing is redirected."""
    response = browser.authorize(params)
    assert response.status == 400
    assert "location" not in dict(response.headers)


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        pytest.param({"response_type": "token"}, "unsupported_response_type", id="implicit"),
        pytest.param({"response_type": ""}, "invalid_request", id="no-response-type"),
        pytest.param({"code_challenge": ""}, "invalid_request", id="no-challenge"),
        pytest.param({"code_challenge_method": "plain"}, "invalid_request", id="plain"),
        pytest.param({"code_challenge_method": ""}, "invalid_request", id="no-method"),
        pytest.param({"code_challenge": "short"}, "invalid_request", id="bad-challenge"),
        pytest.param({"scope": "admin"}, "invalid_scope", id="scope"),
        pytest.param({"resource": "https://evil.example/"}, "invalid_target", id="resource"),
    ],
)
def test_errors_go_to_the_redirect_uri(
    browser: Browser, overrides: dict[str, str], error: str
) -> None:
    """RFC 6749 §4.1.2.1: with a valid redirect URI, errors travel in the redirect."""
    _, challenge = pkce()
    params = {**auth_params(challenge=challenge), **overrides}
    response = browser.authorize(params)
    assert response.status == 302, response.body
    target = location(response)
    assert target.startswith(WEB_CB + "?")
    query = query_of(target)
    assert query["error"] == error
    assert query["state"] == "st-123"
    assert query["iss"] == ISSUER
    assert "code" not in query


def test_repeated_parameter_is_invalid_request(browser: Browser) -> None:
    """RFC 6749 §3.1: a repeated parameter (other than resource) -> invalid_request."""
    _, challenge = pkce()
    params = [*auth_params(challenge=challenge).items(), ("scope", "read"), ("scope", "write")]
    query = query_of(location(browser.authorize(params)))
    assert query["error"] == "invalid_request"


def test_client_not_registered_for_the_grant(browser: Browser) -> None:
    """A client with redirect URIs but without the grant -> unauthorized_client (redirected)."""
    _, challenge = pkce()
    params = auth_params("nocode", "https://nocode.example/cb", challenge=challenge)
    query = query_of(location(browser.authorize(params)))
    assert query["error"] == "unauthorized_client"


def test_user_scope_limits_apply_after_login(browser: Browser) -> None:
    """Strict policy: a scope the client may have but the user may not -> invalid_scope."""
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge, scope="read write"))
    redirect = browser.login(page, "bob", "bob-pw")
    assert query_of(location(redirect))["error"] == "invalid_scope"


# -- the login form: CSRF, one-time tokens, escaping, throttling -----------------------


def test_post_without_the_browser_cookie_is_refused(browser: Browser, issuer: Issuer) -> None:
    """CSRF: the form token alone is not enough; the cookie of the same browser is needed."""
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge))
    token = form_token(page.body)
    attacker = Browser(issuer)
    response = attacker.post({"request_token": token, "username": "alice", "password": "alice-pw"})
    assert response.status == 400
    assert "location" not in dict(response.headers)
    # Another pending request's cookie does not fit either.
    other = Browser(issuer)
    other.authorize(auth_params(challenge=challenge))
    response = browser.post(
        {"request_token": token, "username": "alice", "password": "alice-pw"},
        cookies=dict(other.cookies),
    )
    assert response.status == 400


def test_form_token_is_one_time(browser: Browser) -> None:
    """A login post can be used once: posting the same token again is refused."""
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge))
    cookies = dict(browser.cookies)
    token = form_token(page.body)
    assert (
        browser.post({"request_token": token, "username": "alice", "password": "alice-pw"}).status
        == 303
    )
    again = browser.post(
        {"request_token": token, "username": "alice", "password": "alice-pw"}, cookies=cookies
    )
    assert again.status == 400
    assert "location" not in dict(again.headers)


def test_wrong_password_shows_the_form_again_escaped(browser: Browser) -> None:
    """A failed login re-renders the form (new token), echoing the username escaped."""
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge))
    evil = '"><script>alert(1)</script>'
    again = browser.login(page, evil, "wrong")
    assert again.status == 400
    body = again.body.decode()
    assert "<script>" not in body
    assert "&quot;&gt;&lt;script&gt;" in body
    assert form_token(again.body) != form_token(page.body)
    redirect = browser.login(again)
    assert redirect.status == 303


def test_cancel_and_too_many_tries_deny(browser: Browser) -> None:
    """Cancel, or five wrong passwords on one request -> access_denied in the redirect."""
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge))
    cancelled = browser.post({"request_token": form_token(page.body), "action": "cancel"})
    assert query_of(location(cancelled))["error"] == "access_denied"
    page = browser.authorize(auth_params(challenge=challenge))
    for _ in range(4):
        page = browser.login(page, "alice", "wrong")
        assert page.status == 400
    denied = browser.login(page, "alice", "wrong")
    assert denied.status == 303
    assert query_of(location(denied))["error"] == "access_denied"


def test_login_is_throttled_like_the_password_grant(clock: FakeClock) -> None:
    """PW-7: after user_max_failures the account waits, even for the right password."""
    issuer = build_issuer(clock=clock, user_max_failures=3)
    browser = Browser(issuer)
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge))
    for _ in range(3):
        page = browser.login(page, "alice", "wrong")
    refused = browser.login(page, "alice", "alice-pw")
    assert refused.status == 400  # the form again, same message
    assert b"Invalid username or password" in refused.body
    clock.now += 61
    assert browser.login(refused, "alice", "alice-pw").status == 303


def test_address_throttle_gives_429_page(clock: FakeClock) -> None:
    """Per-address limit at the login form: 429 with Retry-After, an HTML page."""
    issuer = build_issuer(clock=clock, address_max_failures=2, user_max_failures=50)
    browser = Browser(issuer)
    _, challenge = pkce()
    page = browser.authorize(auth_params(challenge=challenge))
    page = browser.login(page, "alice", "wrong")
    page = browser.login(page, "alice", "wrong")
    limited = browser.login(page, "alice", "wrong")
    assert limited.status == 429
    assert "retry-after" in dict(limited.headers)


def test_other_methods_and_bad_posts(browser: Browser) -> None:
    """Only GET and POST; a post that is not the form gets an error page."""
    from scopegate.issuer import HTTPRequest

    response = browser.issuer.handle(HTTPRequest("PUT", "/authorize"))
    assert response.status == 405
    assert browser.post({"username": "alice"}).status == 400
    bad = browser.issuer.handle(
        HTTPRequest("POST", "/authorize", "", {"content-type": "application/json"}, b"{}")
    )
    assert bad.status == 400


def test_no_users_means_no_code_grant() -> None:
    """Without users there is nobody to sign in: the grant is off and not advertised."""
    issuer = Issuer(
        IssuerConfig(issuer=ISSUER, audience=AUDIENCE),
        clients=[Client("svc", ("s",), scopes=frozenset({"read"}))],
    )
    assert "authorization_code" not in issuer.metadata["grant_types_supported"]
    assert issuer.metadata["authorization_endpoint"] == f"{ISSUER}/authorize"
    with pytest.raises(ConfigurationError, match="users"):
        Issuer(
            IssuerConfig(issuer=ISSUER, audience=AUDIENCE),
            clients=[
                Client(
                    "web",
                    ("s",),
                    grant_types=frozenset({"authorization_code"}),
                    redirect_uris=(WEB_CB,),
                )
            ],
        )


# -- registration rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("http://app.example/cb", id="http-not-loopback"),
        pytest.param("https://app.example/cb#x", id="fragment"),
        pytest.param("https://u@app.example/cb", id="userinfo"),
        pytest.param("/cb", id="relative"),
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("myapp:/cb", id="scheme-without-dot"),
        pytest.param("https://app.example:99999/cb", id="bad-port"),
    ],
)
def test_bad_redirect_uris_cannot_be_registered(uri: str) -> None:
    """Registration: https, http on loopback, or a reverse-domain private scheme only."""
    with pytest.raises(ConfigurationError, match="redirect_uris"):
        Client("c", ("s",), grant_types=frozenset({"authorization_code"}), redirect_uris=(uri,))


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https://app.example/cb?tenant=1", id="https-query"),
        pytest.param("http://127.0.0.1:8765/cb", id="loopback-ip"),
        pytest.param("http://[::1]:8765/cb", id="loopback-v6"),
        pytest.param("http://localhost/cb", id="localhost"),
        pytest.param("com.example.app:/oauth", id="private-scheme"),
    ],
)
def test_good_redirect_uris(uri: str) -> None:
    """RFC 8252 §7: these may be registered."""
    client = Client(
        "c", ("s",), grant_types=frozenset({"authorization_code"}), redirect_uris=(uri,)
    )
    assert client.redirect_uris == (uri,)


def test_public_client_rules() -> None:
    """A public client has no secret and only the code and refresh grants."""
    with pytest.raises(ConfigurationError, match="public client"):
        Client(
            "p",
            ("s",),
            auth_methods=frozenset({"none"}),
            grant_types=frozenset({"authorization_code"}),
            redirect_uris=(WEB_CB,),
        )
    with pytest.raises(ConfigurationError, match="public client"):
        Client("p", auth_methods=frozenset({"none"}), grant_types=frozenset({"client_credentials"}))
    with pytest.raises(ConfigurationError, match="secret"):
        Client("c")
    with pytest.raises(ConfigurationError, match="redirect_uris"):
        Client("c", ("s",), grant_types=frozenset({"authorization_code"}))


def test_password_grant_carries_acr(clock: FakeClock) -> None:
    """RFC 9470: the password grant's tokens carry acr (per user or the issuer's)."""
    issuer = build_issuer(clock=clock, allow_password_grant=True, acr="urn:example:pwd")
    issuer._clients._clients["pw"] = Client(  # type: ignore[attr-defined]
        "pw", ("pw-secret",), grant_types=frozenset({"password"}), scopes=frozenset({"read"})
    )
    call = Caller(issuer)
    form = {"grant_type": "password", "username": "alice", "password": "alice-pw"}
    token = claims(ok(call.token(form, auth=("pw", "pw-secret")))["access_token"])
    assert token["acr"] == "urn:example:pwd"
    assert token["auth_time"] == int(clock.now)
    form = {"grant_type": "password", "username": "bob", "password": "bob-pw"}
    token = claims(ok(call.token(form, auth=("pw", "pw-secret")))["access_token"])
    assert token["acr"] == "urn:example:mfa"


def test_metadata_passes_authlib_validation(issuer: Issuer) -> None:
    """RFC 8414 §2: the document now satisfies strict validators (Authlib's)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    AuthorizationServerMetadata(issuer.metadata).validate()
    assert issuer.metadata["authorization_response_iss_parameter_supported"] is True
    assert issuer.metadata["code_challenge_methods_supported"] == ["S256"]


def test_replay_racing_the_winner_still_one_success(issuer: Issuer, browser: Browser) -> None:
    """A replay that revokes the family before the winner mints: one 200, tokens revoked."""
    call = Caller(issuer)
    verifier, challenge = pkce()
    code = get_code(browser, challenge)
    real = issuer.store.consume_authorization_code

    def consume_then_replay(key: str, now: float) -> Any:
        found = real(key, now)
        assert found is not None
        issuer.store.revoke_family(found[0].family_id, now)  # what a racing replay does
        return found

    issuer.store.consume_authorization_code = consume_then_replay  # type: ignore[method-assign]
    body = ok(redeem(call, code, verifier))
    assert call.introspect(body["access_token"], auth=("rs", "rs-secret")) == {"active": False}
    refresh = call.token(
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}, auth=WEB
    )
    assert error_of(refresh) == "invalid_grant"


def test_pending_login_requests_are_capped(issuer: Issuer, browser: Browser) -> None:
    """Anyone may open login forms: the memory store keeps a bounded number (oldest out)."""
    issuer.store.max_login_requests = 3  # type: ignore[attr-defined]
    _, challenge = pkce()
    pages = [browser.authorize(auth_params(challenge=challenge)) for _ in range(4)]
    assert len(issuer.store._logins) == 3  # type: ignore[attr-defined]
    assert browser.login(pages[0]).status == 400  # the oldest was dropped
    assert browser.login(pages[3]).status == 303
