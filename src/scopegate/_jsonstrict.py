"""A strict JSON reader for security-relevant documents (JOSE headers, claims, JWKS).

Python's :mod:`json` is lenient where a parser differential becomes an attack:

* duplicate member names are accepted, the last one winning (RFC 7515 §4 and RFC 7519 §4
  require rejecting them or a defined rule; a first-wins gateway would disagree);
* ``NaN``, ``Infinity`` and ``-Infinity`` literals are accepted (RFC 8259 §6 forbids them),
  and ``1e400`` silently becomes ``inf``;
* deep nesting raises :class:`RecursionError`, which is not a :class:`ValueError`.

:func:`loads_object` closes all three and accepts only a top-level JSON object. Every
failure is a :class:`StrictJSONError` (a ``ValueError``) with fixed text.
"""

from __future__ import annotations

import json
import json.scanner
import math
import re
from collections.abc import Callable
from typing import Any

__all__ = ["MAX_DEPTH", "StrictJSONError", "loads_object"]

#: Deepest nesting of arrays and objects accepted; real headers, claims and JWKS use < 5.
MAX_DEPTH = 32

# String literals are skipped when measuring depth: brackets inside them do not nest.
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)


class StrictJSONError(ValueError):
    """The text is not a strict JSON object (fixed message, no input echoed)."""


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


def _depth(text: str) -> int:
    deepest = depth = 0
    for char in _STRINGS.sub("", text):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def loads_object(data: bytes | str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse *data* as a strict JSON object.

    Args:
        data: UTF-8 bytes (any other encoding is refused) or text.
        max_depth: Deepest nesting accepted.

    Returns:
        The object as a ``dict``.

    Raises:
        StrictJSONError: Invalid UTF-8 or JSON, a duplicate member, a non-finite
            number, nesting deeper than *max_depth*, or a top level other than an object.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise StrictJSONError("invalid UTF-8") from exc
    # A flat object: "{" first, no other "{" and no "[" anywhere (memchr-fast tests), so
    # no nested container (one would need one of those outside a string): depth 1.
    flat = text[:1] == "{" and "[" not in text and text.find("{", 1) == -1
    # Otherwise counting brackets bounds the depth from above in one C-speed pass; the
    # exact (slower) measurement only runs for the rare document that could be too deep.
    if (
        (not flat or max_depth < 1)
        and text.count("[") + text.count("{") > max_depth
        and _depth(text) > max_depth
    ):
        raise StrictJSONError("nesting too deep")
    try:
        if flat:
            value, end = _SCAN_FLAT(text, 0)
            if end != len(text) and text[end:].strip(_WHITESPACE):
                raise StrictJSONError("trailing data")
            # Duplicate members without the per-object hook: in a flat object the m
            # members are separated by m - 1 commas outside strings, and commas inside
            # strings only add to the count. So count == len(dict) - 1 proves that no
            # member was merged away (m == len). Anything else (a comma in a string, a
            # duplicate) is decided by the member-by-member parse below.
            if text.count(",") == len(value) - 1:
                return value  # type: ignore[no-any-return]
        if text[:1] in _WHITESPACE:
            value = _DECODER.decode(text)
        else:
            # The C scanner directly: same parser, without decode()'s Python wrapper.
            value, end = _SCAN(text, 0)
            if end != len(text) and text[end:].strip(_WHITESPACE):
                raise StrictJSONError("trailing data")
    except StrictJSONError:
        raise
    except (ValueError, RecursionError, StopIteration) as exc:
        # ValueError covers JSONDecodeError and CPython's int max-str-digits limit;
        # StopIteration is the scanner's "no JSON value here".
        raise StrictJSONError("invalid JSON") from exc
    if type(value) is not dict:
        raise StrictJSONError("not a JSON object")
    return value
