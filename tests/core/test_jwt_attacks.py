"""The attack corpus (spec/attacks.md sections B, C, D, E, I) against JWTVerifier.

Every case runs through ``verify`` and ``averify`` and must end exactly as listed: the
token accepted, or an ``InvalidTokenError`` with a given ``reason`` and a fixed
description. Keys are static here (no network); key-set failures are in test_jwks*.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopegate._errors import InvalidTokenError
from scopegate._jwt import JWTVerifier
from tests.core.tokens import (
    AUDIENCE,
    DROP,
    EC384_KEY,
    EC_KEY,
    ED_KEY,
    ISSUER,
    RSA_KEY,
    SigningKey,
    b64url,
    claims,
    jwks,
    mint,
    sign_raw,
)

ACCEPT = "accept"
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ATTACKER = SigningKey(
    rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", kid="rsa-1"
)
ATTACKER_EC = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", kid="ec-1")
FIXED_DESCRIPTIONS = {
    "The access token is invalid",
    "The access token has expired",
    "The access token is not yet valid",
    "The access token is not intended for this resource",
    "The access token has a malformed scope claim",
    "The access token is too long",
}


def verifier() -> JWTVerifier:
    """The verifier every case runs against: static keys, several algorithms."""
    return JWTVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=jwks(RSA_KEY, EC_KEY, ED_KEY, EC384_KEY),
        algorithms=("RS256", "PS256", "ES256", "ES384", "EdDSA"),
    )


def header(**members: Any) -> str:
    """A header JSON with alg/typ/kid of RSA_KEY plus *members* (DROP removes)."""
    data: dict[str, Any] = {"alg": "RS256", "typ": "at+jwt", "kid": RSA_KEY.kid}
    data.update(members)
    return json.dumps({k: v for k, v in data.items() if v is not DROP})


def payload(**overrides: Any) -> str:
    """The claim set JSON."""
    return json.dumps(claims(**overrides))


def segments(token: str) -> list[str]:
    return token.split(".")


def with_signature(token: str, signature: bytes) -> str:
    """*token* with its signature segment replaced."""
    h, p, _ = token.split(".")
    return f"{h}.{p}.{b64url(signature)}"


def es_signature(token: str) -> tuple[int, int]:
    import base64

    sig = base64.urlsafe_b64decode(token.split(".")[2] + "==")
    return int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")


def high_s_twin() -> tuple[str, str]:
    token = mint(EC_KEY)
    r, s = es_signature(token)
    twin = with_signature(token, r.to_bytes(32, "big") + (P256_N - s).to_bytes(32, "big"))
    return token, twin


def flip_last_char(token: str) -> str:
    """Change the unused low bits of the signature's final base64url character."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = token[-1]
    return token[:-1] + alphabet[alphabet.index(last) + 1]


def deep(n: int) -> str:
    return "[" * n + "]" * n


def now() -> int:
    return int(time.time())


Case = Callable[[], str]

CASES: list[Any] = [
    # ---- B. compact serialization and encoding --------------------------------------
    pytest.param(lambda: mint() + ".x", "malformed", id="b1-extra-dots"),
    pytest.param(lambda: ".".join(segments(mint())[:2]), "malformed", id="b2-two-segments"),
    pytest.param(
        lambda: ".".join(segments(mint())[:2]) + ".", "malformed", id="b3-signature-stripped"
    ),
    pytest.param(lambda: "..", "malformed", id="b4-empty-segments"),
    pytest.param(lambda: "." + ".".join(segments(mint())[1:]), "malformed", id="b4-empty-header"),
    pytest.param(
        lambda: segments(mint())[0] + ".." + segments(mint())[2], "malformed", id="b4-empty-payload"
    ),
    pytest.param(
        lambda: ".".join([b64url('{"alg":"RSA-OAEP","enc":"A256GCM"}'), "a", "b", "c", "d"]),
        "malformed",
        id="b5-jwe-five-segments",
    ),
    pytest.param(lambda: mint(header={"cty": "JWT"}), "unsupported_header", id="b6-nested-cty-jwt"),
    pytest.param(
        lambda: json.dumps({"payload": segments(mint())[1], "signatures": [{"signature": "x"}]}),
        "malformed",
        id="b7-json-serialization",
    ),
    pytest.param(lambda: mint().replace(".", ".!!", 1), "malformed", id="b8-non-base64url"),
    pytest.param(lambda: mint() + "==", "malformed", id="b9-padded-signature"),
    pytest.param(
        lambda: (lambda t: b64url(header()) + "=." + ".".join(segments(t)[1:]))(mint()),
        "malformed",
        id="b9-padded-header",
    ),
    pytest.param(lambda: flip_last_char(mint()), "malformed", id="b10-non-canonical-final-char"),
    pytest.param(lambda: "+" + mint()[1:], "malformed", id="b11-standard-alphabet-plus"),
    pytest.param(lambda: mint()[:-1] + "/", "malformed", id="b11-standard-alphabet-slash"),
    pytest.param(lambda: sign_raw("not json", payload()), "malformed", id="b12-header-not-json"),
    pytest.param(lambda: sign_raw(b"\xff\xfe{}", payload()), "malformed", id="b12-header-bad-utf8"),
    pytest.param(
        lambda: sign_raw(header(), b'{"sub":"\xff"}'), "malformed", id="b12-payload-bad-utf8"
    ),
    pytest.param(lambda: sign_raw('["RS256"]', payload()), "malformed", id="b13-header-array"),
    pytest.param(lambda: sign_raw('"RS256"', payload()), "malformed", id="b13-header-string"),
    pytest.param(lambda: sign_raw(header(), "[1, 2]"), "malformed", id="b13-payload-array"),
    pytest.param(lambda: sign_raw(header(), "42"), "malformed", id="b13-payload-number"),
    pytest.param(
        lambda: sign_raw('{"alg":"HS256","alg":"RS256","typ":"at+jwt","kid":"rsa-1"}', payload()),
        "malformed",
        id="b14-duplicate-header-member",
    ),
    pytest.param(
        lambda: sign_raw(header(), payload()[:-1] + ', "sub": "admin"}'),
        "malformed",
        id="b15-duplicate-claim",
    ),
    pytest.param(
        lambda: sign_raw(header(), payload(exp=DROP)[:-1] + ', "exp": NaN}'),
        "malformed",
        id="b16-nan-exp",
    ),
    pytest.param(
        lambda: sign_raw(header(), payload()[:-1] + ', "x": Infinity}'),
        "malformed",
        id="b16-infinity-unchecked-claim",
    ),
    pytest.param(
        lambda: sign_raw(header()[:-1] + ', "x": -Infinity}', payload()),
        "malformed",
        id="b16-infinity-header",
    ),
    pytest.param(
        lambda: sign_raw(header()[:-1] + f', "x": {deep(1000)}}}', payload()),
        "malformed",
        id="b17-deep-header",
    ),
    pytest.param(
        lambda: sign_raw(header()[:-1] + f', "x": {deep(40)}}}', payload()),
        "malformed",
        id="b17-header-over-depth-cap",
    ),
    pytest.param(
        lambda: sign_raw(header(), payload()[:-1] + f', "x": {deep(1000)}}}'),
        "malformed",
        id="b18-deep-payload",
    ),
    pytest.param(
        lambda: sign_raw(header(), payload()[:-1] + ', "x": ' + "9" * 5000 + "}"),
        "malformed",
        id="b19-huge-integer",
    ),
    pytest.param(lambda: "a" * 20000, "too_long", id="b-too-long"),
    pytest.param(lambda: mint() + "é", "malformed", id="b-non-ascii"),
    # ---- C. JOSE header ---------------------------------------------------------------
    *[
        pytest.param(
            lambda alg=alg: sign_raw(header(alg=alg), payload()).rsplit(".", 1)[0] + ".AAAA",
            "alg_not_allowed",
            id=f"c1-alg-{name}",
        )
        for alg, name in (
            ("none", "none"),
            ("None", "capitalised-none"),
            ("nOnE", "mixed-case-none"),
            ("NONE", "upper-none"),
            ("", "empty"),
        )
    ],
    pytest.param(
        lambda: sign_raw(header(alg="none"), payload()).rsplit(".", 1)[0] + ".",
        "malformed",
        id="c1-alg-none-empty-signature",
    ),
    pytest.param(
        lambda: sign_raw(header(alg=DROP), payload()), "alg_not_allowed", id="c2-alg-missing"
    ),
    pytest.param(
        lambda: sign_raw(header(alg=["RS256"]), payload()), "alg_not_allowed", id="c2-alg-array"
    ),
    pytest.param(
        lambda: sign_raw(header(alg={"a": 1}), payload()), "alg_not_allowed", id="c2-alg-object"
    ),
    pytest.param(
        lambda: sign_raw(header(alg=256), payload()), "alg_not_allowed", id="c2-alg-number"
    ),
    pytest.param(
        lambda: _hs256_with_public_pem(),
        "alg_not_allowed",
        id="c3-hs256-signed-with-public-pem",
    ),
    pytest.param(lambda: mint(alg="PS256"), "key_alg_mismatch", id="c9-ps256-header-rs256-key"),
    pytest.param(
        lambda: mint(EC_KEY, header={"kid": EC384_KEY.kid}),
        "key_alg_mismatch",
        id="c10-es256-header-p384-key",
    ),
    pytest.param(
        lambda: mint(header={"kid": "../../dev/null"}), "unknown_key", id="c11-kid-path-traversal"
    ),
    pytest.param(lambda: mint(header={"kid": "' OR 1=1 --"}), "unknown_key", id="c11-kid-sql"),
    pytest.param(lambda: mint(header={"kid": "k" * 1000}), "bad_kid", id="c11-kid-1kb"),
    # A header segment over MAX_HEADER_LENGTH is refused before it is decoded.
    pytest.param(lambda: mint(header={"kid": "k" * 2000}), "malformed", id="c11-header-over-cap"),
    pytest.param(lambda: mint(header={"kid": 'a"b'}), "unknown_key", id="c11-kid-quote"),
    pytest.param(
        lambda: mint(header={"kid": "a\r\nSet-Cookie: x=y"}), "bad_kid", id="c11-kid-crlf"
    ),
    pytest.param(lambda: mint(header={"kid": ""}), "bad_kid", id="c11-kid-empty"),
    pytest.param(lambda: mint(header={"kid": 7}), "bad_kid", id="c12-kid-int"),
    pytest.param(lambda: mint(header={"kid": ["rsa-1"]}), "bad_kid", id="c12-kid-list"),
    pytest.param(
        lambda: mint(ATTACKER, header={"jku": "https://evil.example/jwks"}),
        "bad_signature",
        id="c15-jku-attacker-key",
    ),
    pytest.param(
        lambda: mint(ATTACKER, header={"x5u": "https://evil.example/cert"}),
        "bad_signature",
        id="c15-x5u-attacker-key",
    ),
    pytest.param(
        lambda: mint(ATTACKER, header={"jwk": ATTACKER.jwk()}),
        "bad_signature",
        id="c16-embedded-jwk",
    ),
    pytest.param(lambda: mint(ATTACKER, header={"x5c": ["MIIB"]}), "bad_signature", id="c17-x5c"),
    pytest.param(
        lambda: mint(header={"crit": ["exp_ext"], "exp_ext": 1}), "crit", id="c18-crit-unknown"
    ),
    pytest.param(lambda: mint(header={"crit": []}), "crit", id="c19-crit-empty"),
    pytest.param(lambda: mint(header={"crit": "exp"}), "crit", id="c19-crit-not-list"),
    pytest.param(lambda: mint(header={"crit": ['a"\r\nX: y']}), "crit", id="i2-crit-crlf-name"),
    pytest.param(lambda: mint(header={"b64": False}), "unsupported_header", id="c20-b64-false"),
    pytest.param(
        lambda: mint(header={"b64": False, "crit": ["b64"]}), "crit", id="c20-b64-in-crit"
    ),
    pytest.param(lambda: mint(header={"zip": "DEF"}), "unsupported_header", id="c21-zip"),
    pytest.param(lambda: mint(header={"typ": DROP}), "wrong_type", id="c22-typ-missing"),
    *[
        pytest.param(lambda typ=typ: mint(header={"typ": typ}), "wrong_type", id=f"c22-typ-{name}")
        for typ, name in (
            ("JWT", "upper-jwt"),
            ("jwt", "jwt"),
            ("application/jwt", "application-jwt"),
            ("id_token+jwt", "id-token"),
            ("at+jwt ", "trailing-space"),
            ("", "empty"),
        )
    ],
    pytest.param(lambda: mint(header={"typ": 1}), "wrong_type", id="c22-typ-number"),
    pytest.param(lambda: mint(header={"typ": "AT+JWT"}), ACCEPT, id="c23-typ-upper"),
    pytest.param(
        lambda: mint(header={"typ": "application/AT+JWT"}), ACCEPT, id="c23-typ-application"
    ),
    pytest.param(lambda: mint(header={"typ": "at+jwt"}), ACCEPT, id="c23-typ-canonical"),
    pytest.param(lambda: mint(header={"cty": "json"}), "unsupported_header", id="c24-cty"),
    pytest.param(lambda: mint(header={"enc": "A256GCM"}), "unsupported_header", id="c24-enc"),
    # ---- D. signature and cryptography ------------------------------------------------
    pytest.param(lambda: mint(ATTACKER), "bad_signature", id="d1-attacker-rsa-key"),
    pytest.param(lambda: mint(ATTACKER_EC), "bad_signature", id="d1-attacker-ec-key"),
    pytest.param(
        lambda: with_signature(mint(EC_KEY), bytes(64)), "bad_signature", id="d2-psychic-zero"
    ),
    pytest.param(
        lambda: with_signature(mint(EC_KEY), P256_N.to_bytes(32, "big") * 2),
        "bad_signature",
        id="d2-psychic-r-s-n",
    ),
    pytest.param(
        lambda: (lambda t: with_signature(t, encode_dss_signature(*es_signature(t))))(mint(EC_KEY)),
        "bad_signature",
        id="d3-der-signature",
    ),
    pytest.param(
        lambda: (lambda t: with_signature(t, b"\x01" * 63))(mint(EC_KEY)),
        "bad_signature",
        id="d4-63-bytes",
    ),
    pytest.param(
        lambda: (lambda t: with_signature(t, b"\x01" * 65))(mint(EC_KEY)),
        "bad_signature",
        id="d4-65-bytes",
    ),
    pytest.param(lambda: high_s_twin()[1], ACCEPT, id="d5-high-s-twin"),
    pytest.param(lambda: mint(ED_KEY), ACCEPT, id="d8-eddsa"),
    pytest.param(
        lambda: mint(header={"kid": EC_KEY.kid}), "key_alg_mismatch", id="d9-rs256-token-ec-key"
    ),
    pytest.param(
        lambda: with_signature(mint(), b"\x00" * 256), "bad_signature", id="d-rsa-zero-signature"
    ),
    # ---- E. claims --------------------------------------------------------------------
    pytest.param(lambda: mint(exp=DROP), "missing_claim", id="e1-exp-missing"),
    pytest.param(lambda: mint(iat=DROP), "missing_claim", id="e2-iat-missing"),
    pytest.param(lambda: mint(sub=DROP), "missing_claim", id="e2-sub-missing"),
    pytest.param(lambda: mint(jti=DROP), "missing_claim", id="e2-jti-missing"),
    pytest.param(lambda: mint(client_id=DROP), "missing_claim", id="e3-client-id-missing"),
    pytest.param(lambda: mint(exp=now() - 120), "expired", id="e4-expired"),
    pytest.param(lambda: mint(exp=now() - 30), ACCEPT, id="e5-expired-within-leeway"),
    pytest.param(lambda: mint(nbf=now() + 3600), "not_yet_valid", id="e6-nbf-future"),
    pytest.param(lambda: mint(nbf=now() + 30), ACCEPT, id="e6-nbf-within-leeway"),
    pytest.param(
        lambda: mint(iat=now() + 86400, exp=now() + 86400 + 600),
        "issued_in_future",
        id="e7-iat-future",
    ),
    # A NumericDate after year 9999 is not a date (and would overflow arithmetic).
    pytest.param(lambda: mint(exp=10**30), "bad_claim_type", id="e8-exp-never"),
    # No maximum lifetime by default: authorization servers issue tokens for days
    # (Authlib 10 days, Auth0 up to 30). See test_max_lifetime_when_configured.
    pytest.param(lambda: mint(iat=now(), exp=now() + 10 * 365 * 86400), ACCEPT, id="e8-ten-years"),
    pytest.param(lambda: mint(exp="9999999999"), "bad_claim_type", id="e9-exp-string"),
    pytest.param(lambda: mint(iat=str(now())), "bad_claim_type", id="e9-iat-string"),
    pytest.param(lambda: mint(nbf=" 123 "), "bad_claim_type", id="e9-nbf-string"),
    pytest.param(lambda: mint(exp=True), "bad_claim_type", id="e10-exp-bool"),
    pytest.param(lambda: mint(iat=True), "bad_claim_type", id="e10-iat-bool"),
    pytest.param(lambda: mint(exp=None), "bad_claim_type", id="e11-exp-null"),
    pytest.param(lambda: mint(exp=[now() + 60]), "bad_claim_type", id="e11-exp-list"),
    pytest.param(lambda: mint(exp={}), "bad_claim_type", id="e11-exp-object"),
    pytest.param(
        lambda: sign_raw(header(), payload(exp=DROP)[:-1] + ', "exp": Infinity}'),
        "malformed",
        id="e12-exp-infinity",
    ),
    pytest.param(
        lambda: sign_raw(header(), payload(exp=DROP)[:-1] + ', "exp": 1e400}'),
        "malformed",
        id="e12-exp-1e400",
    ),
    pytest.param(lambda: mint(iat=[1]), "bad_claim_type", id="e13-iat-list"),
    pytest.param(lambda: mint(nbf=None), "bad_claim_type", id="e13-nbf-null"),
    pytest.param(lambda: mint(exp=now() + 600.5), ACCEPT, id="e14-exp-float"),
    pytest.param(lambda: mint(iss="https://other.test"), "wrong_issuer", id="e15-wrong-iss"),
    pytest.param(lambda: mint(iss=ISSUER + ".evil"), "wrong_issuer", id="e16-iss-suffix"),
    pytest.param(lambda: mint(iss="https://issuer"), "wrong_issuer", id="e16-iss-prefix"),
    pytest.param(lambda: mint(iss=ISSUER + "/"), "wrong_issuer", id="e17-iss-trailing-slash"),
    pytest.param(lambda: mint(iss=ISSUER.upper()), "wrong_issuer", id="e17-iss-case"),
    pytest.param(lambda: mint(iss=1), "bad_claim_type", id="e19-iss-number"),
    pytest.param(lambda: mint(iss=[ISSUER]), "bad_claim_type", id="e19-iss-list"),
    pytest.param(lambda: mint(aud="api://other"), "wrong_audience", id="e21-wrong-aud"),
    pytest.param(lambda: mint(aud=["api://other", AUDIENCE]), ACCEPT, id="e22-aud-array-contains"),
    pytest.param(lambda: mint(aud=["api://other"]), "wrong_audience", id="e22-aud-array-without"),
    pytest.param(lambda: mint(aud=DROP), "missing_claim", id="e23-aud-missing"),
    pytest.param(lambda: mint(aud=""), "bad_claim_type", id="e23-aud-empty"),
    pytest.param(lambda: mint(aud=[]), "bad_claim_type", id="e23-aud-empty-list"),
    pytest.param(lambda: mint(aud=123), "bad_claim_type", id="e23-aud-number"),
    pytest.param(lambda: mint(aud=[AUDIENCE, 5]), "bad_claim_type", id="e23-aud-mixed-list"),
    pytest.param(lambda: mint(aud=AUDIENCE.upper()), "wrong_audience", id="e24-aud-case"),
    pytest.param(lambda: mint(aud=AUDIENCE + "/"), "wrong_audience", id="e24-aud-trailing-slash"),
    pytest.param(
        lambda: mint(header={"typ": "JWT"}, aud="svc-a", nonce="n", at_hash="x"),
        "wrong_type",
        id="e26-id-token",
    ),
    pytest.param(lambda: mint(header={"typ": "logout+jwt"}), "wrong_type", id="e27-logout-token"),
    pytest.param(lambda: mint(sub=5), "bad_claim_type", id="e28-sub-number"),
    pytest.param(lambda: mint(jti=["x"]), "bad_claim_type", id="e28-jti-list"),
    pytest.param(lambda: mint(client_id=7), "bad_claim_type", id="e28-client-id-number"),
    pytest.param(lambda: mint(sub=""), "bad_claim_type", id="e28-sub-empty"),
    pytest.param(lambda: mint(scope=["admin"]), "bad_scope_claim", id="e29-scope-list"),
    pytest.param(lambda: mint(scope=1), "bad_scope_claim", id="e29-scope-number"),
    pytest.param(lambda: mint(scope={}), "bad_scope_claim", id="e29-scope-object"),
    pytest.param(lambda: mint(scope='read "admin"'), "bad_scope_claim", id="e30-scope-quote"),
    pytest.param(lambda: mint(scope="read\\admin"), "bad_scope_claim", id="e30-scope-backslash"),
    pytest.param(lambda: mint(scope="read\tadmin"), "bad_scope_claim", id="e30-scope-tab"),
    pytest.param(lambda: mint(scope="lecture:é"), "bad_scope_claim", id="e30-scope-non-ascii"),
    pytest.param(lambda: mint(scp=["a", 'b"']), "bad_scope_claim", id="e30-scp-list-quote"),
    pytest.param(lambda: mint(cnf={"jkt": "abc"}), "sender_constrained", id="e31-cnf"),
    pytest.param(
        lambda: mint(extra={"a": [1, 2]}, nested={"b": None}), ACCEPT, id="e32-extra-claims"
    ),
    pytest.param(lambda: mint(scope="read  read "), ACCEPT, id="f6-scope-whitespace"),
]


def _hs256_with_public_pem() -> str:
    import hashlib
    import hmac

    signing_input = f"{b64url(header(alg='HS256'))}.{b64url(payload())}".encode()
    sig = hmac.new(RSA_KEY.pem().encode(), signing_input, hashlib.sha256).digest()
    return f"{signing_input.decode()}.{b64url(sig)}"


def check_error(error: InvalidTokenError, expected: str) -> None:
    """Assert the reason, and that only fixed text reaches the response (I-2, I-3)."""
    assert error.reason == expected
    assert error.description in FIXED_DESCRIPTIONS
    response = error.to_response("api")
    assert response.status == 401
    for name, value in response.headers:
        assert "\r" not in value
        assert "\n" not in value
        assert name != "set-cookie"
        assert "Set-Cookie" not in value
        assert "evil" not in value


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_attack_sync(make: Callable[[], str], expected: str) -> None:
    """verify() gives the expected outcome for the corpus entry."""
    token = make()
    if expected == ACCEPT:
        assert verifier().verify(token).issuer == ISSUER
        return
    with pytest.raises(InvalidTokenError) as info:
        verifier().verify(token)
    check_error(info.value, expected)


@pytest.mark.anyio
@pytest.mark.parametrize(("make", "expected"), CASES)
async def test_attack_async(make: Callable[[], str], expected: str) -> None:
    """averify() gives the same outcome as verify()."""
    token = make()
    if expected == ACCEPT:
        assert (await verifier().averify(token)).issuer == ISSUER
        return
    with pytest.raises(InvalidTokenError) as info:
        await verifier().averify(token)
    check_error(info.value, expected)


def test_high_s_twin_is_a_distinct_cache_entry() -> None:
    """D-5: both ECDSA twins verify on their own; the cache is keyed by the full string."""
    v = verifier()
    token, twin = high_s_twin()
    assert token != twin
    assert v.verify(token).token == token
    assert v.verify(twin).token == twin


def test_explain_reports_failures_with_reason_codes() -> None:
    """explain() lists each check with the same reason codes as verify()."""
    v = verifier()
    checks = {c.check: c for c in v.explain(mint(ATTACKER, exp=now() - 3600, aud="x"))}
    assert checks["signature"].reason == "bad_signature"
    assert checks["expiry"].reason == "expired"
    assert checks["audience"].reason == "wrong_audience"
    assert checks["issuer"].passed
    assert all(c.passed for c in v.explain(mint()))


def test_explain_stops_at_malformed_token() -> None:
    """explain() on a token that is not a JWS reports only the format failure."""
    assert verifier().explain("not-a-jwt") == [("format", False, "malformed")]


def test_explain_reports_header_failures() -> None:
    """explain() reports each failing header check and skips the key lookup."""
    names = [c.check for c in verifier().explain(mint(header={"crit": [], "typ": "JWT"}))]
    assert "key" not in names
    failed = {
        c.check for c in verifier().explain(mint(header={"crit": [], "typ": "JWT"})) if not c.passed
    }
    assert failed == {"crit", "typ"}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from('AQgwaz09-_.=+/ \x00é{}"[]'), max_size=300))
def test_arbitrary_text_never_escapes_as_another_exception(text: str) -> None:
    """I-1: arbitrary text ends in InvalidTokenError with fixed text, nothing else."""
    with pytest.raises(InvalidTokenError) as info:
        STATIC.verify(text)
    assert info.value.description in FIXED_DESCRIPTIONS


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.integers(min_value=0, max_value=255))
def test_mutated_valid_token_fails_closed(position: int, byte: int) -> None:
    """Flipping one character of a valid token is rejected with InvalidTokenError."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/"
    index = position % len(VALID)
    replacement = alphabet[byte % len(alphabet)]
    mutated = VALID[:index] + replacement + VALID[index + 1 :]
    if mutated == VALID:
        return
    with pytest.raises(InvalidTokenError) as info:
        STATIC.verify(mutated)
    assert info.value.reason in REASONS


STATIC = verifier()
VALID = mint(exp=int(time.time()) + 86000)
REASONS = {
    "too_long",
    "malformed",
    "alg_not_allowed",
    "crit",
    "unsupported_header",
    "wrong_type",
    "bad_kid",
    "unknown_key",
    "ambiguous_key",
    "key_alg_mismatch",
    "bad_signature",
    "missing_claim",
    "bad_claim_type",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "issued_in_future",
    "lifetime",
    "sender_constrained",
    "bad_scope_claim",
}


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_explain_agrees_with_verify(make: Callable[[], str], expected: str) -> None:
    """explain()'s first failing check has verify()'s reason; accepted tokens pass all."""
    token = make()
    checks = verifier().explain(token)
    failures = [c.reason for c in checks if not c.passed]
    if expected == ACCEPT:
        assert failures == []
    else:
        assert failures[0] == expected


@pytest.mark.parametrize(
    ("lifetime", "expected"),
    [
        pytest.param(86400 + 1, "lifetime", id="over-max"),
        pytest.param(86400, ACCEPT, id="at-max"),
    ],
)
def test_max_lifetime_when_configured(lifetime: int, expected: str) -> None:
    """max_lifetime (off by default) refuses a token living longer than it allows."""
    strict = JWTVerifier(issuer=ISSUER, audience=AUDIENCE, keys=jwks(RSA_KEY), max_lifetime=86400)
    token = mint(iat=now(), exp=now() + lifetime)
    if expected == ACCEPT:
        assert strict.verify(token).subject == "alice"
        return
    with pytest.raises(InvalidTokenError) as info:
        strict.verify(token)
    assert info.value.reason == expected


def test_ten_day_token_is_accepted_by_default() -> None:
    """An Authlib-style 10-day access token verifies with the default settings."""
    token = mint(iat=now(), exp=now() + 10 * 86400)
    assert verifier().verify(token).subject == "alice"
