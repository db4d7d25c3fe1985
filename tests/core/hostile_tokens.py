"""Costliest-to-reject tokens under a size cap (issue 19), for the cost tests and benchmarks.

Each shape is the JSON document that makes one step before (or just after) the signature
check do the most work a token of that size allows: deep nesting just under and over
:data:`~scopegate._jsonstrict.MAX_DEPTH`, an unterminated string full of escapes, thousands
of members or containers, the longest number literals, runs of backslashes and ``\\u``
escapes, repeated member names. Every token is rejected (no shape is a JOSE header a
verifier accepts, none holds the required claims), and a defect in the JSON itself, when
there is one, comes last, so that the whole document is read before the refusal.

Quick use::

    key = signing_key()
    verifier = hostile_verifier(key)
    for name, token in hostile_tokens(8192, key).items():
        ...  # verifier.verify(token) raises InvalidTokenError
    reference = bad_signature_token(key)   # valid header and claims, wrong signature

* ``header-<shape>`` tokens carry the shape as their JOSE header and a junk signature:
  anyone can send them, no key needed.
* ``payload-<shape>`` tokens carry it as claims under a valid header, signed by *key*:
  what a verifier parses after a good signature, and what ``explain()`` and
  ``scopegate token inspect`` parse before any.
* :func:`routed_tokens`: the shapes as claims beside a trusted ``iss``, under a valid
  header and a junk signature. Anyone can send them, and an
  :class:`~scopegate.IssuerRouter` reads the payload for ``iss`` before any signature.
* :func:`hostile_proofs`: the shapes as the claims of DPoP proofs, validly signed with a
  key of the sender's own: what a token endpoint checks before it knows the client.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from typing import Any

from scopegate._jose import MAX_HEADER_LENGTH
from scopegate._jose import b64url_encode as b64url
from scopegate._jsonstrict import MAX_DEPTH, MAX_NUMBER_DIGITS
from scopegate._jwt import JWTVerifier
from scopegate.testing import DPoPKey, SigningKey

ISSUER = "https://issuer.hostile.test"
AUDIENCE = "api://hostile"
#: An RS256 signature is 256 bytes: 342 base64url characters.
_SIGNATURE_CHARS = 342

Shape = Callable[[int], str]


def _fill(prefix: str, unit: str, suffix: str, size: int) -> str:
    """*prefix*, as many *unit* as fit in *size* characters, then *suffix*."""
    count = max(0, (size - len(prefix) - len(suffix)) // len(unit))
    return prefix + unit * count + suffix


def _open_string_over_depth(size: int) -> str:
    # The issue 19 reproducer: MAX_DEPTH + 1 "[" then an unterminated string of \".
    return _fill("[" * (MAX_DEPTH + 1) + '"', '\\"', "", size)


def _open_string_at_depth(size: int) -> str:
    # Exactly MAX_DEPTH deep, so the depth check passes and the parser reads the string.
    return _fill('{"a":' + "[" * (MAX_DEPTH - 1) + '"', '\\"', "", size)


def _nested_arrays(depth: int, block_depth: int = MAX_DEPTH) -> Shape:
    # Blocks *block_depth* deep inside {"a":[...]}; the last block is *depth* deep.
    def shape(size: int) -> str:
        block = "[" * (block_depth - 2) + "]" * (block_depth - 2) + ","
        last = "[" * (depth - 2) + "]" * (depth - 2)
        return _fill('{"a":[', block, last + "]}", size)

    return shape


def _bushy_arrays(size: int) -> str:
    # Short, branching nesting: the worst case for measuring depth, then one level too deep.
    return _fill('{"a":[', "[[[],[]],[[],[]]],", "[" * MAX_DEPTH + "]" * MAX_DEPTH + "]}", size)


def _many_members(size: int) -> str:
    # Distinct names (the memo and the duplicate check see every one); "alg" last.
    members = []
    used = len('{"alg":"RS256"}')
    index = 0
    while True:
        member = f'"{index:x}":0,'
        if used + len(member) > size:
            break
        members.append(member)
        used += len(member)
        index += 1
    return "{" + "".join(members) + '"alg":"RS256"}'


def _many_objects(size: int) -> str:
    return _fill('{"a":[', "{},", "{}]}", size)


def _many_arrays(size: int) -> str:
    return _fill('{"a":[', "[],", "[]]}", size)


def _many_floats(size: int) -> str:
    return _fill('{"a":[', "0.5,", "0.5]}", size)


def _many_numbers(size: int) -> str:
    return _fill('{"a":[', "0,", "0]}", size)


def _many_strings(size: int) -> str:
    return _fill('{"a":[', '"",', '""]}', size)


def _long_integers(size: int) -> str:
    # The longest literals accepted: converting decimal text to int is quadratic.
    return _fill('{"a":[', "9" * MAX_NUMBER_DIGITS + ",", "0]}", size)


def _huge_integer(size: int) -> str:
    return _fill('{"a":', "9", "}", size)


def _long_float(size: int) -> str:
    return _fill('{"a":0.', "1", "}", size)


def _u_escapes(size: int) -> str:
    # Valid escapes all along; a lone surrogate (I-JSON, RFC 7493 §2.1) at the very end.
    return _fill('{"a":"', "\\u0041", '\\ud800"}', size)


def _surrogate_pairs(size: int) -> str:
    return _fill('{"a":"', "\\ud83d\\ude00", '\\udc00"}', size)


def _backslashes(size: int) -> str:
    # Escaped backslashes, then a duplicate member: refused after the whole string.
    return _fill('{"a":"', "\\\\", '","a":0}', size)


def _open_backslashes(size: int) -> str:
    return _fill('{"a":"', "\\\\", "", size)


def _duplicate_members(size: int) -> str:
    return _fill("{", '"a":0,', '"a":0}', size)


def _commas_in_strings(size: int) -> str:
    # Commas inside a string defeat the flat-object comma count: colons are counted too.
    return _fill('{"a":"', ",", '","a":0}', size)


def _whitespace(size: int) -> str:
    return _fill("", " ", '{"a":0,"a":0}', size)


#: The shapes, by name: each takes a size in characters and returns JSON text of at most
#: that size (ASCII, so bytes == characters).
SHAPES: dict[str, Shape] = {
    "open-string-over-depth": _open_string_over_depth,
    "open-string-at-depth": _open_string_at_depth,
    "nested-arrays-at-depth": _nested_arrays(MAX_DEPTH),
    "nested-arrays-over-depth": _nested_arrays(MAX_DEPTH + 1),
    "short-nested-arrays": _nested_arrays(MAX_DEPTH + 1, 10),
    "bushy-arrays": _bushy_arrays,
    "many-members": _many_members,
    "many-objects": _many_objects,
    "many-arrays": _many_arrays,
    "many-floats": _many_floats,
    "many-numbers": _many_numbers,
    "many-strings": _many_strings,
    "long-integers": _long_integers,
    "huge-integer": _huge_integer,
    "long-float": _long_float,
    "u-escapes": _u_escapes,
    "surrogate-pairs": _surrogate_pairs,
    "backslashes": _backslashes,
    "open-backslashes": _open_backslashes,
    "duplicate-members": _duplicate_members,
    "commas-in-strings": _commas_in_strings,
    "whitespace": _whitespace,
}


def json_budget(segment_chars: int) -> int:
    """The most bytes whose unpadded base64url fits in *segment_chars* characters."""
    return segment_chars * 3 // 4


@functools.cache
def signing_key() -> SigningKey:
    """One RS256 key per test session (generating RSA keys is slow)."""
    return SigningKey.generate("RS256", kid="hostile-1")


def hostile_verifier(key: SigningKey, **options: Any) -> JWTVerifier:
    """A JWTVerifier trusting only *key* (static keys, no network, no verified cache)."""
    settings: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "keys": key.jwks(),
        "cache_verified": False,
    }
    settings.update(options)
    return JWTVerifier(**settings)


def valid_claims(**extra: Any) -> dict[str, Any]:
    """A claim set *hostile_verifier* accepts (ten minutes of validity from now)."""
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "svc-a",
        "iat": now,
        "exp": now + 600,
        "jti": "jti-1",
        "scope": "items:read",
        **extra,
    }


def _header(key: SigningKey) -> bytes:
    return json.dumps(
        {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}, separators=(",", ":")
    ).encode()


def bad_signature_token(key: SigningKey, cap: int | None = None) -> str:
    """A token with a valid header and claims whose signature is wrong (the reference).

    With *cap*, a filler claim makes it as long as a token of at most *cap* characters
    can be: what an unsigned token of that size costs anyway (base64, hash, signature).
    """
    claims = valid_claims()
    if cap is not None:
        room = json_budget(cap - len(b64url(_header(key))) - _SIGNATURE_CHARS - 2)
        used = len(json.dumps({**claims, "pad": ""}, separators=(",", ":")))
        claims["pad"] = "x" * (room - used)
    token = key.sign(claims)
    head, _, signature = token.rpartition(".")
    # Flip the first character: same length, same alphabet, another signature.
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def hostile_tokens(cap: int, key: SigningKey) -> dict[str, str]:
    """Every shape as a header (unsigned) and as claims (signed by *key*), <= *cap* chars.

    Args:
        cap: Longest token, in characters (8192 is the bearer guard's default cap, 16384
            the :class:`~scopegate.JWTVerifier`'s own).
        key: Signs the ``payload-*`` tokens.

    Returns:
        ``{"header-<shape>": token, "payload-<shape>": token, ...}``.
    """
    tokens: dict[str, str] = {}
    claims = b64url(json.dumps(valid_claims(), separators=(",", ":")).encode())
    header = b64url(_header(key))
    # An RS256-sized junk signature: the header is refused before it is ever checked.
    junk = "A" * _SIGNATURE_CHARS
    # The header is the only JSON parsed before the signature check, and the verifier
    # refuses a header segment over MAX_HEADER_LENGTH before decoding it: the costliest
    # unsigned tokens fill exactly that much.
    header_room = json_budget(min(cap - len(claims) - len(junk) - 2, MAX_HEADER_LENGTH))
    payload_room = json_budget(cap - len(header) - _SIGNATURE_CHARS - 2)
    for name, shape in SHAPES.items():
        tokens[f"header-{name}"] = f"{b64url(shape(header_room).encode())}.{claims}.{junk}"
        tokens[f"payload-{name}"] = key.sign_bytes(_header(key), shape(payload_room).encode())
    for name, token in tokens.items():
        assert len(token) <= cap, name
    return tokens


def routed_tokens(cap: int, key: SigningKey) -> dict[str, str]:
    """Every shape as a claim after a trusted ``iss`` (and once with no ``iss``), unsigned.

    The ``iss`` member comes last, after the shape, so a scan for it reads everything: a
    shape that is an object gets it as its last member (its depth unchanged), any other
    shape is wrapped as the value of ``x``. Tokens are at most *cap* characters, with an
    RS256-sized junk signature.
    """
    header = b64url(_header(key))
    junk = "A" * _SIGNATURE_CHARS
    tail = f',"iss":"{ISSUER}"}}'
    room = json_budget(cap - len(header) - len(junk) - 2) - len('{"x":') - len(tail)
    tokens: dict[str, str] = {}
    for name, shape in SHAPES.items():
        document = shape(room)
        if document.startswith("{") and document.endswith("}"):
            routed = (document[:-1] + tail).encode()
        else:
            routed = ('{"x":' + document + tail).encode()
        tokens[f"routed-{name}"] = f"{header}.{b64url(routed)}.{junk}"
        tokens[f"unrouted-{name}"] = f"{header}.{b64url(document.encode())}.{junk}"
    for name, token in tokens.items():
        assert len(token) <= cap, name
    return tokens


def hostile_proofs(key: DPoPKey) -> dict[str, str]:
    """Every shape as a proof's claims signed by *key*: as large as a proof's claims may
    be (``proof-<shape>``), and filling a whole 8192-character proof (``proof-8k-<shape>``)."""
    header = key._header
    room_8k = json_budget(8192 - len(b64url(header)) - 88 - 2)  # ES256: 86 characters
    proofs: dict[str, str] = {}
    for name, shape in SHAPES.items():
        proofs[f"proof-{name}"] = key.key.sign_bytes(header, shape(json_budget(4090)).encode())
        proofs[f"proof-8k-{name}"] = key.key.sign_bytes(header, shape(room_8k).encode())
    for name, proof in proofs.items():
        assert len(proof) <= 8192, name
    return proofs
