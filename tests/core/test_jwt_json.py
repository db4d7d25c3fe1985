"""The strict JSON reader used for JOSE headers, claims, JWKS and metadata."""

from __future__ import annotations

import pytest

from scopegate._jsonstrict import MAX_DEPTH, StrictJSONError, loads_object


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b'{"a":1,"a":2}', id="duplicate-member"),
        pytest.param(b'{"o":{"b":1,"b":1}}', id="nested-duplicate"),
        pytest.param(b'{"a":NaN}', id="nan"),
        pytest.param(b'{"a":Infinity}', id="infinity"),
        pytest.param(b'{"a":-Infinity}', id="minus-infinity"),
        pytest.param(b'{"a":1e400}', id="float-overflow"),
        pytest.param(b'{"a":' + b"1" * 5000 + b"}", id="int-too-many-digits"),
        pytest.param(b"[1]", id="array"),
        pytest.param(b'"s"', id="string"),
        pytest.param(b"null", id="null"),
        pytest.param(b"", id="empty"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b'{"a":1} x', id="trailing-data"),
        pytest.param(b'\xef\xbb\xbf{"a":1}', id="utf8-bom"),
        pytest.param(b'{"a":"\xff"}', id="invalid-utf8"),
        pytest.param('{"a":1}'.encode("utf-16"), id="utf16"),
        pytest.param(b'{"a":"line\nbreak"}', id="control-character-in-string"),
        pytest.param(
            b'{"a":' + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"}", id="too-deep"
        ),
        pytest.param(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}", id="recursion-bomb"),
    ],
)
def test_rejects(text: bytes) -> None:
    """Inputs Python's json would accept leniently, or could crash on, are refused."""
    with pytest.raises(StrictJSONError):
        loads_object(text)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    """Depth is measured outside string literals."""
    text = '{"a": "' + "[" * 100 + '", "b": "\\"[["}'
    assert loads_object(text)["a"] == "[" * 100


def test_accepts_ordinary_objects() -> None:
    """A normal object with nesting, floats and unicode parses unchanged."""
    value = loads_object('{"a": [1, 2.5, {"b": null}], "c": "\u00e9", "d": true}'.encode())
    assert value == {"a": [1, 2.5, {"b": None}], "c": "\u00e9", "d": True}


def test_depth_limit_is_inclusive() -> None:
    """Exactly MAX_DEPTH levels are accepted."""
    inner = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    assert loads_object('{"a": ' + inner + "}")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b' {"a": 1}', id="leading-space"),
        pytest.param(b'{"a": 1}\n', id="trailing-newline"),
        pytest.param(b'\t{"a": 1} \r\n', id="both"),
    ],
)
def test_surrounding_whitespace_is_json(text: bytes) -> None:
    """Whitespace around the value is valid JSON (RFC 8259 §2) and accepted."""
    assert loads_object(text) == {"a": 1}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b'{"a": 1}{}', id="two-values"),
        pytest.param(b'{"a": 1}\x00', id="trailing-nul"),
        pytest.param(b" ", id="only-whitespace"),
    ],
)
def test_trailing_data_is_refused(text: bytes) -> None:
    """Anything but whitespace after the object is refused."""
    with pytest.raises(StrictJSONError):
        loads_object(text)
