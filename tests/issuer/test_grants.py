"""Password and refresh-token grants, introspection, revocation (sans-io core)."""

from __future__ import annotations

import json
import logging
import threading
import warnings

import jwt
import pytest

from scopegate.issuer import InsecureGrantWarning, Issuer, IssuerConfig, User
from scopegate.issuer._passwords import hash_secret
from tests.issuer.conftest import (
    ALICE_HASH,
    AUDIENCE,
    ISSUER,
    SECRET,
    Caller,
    FakeClock,
    make_issuer,
    standard_clients,
)

PW = {"grant_type": "password", "username": "alice", "password": "alice-pw"}


def tokens(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert response.status == 200, response.body
    return dict(json.loads(response.body))


def error_of(response) -> str:  # type: ignore[no-untyped-def]
    return str(json.loads(response.body)["error"])


def refresh(call: Caller, token: str, **extra: str):  # type: ignore[no-untyped-def]
    return call.token({"grant_type": "refresh_token", "refresh_token": token, **extra})


# -- password grant --------------------------------------------------------------------


def test_enabling_password_grant_warns(caplog: pytest.LogCaptureFixture) -> None:
    """PW-2: enabling the password grant warns (InsecureGrantWarning + WARNING log)."""
    config = IssuerConfig(issuer=ISSUER, audience=AUDIENCE, allow_password_grant=True)
    with caplog.at_level(logging.WARNING), pytest.warns(InsecureGrantWarning, match="RFC 9700"):
        Issuer(config, clients=standard_clients(), users=[])
    assert any("RFC 9700" in r.getMessage() for r in caplog.records)


def test_password_grant_metadata_lists_password(call: Caller) -> None:
    """PW-3: grant_types_supported contains password only when enabled."""
    assert "password" in call.issuer.metadata["grant_types_supported"]


def test_password_grant_issues_user_token(call: Caller) -> None:
    """PW-11/AT-4/RS-5: sub is the user id, auth_time set, refresh token issued."""
    body = tokens(call.token(PW))
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "user-1"
    assert claims["client_id"] == "svc"
    assert isinstance(claims["auth_time"], int)
    assert "username" not in claims
    assert "alice" not in json.dumps(claims)
    assert body["refresh_token"]
    assert body["scope"] == "read write"


def test_password_grant_username_is_normalised(call: Caller) -> None:
    """PW-7(d): a full-width, upper-case ALICE logs in as alice (NFKC + casefold)."""
    assert call.token({**PW, "username": "\uff21LICE"}).status == 200


def test_client_without_password_grant(call: Caller, issuer: Issuer) -> None:
    """PW-6/PW-1: a client without the grant -> unauthorized_client, counter untouched."""
    response = call.token(PW, auth=("cconly", "cc-secret"))
    assert error_of(response) == "unauthorized_client"
    wrong = {**PW, "password": "nope"}
    for _ in range(10):
        call.token(wrong, auth=("cconly", "cc-secret"))
    assert call.token(PW).status == 200  # not locked by the unauthorised attempts


@pytest.mark.parametrize(
    "form",
    [
        pytest.param({"grant_type": "password", "username": "alice"}, id="no-password"),
        pytest.param({"grant_type": "password", "password": "x"}, id="no-username"),
        pytest.param(
            {"grant_type": "password", "username": "alice", "password": ""}, id="empty-password"
        ),
    ],
)
def test_password_grant_missing_parameters(call: Caller, form: dict[str, str]) -> None:
    """PW-5: missing username or password -> invalid_request."""
    assert error_of(call.token(form)) == "invalid_request"


def test_bad_credentials_are_indistinguishable(clock: FakeClock) -> None:
    """PW-5: wrong password, unknown user, disabled user, locked user: identical bodies."""
    issuer = make_issuer(clock=clock)
    call = Caller(issuer)
    wrong = call.token({**PW, "password": "nope"})
    unknown = call.token({**PW, "username": "mallory"})
    disabled = call.token({**PW, "username": "bob", "password": "bob-pw"})
    for _ in range(6):
        call.token({**PW, "password": "nope"})
    locked = call.token(PW)
    bodies = {(r.status, r.body) for r in (wrong, unknown, disabled, locked)}
    assert len(bodies) == 1
    assert error_of(wrong) == "invalid_grant"


def test_backoff_refuses_correct_password_then_recovers(clock: FakeClock) -> None:
    """PW-7: after 5 failures the account waits; the right password fails until then."""
    call = Caller(make_issuer(clock=clock))
    for _ in range(6):  # the 6th is refused as locked and not counted
        assert error_of(call.token({**PW, "password": "nope"})) == "invalid_grant"
    assert error_of(call.token(PW)) == "invalid_grant"
    clock.now += 61  # 5 failures: 60 s
    assert error_of(call.token({**PW, "password": "nope"})) == "invalid_grant"
    clock.now += 61  # 6 failures: 2**(6-5) * 60 = 120 s
    assert error_of(call.token(PW)) == "invalid_grant"
    clock.now += 60
    assert call.token(PW).status == 200
    # success resets the counter
    assert error_of(call.token({**PW, "password": "nope"})) == "invalid_grant"
    assert call.token(PW).status == 200


def test_backoff_is_capped_and_lockout_after_limit(clock: FakeClock) -> None:
    """PW-7(a,e): backoff caps at 15 min; at the lockout limit the account waits the window."""
    call = Caller(make_issuer(clock=clock, lockout_failures=8, address_max_failures=1000))
    for _ in range(7):
        call.token({**PW, "password": "nope"})
        clock.now += 1000  # past each backoff step (capped at 900 s)
    call.token({**PW, "password": "nope"})  # 8th failure: locked for the window
    clock.now += 1000
    assert error_of(call.token(PW)) == "invalid_grant"
    clock.now += 12 * 3600
    assert call.token(PW).status == 200


def test_lockout_threshold_is_logged(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """PW-7(c): reaching the backoff threshold logs a WARNING without the username."""
    call = Caller(make_issuer(clock=clock))
    with caplog.at_level(logging.WARNING, logger="scopegate.issuer"):
        for _ in range(5):
            call.token({**PW, "password": "nope"})
    alerts = [r.getMessage() for r in caplog.records if "brute-force" in r.getMessage()]
    assert len(alerts) == 1
    assert "alice" not in alerts[0]


def test_address_throttle_returns_429(clock: FakeClock) -> None:
    """PW-7(b): many failures from one address across usernames -> 429 + Retry-After."""
    call = Caller(make_issuer(clock=clock, address_max_failures=5))
    for i in range(5):
        call.token({**PW, "username": f"user{i}", "password": "x"})
    response = call.token(PW)
    assert response.status == 429
    assert "retry-after" in dict(response.headers)


def test_password_length_cap(call: Caller, monkeypatch: pytest.MonkeyPatch) -> None:
    """PW-9: an over-long password is refused with invalid_grant and never hashed."""
    from scopegate.issuer import _login

    seen: list[str] = []
    monkeypatch.setattr(_login, "verify_secret", lambda s, c: seen.append(c) or False)
    response = call.token({**PW, "password": "x" * 5000})
    assert error_of(response) == "invalid_grant"
    assert seen == []
    huge = call.token({**PW, "password": "x" * (1 << 20)})
    assert huge.status == 413


def test_memory_store_sweeps_expired_entries() -> None:
    """Expired opaque tokens, denylist entries and counters are swept from memory."""
    from scopegate.issuer import MemoryStore
    from scopegate.issuer._store import AccessTokenRecord, CounterReservation

    store = MemoryStore()
    record = AccessTokenRecord("c", "s", ("a",), "aud", 0, 10, "j")
    store.save_access_token("k", record, 0.0)
    store.revoke_jti("j", 10, 0.0)
    for i in range(1100):
        assert store.reserve_attempts([CounterReservation(f"f{i}", 0, 1.0)], "t", 100.0)
        store.settle_attempts([f"f{i}"], ["fail"], "t", 100.0)
    assert store.get_access_token("k", 5.0) is None  # swept when the clock passed 100 s
    assert store._access == {}
    assert store._denied == {}
    assert store.read_attempts(["f0"], 200.0)[0].count == 0
    for i in range(1100):
        store.reserve_attempts([CounterReservation(f"g{i}", 0, 1.0)], "t", 300.0)
    assert "f1" not in store._attempts  # counters forgotten after their window are swept


def test_unknown_user_still_costs_a_verification(
    call: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PW-9: an unknown user triggers exactly one hash verification (a dummy)."""
    from scopegate.issuer import _passwords

    seen: list[str] = []
    real = _passwords._verify
    monkeypatch.setattr(_passwords, "_verify", lambda s, c: seen.append(s) or real(s, c))
    call.token({**PW, "username": "mallory"})
    hashed = [s for s in seen if s.startswith("$argon2id$")]  # not the client's HMAC check
    assert len(hashed) == 1


def test_hash_upgrade_after_login(call: Caller, issuer: Issuer) -> None:
    """PW-8: a hash with outdated parameters is replaced after a successful login."""
    assert call.token(PW).status == 200
    user = issuer._users.find_user("alice")  # type: ignore[union-attr]
    assert user is not None
    assert user.password_hash != ALICE_HASH
    assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert call.token(PW).status == 200


def test_plaintext_user_passwords_are_hashed() -> None:
    """PW-8: plaintext passwords from a config are stored as argon2id."""
    from scopegate.issuer import MemoryUserStore

    store = MemoryUserStore([User("u", "carol", "plain-pw")])
    user = store.find_user("carol")
    assert user is not None
    assert user.password_hash.startswith("$argon2id$")


def test_secrets_never_logged(call: Caller, caplog: pytest.LogCaptureFixture) -> None:
    """PW-10/SEC-3: no password, secret or token appears in logs at DEBUG."""
    with caplog.at_level(logging.DEBUG):
        body = tokens(call.token(PW))
        again = tokens(refresh(call, body["refresh_token"]))
        refresh(call, body["refresh_token"])  # reuse: logged as a security event
        call.token({**PW, "password": "wrong-pw"})
        call.token({"grant_type": "client_credentials"}, auth=("svc", "bad-secret"))
    text = caplog.text
    for secret in (
        "alice-pw",
        "wrong-pw",
        SECRET,
        "bad-secret",
        body["refresh_token"],
        body["access_token"],
        again["refresh_token"],
        "alice",
    ):
        assert secret not in text
    assert "reuse" in text


def test_reserved_user_subject_refused() -> None:
    """CC-3: a user id in the client namespace is refused at construction."""
    from scopegate._errors import ConfigurationError
    from scopegate.issuer import MemoryUserStore

    with pytest.raises(ConfigurationError):
        MemoryUserStore([User("client:svc", "eve", ALICE_HASH)])


def test_password_scope_limited_by_user(call: Caller) -> None:
    """SC-3: password-grant scope must be within the user's scopes too."""
    issuer = call.issuer
    issuer._users._users["dave"] = User(  # type: ignore[union-attr]
        "user-4", "dave", ALICE_HASH, scopes=frozenset({"read"})
    )
    assert (
        error_of(call.token({**PW, "username": "dave", "password": "alice-pw", "scope": "write"}))
        == "invalid_scope"
    )


def test_password_grant_without_refresh_for_client() -> None:
    """RS-5: a client without refresh_token in grant_types gets no refresh token."""
    from scopegate.issuer import Client

    issuer = make_issuer()
    issuer._clients._clients["pwonly"] = Client(  # type: ignore[attr-defined]
        "pwonly",
        ("pw-secret",),
        grant_types=frozenset({"password"}),
        scopes=frozenset({"read"}),
    )
    body = tokens(Caller(issuer).token(PW, auth=("pwonly", "pw-secret")))
    assert "refresh_token" not in body


# -- refresh grant ---------------------------------------------------------------------


def test_refresh_rotates(call: Caller) -> None:
    """RT-4: a refresh returns a new refresh token; the old one is then invalid_grant."""
    first = tokens(call.token(PW))
    second = tokens(refresh(call, first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"]
    assert tokens(refresh(call, second["refresh_token"]))


def test_refresh_reuse_revokes_family(call: Caller) -> None:
    """RT-5: presenting a rotated token revokes the family and its access tokens."""
    r1 = tokens(call.token(PW))
    r2 = tokens(refresh(call, r1["refresh_token"]))
    auth = ("rs", "rs-secret")
    assert call.introspect(r2["access_token"], auth=auth)["active"] is True
    assert error_of(refresh(call, r1["refresh_token"])) == "invalid_grant"
    assert error_of(refresh(call, r2["refresh_token"])) == "invalid_grant"
    assert call.introspect(r2["access_token"], auth=auth) == {"active": False}
    assert call.introspect(r1["access_token"], auth=auth) == {"active": False}


def test_refresh_reuse_revokes_opaque_access_tokens() -> None:
    """RT-5: with opaque tokens, the family's access tokens are deleted."""
    call = Caller(make_issuer(token_format="opaque"))
    r1 = tokens(call.token(PW))
    assert "." not in r1["access_token"]
    r2 = tokens(refresh(call, r1["refresh_token"]))
    refresh(call, r1["refresh_token"])
    assert call.introspect(r2["access_token"]) == {"active": False}


def test_refresh_by_other_client_is_not_consumed(call: Caller) -> None:
    """RT-1: another client's refresh token -> invalid_grant and stays usable."""
    body = tokens(call.token(PW))
    other = call.token(
        {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
        auth=("other", "other-secret"),
    )
    assert error_of(other) == "invalid_grant"
    assert tokens(refresh(call, body["refresh_token"]))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("unknown-token", id="unknown"),
        pytest.param("a" * 600, id="huge"),
        pytest.param("x.y.z", id="jwt-shaped"),
    ],
)
def test_refresh_with_bad_token(call: Caller, token: str) -> None:
    """RT-2: unknown or wrong-type tokens -> invalid_grant."""
    assert error_of(refresh(call, token)) == "invalid_grant"


def test_refresh_with_access_token_is_invalid_grant(call: Caller) -> None:
    """RT-2: an access token is not a refresh token."""
    body = tokens(call.token(PW))
    assert error_of(refresh(call, body["access_token"])) == "invalid_grant"


def test_refresh_missing_parameter(call: Caller) -> None:
    """RT-2: refresh_token missing -> invalid_request."""
    assert error_of(call.token({"grant_type": "refresh_token"})) == "invalid_request"


def test_refresh_for_disabled_user(call: Caller, issuer: Issuer) -> None:
    """RT-2: a user disabled after the grant -> invalid_grant."""
    from dataclasses import replace

    body = tokens(call.token(PW))
    users = issuer._users._users  # type: ignore[union-attr]
    users["alice"] = replace(users["alice"], disabled=True)
    assert error_of(refresh(call, body["refresh_token"])) == "invalid_grant"


def test_refresh_scope_only_shrinks(call: Caller) -> None:
    """RT-3: down-scoped AT, the new RT keeps the original scope; wider -> invalid_scope."""
    body = tokens(call.token(PW))
    narrowed = tokens(refresh(call, body["refresh_token"], scope="read"))
    assert narrowed["scope"] == "read"
    assert error_of(refresh(call, narrowed["refresh_token"], scope="admin")) == "invalid_scope"
    full = tokens(refresh(call, narrowed["refresh_token"]))
    assert full["scope"] == "read write"
    info = call.introspect(full["refresh_token"])
    assert info["scope"] == "read write"


def test_refresh_rechecks_client_scopes(call: Caller, issuer: Issuer) -> None:
    """RT-3: a scope the client has since lost -> invalid_scope."""
    from dataclasses import replace

    body = tokens(call.token(PW))
    clients = issuer._clients._clients  # type: ignore[attr-defined]
    clients["svc"] = replace(clients["svc"], scopes=frozenset({"read"}))
    assert error_of(refresh(call, body["refresh_token"])) == "invalid_scope"
    assert tokens(refresh(call, body["refresh_token"], scope="read"))["scope"] == "read"


def test_refresh_idle_and_absolute_expiry(clock: FakeClock) -> None:
    """RT-8: idle expiry, and rotation never extends the absolute lifetime."""
    call = Caller(make_issuer(clock=clock, refresh_token_ttl=1000, refresh_token_idle_ttl=300))
    body = tokens(call.token(PW))
    clock.now += 301
    assert error_of(refresh(call, body["refresh_token"])) == "invalid_grant"
    body = tokens(call.token(PW))
    for _ in range(3):
        clock.now += 250
        body = tokens(refresh(call, body["refresh_token"]))
    clock.now += 260  # 1010 s after the login: past the absolute lifetime
    assert error_of(refresh(call, body["refresh_token"])) == "invalid_grant"


def test_concurrent_refresh_has_one_winner(call: Caller) -> None:
    """RT-7: 20 threads refresh one token: exactly one succeeds."""
    body = tokens(call.token(PW))
    barrier = threading.Barrier(20)
    results: list[int] = []

    def worker() -> None:
        barrier.wait()
        results.append(refresh(call, body["refresh_token"]).status)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(200) == 1


def test_revoke_subject(call: Caller, issuer: Issuer) -> None:
    """RT-9: revoking a user's families (password change) kills refresh and access tokens."""
    body = tokens(call.token(PW))
    issuer.revoke_subject("user-1")
    assert error_of(refresh(call, body["refresh_token"])) == "invalid_grant"
    assert call.introspect(body["access_token"]) == {"active": False}


# -- introspection ---------------------------------------------------------------------


def test_introspection_requires_authentication(call: Caller) -> None:
    """IN-2: no or bad credentials -> 401 invalid_client, never active:false."""
    for auth in (None, ("rs", "wrong")):
        response = call.request("/introspect", {"token": "x"}, auth=auth)
        assert response.status == 401
        assert json.loads(response.body)["error"] == "invalid_client"


def test_introspection_active_response(call: Caller) -> None:
    """IN-3: an active JWT access token, introspected by a resource server."""
    body = tokens(call.token(PW))
    info = call.introspect(body["access_token"], auth=("rs", "rs-secret"))
    assert info["active"] is True
    assert info["iss"] == ISSUER
    assert info["aud"] == AUDIENCE
    assert info["sub"] == "user-1"
    assert info["client_id"] == "svc"
    assert info["token_type"] == "Bearer"
    assert info["scope"] == "read write"
    assert {"exp", "iat", "jti"} <= set(info)


def test_introspection_opaque_includes_username() -> None:
    """IN-3: opaque password-grant tokens report username."""
    call = Caller(make_issuer(token_format="opaque"))
    body = tokens(call.token(PW))
    info = call.introspect(body["access_token"], auth=("rs", "rs-secret"))
    assert info["active"] is True
    assert info["username"] == "alice"


def test_introspection_inactive_cases(call: Caller, clock: FakeClock) -> None:
    """IN-4: unknown, revoked, expired, foreign-signed and other-client tokens are inactive."""
    from scopegate.issuer import SigningKey

    rs = ("rs", "rs-secret")
    body = tokens(call.token(PW))
    assert call.introspect("garbage", auth=rs) == {"active": False}
    # another client (not a resource server) cannot see svc's token
    assert call.introspect(body["access_token"], auth=("other", "other-secret")) == {
        "active": False
    }
    # a refresh token is never active for a resource server
    assert call.introspect(body["refresh_token"], auth=rs) == {"active": False}
    # but it is for its own client
    assert call.introspect(body["refresh_token"])["active"] is True
    # a token signed by a foreign key with our kid
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    forged = jwt.encode(
        claims,
        SigningKey.generate("RS256").private_key,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": jwt.get_unverified_header(body["access_token"])["kid"]},
    )
    assert call.introspect(forged, auth=rs) == {"active": False}
    # other issuer
    key = call.issuer.keys.current
    other_iss = jwt.encode(
        {**claims, "iss": "https://evil"},
        key.private_key,
        algorithm="RS256",
        headers={"typ": "at+jwt", "kid": key.kid},
    )
    assert call.introspect(other_iss, auth=rs) == {"active": False}
    # wrong typ
    wrong_typ = jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid})
    assert call.introspect(wrong_typ, auth=rs) == {"active": False}
    # expired
    clock.now += 601
    assert call.introspect(body["access_token"], auth=rs) == {"active": False}


def test_introspection_own_client_sees_own_token(call: Caller) -> None:
    """IN-2: a client may introspect the tokens issued to it."""
    body = tokens(call.token({"grant_type": "client_credentials"}))
    assert call.introspect(body["access_token"])["active"] is True


@pytest.mark.parametrize(
    "hint",
    [
        pytest.param("access_token", id="access"),
        pytest.param("refresh_token", id="refresh"),
        pytest.param("bogus", id="unknown"),
    ],
)
def test_introspection_hint_is_only_a_hint(call: Caller, hint: str) -> None:
    """IN-5: any hint value still finds the token."""
    body = tokens(call.token(PW))
    for token in (body["access_token"], body["refresh_token"]):
        response = call.request("/introspect", {"token": token, "token_type_hint": hint})
        assert json.loads(response.body)["active"] is True


def test_introspection_reflects_revocation(call: Caller) -> None:
    """IN-6/RV-7: a revoked JWT is inactive at introspection before exp."""
    body = tokens(call.token({"grant_type": "client_credentials"}))
    assert call.revoke(body["access_token"]).status == 200
    assert call.introspect(body["access_token"], auth=("rs", "rs-secret")) == {"active": False}


def test_introspection_missing_token(call: Caller) -> None:
    """IN-1: missing token -> 400 invalid_request."""
    response = call.request("/introspect", {}, auth=("rs", "rs-secret"))
    assert response.status == 400
    assert error_of(response) == "invalid_request"


def test_introspection_no_store_headers(call: Caller) -> None:
    """IN-7: no-store headers on introspection responses."""
    response = call.request("/introspect", {"token": "x"})
    assert dict(response.headers)["cache-control"] == "no-store"


# -- revocation ------------------------------------------------------------------------


def test_revocation_is_idempotent(call: Caller) -> None:
    """RV-3: unknown and already-revoked tokens answer 200."""
    body = tokens(call.token(PW))
    assert call.revoke("garbage").status == 200
    assert call.revoke(body["refresh_token"]).status == 200
    assert call.revoke(body["refresh_token"]).status == 200


def test_revocation_requires_auth_and_token(call: Caller) -> None:
    """RV-1/RV-2: missing token -> 400; no credentials -> 401."""
    assert error_of(call.request("/revoke", {})) == "invalid_request"
    assert call.revoke("x", auth=None).status == 401


def test_revoke_other_clients_token_is_refused(call: Caller) -> None:
    """RV-4: client B revoking A's refresh token -> invalid_grant; it stays valid."""
    body = tokens(call.token(PW))
    response = call.revoke(body["refresh_token"], auth=("other", "other-secret"))
    assert response.status == 400
    assert error_of(response) == "invalid_grant"
    assert tokens(refresh(call, body["refresh_token"]))


def test_revoke_hint_ignored(call: Caller) -> None:
    """RV-5: an unknown token_type_hint is ignored."""
    body = tokens(call.token(PW))
    response = call.request("/revoke", {"token": body["refresh_token"], "token_type_hint": "bogus"})
    assert response.status == 200
    assert error_of(refresh(call, body["refresh_token"])) == "invalid_grant"


def test_revoke_refresh_token_revokes_access_tokens(call: Caller) -> None:
    """RV-6: revoking R2 makes A2 inactive and R2 unusable."""
    r1 = tokens(call.token(PW))
    r2 = tokens(refresh(call, r1["refresh_token"]))
    assert call.revoke(r2["refresh_token"]).status == 200
    assert call.introspect(r2["access_token"], auth=("rs", "rs-secret")) == {"active": False}
    assert error_of(refresh(call, r2["refresh_token"])) == "invalid_grant"


def test_revoke_opaque_access_token() -> None:
    """RV-6/RV-7: revoking an opaque access token deletes it; its refresh token survives."""
    call = Caller(make_issuer(token_format="opaque"))
    body = tokens(call.token(PW))
    assert call.revoke(body["access_token"]).status == 200
    assert call.introspect(body["access_token"]) == {"active": False}
    assert tokens(refresh(call, body["refresh_token"]))


def test_metadata_document(call: Caller) -> None:
    """MD-1/MD-3/MD-5: golden metadata, cacheable, with what the official MCP client needs."""
    response = call.request("/.well-known/oauth-authorization-server", method="GET")
    assert response.status == 200
    headers = dict(response.headers)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"].startswith("public, max-age=")
    assert headers["access-control-allow-origin"] == "*"
    assert json.loads(response.body) == {
        "issuer": ISSUER,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
        "jwks_uri": f"{ISSUER}/jwks.json",
        "introspection_endpoint": f"{ISSUER}/introspect",
        "revocation_endpoint": f"{ISSUER}/revoke",
        "grant_types_supported": [
            "authorization_code",
            "client_credentials",
            "password",
            "refresh_token",
        ],
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "introspection_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "none",
        ],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "dpop_signing_alg_values_supported": ["ES256", "EdDSA", "PS256", "RS256"],
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": ["read", "write"],
    }
    assert call.request("/.well-known/oauth-authorization-server").status == 405


def test_metadata_path_insertion() -> None:
    """MD-1/MD-2: an issuer with a path inserts it after the well-known prefix."""
    issuer = make_issuer(issuer="https://auth.example/t1", password=False)
    call = Caller(issuer)
    response = call.request("/.well-known/oauth-authorization-server/t1", method="GET")
    document = json.loads(response.body)
    assert document["issuer"] == "https://auth.example/t1"
    assert document["token_endpoint"] == "https://auth.example/t1/token"
    assert call.request("/t1/token", {"grant_type": "client_credentials"}).status == 200
    token = tokens(call.request("/t1/token", {"grant_type": "client_credentials"}))
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    assert claims["iss"] == document["issuer"]


def test_password_hashes_supported_formats() -> None:
    """PW-8: scrypt hashes verify and are upgraded to argon2id."""
    from scopegate.issuer._passwords import needs_rehash, verify_secret

    stored = hash_secret("pw", scheme="scrypt")
    assert stored.startswith("$scrypt$ln=17,r=8,p=1$")
    assert verify_secret(stored, "pw")
    assert not verify_secret(stored, "px")
    assert needs_rehash(stored)
    argon = hash_secret("pw")
    assert argon.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert not needs_rehash(argon)


def test_clients_with_hashed_secrets(clock: FakeClock) -> None:
    """CA-9/CA-10: argon2id client secrets authenticate (verified once, then memoised)."""
    from scopegate.issuer import Client

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issuer = make_issuer(clock=clock, password=False)
    issuer._clients._clients["hashed"] = Client(  # type: ignore[attr-defined]
        "hashed", (hash_secret("hs-secret"),), scopes=frozenset({"read"})
    )
    call = Caller(issuer)
    cc = {"grant_type": "client_credentials"}
    assert call.token(cc, auth=("hashed", "hs-secret")).status == 200
    assert call.token(cc, auth=("hashed", "hs-secret")).status == 200
    assert call.token(cc, auth=("hashed", "nope")).status == 401
