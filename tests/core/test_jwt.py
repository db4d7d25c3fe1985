"""JWTVerifier behaviour beyond the attack corpus: configuration, the AccessToken it
returns, typ policies, claims hooks and the verified-token cache."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._jwt import MAX_TOKEN_LENGTH, JWTVerifier
from tests.core.tokens import (
    AUDIENCE,
    DROP,
    EC_KEY,
    ED_KEY,
    ISSUER,
    RSA_1024,
    RSA_KEY,
    RSA_KEY_2,
    jwks,
    mint,
    static_verifier,
)


class Clock:
    """A settable Unix clock."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def reason_of(verifier: JWTVerifier, token: str) -> str:
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(token)
    return info.value.reason


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"issuer": ""}, id="empty-issuer"),
        pytest.param({"algorithms": ("HS256",)}, id="hs256"),
        pytest.param({"algorithms": ("RS256", "HS256")}, id="rs256-and-hs256"),
        pytest.param({"algorithms": ("none",)}, id="none"),
        pytest.param({"algorithms": ()}, id="no-algorithms"),
        pytest.param({"algorithms": "RS256"}, id="algorithms-string"),
        pytest.param({"algorithms": ("RS1",)}, id="unknown-algorithm"),
        pytest.param({"leeway": 301}, id="leeway-above-300"),
        pytest.param({"leeway": -1}, id="negative-leeway"),
        pytest.param({"max_lifetime": 0}, id="zero-lifetime"),
        pytest.param({"typ": "loose"}, id="bad-typ-policy"),
        pytest.param({"client_id_claims": ()}, id="no-client-id-claims"),
        pytest.param({"required_claims": "exp"}, id="required-claims-string"),
        pytest.param({"audience": ""}, id="empty-audience"),
        pytest.param({"audience": []}, id="empty-audience-list"),
        pytest.param({"cache_size": -1}, id="negative-cache-size"),
        pytest.param({"jwks_uri": "https://as.test/jwks"}, id="keys-and-jwks-uri"),
        pytest.param({"keys": RSA_1024.pem()}, id="rsa-1024-pem"),
        pytest.param({"keys": jwks(RSA_1024)}, id="rsa-1024-jwks"),
        pytest.param({"keys": "not a key"}, id="garbage-key"),
        pytest.param({"keys": {"kty": "oct", "k": "c2VjcmV0"}}, id="symmetric-jwk"),
        pytest.param({"keys": []}, id="no-keys"),
        pytest.param({"keys": 42}, id="wrong-key-type"),
    ],
)
def test_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Unsafe or inconsistent settings fail at construction with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        static_verifier(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"jwks_uri": "http://as.example/jwks"}, id="plain-http-jwks"),
        pytest.param({"jwks_uri": "ftp://as.example/jwks"}, id="ftp-jwks"),
        pytest.param({"jwks_uri": "https://as.example/jwks#frag"}, id="fragment-jwks"),
        pytest.param({"jwks_uri": None, "issuer": "http://as.example"}, id="http-issuer-discovery"),
        pytest.param({"jwks_uri": None, "issuer": "urn:as"}, id="urn-issuer-discovery"),
        pytest.param({"jwks_uri": None, "discovery": "magic"}, id="bad-discovery-kind"),
        pytest.param(
            {"jwks_uri": "https://as.example/jwks", "jwks_cooldown": -1}, id="negative-cooldown"
        ),
    ],
)
def test_network_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Key URLs must be https (http only on loopback); discovery needs a URL issuer."""
    options: dict[str, Any] = {"issuer": "https://as.example", "audience": AUDIENCE}
    options.update(kwargs)
    with pytest.raises(ConfigurationError):
        JWTVerifier(**options)


def test_loopback_http_is_allowed() -> None:
    """http is accepted for loopback JWKS URLs and issuers (local development)."""
    JWTVerifier(issuer="http://127.0.0.1:9000", audience=AUDIENCE).close()
    JWTVerifier(issuer="x", audience=AUDIENCE, jwks_uri="http://localhost:1/jwks").close()
    JWTVerifier(issuer="x", audience=AUDIENCE, jwks_uri="http://[::1]:1/jwks").close()


def test_audience_is_required_argument() -> None:
    """audience has no default: it must be chosen (None explicitly disables it)."""
    with pytest.raises(TypeError):
        JWTVerifier(issuer=ISSUER, keys=RSA_KEY.pem())  # type: ignore[call-arg]


# -- static keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param(RSA_KEY.pem(), id="pem-str"),
        pytest.param(RSA_KEY.pem().encode(), id="pem-bytes"),
        pytest.param(RSA_KEY.jwk(), id="jwk-dict"),
        pytest.param(RSA_KEY.jwk(alg=None, kid=None), id="jwk-without-alg-and-kid"),
        pytest.param(jwks(RSA_KEY), id="jwks-dict"),
        pytest.param(json.dumps(jwks(RSA_KEY)), id="jwks-json-text"),
        pytest.param([EC_KEY.pem(), RSA_KEY.jwk()], id="list-of-forms"),
    ],
)
def test_static_key_forms(keys: Any) -> None:
    """PEM, JWK, JWKS (dict or JSON text) and lists of them all verify offline."""
    verifier = static_verifier(keys=keys)
    assert verifier.verify(mint()).subject == "alice"


def test_static_pem_without_kid_serves_any_kid() -> None:
    """A single kid-less PEM key verifies tokens with or without a kid."""
    verifier = static_verifier(keys=RSA_KEY.pem())
    assert verifier.verify(mint(header={"kid": DROP})).subject == "alice"
    assert verifier.verify(mint()).subject == "alice"
    assert reason_of(verifier, mint(RSA_KEY_2)) == "bad_signature"


def test_two_kid_less_keys_are_ambiguous() -> None:
    """Two kid-less keys for the same alg never get tried one after the other."""
    verifier = static_verifier(keys=[RSA_KEY.pem(), RSA_KEY_2.pem()])
    assert reason_of(verifier, mint()) == "ambiguous_key"


def test_certificate_pem_is_accepted() -> None:
    """A PEM certificate is read for its public key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "as.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(RSA_KEY.public)
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(RSA_KEY.private, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    assert static_verifier(keys=pem).verify(mint(header={"kid": DROP})).subject == "alice"


def test_private_key_pem_is_refused() -> None:
    """A private key given as the verification key is a configuration error."""
    from cryptography.hazmat.primitives import serialization

    pem = RSA_KEY.private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigurationError, match="private key"):
        static_verifier(keys=pem)


def test_kid_less_token_with_two_matching_keys_is_ambiguous() -> None:
    """C-14: without a kid, several keys allowing the alg is ambiguous_key, not a guess."""
    verifier = static_verifier(keys=jwks(RSA_KEY, RSA_KEY_2))
    assert reason_of(verifier, mint(header={"kid": DROP})) == "ambiguous_key"
    assert verifier.verify(mint(RSA_KEY_2)).subject == "alice"


def test_kid_less_token_with_one_matching_key_is_accepted() -> None:
    """Without a kid, exactly one key allowing the alg is used."""
    verifier = static_verifier(keys=jwks(RSA_KEY, EC_KEY))
    assert verifier.verify(mint(EC_KEY, header={"kid": DROP})).subject == "alice"


def test_algorithm_allow_list_limits_keys() -> None:
    """A key type outside the allow-list cannot verify (EdDSA not allowed)."""
    verifier = static_verifier(algorithms=("RS256",), keys=jwks(RSA_KEY))
    assert reason_of(verifier, mint(ED_KEY)) == "alg_not_allowed"
    with pytest.raises(ConfigurationError):
        static_verifier(algorithms=("RS256",), keys=jwks(ED_KEY))


def test_ed25519_algorithm_name() -> None:
    """RFC 9864 'Ed25519' verifies with an Ed25519 key when allowed."""
    verifier = static_verifier(algorithms=("Ed25519",), keys=ED_KEY.jwk(alg="Ed25519"))
    assert verifier.verify(mint(ED_KEY, alg="Ed25519")).subject == "alice"


@pytest.mark.parametrize(
    "alg", [pytest.param(a, id=a.lower()) for a in ("RS384", "RS512", "PS256", "PS384", "PS512")]
)
def test_rsa_algorithm_family(alg: str) -> None:
    """An RSA key without a JWK alg verifies every allowed RSA algorithm."""
    verifier = static_verifier(algorithms=(alg,), keys=RSA_KEY.jwk(alg=None))
    assert verifier.verify(mint(alg=alg)).subject == "alice"


# -- the AccessToken ---------------------------------------------------------------------


def test_access_token_fields() -> None:
    """subject, client_id, scopes, expires_at, issuer and read-only claims are mapped."""
    exp = int(time.time()) + 300
    token = mint(scope="items:read admin", exp=exp, sub="bob", client_id="svc-b")
    result = static_verifier().verify(token)
    assert result.subject == "bob"
    assert result.client_id == "svc-b"
    assert result.scopes == frozenset({"items:read", "admin"})
    assert result.expires_at == exp
    assert result.issuer == ISSUER
    assert result.token == token
    assert token not in repr(result)
    assert isinstance(result.claims, Mapping)
    with pytest.raises(TypeError):
        result.claims["sub"] = "mallory"  # type: ignore[index]


def test_client_id_claims_order() -> None:
    """client_id is the first present of client_id_claims; 'client_id' requires one."""
    verifier = static_verifier(client_id_claims=("azp", "client_id"))
    assert verifier.verify(mint(client_id=DROP, azp="spa")).client_id == "spa"
    assert verifier.verify(mint(azp="spa")).client_id == "spa"
    assert reason_of(verifier, mint(client_id=DROP)) == "missing_claim"


def test_scope_claims_mapping() -> None:
    """Configured scope claims (scp lists, dotted paths) are united."""
    verifier = static_verifier(scope_claims=("scope", "scp", "realm_access.roles"))
    result = verifier.verify(mint(scope="a", scp=["b"], realm_access={"roles": ["c"]}))
    assert result.scopes == frozenset({"a", "b", "c"})


def test_missing_scope_is_empty_set() -> None:
    """No scope claim means no scopes, not an error."""
    assert static_verifier().verify(mint(scope=DROP)).scopes == frozenset()


def test_relaxed_required_claims() -> None:
    """Claims removed from required_claims may be absent; exp stays required."""
    verifier = static_verifier(required_claims=("iss",))
    assert verifier.verify(mint(sub=DROP, jti=DROP, iat=DROP, client_id=DROP)).subject is None
    assert reason_of(verifier, mint(exp=DROP)) == "missing_claim"
    assert reason_of(verifier, mint(aud=DROP)) == "missing_claim"


def test_audience_none_skips_aud() -> None:
    """E-25: audience=None neither requires nor checks aud."""
    verifier = static_verifier(audience=None)
    assert verifier.verify(mint(aud="anything")).subject == "alice"
    assert verifier.verify(mint(aud=DROP)).subject == "alice"


def test_several_audiences() -> None:
    """Any configured audience matches."""
    verifier = static_verifier(audience=["api://a", AUDIENCE])
    assert verifier.verify(mint(aud=["api://b", "api://a"])).subject == "alice"


def test_max_lifetime_none_disables_the_check() -> None:
    """max_lifetime=None accepts long-lived tokens."""
    verifier = static_verifier(max_lifetime=None)
    assert verifier.verify(mint(exp=int(time.time()) + 10 * 365 * 86400)).subject == "alice"


def test_lifetime_without_iat() -> None:
    """Without iat, exp too far in the future is refused by max_lifetime."""
    verifier = static_verifier(required_claims=("iss", "exp"), max_lifetime=3600)
    assert reason_of(verifier, mint(iat=DROP, exp=int(time.time()) + 7200)) == "lifetime"
    assert verifier.verify(mint(iat=DROP, exp=int(time.time()) + 600)).subject == "alice"


# -- typ policy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typ", "strict", "lenient"),
    [
        pytest.param("at+jwt", True, True, id="at-jwt"),
        pytest.param("application/at+jwt", True, True, id="application-at-jwt"),
        pytest.param("AT+JWT", True, True, id="upper"),
        pytest.param("JWT", False, True, id="jwt"),
        pytest.param("application/jwt", False, True, id="application-jwt"),
        pytest.param(DROP, False, True, id="missing"),
        pytest.param("id_token+jwt", False, False, id="other-type"),
        pytest.param(["at+jwt"], False, False, id="not-a-string"),
    ],
)
def test_typ_policies(typ: Any, strict: bool, lenient: bool) -> None:
    """strict accepts only at+jwt forms; lenient also JWT and a missing typ."""
    token = mint(header={"typ": typ})
    for policy, accepted in (("strict", strict), ("lenient", lenient)):
        verifier = static_verifier(typ=policy)
        if accepted:
            assert verifier.verify(token).subject == "alice"
        else:
            assert reason_of(verifier, token) == "wrong_type"


def test_lenient_id_token_still_fails_on_audience() -> None:
    """E-26 in lenient mode: an ID token is stopped by the audience check."""
    token = mint(header={"typ": "JWT"}, aud="svc-a", nonce="n")
    assert reason_of(static_verifier(typ="lenient"), token) == "wrong_audience"


# -- clock and leeway -------------------------------------------------------------------


def test_leeway_zero() -> None:
    """With leeway 0, a token expired one second ago is refused."""
    clock = Clock()
    verifier = static_verifier(leeway=0, clock=clock)
    token = mint(exp=int(clock.now) + 10)
    assert verifier.verify(token).subject == "alice"
    clock.now += 11
    assert reason_of(verifier, token) == "expired"


def test_leeway_bounds() -> None:
    """leeway 300 is the maximum accepted."""
    clock = Clock()
    verifier = static_verifier(leeway=300, clock=clock, cache_verified=False)
    token = mint(exp=int(clock.now))
    clock.now += 299
    assert verifier.verify(token).subject == "alice"
    clock.now += 2
    assert reason_of(verifier, token) == "expired"


# -- claims_validator -----------------------------------------------------------------


def test_claims_validator_can_reject() -> None:
    """The hook runs after the built-in checks and rejects by raising InvalidTokenError."""
    seen: list[Mapping[str, Any]] = []

    def only_alice(claims: Mapping[str, Any]) -> None:
        seen.append(claims)
        if claims["sub"] != "alice":
            raise InvalidTokenError(reason="not_alice")

    verifier = static_verifier(claims_validator=only_alice)
    assert verifier.verify(mint()).subject == "alice"
    assert reason_of(verifier, mint(sub="bob")) == "not_alice"
    assert reason_of(verifier, mint(exp=1)) == "expired"
    assert len(seen) == 2


def test_claims_validator_bug_fails_closed(caplog: pytest.LogCaptureFixture) -> None:
    """A hook raising something else rejects the token (logged), never a 500 or a pass."""

    def broken(claims: Mapping[str, Any]) -> None:
        raise KeyError("oops")

    token = mint()
    assert reason_of(static_verifier(claims_validator=broken), token) == "claims_validator"
    assert token not in caplog.text


# -- verified-token cache -------------------------------------------------------------


def test_cache_hit_rechecks_expiry() -> None:
    """A cached token is refused once exp + leeway passes on the injected clock."""
    clock = Clock()
    verifier = static_verifier(clock=clock, leeway=0)
    token = mint(exp=int(clock.now) + 60)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # served from the cache
    clock.now += 61
    assert reason_of(verifier, token) == "expired"


def test_cache_hit_rechecks_nbf() -> None:
    """A cached token is refused if the clock moves before nbf - leeway."""
    clock = Clock()
    verifier = static_verifier(clock=clock, leeway=0)
    token = mint(nbf=int(clock.now) - 1)
    verifier.verify(token)
    clock.now -= 100
    assert reason_of(verifier, token) == "not_yet_valid"


def test_cache_is_bounded() -> None:
    """The cache never holds more than cache_size entries."""
    verifier = static_verifier(cache_size=3)
    for i in range(10):
        verifier.verify(mint(jti=f"j{i}"))
    assert len(verifier._cache) == 3


def test_cache_disabled() -> None:
    """cache_verified=False verifies every time."""
    verifier = static_verifier(cache_verified=False)
    token = mint()
    assert verifier.verify(token) is not verifier.verify(token)
    assert not verifier._cache


def test_failures_are_not_cached() -> None:
    """A rejected token is rejected again (nothing negative is cached)."""
    verifier = static_verifier()
    token = mint(aud="other")
    for _ in range(2):
        assert reason_of(verifier, token) == "wrong_audience"
    assert not verifier._cache


def test_clear_cache() -> None:
    """clear_cache() empties the verified-token cache."""
    verifier = static_verifier()
    verifier.verify(mint())
    verifier.clear_cache()
    assert not verifier._cache


def test_cache_thread_safety() -> None:
    """Many threads verifying distinct and shared tokens never corrupt the cache."""
    verifier = static_verifier(cache_size=16)
    tokens = [mint(jti=f"t{i}") for i in range(40)]
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(120):
                token = tokens[(i + offset) % len(tokens)]
                assert verifier.verify(token).token == token
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(verifier._cache) <= 16


@pytest.mark.anyio
async def test_async_cache_hit() -> None:
    """averify shares the cache with verify."""
    verifier = static_verifier()
    token = mint()
    first = verifier.verify(token)
    assert await verifier.averify(token) is first


def test_max_token_length_constant() -> None:
    """The verifier's own length cap is above the bearer guard's default (8192)."""
    assert MAX_TOKEN_LENGTH >= 8192
    assert reason_of(static_verifier(), "a." * (MAX_TOKEN_LENGTH // 2 + 1)) == "too_long"


def test_repr_hides_keys() -> None:
    """repr names the issuer and key source only."""
    text = repr(static_verifier())
    assert ISSUER in text
    assert "static keys" in text


@pytest.mark.anyio
async def test_close_static() -> None:
    """close/aclose are safe on a static-key verifier."""
    verifier = static_verifier()
    verifier.close()
    await verifier.aclose()


def test_scope_memo_keeps_tokens_apart() -> None:
    """Memoised scope sets never leak between tokens with different scope claims."""
    verifier = static_verifier(cache_verified=False)
    assert verifier.verify(mint(scope="a b")).scopes == {"a", "b"}
    assert verifier.verify(mint(scope="a")).scopes == {"a"}
    assert verifier.verify(mint(scope="a b")).scopes == {"a", "b"}
    assert verifier.verify(mint(scope="a", scp="c")).scopes == {"a", "c"}
    assert verifier.verify(mint(scope="a", scp=["d"])).scopes == {"a", "d"}
    assert reason_of(verifier, mint(scope=1)) == "bad_scope_claim"
    assert reason_of(verifier, mint(scope='a"')) == "bad_scope_claim"
    assert reason_of(verifier, mint(scope='a"')) == "bad_scope_claim"


def test_public_cached_probe() -> None:
    """cached() returns the verified token on a hit and None otherwise, never raising."""
    clock = Clock()
    verifier = static_verifier(clock=clock, leeway=0)
    token = mint(exp=int(clock.now) + 30)
    assert verifier.cached(token) is None
    result = verifier.verify(token)
    assert verifier.cached(token) is result
    clock.now += 31
    assert verifier.cached(token) is None
    assert verifier.cached("garbage") is None
    assert static_verifier(cache_verified=False).cached(token) is None
