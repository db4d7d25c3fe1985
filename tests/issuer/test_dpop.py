"""DPoP (RFC 9449) at the issuer's token endpoint, sans-io: bound tokens for every grant,
refresh-token and code binding, nonces, the attack table, settings, concurrency."""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from scopegate import MemoryReplayStore, ServiceUnavailableError
from scopegate._dpop import ReplayStore
from scopegate._errors import ConfigurationError
from scopegate._flow import Flow
from scopegate.issuer import (
    Client,
    HTTPResponse,
    Issuer,
    IssuerConfig,
    RedisStore,
    SigningKey,
    SigningKeySet,
    load_config,
)
from scopegate.testing import DPoPKey
from tests.issuer.authz_support import (
    SPA_CB,
    Browser,
    auth_params,
    build_issuer,
    location,
    pkce,
    query_of,
)
from tests.issuer.conftest import (
    AUDIENCE,
    ISSUER,
    SECRET,
    Caller,
    FakeClock,
    make_issuer,
    standard_clients,
    standard_users,
)
from tests.servers import RedisServer

TOKEN_URL = f"{ISSUER}/token"
KEY = DPoPKey.generate()
OTHER = DPoPKey.generate()
CC = {"grant_type": "client_credentials", "scope": "read"}
PW = {"grant_type": "password", "username": "alice", "password": "alice-pw"}
PUBLIC = None  # the public client sends client_id in the form, no Authorization header


def dpop(key: DPoPKey = KEY, url: str = TOKEN_URL, **kwargs: Any) -> dict[str, str]:
    """The DPoP header of a token request (htm POST, htu the token endpoint)."""
    return {"dpop": key.proof("POST", url, **kwargs)}


def body(response: HTTPResponse) -> dict[str, Any]:
    assert response.status == 200, response.body
    return dict(json.loads(response.body))


def error_of(response: HTTPResponse) -> str:
    return str(json.loads(response.body)["error"])


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.decode(token, options={"verify_signature": False}))


def assert_proof_refused(response: HTTPResponse, error: str = "invalid_dpop_proof") -> None:
    """RFC 9449 §5: a 400 with the error in the JSON body, never a challenge."""
    assert response.status == 400, response.body
    headers = dict(response.headers)
    assert "www-authenticate" not in headers
    assert headers["cache-control"] == "no-store"
    assert json.loads(response.body)["error"] == error


# -- binding, per grant ----------------------------------------------------------------


def test_client_credentials_with_a_proof_gets_a_bound_jwt(call: Caller) -> None:
    """A valid proof: token_type DPoP, cnf.jkt in the JWT and in introspection."""
    issued = body(call.token(CC, headers=dpop()))
    assert issued["token_type"] == "DPoP"
    assert claims(issued["access_token"])["cnf"] == {"jkt": KEY.jkt}
    report = call.introspect(issued["access_token"], auth=("rs", "rs-secret"))
    assert report["cnf"] == {"jkt": KEY.jkt}
    assert report["token_type"] == "DPoP"
    plain = body(call.token(CC))
    assert plain["token_type"] == "Bearer"
    assert "cnf" not in claims(plain["access_token"])
    report = call.introspect(plain["access_token"], auth=("rs", "rs-secret"))
    assert "cnf" not in report
    assert report["token_type"] == "Bearer"


def test_opaque_bound_token_reports_its_key_in_introspection() -> None:
    """An opaque token keeps its binding in the store; introspection reports cnf.jkt."""
    call = Caller(make_issuer(token_format="opaque"))
    issued = body(call.token(CC, headers=dpop()))
    assert issued["token_type"] == "DPoP"
    assert "." not in issued["access_token"]
    report = call.introspect(issued["access_token"], auth=("rs", "rs-secret"))
    assert (report["active"], report["cnf"], report["token_type"]) == (
        True,
        {"jkt": KEY.jkt},
        "DPoP",
    )


def test_confidential_refresh_token_is_not_bound(call: Caller) -> None:
    """Password grant (a confidential client): the access token is bound, the refresh
    token is not; a refresh binds its new access token to that request's proof key."""
    first = body(call.token(PW, headers=dpop()))
    assert claims(first["access_token"])["cnf"] == {"jkt": KEY.jkt}
    assert "cnf" not in call.introspect(first["refresh_token"])
    refresh = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    second = body(call.token(refresh, headers=dpop(OTHER)))
    assert second["token_type"] == "DPoP"
    assert claims(second["access_token"])["cnf"] == {"jkt": OTHER.jkt}
    refresh["refresh_token"] = second["refresh_token"]
    third = body(call.token(refresh))
    assert third["token_type"] == "Bearer"
    assert "cnf" not in claims(third["access_token"])


# -- public clients: authorization code (dpop_jkt) and refresh -------------------------


@pytest.fixture
def code_issuer(clock: FakeClock) -> Issuer:
    return build_issuer(clock=clock)


def spa_code(issuer: Issuer, **extra: str) -> tuple[str, str]:
    """Log alice in for the public client; the code and its PKCE verifier."""
    verifier, challenge = pkce()
    browser = Browser(issuer)
    page = browser.authorize(
        auth_params(client_id="spa", redirect_uri=SPA_CB, challenge=challenge, **extra)
    )
    redirect = browser.login(page)
    assert redirect.status == 303, redirect.body
    return query_of(location(redirect))["code"], verifier


def redeem(issuer: Issuer, code: str, verifier: str, key: DPoPKey | None = KEY) -> HTTPResponse:
    form = {
        "grant_type": "authorization_code",
        "client_id": "spa",
        "code": code,
        "redirect_uri": SPA_CB,
        "code_verifier": verifier,
    }
    return Caller(issuer).token(form, auth=PUBLIC, headers=dpop(key) if key else None)


def spa_refresh(issuer: Issuer, token: str, key: DPoPKey | None = KEY) -> HTTPResponse:
    form = {"grant_type": "refresh_token", "client_id": "spa", "refresh_token": token}
    return Caller(issuer).token(form, auth=PUBLIC, headers=dpop(key) if key else None)


def test_code_bound_with_dpop_jkt_needs_a_proof_with_that_key(code_issuer: Issuer) -> None:
    """RFC 9449 §10: dpop_jkt binds the code; another key, or no proof, is invalid_grant."""
    for key in (OTHER, None):
        code, verifier = spa_code(code_issuer, dpop_jkt=KEY.jkt)
        refused = redeem(code_issuer, code, verifier, key)
        assert refused.status == 400
        assert error_of(refused) == "invalid_grant"
    code, verifier = spa_code(code_issuer, dpop_jkt=KEY.jkt)
    issued = body(redeem(code_issuer, code, verifier, KEY))
    assert issued["token_type"] == "DPoP"
    assert claims(issued["access_token"])["cnf"] == {"jkt": KEY.jkt}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("too-short", id="short"),
        pytest.param("A" * 42 + "=", id="padded"),
        pytest.param("A" * 42 + "+", id="not-base64url"),
        pytest.param("A" * 44, id="long"),
    ],
)
def test_malformed_dpop_jkt_is_refused_at_the_redirect(code_issuer: Issuer, value: str) -> None:
    """A dpop_jkt that is no SHA-256 thumbprint: invalid_request to the redirect URI."""
    _, challenge = pkce()
    response = Browser(code_issuer).authorize(
        auth_params(client_id="spa", redirect_uri=SPA_CB, challenge=challenge, dpop_jkt=value)
    )
    assert response.status == 302
    assert query_of(location(response))["error"] == "invalid_request"


def test_public_refresh_token_is_bound_to_the_key(code_issuer: Issuer) -> None:
    """RFC 9449 §5: a public client's refresh token is bound; another key or no proof is
    invalid_grant and changes nothing, so the holder of the key still refreshes."""
    code, verifier = spa_code(code_issuer)
    issued = body(redeem(code_issuer, code, verifier, KEY))
    refresh_token = issued["refresh_token"]
    for key in (OTHER, None):
        refused = spa_refresh(code_issuer, refresh_token, key)
        assert refused.status == 400
        assert error_of(refused) == "invalid_grant"
    renewed = body(spa_refresh(code_issuer, refresh_token, KEY))
    assert renewed["token_type"] == "DPoP"
    assert claims(renewed["access_token"])["cnf"] == {"jkt": KEY.jkt}
    # The successor is bound to the same key.
    assert error_of(spa_refresh(code_issuer, renewed["refresh_token"], OTHER)) == "invalid_grant"
    assert body(spa_refresh(code_issuer, renewed["refresh_token"], KEY))


def test_stolen_rotated_refresh_token_without_the_key_revokes_nothing(
    code_issuer: Issuer,
) -> None:
    """Reuse detection needs the key: a thief replaying an old bound refresh token with his
    own key gets invalid_grant, and the client's current token keeps working."""
    code, verifier = spa_code(code_issuer)
    first = body(redeem(code_issuer, code, verifier, KEY))
    second = body(spa_refresh(code_issuer, first["refresh_token"], KEY))
    assert error_of(spa_refresh(code_issuer, first["refresh_token"], OTHER)) == "invalid_grant"
    assert body(spa_refresh(code_issuer, second["refresh_token"], KEY))


def test_public_refresh_with_a_proof_binds_an_unbound_family(code_issuer: Issuer) -> None:
    """A Bearer grant refreshed with a proof: the new tokens are bound to that key."""
    code, verifier = spa_code(code_issuer)
    issued = body(redeem(code_issuer, code, verifier, None))
    assert issued["token_type"] == "Bearer"
    renewed = body(spa_refresh(code_issuer, issued["refresh_token"], KEY))
    assert renewed["token_type"] == "DPoP"
    assert error_of(spa_refresh(code_issuer, renewed["refresh_token"], None)) == "invalid_grant"


# -- the attack table (RFC 9449 §4.3, §11) ------------------------------------------------


HOSTILE: list[Any] = [
    pytest.param(lambda: dpop(url=f"{ISSUER}/introspect"), "dpop_url", id="wrong-htu-path"),
    pytest.param(lambda: dpop(url="https://evil.example/token"), "dpop_url", id="wrong-htu-host"),
    pytest.param(lambda: dpop(url="http://auth.example/token"), "dpop_url", id="wrong-htu-scheme"),
    pytest.param(lambda: {"dpop": KEY.proof("GET", TOKEN_URL)}, "dpop_method", id="wrong-htm"),
    pytest.param(lambda: dpop(iat=time.time() - 300), "dpop_iat", id="stale-iat"),
    pytest.param(lambda: dpop(iat=time.time() + 60), "dpop_iat", id="future-iat"),
    pytest.param(lambda: dpop(iat=10**400), "dpop_claims", id="iat-beyond-float"),
    pytest.param(lambda: dpop(headers={"alg": "HS256"}), "dpop_alg", id="symmetric-alg"),
    pytest.param(lambda: dpop(headers={"alg": "none"}), "dpop_alg", id="alg-none"),
    pytest.param(lambda: dpop(headers={"typ": "JWT"}), "dpop_type", id="wrong-typ"),
    pytest.param(
        lambda: dpop(headers={"jwk": {**KEY.key.public_jwk(), "d": "AAAA"}}),
        "dpop_key",
        id="private-jwk",
    ),
    pytest.param(
        lambda: dpop(headers={"jwk": OTHER.key.public_jwk()}), "dpop_signature", id="other-jwk"
    ),
    pytest.param(lambda: {"dpop": dpop()["dpop"][:-4] + "AAAA"}, "dpop_signature", id="bad-sig"),
    pytest.param(lambda: dpop(claims={"jti": None}), "dpop_claims", id="no-jti"),
    pytest.param(lambda: {"dpop": "not-a-jws"}, "dpop_malformed", id="malformed"),
    pytest.param(lambda: {"dpop": ""}, "dpop_malformed", id="empty"),
    pytest.param(
        lambda: {"dpop": f"{dpop()['dpop']}, {dpop()['dpop']}"}, "dpop_multiple", id="two-proofs"
    ),
    pytest.param(lambda: {"dpop": "x" * 9000}, "dpop_too_long", id="too-long"),
]


@pytest.mark.parametrize(("headers", "reason"), HOSTILE)
def test_hostile_proofs_get_invalid_dpop_proof(
    call: Caller,
    headers: Callable[[], dict[str, str]],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every defect is 400 invalid_dpop_proof in the JSON body with a fixed description;
    no token, no challenge; the log names the check, never the proof or the secret."""
    sent = headers()
    with caplog.at_level(logging.DEBUG):
        response = call.token(CC, headers=sent)
    assert_proof_refused(response)
    assert json.loads(response.body)["error_description"] == "The DPoP proof is invalid"
    assert "access_token" not in json.loads(response.body)
    assert f"DPoP proof refused at the token endpoint ({reason})" in caplog.text
    for proof in sent["dpop"].split(", "):
        assert not proof or proof not in caplog.text
    assert SECRET not in caplog.text


def test_algorithm_outside_dpop_algorithms_is_refused() -> None:
    """dpop_algorithms is the allow-list: an EdDSA proof where only ES256 is allowed."""
    call = Caller(make_issuer(dpop_algorithms=("ES256",)))
    assert_proof_refused(call.token(CC, headers=dpop(DPoPKey.generate("EdDSA"))))
    assert body(call.token(CC, headers=dpop(KEY)))["token_type"] == "DPoP"


def test_replayed_proof_is_refused(call: Caller) -> None:
    """A proof works once: the same proof again is invalid_dpop_proof, a fresh one works."""
    sent = dpop()
    assert body(call.token(CC, headers=sent))["token_type"] == "DPoP"
    assert_proof_refused(call.token(CC, headers=sent))
    assert_proof_refused(call.token(PW, headers=sent))  # at another grant too
    assert body(call.token(CC, headers=dpop()))


def test_proof_of_a_refused_request_is_not_recorded(call: Caller) -> None:
    """The replay store records a proof only once the grant validated the request, so a
    failing request (here invalid_scope) leaves nothing behind for anyone to pile up."""
    sent = dpop()
    refused = call.token({"grant_type": "client_credentials", "scope": "admin"}, headers=sent)
    assert error_of(refused) == "invalid_scope"
    assert body(call.token(CC, headers=sent))["token_type"] == "DPoP"


def test_proof_with_ath_is_accepted(call: Caller) -> None:
    """ath belongs to resource requests; at the token endpoint it is not checked."""
    assert body(call.token(CC, headers=dpop(token="whatever")))["token_type"] == "DPoP"


def test_proof_urls_compare_after_normalisation(call: Caller) -> None:
    """htu is compared after RFC 3986 normalisation: case and default port do not matter."""
    assert body(call.token(CC, headers=dpop(url="HTTPS://AUTH.example:443/token")))


def test_htu_is_the_published_token_endpoint() -> None:
    """An issuer with a path: htu is issuer + /token, as in the metadata."""
    base = "https://auth.example/tenant-a"
    call = Caller(make_issuer(issuer=base))
    response = call.request("/tenant-a/token", CC, headers=dpop(url=f"{base}/token"))
    assert body(response)["token_type"] == "DPoP"
    response = call.request("/tenant-a/token", CC, headers=dpop(url=TOKEN_URL))
    assert_proof_refused(response)


def test_client_authentication_comes_first(call: Caller) -> None:
    """A bad secret is invalid_client even with a bad proof: the proof is not looked at."""
    response = call.token(CC, auth=("svc", "wrong"), headers={"dpop": "junk"})
    assert response.status == 401
    assert error_of(response) == "invalid_client"


# -- dpop_required, nonces, metadata -----------------------------------------------------


def test_client_that_requires_dpop_refuses_requests_without_a_proof() -> None:
    """dpop_required: no proof is invalid_request (a missing requirement, RFC 6749 §5.2;
    invalid_dpop_proof is for a proof that is there and wrong); with one, a bound token."""
    clients = [Client("svc", (SECRET,), scopes=frozenset({"read"}), dpop_required=True)]
    issuer = Issuer(IssuerConfig(issuer=ISSUER, audience=AUDIENCE), clients=clients)
    call = Caller(issuer)
    refused = call.token(CC)
    assert refused.status == 400
    assert error_of(refused) == "invalid_request"
    assert body(call.token(CC, headers=dpop()))["token_type"] == "DPoP"
    assert_proof_refused(call.token(CC, headers={"dpop": "junk"}))


def test_nonces(clock: FakeClock) -> None:
    """dpop_nonce: a proof without the nonce gets 400 use_dpop_nonce and a DPoP-Nonce; with
    it, a bound token and the next nonce; a nonce two periods old is refused again."""
    call = Caller(make_issuer(clock=clock, dpop_nonce=True))
    key = DPoPKey(SigningKey.generate("ES256"), clock=clock)
    first = call.token(CC, headers=dpop(key))
    assert_proof_refused(first, "use_dpop_nonce")
    nonce = dict(first.headers)["dpop-nonce"]
    issued = call.token(CC, headers=dpop(key, nonce=nonce))
    assert body(issued)["token_type"] == "DPoP"
    assert dict(issued.headers)["dpop-nonce"] == nonce
    assert_proof_refused(call.token(CC, headers=dpop(key, nonce="stale")), "use_dpop_nonce")
    clock.now += 600  # two NonceSource periods later
    refused = call.token(CC, headers=dpop(key, nonce=nonce))
    assert_proof_refused(refused, "use_dpop_nonce")
    assert dict(refused.headers)["dpop-nonce"] != nonce
    assert "dpop-nonce" not in dict(call.token(CC).headers)  # Bearer requests: no nonce


def test_processes_sharing_a_signing_key_agree_on_nonces(clock: FakeClock) -> None:
    """The nonce secret comes from the signing key: two issuers with one key file hand
    out nonces the other accepts; an issuer with another key does not."""
    keys = SigningKeySet(current=SigningKey.generate("ES256"))
    one = Caller(make_issuer(clock=clock, keys=keys, dpop_nonce=True))
    two = Caller(make_issuer(clock=clock, keys=keys, dpop_nonce=True))
    other = Caller(make_issuer(clock=clock, dpop_nonce=True))
    nonce = dict(one.token(CC, headers=dpop()).headers)["dpop-nonce"]
    assert body(two.token(CC, headers=dpop(nonce=nonce)))["token_type"] == "DPoP"
    assert_proof_refused(other.token(CC, headers=dpop(nonce=nonce)), "use_dpop_nonce")


def test_metadata_announces_the_proof_algorithms() -> None:
    """dpop_signing_alg_values_supported (RFC 9449 §5.1) follows dpop_algorithms."""
    issuer = make_issuer(dpop_algorithms=("EdDSA", "ES256"))
    assert issuer.metadata["dpop_signing_alg_values_supported"] == ["ES256", "EdDSA"]


def test_cors_lets_browsers_send_proofs_and_read_nonces() -> None:
    """A browser client may send DPoP (preflight) and read DPoP-Nonce."""
    call = Caller(make_issuer(cors_origins=("https://app.example",), dpop_nonce=True))
    origin = {"origin": "https://app.example"}
    preflight = call.request(
        "/token",
        method="OPTIONS",
        auth=None,
        headers={
            **origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type, dpop",
        },
    )
    assert preflight.status == 204
    assert "dpop" in dict(preflight.headers)["access-control-allow-headers"]
    response = call.token(CC, headers={**origin, **dpop()})
    assert dict(response.headers)["access-control-expose-headers"] == "dpop-nonce"


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(("HS256",), "dpop_algorithms must list asymmetric", id="symmetric"),
        pytest.param(("none",), "dpop_algorithms must list asymmetric", id="none"),
        pytest.param((), "dpop_algorithms must list asymmetric", id="empty"),
        pytest.param(("ES257",), "dpop_algorithms must list asymmetric", id="unknown"),
        pytest.param("ES256", "dpop_algorithms must be a list of strings", id="string"),
    ],
)
def test_dpop_algorithms_are_checked(value: Any, message: str) -> None:
    """Only asymmetric algorithms the library verifies (RFC 9449 §4.2)."""
    with pytest.raises(ConfigurationError, match=message):
        IssuerConfig(issuer=ISSUER, audience=AUDIENCE, dpop_algorithms=value)


def test_toml_settings(tmp_path: Path) -> None:
    """dpop_algorithms, dpop_nonce and a client's dpop_required from TOML, typed."""
    config = tmp_path / "issuer.toml"
    config.write_text(
        'issuer = "https://auth.example"\naudience = "api"\n'
        'dpop_algorithms = ["ES256"]\ndpop_nonce = true\n\n'
        '[[clients]]\nid = "svc"\nsecret = "s"\ndpop_required = true\n'
    )
    loaded = load_config(config)
    assert loaded.config.dpop_algorithms == ("ES256",)
    assert loaded.config.dpop_nonce is True
    assert loaded.clients[0].dpop_required is True


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param(
            'dpop_nonce = "true"\n',
            3,
            'dpop_nonce must be true or false (a TOML boolean), not the string "true"',
            id="nonce-string",
        ),
        pytest.param(
            'dpop_algorithms = ["HS256"]\n',
            3,
            "dpop_algorithms must list asymmetric algorithms",
            id="algorithms-symmetric",
        ),
        pytest.param(
            '[[clients]]\nid = "svc"\nsecret = "s"\ndpop_required = "yes"\n',
            6,
            '[[clients]] "svc": dpop_required must be true or false',
            id="required-string",
        ),
    ],
)
def test_toml_errors_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    """A mistyped DPoP setting names the file, the line and the table."""
    config = tmp_path / "issuer.toml"
    config.write_text('issuer = "https://auth.example"\naudience = "api"\n' + text)
    with pytest.raises(ConfigurationError) as info:
        load_config(config)
    assert str(info.value).startswith(f"{config}:{line}: {message}")


# -- the replay store: failures and concurrency ------------------------------------------


class _BrokenReplay:
    def first_use_flow(self, key: str, ttl: float) -> Flow[bool]:
        raise ServiceUnavailableError(reason="dpop_replay_unavailable", retry_after=2)
        yield  # pragma: no cover


def _issuer_with(replay: ReplayStore, **settings: Any) -> Issuer:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            IssuerConfig(issuer=ISSUER, audience=AUDIENCE, allow_password_grant=True, **settings),
            clients=standard_clients(),
            users=standard_users(),
            dpop_replay=replay,
        )


def test_replay_store_failure_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    """A replay store that cannot answer: 503 temporarily_unavailable, Retry-After, no token."""
    call = Caller(_issuer_with(_BrokenReplay()))
    sent = dpop()
    with caplog.at_level(logging.ERROR):
        response = call.token(CC, headers=sent)
    assert response.status == 503
    assert error_of(response) == "temporarily_unavailable"
    assert dict(response.headers)["retry-after"] == "2"
    assert "DPoP replay store unavailable" in caplog.text
    assert sent["dpop"] not in caplog.text
    assert body(call.token(CC))["token_type"] == "Bearer"  # Bearer requests are unaffected


def test_full_memory_replay_store_answers_503() -> None:
    """A memory store full of live proofs refuses new ones rather than forget one."""
    call = Caller(_issuer_with(MemoryReplayStore(maxsize=2)))
    assert body(call.token(CC, headers=dpop()))
    assert body(call.token(CC, headers=dpop()))
    assert call.token(CC, headers=dpop()).status == 503


def race(callers: list[Caller], headers: dict[str, str], n: int = 16) -> list[int]:
    """*n* threads send the same token request at once, spread over *callers*."""
    barrier = threading.Barrier(n)
    statuses: list[int] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        barrier.wait()
        response = callers[i % len(callers)].token(CC, headers=headers)
        with lock:
            statuses.append(response.status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return sorted(statuses)


def test_concurrent_replays_in_one_process_get_one_token(call: Caller) -> None:
    """16 threads, one proof: exactly one token, 15 invalid_dpop_proof, no 5xx."""
    assert race([call], dpop()) == [200] + [400] * 15


@pytest.mark.redis
def test_two_issuers_sharing_redis_refuse_each_others_proofs(redis_server: RedisServer) -> None:
    """Two issuers on one Redis share the replay store (the RedisStore's own prefix):
    16 threads over both, one proof, exactly one token."""
    keys = SigningKeySet(current=SigningKey.generate("ES256"))

    def make() -> Issuer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Issuer(
                IssuerConfig(issuer=ISSUER, audience=AUDIENCE),
                clients=standard_clients(),
                keys=keys,
                store=RedisStore(redis_server.url),
            )

    one, two = make(), make()
    try:
        assert race([Caller(one), Caller(two)], dpop()) == [200] + [400] * 15
        sent = dpop()
        assert body(Caller(one).token(CC, headers=sent))
        assert_proof_refused(Caller(two).token(CC, headers=sent))
    finally:
        one.close()
        two.close()
