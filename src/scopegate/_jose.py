"""JOSE building blocks, each defined once for the whole library.

* base64url without padding (RFC 7515 §2), strict on decode: only the URL-safe
  alphabet, no padding, and a final character whose unused bits are zero (otherwise
  several strings decode to the same bytes);
* the compact JWS shape (RFC 7515 §7.1): three non-empty dot-separated segments, and
  :func:`encode_compact` to sign one;
* the scope-token grammar (RFC 6749 §3.3) and scope strings;
* NumericDate (RFC 7519 §2), bounded to what an authorization server can mean;
* the shape of an RFC 7638 SHA-256 thumbprint (``cnf.jkt``, ``dpop_jkt``);
* :data:`MAX_TOKEN_LENGTH`, the default cap on a token's length.

The verifier, the issuer, the testing kit and the command line all use these; no other
module re-implements them. Nothing here raises an error that carries input: failures
are :class:`JOSEError` with fixed text.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pybase64

__all__ = [
    "MAX_HEADER_LENGTH",
    "MAX_NUMERIC_DATE",
    "MAX_TOKEN_LENGTH",
    "JOSEError",
    "b64url_decode",
    "b64url_encode",
    "compact_json",
    "encode_compact",
    "is_numeric_date",
    "is_scope_string",
    "is_scope_token",
    "is_thumbprint",
    "looks_like_jws",
    "split_compact",
]

#: Default cap on an access token's length, in characters (attacks.md A-15). Real access
#: tokens are far shorter; the cap is checked before any parsing.
MAX_TOKEN_LENGTH = 8192

#: Longest JOSE header segment accepted, in base64url characters, checked before it is
#: decoded. A real access-token header (``alg``, ``kid``, ``typ``) is under 300; the
#: cap keeps the only JSON parsed before the signature check small, so a crafted header
#: costs about what a bad signature costs (scopegate never uses ``x5c`` chains).
MAX_HEADER_LENGTH = 2048

#: Latest NumericDate accepted: the last second of year 9999. JSON integers are
#: unbounded, and one beyond float range would overflow leeway and TTL arithmetic.
MAX_NUMERIC_DATE = 253_402_300_799


class JOSEError(ValueError):
    """Input that is not well-formed JOSE (fixed message, no input echoed)."""


# -- base64url ---------------------------------------------------------------------

# Maps "-" "_" to the standard alphabet, and "+" "/" "=" of the *input* to "!", which
# the strict decoder refuses like every other foreign byte: one C call checks the
# alphabet and decodes. The decoder is pybase64's (SIMD; its ``altchars`` would let "+"
# and "/" through, hence the translation): a 342-character RS256 signature decodes in
# 0.40 µs against 0.83 µs with binascii (timeit on the bench machine), which is most
# of what took the RS256 validation ÷ raw verify figure over 1.5 (issue 11).
_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
# A final character may carry unused bits; they must be zero (RFC 4648 §3.5).
# _TAIL_OK[(len % 4) << 8 | last byte]: may a segment of that length end in that byte?
_TAIL_OK = bytes(
    rest == 0 or (rest == 2 and byte in b"AQgw") or (rest == 3 and byte in b"AEIMQUYcgkosw048")
    for rest in range(4)
    for byte in range(256)
)
_PADDING = (b"", b"===", b"==", b"=")


def b64url_encode(data: bytes) -> str:
    """Base64url of *data* without padding (RFC 7515 §2)."""
    # binascii: for the short values encoded on the request path (a 32-byte ``ath``
    # digest) it is faster than pybase64 (0.12 against 0.15 µs).
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URL).decode()


_TO_URL = bytes.maketrans(b"+/", b"-_")


def b64url_decode(segment: bytes | str, *, canonical: bool = True) -> bytes:
    """Decode strict unpadded base64url (RFC 7515 §2).

    Args:
        segment: The encoded text.
        canonical: Also refuse non-zero unused bits in the last character (JWS
            segments: otherwise several strings decode to the same bytes). Key members
            of a JWKS are decoded with ``canonical=False``.

    Raises:
        JOSEError: A byte outside the URL-safe alphabet (padding included), an
            impossible length, or (when *canonical*) non-zero unused bits.
    """
    raw = segment.encode("ascii", "replace") if isinstance(segment, str) else segment
    if not raw:
        return b""
    rest = len(raw) & 3
    if rest == 1 or (canonical and not _TAIL_OK[rest << 8 | raw[-1]]):
        raise JOSEError("not canonical base64url")
    try:
        return pybase64.b64decode(raw.translate(_TO_STD) + _PADDING[rest], None, True)
    except binascii.Error as exc:  # pybase64 raises binascii's error (a ValueError)
        raise JOSEError("not base64url") from exc


# -- compact serialization ----------------------------------------------------------


def looks_like_jws(token: str) -> bool:
    """True when *token* has the shape of a compact JWS: exactly three dot-separated parts.

    Only the shape is judged (opaque tokens practically never have two dots); a token
    that has it and is not a valid JWS fails JWT verification, as it should.
    """
    return token.count(".") == 2


def split_compact(token: str, max_length: int = MAX_TOKEN_LENGTH) -> tuple[bytes, int, int]:
    """The ASCII bytes of a compact JWS and the positions of its two dots.

    Checks the length (first, so an oversized token costs nothing else), that the token
    is ASCII, and that it has exactly three non-empty segments. The segments' alphabet
    is checked when they are decoded (:func:`b64url_decode`).

    Raises:
        JOSEError: ``"too long"`` or ``"malformed"``.
    """
    if len(token) > max_length:
        raise JOSEError("too long")
    if not token.isascii():
        raise JOSEError("malformed")
    raw = token.encode("ascii")
    first = raw.find(b".")
    second = raw.find(b".", first + 1)
    if (
        first <= 0  # no dot, or an empty header
        or second <= first + 1  # one dot only, or an empty payload
        or second == len(raw) - 1  # an empty signature
        or raw.find(b".", second + 1) != -1  # more than three parts (a JWE has five)
    ):
        raise JOSEError("malformed")
    return raw, first, second


def compact_json(value: Any) -> bytes:
    """*value* as compact JSON (no spaces), UTF-8: the form signed into JWS segments."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_compact(
    header: Mapping[str, Any] | bytes,
    payload: Mapping[str, Any] | bytes,
    sign: Callable[[bytes], bytes],
) -> str:
    """Sign and serialize a compact JWS (RFC 7515 §7.1).

    Args:
        header: The protected header, as a mapping or as exact JSON bytes.
        payload: The payload, as a mapping (serialized with :func:`compact_json`) or
            exact bytes (tests use this to sign deliberately odd JSON).
        sign: Signs the ASCII signing input and returns the JWS signature bytes.
    """
    head = header if isinstance(header, bytes) else compact_json(dict(header))
    body = payload if isinstance(payload, bytes) else compact_json(dict(payload))
    signing_input = f"{b64url_encode(head)}.{b64url_encode(body)}"
    return f"{signing_input}.{b64url_encode(sign(signing_input.encode('ascii')))}"


# -- scopes -------------------------------------------------------------------------

#: RFC 6749 §3.3 ``scope-token = 1*( %x21 / %x23-5B / %x5D-7E )``.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# The bytes of a scope string: scope-token characters and the space separating them.
_SCOPE_STRING_BYTES = bytes(b for b in range(0x20, 0x7F) if b not in (0x22, 0x5C))


_THUMBPRINT = re.compile(r"[A-Za-z0-9_-]{43}")


def is_thumbprint(value: object) -> bool:
    """True when *value* looks like an RFC 7638 SHA-256 JWK thumbprint: base64url of 32
    bytes (43 characters), as in ``cnf.jkt`` (RFC 9449 §6.1) and ``dpop_jkt`` (§10)."""
    return type(value) is str and _THUMBPRINT.fullmatch(value) is not None


def is_scope_token(value: object) -> bool:
    """True when *value* is one RFC 6749 §3.3 scope-token (a ``str``, no spaces)."""
    return type(value) is str and SCOPE_TOKEN.fullmatch(value) is not None


def is_scope_string(value: str) -> bool:
    """True when every character of *value* may appear in a space-delimited scope string.

    Linear in the length of *value*; empty tokens (double spaces) are tolerated and
    dropped by whoever splits the string. Two C passes (encode, then delete every
    allowed byte): 1.3 µs for a 500-scope string, against 3.8 µs for a regular
    expression.
    """
    return value.isascii() and not value.encode("ascii").translate(None, _SCOPE_STRING_BYTES)


def scope_tokens(values: Iterable[object]) -> tuple[str, ...]:
    """*values* if each is a scope-token; raises :class:`JOSEError` otherwise."""
    items = tuple(values)
    if not all(is_scope_token(v) for v in items):
        raise JOSEError("not a scope-token")
    return items  # type: ignore[return-value]


# -- NumericDate --------------------------------------------------------------------


def is_numeric_date(value: object) -> bool:
    """True for a JSON number that is a usable NumericDate (RFC 7519 §2).

    ``bool`` is refused (it is an ``int`` in Python), as are strings, NaN and
    infinities, negative values and anything after year 9999. The comparison runs
    before any arithmetic, so a 400-digit integer cannot overflow anything.
    """
    kind = type(value)
    return (kind is int or kind is float) and 0 <= value <= MAX_NUMERIC_DATE  # type: ignore[operator]
