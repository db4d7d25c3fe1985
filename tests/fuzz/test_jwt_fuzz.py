"""Property tests for the compact JWS parser, header policy and claim checks.

Three properties, each against a verifier with the issuer's static keys and a fixed
clock:

* arbitrary strings and JWS-shaped junk are ``invalid_token``, never anything else;
* issuer-signed tokens with a random header and random claims are accepted exactly when
  an independent oracle of the RFC 9068 / RFC 8725 rules says so;
* any mutation of a valid token is rejected.

No exception text or repr ever contains the token or an attacker-chosen header value.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm

from scopegate._errors import BearerError, InvalidTokenError
from scopegate._jwt import JWTVerifier
from scopegate._token import AccessToken
from tests.fuzz import material
from tests.fuzz.profile import count, fuzz_settings
from tests.fuzz.strategies import any_token, b64url, json_values

NOW = 1_900_000_000.0
LEEWAY = 60
MAX_LIFETIME = 86400
CANARY = "CanaryKid"
_SCOPE_CHARS = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def _verifier() -> JWTVerifier:
    return JWTVerifier(
        issuer=material.ISSUER,
        audience=material.AUDIENCE,
        keys=material.jwks(),
        leeway=LEEWAY,
        max_lifetime=MAX_LIFETIME,
        clock=lambda: NOW,
    )


VERIFIER = _verifier()
_RS256 = RSAAlgorithm(RSAAlgorithm.SHA256)


def _sign(header: Any, claims: Any, *, raw_header: bytes | None = None) -> str:
    """Sign arbitrary header/payload JSON with the issuer's RSA key (RS256)."""
    h = b64url(raw_header if raw_header is not None else json.dumps(header).encode())
    p = b64url(json.dumps(claims).encode())
    signing_input = f"{h}.{p}".encode()
    return f"{h}.{p}.{b64url(_RS256.sign(signing_input, material.rsa_key()))}"


def _rejected(token: str, *, secrets: tuple[str, ...] = ()) -> InvalidTokenError:
    """Assert *token* is invalid_token, with nothing of it in the exception."""
    with pytest.raises(BearerError) as info:
        VERIFIER.verify(token)
    exc = info.value
    assert isinstance(exc, InvalidTokenError), (type(exc), exc.reason)
    # Whatever is left once the library's fixed texts are removed must be token-free.
    text = str(exc) + repr(exc)
    for fixed in (exc.description, exc.reason or "", type(exc).__name__):
        text = text.replace(fixed, "")
    for secret in (token, *secrets):
        if len(secret) >= 8:
            assert secret not in text
    return exc


@fuzz_settings(dev=800, ci=5000)
@given(token=any_token)
def test_junk_is_invalid_token(token: str) -> None:
    """Arbitrary strings are invalid_token: never accepted, never another exception."""
    count("jwt.junk")
    _rejected(token)
    # The diagnostics path (``scopegate token inspect``) never raises either.
    checks = VERIFIER.explain(token)
    assert checks
    assert not all(check.passed for check in checks)


# -- header policy -----------------------------------------------------------------

headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "rs256", "HS256", "none", "ES256", "PS256", "", 256])
        | json_values,
        "typ": st.sampled_from(
            ["at+jwt", "AT+JWT", "application/at+jwt", "JWT", "jwt", "", None, 1]
        ),
        "kid": st.sampled_from(
            [material.RSA_KID, material.EC_KID, "", "x" * 257, 7, CANARY + "\r\n"]
        )
        | st.text(max_size=10),
        "crit": st.sampled_from([["exp"], [], "b64", None]),
        "b64": st.booleans(),
        "zip": st.just("DEF"),
        "cty": st.just("JWT"),
        "enc": st.just("A256GCM"),
        "jku": st.just("https://evil.example/jwks"),
        "jwk": st.just({"kty": "RSA"}),
        "x5c": st.just(["AAAA"]),
        "x5u": st.just("https://evil.example/x5"),
        "extra": json_values,
    },
)


def header_oracle(header: dict[str, Any]) -> bool:
    """True when the header passes RFC 8725 policy for our RS256-only key."""
    if header.get("alg") != "RS256":
        return False
    if any(name in header for name in ("crit", "b64", "zip", "cty", "enc")):
        return False
    typ = header.get("typ")
    if type(typ) is not str or typ.lower() not in ("at+jwt", "application/at+jwt"):
        return False
    # Without kid exactly one key allows RS256, so it is found.
    return bool(header.get("kid", material.RSA_KID) == material.RSA_KID)


@fuzz_settings(dev=200, ci=1500)
@given(header=headers)
def test_header_policy(header: dict[str, Any]) -> None:
    """A signed token is accepted exactly when its header passes the policy oracle."""
    count("jwt.header_policy")
    token = _sign(header, material.claims(iat=int(NOW), exp=int(NOW) + 300))
    if header_oracle(header):
        assert isinstance(VERIFIER.verify(token), AccessToken)
    else:
        kid = header.get("kid")
        _rejected(token, secrets=(kid,) if isinstance(kid, str) else ())


@fuzz_settings(dev=100, ci=500)
@given(raw=st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_header_bytes(raw: bytes) -> None:
    """A signed token whose header is arbitrary bytes or JSON is invalid_token."""
    count("jwt.header_bytes")
    _rejected(_sign(None, material.claims(), raw_header=raw))


# -- claim checks ------------------------------------------------------------------

_time: st.SearchStrategy[Any] = st.one_of(
    st.integers(min_value=-200_000, max_value=200_000).map(lambda d: int(NOW) + d),
    st.floats(min_value=NOW - 200_000, max_value=NOW + 200_000),
    st.sampled_from([True, False, None, "1900000300", float("inf"), 10**30, [1], {}]),
    # Integers no float can hold: arithmetic with them overflows unless done exactly.
    st.sampled_from([10**400, -(10**400), 2**1024]),
)
_text_claim = st.sampled_from(["user-1", "", 5, None, True, ["a"]]) | st.text(max_size=5)
_scope: st.SearchStrategy[Any] = st.sampled_from(
    [
        "items:read",
        "a b",
        "  a  ",
        "",
        'bad"quote',
        "back\\slash",
        "caf\u00e9",
        ["items:read"],
        1,
        {},
        None,
    ]
)

claim_sets = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from(
            [
                material.ISSUER,
                material.ISSUER + "/",
                "https://evil.example",
                material.ISSUER.upper(),
                1,
                None,
            ]
        ),
        "aud": st.sampled_from(
            [
                material.AUDIENCE,
                [material.AUDIENCE],
                ["other", material.AUDIENCE],
                ["other"],
                [],
                "",
                [material.AUDIENCE, 5],
                material.AUDIENCE + "/",
                5,
                None,
            ]
        ),
        "sub": _text_claim,
        "client_id": _text_claim,
        "jti": _text_claim,
        "exp": _time,
        "iat": _time,
        "nbf": _time,
        "scope": _scope,
        "scp": _scope,
        "permissions": _scope,
        "cnf": st.just({"jkt": "abc"}),
        "extra": json_values,
    },
)


def _numeric(value: Any) -> bool:
    return type(value) is int or (type(value) is float and math.isfinite(value))


def _frac(value: Any) -> Fraction:
    return Fraction(value)


def _near(value: Any, edge: float) -> bool:
    return _numeric(value) and abs(Fraction(value) - Fraction(edge)) < 1


def claims_oracle(c: dict[str, Any]) -> bool:
    """RFC 9068 §2.2 / §4 validity of *c* at NOW, written independently of the library."""
    required = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
    if any(name not in c for name in required):
        return False
    if any(name in c and not _numeric(c[name]) for name in ("exp", "iat", "nbf")):
        return False
    if any(not (type(c[n]) is str and c[n]) for n in ("iss", "sub", "client_id", "jti")):
        return False
    aud = c["aud"]
    if type(aud) is str:
        if aud != material.AUDIENCE:
            return False
    elif not (
        type(aud) is list and aud and all(type(a) is str for a in aud) and material.AUDIENCE in aud
    ):
        return False
    if c["iss"] != material.ISSUER:
        return False
    # Exact arithmetic: a NumericDate may be an integer far beyond float range.
    now, exp, iat = Fraction(NOW), Fraction(c["exp"]), Fraction(c["iat"])
    if exp + LEEWAY <= now or iat > now + LEEWAY:
        return False
    if "nbf" in c and Fraction(c["nbf"]) > now + LEEWAY:
        return False
    if exp - iat > MAX_LIFETIME or "cnf" in c:
        return False
    scopes: set[str] = set()
    for name in ("scope", "scp", "permissions"):
        value = c.get(name)
        if value is None:
            continue
        if type(value) is str:
            scopes.update(s for s in value.split(" ") if s)
        elif name != "scope" and type(value) is list and all(type(v) is str for v in value):
            scopes.update(v for v in value if v and " " not in v)
        else:
            return False
    return all(_SCOPE_CHARS.fullmatch(s) for s in scopes)


@fuzz_settings(dev=500, ci=4000)
@given(claims=claim_sets)
def test_claims_match_oracle(claims: dict[str, Any]) -> None:
    """An issuer-signed token is accepted exactly when the claims oracle accepts it."""
    count("jwt.claims_oracle")
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    # Stay clear of the boundaries, where float rounding makes both answers defensible.
    assume(not _near(exp, NOW - LEEWAY) and not _near(iat, NOW + LEEWAY))
    assume(not _near(nbf, NOW + LEEWAY))
    assume(
        not (_numeric(exp) and _numeric(iat) and abs(_frac(exp) - _frac(iat) - MAX_LIFETIME) < 1)
    )
    token = _sign({"alg": "RS256", "typ": "at+jwt", "kid": material.RSA_KID}, claims)
    if claims_oracle(claims):
        access = VERIFIER.verify(token)
        assert access.subject == claims["sub"]
        assert access.client_id == claims["client_id"]
        assert access.token == token
        assert token not in repr(access)
    else:
        _rejected(token)


# -- mutations of a valid token ----------------------------------------------------

VALID = material.mint(iat=int(NOW), exp=int(NOW) + 300)


@st.composite
def mutations(draw: st.DrawFn) -> str:
    """A valid token with one or more characters replaced, inserted or removed."""
    token = VALID
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(len(token) - 1, 0)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "pad"]))
        char = draw(st.sampled_from("AaZz09-_.=+/ Q"))
        if op == "replace":
            token = token[:at] + char + token[at + 1 :]
        elif op == "insert":
            token = token[:at] + char + token[at:]
        elif op == "delete":
            token = token[:at] + token[at + 1 :]
        elif op == "truncate":
            token = token[:at]
        else:
            token += "="
    return token


def test_valid_token_accepted() -> None:
    """The unmutated token verifies (so rejections below are meaningful)."""
    assert VERIFIER.verify(VALID).token == VALID


@fuzz_settings(dev=400, ci=3000)
@given(token=mutations())
def test_mutations_rejected(token: str) -> None:
    """Any change to a valid token's characters makes it invalid_token."""
    count("jwt.mutations")
    assume(token != VALID)
    _rejected(token)
    # The async driver shares the logic: same verdict.
    with pytest.raises(InvalidTokenError):
        asyncio.run(VERIFIER.averify(token))
