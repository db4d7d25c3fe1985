"""A strict JSON reader for security-relevant documents (JOSE headers, claims, JWKS).

Python's :mod:`json` is lenient where a parser differential becomes an attack:

* duplicate member names are accepted, the last one winning (RFC 7515 §4 and RFC 7519 §4
  require rejecting them or a defined rule; a first-wins gateway would disagree);
* ``NaN``, ``Infinity`` and ``-Infinity`` literals are accepted (RFC 8259 §6 forbids them),
  and ``1e400`` silently becomes ``inf``;
* an escape of half a surrogate pair (``"\\ud800"``) becomes a string that is not Unicode
  text (I-JSON, RFC 7493 §2.1) and fails much later, wherever it is encoded;
* deep nesting raises :class:`RecursionError`, which is not a :class:`ValueError`.

:func:`loads_object` closes all of these and accepts only a top-level JSON object. Every
failure is a :class:`StrictJSONError` (a ``ValueError``) with fixed text.

A JOSE header is parsed before its signature is checked, so the cost of every step is
linear in the input, whatever the input: each one is a C-speed pass (``bytes`` methods,
the stdlib C scanner and encoder, regular expressions that cannot backtrack), and number
literals are capped at CPython's default 4300 digits whatever the process-wide limit
(``int()`` of decimal text is quadratic). ``tests/core/hostile_tokens.py`` collects the
costliest documents known.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
import sys
from collections.abc import Callable
from itertools import accumulate
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_NUMBER_DIGITS",
    "StrictJSONError",
    "TooDeepError",
    "loads_object",
    "net_depth",
    "unescape_quotes",
]

#: Deepest nesting of arrays and objects accepted; real headers, claims and JWKS use < 5.
MAX_DEPTH = 32
#: Most digits in a row accepted in a number: CPython's default ``int`` limit (4300),
#: enforced here for every number and whatever the process-wide limit says, which an
#: application may lift (converting decimal text to ``int`` takes quadratic time).
MAX_NUMBER_DIGITS: int = sys.int_info.default_max_str_digits


class StrictJSONError(ValueError):
    """The text is not a strict JSON object (fixed message, no input echoed)."""


class TooDeepError(StrictJSONError):
    """The document nests deeper than allowed (refused before it is parsed)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise StrictJSONError("duplicate member name")
    return result


def _constant(name: str) -> Any:
    raise StrictJSONError("non-finite number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 overflows to inf: as unsafe as the Infinity literal.
        raise StrictJSONError("non-finite number")
    return value


_WHITESPACE = " \t\n\r"
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float, strict=True
)
# The decoder's own C scanner (same hooks), called without decode()'s Python wrapper.
# (typeshed types make_scanner's argument as the scanner class itself; it takes a decoder.)
_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_DECODER)  # type: ignore[arg-type]


# The same decoder without the pairs hook: the C scanner builds dicts directly. Used only
# for flat objects, where duplicates are detected by counting separators (loads_object).
_FLAT_DECODER = json.JSONDecoder(parse_constant=_constant, parse_float=_float, strict=True)
_SCAN_FLAT: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(_FLAT_DECODER)  # type: ignore[arg-type]

# A document with more objects than this is parsed without any Python hook (a hook call
# costs several times what the C scanner spends on "{}"); one pass of the C encoder then
# finds what the hooks would have (_check_encoded). Real documents stay far below. For the
# 12 KB of '{"a":[{},{},...]}' a 16 KiB token can carry: 390 us with hooks, 210 us so.
_MANY_OBJECTS = 64
_BARE_DECODER = json.JSONDecoder(parse_constant=_constant, strict=True)


def _not_json(value: object) -> Any:
    raise TypeError("not a JSON value")  # never: parsed JSON holds only JSON types


_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, check_circular=False, separators=(",", ":")
)
# The same C encoder, made once: JSONEncoder.encode makes a new one on every call.
_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    None
    if _make_encoder is None  # pragma: no cover - CPython always has the accelerator
    else _make_encoder(
        None, _not_json, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )
)


def _encode(value: dict[str, Any]) -> str:
    if _C_ENCODE is None:  # pragma: no cover - see _C_ENCODE
        return _ENCODER.encode(value)
    return "".join(_C_ENCODE(value, 0))


# _depth: the bytes that matter to nesting; brackets become signed steps (+1 / -1).
_NOT_NESTING = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")
# _long_number: digits as "0", anything else as a space.
_DIGITS = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_TOO_MANY_DIGITS = b"0" * (MAX_NUMBER_DIGITS + 1)
# Any escape of a surrogate ("\ud800" to "\udfff"): the cheap test, run only when a document
# holds a backslash (the literal prefix lets the search jump from one "\u" to the next).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# An escape of half a surrogate pair that the decoder could not pair: a high one not
# followed by a low one, or a low one not preceded by a high one (RFC 7493 §2.1). Run on
# text whose escaped backslashes are masked, so every "\u" left starts an escape. The
# lookarounds have a fixed width: no backtracking.
_UNPAIRED_SURROGATE = re.compile(
    r"\\u[dD](?:[89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    r"|[c-fC-F][0-9a-fA-F]{2}(?<!\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}))"
)


def unescape_quotes(raw: bytes) -> bytes:
    """*raw* without escaped backslashes, then escaped quotes: escapes exist only inside
    strings, so the quotes left are exactly those that open and close strings."""
    if b"\\" in raw:
        return raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    return raw


def _depth(raw: bytes) -> int:
    """Deepest nesting of brackets outside strings: exact when the brackets balance.

    Unbalanced brackets (invalid JSON, refused anyway) may read one level deeper than they
    are. Linear: a few C passes over the bytes, then one C-level sum over the brackets.
    """
    steps = unescape_quotes(raw).translate(_STEPS, _NOT_NESTING)
    if b'"' in steps:
        # Quotes alternate open/close; an adjacent pair is an empty string or the seam of
        # two strings, so dropping it first keeps only strings holding brackets to split.
        steps = b"".join(steps.replace(b'""', b"").split(b'"')[::2])
    # Removing every innermost pair lowers the deepest point of balanced brackets by
    # exactly one (the deepest brackets are innermost pairs, nothing else moves), and of
    # any brackets by at most one. It empties a flat run of siblings ("[][][]") at once.
    # (split and join: faster than replace when there are many.)
    inner = b"".join(steps.split(b"\x01\xff"))
    if not inner:
        return 1 if steps else 0
    # Runs of one direction only climb or only fall: summing four steps into one keeps
    # every maximum and shortens chains ("[[[[...") fourfold. (12 KB of nested arrays:
    # 106 us, against 165 us summing every bracket; 12 KB of "[]," 50 us against 106 us.)
    inner = inner.replace(b"\x01\x01\x01\x01", b"\x04").replace(b"\xff\xff\xff\xff", b"\xfc")
    return 1 + max(accumulate(memoryview(inner).cast("b"), initial=0))


def net_depth(raw: bytes) -> int:
    """Brackets opened minus brackets closed outside strings, in C-speed passes.

    *raw* is text passed through :func:`unescape_quotes` whose quotes pair up (it starts
    and ends outside strings). Long text is first reduced to its quotes and brackets (as
    in :func:`_depth`), and adjacent quotes, which enclose no bracket, go before the split,
    so only the strings holding brackets are split off.
    """
    if len(raw) <= 256:
        # Short text: translate's own set-up (~0.6 µs) costs more than it saves.
        if b'"' in raw:
            raw = b"".join(raw.split(b'"')[::2])
        return raw.count(b"{") + raw.count(b"[") - raw.count(b"}") - raw.count(b"]")
    steps = raw.translate(_STEPS, _NOT_NESTING)  # openers b"\x01", closers b"\xff"
    if b'"' in steps:
        steps = b"".join(steps.replace(b'""', b"").split(b'"')[::2])
    # One count: 6 KB of brackets took 7.7 µs with four, one per bracket.
    return 2 * steps.count(b"\x01") - len(steps)


def _long_number(raw: bytes) -> bool:
    if _TOO_MANY_DIGITS not in raw.translate(_DIGITS):
        return False
    # A run that long: look again outside strings (a long run of digits in a string is
    # just text). The strings go, so the check costs a split only in this rare case.
    outside = b"".join(unescape_quotes(raw).split(b'"')[::2])
    return _TOO_MANY_DIGITS in outside.translate(_DIGITS)


def _check_surrogates(text: str) -> None:
    # Called on text that parsed and holds a surrogate escape. Masking the escaped
    # backslashes leaves a backslash only where an escape starts.
    if _UNPAIRED_SURROGATE.search(text.replace("\\\\", "\x00")):
        raise StrictJSONError("unpaired surrogate")


def _check_encoded(value: dict[str, Any], text: str) -> None:
    # For dicts built without the pairs hook. The encoder refuses the inf that 1e400 may
    # have become, and every member writes one ":" outside strings, as in the input, while
    # strings keep their colons (a \u003a escape adds one). A duplicate merged away, with
    # its value, can only remove colons, so equal counts prove that none was.
    try:
        encoded = _encode(value)
    except ValueError as exc:
        raise StrictJSONError("non-finite number") from exc
    colons = text.count(":")
    if "\\" in text:
        masked = text.replace("\\\\", "\x00")
        colons += masked.count("\\u003a") + masked.count("\\u003A")
    if encoded.count(":") != colons:
        raise StrictJSONError("duplicate member name")


def loads_object(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse *data* as a strict JSON object.

    Args:
        data: UTF-8 bytes (any other encoding is refused) or text.
        max_depth: Deepest nesting accepted.

    Returns:
        The object as a ``dict``.

    Raises:
        StrictJSONError: Invalid UTF-8 or JSON, a duplicate member, a non-finite
            number, a number of more than :data:`MAX_NUMBER_DIGITS` digits, an escaped
            half of a surrogate pair (in a name or a value, at any depth), or a top
            level other than an object.
        TooDeepError: Nesting deeper than *max_depth* (found before parsing).
    """
    if isinstance(data, bytes):
        try:
            text = data.decode()
        except UnicodeDecodeError as exc:
            raise StrictJSONError("invalid UTF-8") from exc
        raw = data
    else:
        text = data
        try:
            # Text may hold raw surrogates, which no UTF-8 document can.
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise StrictJSONError("unpaired surrogate") from exc
    # A flat object: no "[" anywhere and the last "{" first (memchr-fast tests), so no
    # nested container (one would need one of those outside a string): depth 1.
    flat = "[" not in text and text.rfind("{") == 0
    size = len(text)
    objects = 1
    if not flat or max_depth < 1:
        # Counting brackets bounds the depth from above in one C-speed pass; the exact
        # (slower) measurement only runs for the rare document that could be too deep.
        objects = text.count("{")
        if objects + text.count("[") > max_depth and _depth(raw) > max_depth:
            raise TooDeepError("nesting too deep")
    if size > MAX_NUMBER_DIGITS and _long_number(raw):
        # What CPython says of such an int itself, unless its process-wide limit was lifted.
        raise StrictJSONError("invalid JSON")
    try:
        if flat:
            value, end = _SCAN_FLAT(text, 0)
            if end != size and text[end:].strip(_WHITESPACE):
                raise StrictJSONError("trailing data")
            # Duplicate members without the per-object hook: in a flat object the m
            # members are separated by m - 1 commas outside strings, and commas inside
            # strings only add to the count. So count == len(dict) - 1 proves that no
            # member was merged away (m == len). Anything else (a comma in a string, a
            # duplicate) is decided by counting colons instead, without a second parse
            # (12 KB of '"a":0,' repeated: 226 us with a second parse, 97 us so).
            if text.count(",") != len(value) - 1:
                _check_encoded(value, text)
            if "\\" not in text:
                return value  # type: ignore[no-any-return]
        elif objects > _MANY_OBJECTS:
            value = _BARE_DECODER.decode(text)
            if type(value) is dict:
                _check_encoded(value, text)
        elif text[:1] in _WHITESPACE:
            value = _DECODER.decode(text)
        else:
            # The C scanner directly: same parser, without decode()'s Python wrapper.
            value, end = _SCAN(text, 0)
            if end != size and text[end:].strip(_WHITESPACE):
                raise StrictJSONError("trailing data")
    except StrictJSONError:
        raise
    except (ValueError, RecursionError, StopIteration) as exc:
        # ValueError covers JSONDecodeError and CPython's int max-str-digits limit;
        # StopIteration is the scanner's "no JSON value here".
        raise StrictJSONError("invalid JSON") from exc
    if type(value) is not dict:
        raise StrictJSONError("not a JSON object")
    if "\\" in text and _SURROGATE_ESCAPE.search(text):
        _check_surrogates(text)
    return value
