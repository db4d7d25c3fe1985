"""The strict JSON reader under hostile input (issue 19): every path, every guarantee."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest

from scopegate._errors import InvalidTokenError
from scopegate._jsonstrict import (
    MAX_DEPTH,
    MAX_NUMBER_DIGITS,
    StrictJSONError,
    _depth,
    loads_object,
)
from tests.core.hostile_tokens import SHAPES
from tests.core.tokens import claims, sign_raw, static_verifier

#: Every message loads_object may raise: fixed text, never a piece of the input.
MESSAGES = {
    "invalid UTF-8",
    "invalid JSON",
    "trailing data",
    "not a JSON object",
    "duplicate member name",
    "non-finite number",
    "nesting too deep",
    "unpaired surrogate",
}
#: More objects than this take the hook-free path (_jsonstrict._MANY_OBJECTS is 64).
MANY = '"many":[' + ",".join(["{}"] * 100) + "]"
HEADER = '{"alg":"RS256","typ":"at+jwt","kid":"rsa-1"}'


def refused(text: bytes | str, **options: int) -> str:
    """The message loads_object refuses *text* with (the test fails if it accepts it)."""
    with pytest.raises(StrictJSONError) as info:
        loads_object(text, **options)
    message = str(info.value)
    assert message in MESSAGES
    return message


@pytest.fixture
def lifted_int_limit() -> Iterator[None]:
    """CPython's int max-str-digits limit removed, as an application may do."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(0)
    try:
        yield
    finally:
        sys.set_int_max_str_digits(before)


# -- hostile shapes ------------------------------------------------------------------

#: What each shape of tests/core/hostile_tokens.py is, as a document on its own.
SHAPE_OUTCOMES = {
    "open-string-over-depth": "nesting too deep",
    "open-string-at-depth": None,  # invalid; unbalanced, so it may read one level deeper
    "nested-arrays-at-depth": "accepted",
    "nested-arrays-over-depth": "nesting too deep",
    "short-nested-arrays": "nesting too deep",
    "bushy-arrays": "nesting too deep",
    "many-members": "accepted",
    "many-objects": "accepted",
    "many-arrays": "accepted",
    "many-floats": "accepted",
    "many-numbers": "accepted",
    "many-strings": "accepted",
    "long-integers": "accepted",
    "huge-integer": "invalid JSON",
    "long-float": "invalid JSON",
    "u-escapes": "unpaired surrogate",
    "surrogate-pairs": "unpaired surrogate",
    "backslashes": "duplicate member name",
    "open-backslashes": "invalid JSON",
    "duplicate-members": "duplicate member name",
    "commas-in-strings": "duplicate member name",
    "whitespace": "duplicate member name",
}


def test_every_shape_has_an_outcome() -> None:
    """The table below covers every hostile shape."""
    assert set(SHAPE_OUTCOMES) == set(SHAPES)


@pytest.mark.parametrize(
    "size", [pytest.param(6000, id="8k-token"), pytest.param(12000, id="16k-token")]
)
@pytest.mark.parametrize("name", sorted(SHAPE_OUTCOMES))
def test_hostile_shapes(name: str, size: int) -> None:
    """Each costliest-to-reject document gets the answer of the rule it probes."""
    text = SHAPES[name](size).encode()
    assert len(text) <= size
    expected = SHAPE_OUTCOMES[name]
    if expected == "accepted":
        assert loads_object(text) == json.loads(text)
    elif expected is None:
        refused(text)
    else:
        assert refused(text) == expected


# -- nesting -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        pytest.param("", 0, id="empty"),
        pytest.param('{"a":1}', 1, id="flat"),
        pytest.param("[][][]", 1, id="siblings"),
        pytest.param('{"a":[[],[[]]],"b":{}}', 4, id="mixed"),
        pytest.param("[" * 40 + "]" * 40, 40, id="chain"),
        pytest.param('{"a":"[[[[","b":[1]}', 2, id="brackets-in-string"),
        pytest.param('{"a":"\\"[[[[","b":[1]}', 2, id="escaped-quote"),
        pytest.param('{"a":"\\\\","b":[[1]]}', 3, id="escaped-backslash-then-quote"),
        pytest.param('{"a":"\\\\\\"[[[[","b":[]}', 2, id="backslash-run-odd"),
        pytest.param('{"a":"\\\\\\\\","b":[[]]}', 3, id="backslash-run-even"),
        pytest.param('{"":"","":"","[":[[]]}', 3, id="adjacent-strings"),
    ],
)
def test_depth_of_balanced_brackets_is_exact(text: str, depth: int) -> None:
    """Brackets inside strings, escaped quotes and backslash runs do not count."""
    assert _depth(text.encode()) == depth


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[[[", id="unclosed"),
        pytest.param('{"a":[[[[1]]]', id="one-unclosed"),
        pytest.param('{"a":"[[[', id="open-string"),
        pytest.param("]]][[[", id="closers-first"),
    ],
)
def test_depth_of_unbalanced_brackets_is_at_most_one_too_deep(text: str) -> None:
    """Unbalanced (invalid) brackets may read one level deeper, never shallower."""
    exact = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            exact += 1
            deepest = max(deepest, exact)
        elif char in "]}":
            exact -= 1
    assert deepest <= _depth(text.encode()) <= deepest + 1


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        pytest.param('{"a":"\\\\","b":', "}", id="after-escaped-backslash"),
        pytest.param('{"a":"\\"[[[[","b":', "}", id="after-brackets-in-string"),
        pytest.param("{" + MANY + ',"b":', "}", id="many-objects"),
        pytest.param(' {"b":', "} ", id="whitespace"),
    ],
)
def test_one_level_too_deep_is_refused(prefix: str, suffix: str) -> None:
    """MAX_DEPTH levels are accepted and MAX_DEPTH + 1 refused, on every path."""

    def nested(depth: int) -> str:
        # The object around prefix/suffix is one level; arrays make the others.
        return prefix + "[" * (depth - 1) + "]" * (depth - 1) + suffix

    assert loads_object(nested(MAX_DEPTH))
    assert refused(nested(MAX_DEPTH + 1)) == "nesting too deep"


def test_nested_objects_one_level_too_deep_are_refused() -> None:
    """Objects nest like arrays: MAX_DEPTH + 1 levels of {"a":...} are refused."""
    assert loads_object('{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH)
    assert refused('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)) == "nesting too deep"


def test_unterminated_string_at_the_depth_limit_is_refused() -> None:
    """An open string at the limit is invalid, whichever reason is given."""
    refused('{"a":' + "[" * (MAX_DEPTH - 1) + '"' + '\\"' * 1000)


# -- numbers -------------------------------------------------------------------------


def test_number_digit_limit_is_cpythons_default() -> None:
    """Numbers of up to 4300 digits in a row are accepted; one more is refused."""
    assert MAX_NUMBER_DIGITS == 4300
    longest = "9" * MAX_NUMBER_DIGITS
    assert loads_object('{"a":' + longest + "}")["a"] == int(longest)
    assert refused('{"a":' + longest + "9}") == "invalid JSON"
    assert refused('{"a":[-' + longest + "9]}") == "invalid JSON"


@pytest.mark.usefixtures("lifted_int_limit")
@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a":' + "9" * 20000 + "}", id="int"),
        pytest.param('{"a":[1,' + "9" * 20000 + "]}", id="nested-int"),
        pytest.param('{"a":0.' + "1" * 5000 + "}", id="fraction"),
        pytest.param('{"a":1e' + "1" * 5000 + "}", id="exponent"),
        pytest.param('{"a":"x",' + MANY + ',"b":' + "9" * 5000 + "}", id="many-objects"),
    ],
)
def test_long_numbers_refused_when_the_process_limit_is_lifted(text: str) -> None:
    """The digit cap holds whatever sys.set_int_max_str_digits says (no quadratic int())."""
    assert refused(text) == "invalid JSON"


@pytest.mark.usefixtures("lifted_int_limit")
def test_long_digit_strings_are_text() -> None:
    """A long run of digits inside a string is not a number."""
    digits = "1" * 20000
    text = '{"a":"' + digits + '","b":"\\"' + digits + '","c":1}'
    assert loads_object(text)["a"] == digits


def test_a_lower_process_limit_still_refuses_with_a_fixed_message() -> None:
    """When CPython's own limit is lower, its refusal reads the same."""
    before = sys.get_int_max_str_digits()
    sys.set_int_max_str_digits(640)
    try:
        assert refused('{"a":' + "9" * 1000 + "}") == "invalid JSON"
    finally:
        sys.set_int_max_str_digits(before)


# -- unpaired surrogates (RFC 7493 §2.1) ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(r'{"sub":"\ud800"}', id="lone-high"),
        pytest.param(r'{"sub":"\udc00"}', id="lone-low"),
        pytest.param(r'{"sub":"\ude00\ud83d"}', id="reversed-pair"),
        pytest.param(r'{"sub":"\uDBFF"}', id="uppercase-hex"),
        pytest.param(r'{"sub":"\ud83d\ud83d\ude00"}', id="high-high-low"),
        pytest.param(r'{"sub":"\ud83d\ude00\ude00"}', id="pair-then-low"),
        pytest.param(r'{"sub":"\ud800x\udc00"}', id="split-pair"),
        pytest.param(r'{"sub":"\ud800\\udc00"}', id="escaped-backslash-between"),
        pytest.param(r'{"sub":"\\\ud800"}', id="after-escaped-backslash"),
        pytest.param(r'{"\ud800":1}', id="member-name"),
        pytest.param(r'{"a":{"b":["x","\udfff"]}}', id="nested-value"),
        pytest.param(r'{"a":[{"\udc00":1}]}', id="nested-member-name"),
        pytest.param(r' {"sub":"\ud800"} ', id="surrounding-whitespace"),
        pytest.param(r'{"a":"b,c","sub":"\ud800"}', id="comma-in-string"),
        pytest.param("{" + MANY + r',"sub":"\ud800"}', id="many-objects"),
    ],
)
def test_unpaired_surrogate_escapes_are_refused(text: str) -> None:
    """Half of a surrogate pair is not a character: refused in names and values, at any depth."""
    assert refused(text.encode()) == "unpaired surrogate"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(r'{"sub":"\ud83d\ude00"}', {"sub": "\U0001f600"}, id="pair"),
        pytest.param(r'{"sub":"\uD83D\uDE00"}', {"sub": "\U0001f600"}, id="pair-uppercase"),
        pytest.param(
            r'{"\ud83d\ude00":[{"k":"\udbff\udfff"}]}',
            {"\U0001f600": [{"k": "\U0010ffff"}]},
            id="nested-pairs",
        ),
        pytest.param(r'{"sub":"\\ud800"}', {"sub": "\\ud800"}, id="escaped-backslash-is-text"),
        pytest.param(r'{"sub":"\\\\ud800"}', {"sub": "\\\\ud800"}, id="two-escaped-backslashes"),
        pytest.param(r'{"sub":"\ud7ff\ue000"}', {"sub": "\ud7ff\ue000"}, id="around-the-range"),
        pytest.param(r'{"sub":"\u00e9\/"}', {"sub": "\u00e9/"}, id="other-escapes"),
    ],
)
def test_paired_surrogates_and_lookalikes_are_accepted(
    text: str, expected: dict[str, object]
) -> None:
    """A valid pair is one character; an escaped backslash before "u" is plain text."""
    assert loads_object(text.encode()) == expected


def test_many_objects_with_a_pair_are_accepted() -> None:
    """The hook-free path accepts pairs too."""
    value = loads_object(("{" + MANY + r',"sub":"\ud83d\ude00"}').encode())
    assert value["sub"] == "\U0001f600"


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"sub":"\ud800"}', id="raw-lone"),
        pytest.param('{"\udc00":1}', id="raw-in-name"),
        pytest.param('{"sub":"\ud83d\ude00"}', id="raw-pair-of-code-points"),
    ],
)
def test_text_holding_surrogate_code_points_is_refused(text: str) -> None:
    """Text (not bytes) may hold surrogates no UTF-8 document can: refused."""
    assert refused(text) == "unpaired surrogate"


def test_signed_claim_with_a_lone_surrogate_is_malformed() -> None:
    """A validly signed token whose sub is half a pair is invalid_token, not a 500 later."""
    payload = json.dumps(claims()).replace('"alice"', r'"\ud800"')
    assert r"\ud800" in payload
    with pytest.raises(InvalidTokenError) as info:
        static_verifier().verify(sign_raw(HEADER, payload))
    assert info.value.reason == "malformed"
    assert info.value.error == "invalid_token"


# -- the hook-free path for documents with many objects ------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{" + MANY + ',"a":1,"a":2}', "duplicate member name", id="top-level"),
        pytest.param("{" + MANY + ',"o":{"b":1,"b":1}}', "duplicate member name", id="nested"),
        pytest.param(
            '{"m":[' + '{"k":{"x":[1,{"y":1,"y":2}]}},' * 70 + "{}]}",
            "duplicate member name",
            id="deep",
        ),
        pytest.param(
            "{" + MANY + r',"x":"\u003a","a":1,"a":2}', "duplicate member name", id="escaped-colon"
        ),
        pytest.param(
            "{" + MANY + ',"a":"x:y","a":2}', "duplicate member name", id="colon-in-value"
        ),
        pytest.param("{" + MANY + ',"a":1e400}', "non-finite number", id="overflow"),
        pytest.param("{" + MANY + ',"a":-1e400}', "non-finite number", id="negative-overflow"),
        pytest.param("{" + MANY + ',"a":NaN}', "non-finite number", id="nan"),
        pytest.param("{" + MANY + "} x", "invalid JSON", id="trailing-data"),
        pytest.param(MANY[7:], "not a JSON object", id="array"),
        pytest.param(
            MANY[7:-1] + ',{"a":1,"a":1}]', "not a JSON object", id="array-with-duplicate"
        ),
    ],
)
def test_many_objects_keep_every_rule(text: str, message: str) -> None:
    """Without the per-object hook, duplicates, non-finite numbers and the rest still fail."""
    assert refused(text) == message


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("{" + MANY + r',"x":"\u003a:","y:":"\u003A"}', id="colons-in-strings"),
        pytest.param("{" + MANY + r',"x":"\\u003a"}', id="escaped-backslash-not-a-colon"),
        pytest.param(" \n{" + MANY + ',"a":[1.5,-2,true,null]} \t', id="whitespace"),
    ],
)
def test_many_objects_accept_what_the_hooks_accept(text: str) -> None:
    """The hook-free path returns exactly what json.loads does for a valid document."""
    assert loads_object(text.encode()) == json.loads(text)


# -- flat objects whose commas do not add up -----------------------------------------


@pytest.mark.parametrize(
    ("text", "outcome"),
    [
        pytest.param('{"a":"b,c","d":1}', "accepted", id="comma-in-string"),
        pytest.param('{"a":"b,c","a":1}', "duplicate member name", id="comma-and-duplicate"),
        pytest.param('{"a":"b,c","\\u0061":1}', "duplicate member name", id="escaped-duplicate"),
        pytest.param(
            r'{"a":"b,c","x":"\u003a","a":1}', "duplicate member name", id="escaped-colon"
        ),
        pytest.param(r'{"a:,":"b,c:","x":"\u003a"}', "accepted", id="colons-and-commas"),
    ],
)
def test_flat_objects_with_commas_in_strings(text: str, outcome: str) -> None:
    """A comma inside a string sends a flat object to the colon count, which stays exact."""
    if outcome == "accepted":
        assert loads_object(text) == json.loads(text)
    else:
        assert refused(text) == outcome
