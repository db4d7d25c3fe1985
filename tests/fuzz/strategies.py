"""Hypothesis strategies for attacker-controlled input."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

B64TOKEN_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"
B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

#: Any JSON value, nested a few levels (numbers include huge ints and floats).
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

#: Printable-ish header text, including separators, quotes, CR/LF-free controls and Unicode.
header_text = st.text(
    alphabet=st.characters(min_codepoint=0x09, max_codepoint=0x24F, blacklist_characters="\r\n"),
    max_size=80,
)

b64token = st.text(alphabet=B64TOKEN_ALPHABET, min_size=1, max_size=60).map(lambda s: s) | st.text(
    alphabet=B64TOKEN_ALPHABET, min_size=1, max_size=40
).map(lambda s: s + "==")


def b64url(data: bytes) -> str:
    """Unpadded base64url, as in a compact JWS."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: Any) -> str:
    """A JSON value encoded as a compact-JWS segment."""
    return b64url(json.dumps(value).encode())


#: A three-segment compact token whose header/payload are arbitrary JSON or bytes.
jws_shaped = st.builds(
    lambda h, p, s: f"{h}.{p}.{s}",
    st.one_of(
        json_values.map(segment),
        st.binary(max_size=40).map(b64url),
        st.text(B64URL_ALPHABET, max_size=30),
    ),
    st.one_of(
        json_values.map(segment),
        st.binary(max_size=40).map(b64url),
        st.text(B64URL_ALPHABET, max_size=30),
    ),
    st.one_of(st.binary(max_size=300).map(b64url), st.text(B64URL_ALPHABET, max_size=30)),
)

#: Tokens of every shape: JWS-like, dotted, b64token, arbitrary text.
any_token = st.one_of(
    jws_shaped,
    b64token,
    st.text(max_size=100),
    st.lists(st.text(B64URL_ALPHABET, max_size=12), min_size=1, max_size=6).map(".".join),
)
