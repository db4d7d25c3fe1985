"""Property tests: scopegate's base64url and ECDSA signature conversion against oracles.

``b64url_decode`` decodes with pybase64 after its own alphabet translation; the oracle
here is the rule written out plainly with the standard library (the URL-safe alphabet
only, no padding, a length that is not 1 mod 4, zero unused bits when canonical), then
``base64.urlsafe_b64decode``. ``_der_signature`` builds DER from the bytes of R || S; the
oracle is ``cryptography``'s ``encode_dss_signature`` of the two integers.
"""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given
from hypothesis import strategies as st

from scopegate._jose import JOSEError, b64url_decode, b64url_encode
from scopegate._keys import _der_signature
from tests.fuzz.profile import count, fuzz_settings

_URL_ALPHABET = re.compile(rb"[A-Za-z0-9_-]*")


def oracle(raw: bytes, canonical: bool) -> bytes | None:
    """What b64url_decode must return for *raw*, or None when it must refuse it."""
    if not _URL_ALPHABET.fullmatch(raw) or len(raw) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    if canonical and b64url_encode(data).encode() != raw:
        return None  # non-zero unused bits: another string decodes to the same bytes
    return data


_SYMBOLS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_FOREIGN = b"+/= \t\r\n.!\x00\x80\xff"


@st.composite
def segments(draw: st.DrawFn) -> bytes:
    """URL-safe text of any length, sometimes with one foreign byte put in."""
    raw = bytearray(draw(st.lists(st.sampled_from(_SYMBOLS), max_size=48)))
    if raw and draw(st.booleans()):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.sampled_from(_FOREIGN))
    return bytes(raw)


@fuzz_settings(dev=500, ci=5000)
@given(raw=segments(), canonical=st.booleans(), as_text=st.booleans())
def test_b64url_decode_agrees_with_the_oracle(raw: bytes, canonical: bool, as_text: bool) -> None:
    count("jose.b64url")
    expected = oracle(raw, canonical)
    segment: bytes | str = raw.decode("latin-1") if as_text else raw
    if expected is None:
        with pytest.raises(JOSEError):
            b64url_decode(segment, canonical=canonical)
    else:
        assert b64url_decode(segment, canonical=canonical) == expected


@fuzz_settings(dev=300, ci=3000)
@given(data=st.binary(max_size=300))
def test_b64url_round_trip(data: bytes) -> None:
    count("jose.b64url-round-trip")
    encoded = b64url_encode(data)
    assert encoded == base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    assert b64url_decode(encoded) == data


@st.composite
def signatures(draw: st.DrawFn) -> tuple[bytes, int]:
    """R || S for P-256, P-384 or P-521, with leading zeros and high bits both likely."""
    size = draw(st.sampled_from([32, 48, 66]))
    halves = []
    for _ in range(2):
        zeros = draw(st.sampled_from([0, 0, 1, 2, size]))
        body = draw(st.binary(min_size=size - zeros, max_size=size - zeros))
        if body:  # the first byte decides the zero DER prepends: its edges, often
            first = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, body[0]]))
            body = bytes((first,)) + body[1:]
        halves.append(bytes(zeros) + body)
    return halves[0] + halves[1], size


@fuzz_settings(dev=500, ci=5000)
@given(case=signatures())
def test_der_signature_agrees_with_cryptography(case: tuple[bytes, int]) -> None:
    count("jose.der-signature")
    signature, size = case
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    assert _der_signature(signature, size) == encode_dss_signature(r, s)
