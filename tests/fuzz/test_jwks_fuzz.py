"""Property tests for JWK / JWK Set parsing (what a hostile or broken AS can serve).

Every document is a usable key set or ``UnusableKeyError``; every refused key is
skipped, never a crash; a symmetric, private, encryption or short RSA key is never
usable, whatever else the JWK says.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate._keys import KeySet, UnusableKeyError, parse_jwks
from tests.fuzz import material
from tests.fuzz.profile import attempt, count, fuzz_settings
from tests.fuzz.strategies import b64url, json_values

ALLOWED = frozenset({"RS256", "PS256", "ES256", "EdDSA"})
REAL = material.jwks()["keys"]


def _flip(value: str, at: int) -> str:
    """*value* with one bit of its decoded bytes flipped (or a byte added if undecodable)."""
    try:
        raw = bytearray(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
    except ValueError:
        return value + "A"
    if not raw:
        return "AQ"
    raw[at % len(raw)] ^= 0x01
    return b64url(bytes(raw))


@st.composite
def jwks_entries(draw: st.DrawFn) -> Any:
    """Real keys with members changed, removed or added; or arbitrary JSON."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(json_values)
    key = dict(draw(st.sampled_from(REAL)))
    for _ in range(draw(st.integers(1, 3))):
        member = draw(
            st.sampled_from(sorted({*key, "d", "k", "use", "key_ops", "alg", "crv", "kty"}))
        )
        change = draw(st.integers(0, 3))
        if change == 0:
            key.pop(member, None)
        elif change == 1 and isinstance(key.get(member), str) and member in ("n", "e", "x", "y"):
            key[member] = _flip(key[member], draw(st.integers(0, 300)))
        elif change == 2:
            key[member] = draw(
                st.sampled_from(["sig", "enc", "oct", "HS256", "none", "P-384", "Ed448", "RSA", ""])
                | json_values
            )
        else:
            key[member] = draw(st.binary(max_size=40).map(b64url))
    return key


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    """Skipped keys log a warning each; keep DEBUG capture like the other suites."""
    caplog.set_level(logging.DEBUG)


@fuzz_settings(dev=200, ci=1500)
@given(entries=st.lists(jwks_entries(), max_size=4), extra=json_values)
def test_jwks_parsing_total(entries: list[Any], extra: Any) -> None:
    """A JWK Set gives usable keys or UnusableKeyError; refused keys never verify anything."""
    count("jwks.parse")
    keyset, error = attempt(
        lambda: parse_jwks({"keys": entries, "x": extra}, ALLOWED), UnusableKeyError
    )
    if error is not None:
        return
    assert isinstance(keyset, KeySet)
    usable = {k.kid for k in keyset.keys}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        forbidden = (
            entry.get("kty") == "oct"
            or any(m in entry for m in ("d", "p", "q", "dp", "dq", "qi", "k"))
            or entry.get("use") not in (None, "sig")
        )
        if forbidden and isinstance(entry.get("kid"), str):
            same_kid = [
                e for e in entries if isinstance(e, dict) and e.get("kid") == entry.get("kid")
            ]
            if len(same_kid) == 1:
                assert entry.get("kid") not in usable


@fuzz_settings(dev=100, ci=1000)
@given(document=json_values)
def test_jwks_document_shapes(document: Any) -> None:
    """Any JSON value as the ``keys`` member is a key set or UnusableKeyError."""
    count("jwks.document")
    _, error = attempt(lambda: parse_jwks({"keys": document}, ALLOWED), UnusableKeyError)
    assert error is None or isinstance(error, UnusableKeyError)
