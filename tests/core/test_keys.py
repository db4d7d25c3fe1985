"""JWK parsing and key binding (scopegate._keys): which keys are usable, for which algs."""

from __future__ import annotations

from typing import Any

import pytest

from scopegate._errors import InvalidTokenError
from scopegate._keys import (
    KeySet,
    UnusableKeyError,
    check_algorithms,
    parse_jwk,
    parse_jwks,
)
from tests.core.tokens import EC384_KEY, EC_KEY, ED_KEY, RSA_1024, RSA_KEY, RSA_KEY_2

ALL = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)


@pytest.mark.parametrize(
    ("jwk", "expected"),
    [
        pytest.param(RSA_KEY.jwk(), {"RS256"}, id="rsa-with-alg"),
        pytest.param(
            RSA_KEY.jwk(alg=None),
            {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
            id="rsa-derived",
        ),
        pytest.param(EC_KEY.jwk(alg=None), {"ES256"}, id="p256-derived"),
        pytest.param(EC384_KEY.jwk(alg=None), {"ES384"}, id="p384-derived"),
        pytest.param(ED_KEY.jwk(alg=None), {"EdDSA", "Ed25519"}, id="ed25519-derived"),
        pytest.param(ED_KEY.jwk(alg="Ed25519"), {"EdDSA", "Ed25519"}, id="ed25519-rfc9864-name"),
        pytest.param(RSA_KEY.jwk(use="sig"), {"RS256"}, id="use-sig"),
        pytest.param(RSA_KEY.jwk(key_ops=["verify"]), {"RS256"}, id="key-ops-verify"),
        pytest.param(RSA_KEY.jwk(x5c=["bm90IGEgY2VydA"], x5t="abc"), {"RS256"}, id="x5c-ignored"),
    ],
)
def test_usable_keys_and_their_algorithms(jwk: dict[str, Any], expected: set[str]) -> None:
    """Each key is bound to its JWK alg, or to the algs its type and curve allow."""
    assert parse_jwk(jwk, ALL).algorithms == expected


def test_algorithms_are_intersected_with_the_allow_list() -> None:
    """A derived RSA key only allows the configured RSA algorithms."""
    assert parse_jwk(RSA_KEY.jwk(alg=None), frozenset({"PS256", "ES256"})).algorithms == {"PS256"}


@pytest.mark.parametrize(
    "jwk",
    [
        pytest.param(RSA_1024.jwk(), id="d6-rsa-1024"),
        pytest.param({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}, id="g5-oct"),
        pytest.param(RSA_KEY.jwk(alg="HS256"), id="rsa-labelled-hs256"),
        pytest.param(RSA_KEY.jwk(alg="none"), id="rsa-labelled-none"),
        pytest.param(RSA_KEY.jwk(use="enc"), id="g5-use-enc"),
        pytest.param(RSA_KEY.jwk(key_ops=["encrypt"]), id="key-ops-encrypt"),
        pytest.param(RSA_KEY.jwk(key_ops="verify"), id="key-ops-not-list"),
        pytest.param(RSA_KEY.jwk(alg="ES256"), id="alg-type-mismatch"),
        pytest.param(EC_KEY.jwk(alg="ES384"), id="ec-curve-alg-mismatch"),
        pytest.param(ED_KEY.jwk(alg="RS256"), id="okp-alg-mismatch"),
        pytest.param(RSA_KEY.jwk(d="AQAB"), id="private-member"),
        pytest.param(RSA_KEY.jwk(alg=7), id="alg-not-string"),
        pytest.param(RSA_KEY.jwk(kid=5), id="kid-not-string"),
        pytest.param(RSA_KEY.jwk(e="AAE"), id="rsa-exponent-one"),
        pytest.param(RSA_KEY.jwk(e="AAI"), id="rsa-exponent-even"),
        pytest.param(RSA_KEY.jwk(n="a+b/"), id="rsa-n-not-base64url"),
        pytest.param(RSA_KEY.jwk(n=""), id="rsa-n-empty"),
        pytest.param(RSA_KEY.jwk(n=123), id="rsa-n-number"),
        pytest.param(EC_KEY.jwk(crv="P-192"), id="ec-unknown-curve"),
        pytest.param(EC_KEY.jwk(x="AAAA"), id="ec-short-coordinate"),
        pytest.param(EC_KEY.jwk(y=EC_KEY.jwk()["x"]), id="ec-point-off-curve"),
        pytest.param({"kty": "OKP", "crv": "Ed448", "x": "AAAA"}, id="d8-ed448"),
        pytest.param(ED_KEY.jwk(x="AAAA"), id="ed25519-short"),
        pytest.param({"kty": "XYZ"}, id="unknown-kty"),
        pytest.param({}, id="empty-object"),
        pytest.param(["not", "a", "jwk"], id="not-an-object"),
        pytest.param(RSA_KEY.jwk(), id="alg-outside-allow-list"),
    ],
)
def test_unusable_keys(jwk: Any) -> None:
    """Weak, symmetric, mislabelled, private or malformed keys are refused."""
    allowed = ALL - {"RS256"} if jwk == RSA_KEY.jwk() else ALL
    with pytest.raises(UnusableKeyError):
        parse_jwk(jwk, allowed)


def test_jwks_skips_unusable_keys(caplog: pytest.LogCaptureFixture) -> None:
    """G-5/D-6: a JWKS keeps its usable keys and logs the skipped ones."""
    doc = {
        "keys": [
            RSA_1024.jwk(),
            {"kty": "oct", "k": "AAAA"},
            RSA_KEY.jwk(use="enc"),
            EC_KEY.jwk(),
            "junk",
        ]
    }
    keys = parse_jwks(doc, ALL)
    assert [k.kid for k in keys.keys] == [EC_KEY.kid]
    assert "rsa-weak" in caplog.text


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param({}, id="no-keys-member"),
        pytest.param({"keys": {}}, id="keys-not-list"),
        pytest.param({"keys": []}, id="empty"),
        pytest.param({"keys": [RSA_1024.jwk()]}, id="only-unusable"),
    ],
)
def test_jwks_without_usable_keys(doc: dict[str, Any]) -> None:
    """G-2: a set without a usable key is an error (the fetcher turns it into 503)."""
    with pytest.raises(UnusableKeyError):
        parse_jwks(doc, ALL)


def test_duplicate_kid_is_ambiguous_for_the_same_alg() -> None:
    """G-4: two keys with one kid and the same alg cannot be told apart."""
    keys = parse_jwks({"keys": [RSA_KEY.jwk(), RSA_KEY_2.jwk(kid=RSA_KEY.kid)]}, ALL)
    with pytest.raises(InvalidTokenError) as info:
        keys.find(RSA_KEY.kid, "RS256")
    assert info.value.reason == "ambiguous_key"


def test_duplicate_kid_with_distinct_algs_is_resolved_by_alg() -> None:
    """One kid for an RSA and an EC key is resolved by the token's alg."""
    keys = parse_jwks({"keys": [RSA_KEY.jwk(kid="k"), EC_KEY.jwk(kid="k")]}, ALL)
    found = keys.find("k", "ES256")
    assert found is not None
    assert found.algorithms == {"ES256"}


def test_find_unknown_kid_returns_none() -> None:
    """An unknown kid is None so the JWKS cache can decide to refresh."""
    keys = KeySet([parse_jwk(RSA_KEY.jwk(), ALL)])
    assert keys.find("other", "RS256") is None


def test_reuse_keeps_unchanged_key_objects() -> None:
    """Refreshing an unchanged key keeps its object (verified-token cache stays valid)."""
    first = parse_jwks({"keys": [RSA_KEY.jwk(), EC_KEY.jwk()]}, ALL)
    second = parse_jwks({"keys": [RSA_KEY.jwk()]}, ALL).reuse(first)
    assert second.keys[0] is first.keys[0]
    assert first.keys[0] in second
    assert first.keys[1] not in second


@pytest.mark.parametrize(
    "algorithms",
    [
        pytest.param(["HS256"], id="hs256"),
        pytest.param(["hs512"], id="hs512-lower"),
        pytest.param(["none"], id="none"),
        pytest.param(["NONE"], id="none-upper"),
        pytest.param([], id="empty"),
        pytest.param(["ES256K"], id="unsupported"),
    ],
)
def test_check_algorithms_refuses(algorithms: list[str]) -> None:
    """Symmetric, none, unknown or empty allow-lists are configuration errors."""
    from scopegate._errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        check_algorithms(algorithms)
