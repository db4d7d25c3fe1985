"""Property test: the strict JSON reader agrees with a plain oracle on every path.

``loads_object`` takes different routes by shape (flat objects, nested ones, documents
with many objects, long documents) and checks some rules by counting rather than
parsing. The oracle is Python's ``json`` with hooks, then a walk of the result: a
duplicate member, a non-finite number, nesting deeper than ``MAX_DEPTH``, a top level
other than an object or a string holding a surrogate is refused; anything else must come
back equal. Documents are serialised values with raw edits that reach each route.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scopegate._jsonstrict import MAX_DEPTH, StrictJSONError, loads_object
from tests.fuzz.profile import count, fuzz_settings


class _RefusedError(Exception):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _RefusedError
    return result


def _constant(name: str) -> Any:
    raise _RefusedError


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _RefusedError
    return value


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [*value, *(s for v in value.values() for s in _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def oracle(text: str) -> dict[str, Any] | None:
    """What loads_object must return for *text*, or None when it must refuse it."""
    try:
        value = json.loads(
            text, object_pairs_hook=_pairs, parse_constant=_constant, parse_float=_float
        )
    except (ValueError, RecursionError, _RefusedError):
        return None
    if type(value) is not dict or _depth(value) > MAX_DEPTH:
        return None
    if any(0xD800 <= ord(c) <= 0xDFFF for s in _strings(value) for c in s):
        return None
    return value


keys = st.text(max_size=6) | st.sampled_from(["a", "b", ":", ",", "\\", '"', "[{"])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["a:b", "x,y", "[[", "\\u", "\\"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=20,
)
_ESCAPES = ["\\ud83d", "\\ude00", "\\uD800", "\\udc00", "\\uDBFF", "\\\\", "\\u0041", "x"]
_MEMBERS = {
    # Each inserts one member, raw, at the start of the top-level object.
    "duplicate": None,  # the first existing key again
    "escaped-duplicate": None,  # "a" spelled "\u0061", when "a" exists
    "surrogates": None,  # a string of surrogate escapes, paired or not
    "many-objects": '"m":[' + ",".join(["{}"] * 70) + "]",
    "deep": None,  # 30 to 34 nested arrays
    "escaped-colon": '"c":"\\u003a"',
    "overflow": '"f":1e400',
    "nan": '"n":NaN',
    "longest-int": '"i":' + "9" * 4300,
    "too-long-int": '"i":' + "9" * 4301,
}


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A serialised object, then raw edits reaching every route of loads_object."""
    value = draw(st.dictionaries(keys, values, max_size=5))
    text = json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        separators=draw(st.sampled_from([(",", ":"), (", ", ": ")])),
    )
    for edit in draw(st.lists(st.sampled_from(sorted(_MEMBERS)), max_size=3)):
        member = _MEMBERS[edit]
        if edit == "duplicate":
            if not value:
                continue
            member = json.dumps(next(iter(value))) + ":0"
        elif edit == "escaped-duplicate":
            if "a" not in value:
                continue
            member = '"\\u0061":0'
        elif edit == "surrogates":
            escapes = draw(st.lists(st.sampled_from(_ESCAPES), min_size=1, max_size=4))
            member = '"s":"' + "".join(escapes) + '"'
        elif edit == "deep":
            levels = draw(st.integers(MAX_DEPTH - 2, MAX_DEPTH + 2))
            member = '"d":' + "[" * levels + "]" * levels
        assert member is not None
        body = text.strip()[1:]
        text = "{" + member + ("" if body.lstrip() == "}" else ",") + body
    if draw(st.booleans()):
        text = draw(st.sampled_from([" ", "\n", "\t "])) + text + " "
    return text


@fuzz_settings(dev=300, ci=3000)
@given(text=documents())
def test_agrees_with_the_oracle(text: str) -> None:
    """Accepted exactly when the oracle accepts, with the same value, from bytes or text."""
    count("json.oracle")
    expected = oracle(text)
    for data in (text.encode(), text):
        if expected is None:
            try:
                loads_object(data)
            except StrictJSONError:
                continue
            raise AssertionError(f"accepted: {text[:200]!r}")
        assert loads_object(data) == expected
