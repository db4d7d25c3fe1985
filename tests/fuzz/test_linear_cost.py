"""The strict JSON reader's cost grows linearly with its input, whatever the input (issue 19);
so does IssuerRouter's search for ``iss``, which reads a payload before any signature.

Hypothesis draws a pattern, a prefix, a unit and a suffix made of building blocks that
stress each step of ``loads_object`` (string and escape scanning, backslash runs,
surrogate escapes, nesting, number literals, members and duplicates, whitespace), and the
unit is repeated to fill a header-sized segment and one four times larger. Linear code
takes about four times as long on the larger one, quadratic code sixteen: the property
asserts less than ten. Each timing is the best of several runs with the garbage collector
paused (as :mod:`timeit` does), and a slow pattern is measured again before it fails.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from scopegate._errors import InvalidTokenError
from scopegate._issuers import _issuer_of
from scopegate._jsonstrict import MAX_DEPTH, StrictJSONError, loads_object
from tests.core.hostile_tokens import SHAPES
from tests.fuzz.profile import count, fuzz_settings

#: Characters of the smaller document: about the JSON of an 8 KiB token, above every
#: threshold where loads_object switches strategy (the 4300-digit cap, 64 objects...),
#: whose one-off step would otherwise read as growth.
SIZE = 6000
GROWTH = 4
#: Linear growth gives GROWTH (4), quadratic GROWTH ** 2 (16).
MAX_RATIO = 10
#: Every timing sample runs the parse for at least this long (seconds).
SAMPLE = 0.002
ATTEMPTS = 3

BLOCKS = [
    "[",
    "]",
    "{",
    "}",
    '"',
    ":",
    ",",
    " ",
    "\\",
    '\\"',
    "\\\\",
    "\\u",
    "\\u0041",
    "\\ud800",
    "\\udc00",
    "\\ud83d\\ude00",
    "\\u003a",
    "0",
    "9",
    "99999",
    "-1",
    ".5",
    "e9",
    "1e400",
    "true",
    "null",
    "NaN",
    '"a"',
    '"a":',
    '"a":0',
    '"":0,',
    "{}",
    "[]",
    "[[]]",
    "x",
]
PREFIXES = [
    "",
    "{",
    " ",
    '{"a":',
    '{"a":[',
    '{"a":"',
    '{"a":"\\',
    "[" * (MAX_DEPTH + 1),
    '{"a":' + "[" * (MAX_DEPTH - 1),
    '{"a":' + "[" * (MAX_DEPTH - 1) + '"',
    '{"a":[' + ",".join(["{}"] * 70) + ",",
]
SUFFIXES = ["", "}", "]}", '"}', '"]}', "]" * MAX_DEPTH + "}", ',"a":0}']


def _blocks(max_size: int) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(BLOCKS), max_size=max_size).map("".join)


patterns = st.tuples(
    st.sampled_from(PREFIXES) | _blocks(4),
    _blocks(6).filter(bool),
    st.sampled_from(SUFFIXES) | _blocks(4),
)


def _document(pattern: tuple[str, str, str], size: int) -> bytes:
    prefix, unit, suffix = pattern
    repeat = max(1, (size - len(prefix) - len(suffix)) // len(unit))
    return (prefix + unit * repeat + suffix).encode()


def _parse(document: bytes) -> None:
    with suppress(StrictJSONError):
        assert type(loads_object(document)) is dict


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _scan(document: bytes) -> None:
    # IssuerRouter's search for iss, before any signature check: with an iss at the end.
    with suppress(InvalidTokenError):
        _issuer_of(document + b',"iss":"https://a.test"}')


def _cost(document: bytes, parse: Callable[[bytes], None] = _parse) -> float:
    """Seconds per parse: the best of five samples of at least SAMPLE seconds each."""
    start = time.perf_counter()
    parse(document)
    once = max(time.perf_counter() - start, 1e-7)
    loops = max(1, int(SAMPLE / once))
    best = float("inf")
    with _gc_paused():
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(loops):
                parse(document)
            best = min(best, (time.perf_counter() - start) / loops)
    return best


def _growth(small: bytes, large: bytes, parse: Callable[[bytes], None] = _parse) -> float:
    ratio = float("inf")
    for _ in range(ATTEMPTS):
        ratio = min(ratio, _cost(large, parse) / _cost(small, parse))
        if ratio < MAX_RATIO:
            break
    return ratio


@fuzz_settings(dev=40, ci=400)
@given(pattern=patterns)
# Issue 19: an unterminated string of escaped quotes behind MAX_DEPTH + 1 brackets.
@example(pattern=("[" * (MAX_DEPTH + 1) + '"', '\\"', ""))
@example(pattern=('{"a":"', "\\\\", ""))
@example(pattern=('{"a":[', "{},", "{}]}"))
def test_cost_grows_linearly(pattern: tuple[str, str, str]) -> None:
    """Four times the input never costs ten times the time (quadratic would be sixteen)."""
    count("json.linear_cost")
    ratio = _growth(_document(pattern, SIZE), _document(pattern, SIZE * GROWTH))
    assert ratio < MAX_RATIO, (pattern, ratio)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_hostile_shapes_cost_grows_linearly(name: str) -> None:
    """The costliest documents known (tests/core/hostile_tokens.py) grow linearly too."""
    shape = SHAPES[name]
    ratio = _growth(shape(SIZE).encode(), shape(SIZE * GROWTH).encode())
    assert ratio < MAX_RATIO, (name, ratio)


@fuzz_settings(dev=20, ci=200)
@given(pattern=patterns)
@example(pattern=('{"a":[', '"iss",', '"x"]'))
@example(pattern=('{"a":"', '\\\\\\"', '"'))
@example(pattern=('{"a":[', '{"iss":"x"},', "{}]"))
def test_issuer_scan_cost_grows_linearly(pattern: tuple[str, str, str]) -> None:
    """IssuerRouter's search for iss, which reads a payload anyone can send before any
    signature check, grows linearly with it too."""
    count("issuers.scan_linear_cost")
    small, large = _document(pattern, SIZE), _document(pattern, SIZE * GROWTH)
    ratio = _growth(small, large, _scan)
    assert ratio < MAX_RATIO, (pattern, ratio)
