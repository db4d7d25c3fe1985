"""JWT hot-path shortcuts (key table, strict decode, flat-depth test) change no outcome."""

from __future__ import annotations

from typing import Any

import pytest

from scopegate._errors import InvalidTokenError
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._keys import KeySet, parse_jwk
from tests.core.tokens import EC_KEY, ED_KEY, RSA_KEY, RSA_KEY_2, b64url, mint, static_verifier

ALL = frozenset({"RS256", "PS256", "ES256", "EdDSA"})


def _slow_find(keys: KeySet, kid: str | None, alg: str) -> Any:
    """find() with its lookup table emptied: the full resolution path only."""
    table = keys._exact
    keys._exact = {}
    try:
        return keys.find(kid, alg)
    except InvalidTokenError as exc:
        return exc.reason
    finally:
        keys._exact = table


@pytest.mark.parametrize(
    "jwks",
    [
        pytest.param([RSA_KEY.jwk(), EC_KEY.jwk(), ED_KEY.jwk()], id="distinct-kids"),
        pytest.param([RSA_KEY.jwk(), RSA_KEY_2.jwk(kid=RSA_KEY.kid)], id="duplicate-kid"),
        pytest.param([RSA_KEY.jwk(kid="k"), EC_KEY.jwk(kid="k")], id="kid-shared-across-algs"),
        pytest.param([RSA_KEY.jwk(kid=None), EC_KEY.jwk()], id="anonymous-key"),
        pytest.param([RSA_KEY.jwk(kid=None), RSA_KEY_2.jwk(kid=None)], id="two-anonymous"),
    ],
)
def test_key_lookup_table_matches_full_resolution(jwks: list[dict[str, Any]]) -> None:
    """Every (kid, alg) resolves to the same key or the same error with and without the table."""
    keys = KeySet(parse_jwk(jwk, ALL) for jwk in jwks)
    kids = [None, "unknown", *(jwk.get("kid") for jwk in jwks)]
    for kid in kids:
        for alg in (*sorted(ALL), "RS384"):
            try:
                fast: Any = keys.find(kid, alg)
            except InvalidTokenError as exc:
                fast = exc.reason
            assert fast is _slow_find(keys, kid, alg) or fast == _slow_find(keys, kid, alg)


def _reason(token: str) -> str | None:
    try:
        static_verifier(cache_verified=False).verify(token)
    except InvalidTokenError as exc:
        return exc.reason
    return None


def _replace_segment(token: str, index: int, value: str) -> str:
    parts = token.split(".")
    parts[index] = value
    return ".".join(parts)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        pytest.param(lambda t: t, None, id="valid"),
        pytest.param(lambda t: t + ".x", "malformed", id="four-parts"),
        pytest.param(lambda t: t.replace(".", "..", 1), "malformed", id="empty-payload"),
        pytest.param(lambda t: "." + t, "malformed", id="leading-dot"),
        pytest.param(lambda t: t + ".", "malformed", id="trailing-dot"),
        pytest.param(lambda t: t.replace(".", ""), "malformed", id="no-dot"),
        pytest.param(
            lambda t: _replace_segment(t, 1, t.split(".")[1] + "="), "malformed", id="payload-pad"
        ),
        pytest.param(
            lambda t: _replace_segment(t, 1, "+" + t.split(".")[1][1:]),
            "malformed",
            id="payload-plus",
        ),
        pytest.param(
            lambda t: _replace_segment(t, 1, "/" + t.split(".")[1][1:]),
            "malformed",
            id="payload-slash",
        ),
        pytest.param(
            lambda t: _replace_segment(t, 1, "=" + t.split(".")[1][1:]),
            "malformed",
            id="payload-inner-equals",
        ),
        pytest.param(
            lambda t: _replace_segment(t, 1, t.split(".")[1][:4] + " " + t.split(".")[1][5:]),
            "malformed",
            id="payload-space",
        ),
        pytest.param(
            lambda t: _replace_segment(t, 2, t.split(".")[2][:8] + "\n" + t.split(".")[2][9:]),
            "malformed",
            id="signature-newline",
        ),
        pytest.param(
            lambda t: _replace_segment(
                t, 1, t.split(".")[1] + "A" * ((1 - len(t.split(".")[1])) % 4)
            ),
            "malformed",
            id="payload-length-1-mod-4",
        ),
        pytest.param(lambda t: "é" + t[1:], "malformed", id="non-ascii"),
    ],
)
def test_shape_and_alphabet_reasons(mutate: Any, reason: str | None) -> None:
    """Shape and alphabet defects anywhere are 'malformed', before any signature check."""
    assert _reason(mutate(mint())) == reason


def test_explain_agrees_on_alphabet_defects() -> None:
    """explain() reports a foreign byte as a format failure, verify() says malformed too."""
    token = _replace_segment(mint(), 1, "+" + mint().split(".")[1][1:])
    checks = static_verifier().explain(token)
    assert checks[0].check == "format"
    assert checks[0].reason == "malformed"


@pytest.mark.parametrize(
    ("text", "max_depth", "ok"),
    [
        pytest.param('{"a": 1, "b": "x{y[z"}', 1, True, id="flat-brackets-in-strings"),
        pytest.param('{"a": 1}', 0, False, id="flat-over-zero-depth"),
        pytest.param('{"a": [1]}', 1, False, id="list-over-depth-one"),
        pytest.param('{"a": {"b": 1}}', 2, True, id="nested-within-limit"),
        pytest.param('{"a": ' + "[" * 40 + "]" * 40 + "}", 32, False, id="deep-list"),
        pytest.param('{"a": "' + "[" * 40 + '"}', 32, True, id="brackets-only-in-string"),
    ],
)
def test_depth_limit_with_flat_shortcut(text: str, max_depth: int, ok: bool) -> None:
    """The flat-object shortcut never lets a too-deep document through."""
    if ok:
        assert isinstance(loads_object(text, max_depth=max_depth), dict)
    else:
        with pytest.raises(StrictJSONError):
            loads_object(text, max_depth=max_depth)


def test_duplicate_members_still_refused_in_payload() -> None:
    """A signed payload with a duplicate claim is malformed (pairs hook kept)."""
    from tests.core.tokens import sign_raw

    header = '{"alg":"RS256","typ":"at+jwt","kid":"rsa-1"}'
    token = sign_raw(header, '{"sub":"a","sub":"b"}')
    assert _reason(token) == "malformed"
    assert b64url(header)  # the helper encodes without padding


def test_token_factory_builds_the_same_access_token() -> None:
    """The slot-filling constructor gives an AccessToken equal in every field."""
    import dataclasses
    from types import MappingProxyType

    from scopegate._jwt import _new_token
    from scopegate._token import AccessToken

    raw = "secret-raw-token"
    args = ("alice", "svc", frozenset({"a"}), 10, MappingProxyType({"sub": "alice"}), "iss", raw)
    fast, slow = _new_token(*args), AccessToken(*args)
    assert type(fast) is AccessToken
    for field in dataclasses.fields(AccessToken):
        assert getattr(fast, field.name) == getattr(slow, field.name)
    assert fast == slow
    assert raw not in repr(fast)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.subject = "mallory"  # type: ignore[misc]


def test_token_factory_falls_back_for_a_changed_class() -> None:
    """A class with __post_init__ or other fields is constructed normally."""
    import dataclasses

    from scopegate._jwt import _token_factory
    from scopegate._token import AccessToken

    @dataclasses.dataclass(frozen=True, slots=True, eq=False)
    class Checked(AccessToken):
        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True, eq=False)
    class Extended(AccessToken):
        extra: int = 0

    assert _token_factory(Checked) is Checked
    assert _token_factory(Extended) is Extended
    assert _token_factory() is not AccessToken


def _reference(text: str) -> dict[str, Any] | None:
    """Python's json with a duplicate-refusing pairs hook: the oracle for flat objects."""
    import json

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate")
        return dict(items)

    try:
        value = json.loads(text, object_pairs_hook=pairs)
    except ValueError:
        return None
    return value if type(value) is dict else None


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('{"a":1,"a":2}', id="plain-duplicate"),
        pytest.param('{"a":"x,y","a":2}', id="duplicate-with-comma-in-string"),
        pytest.param('{"a":1,"\\u0061":2}', id="escaped-duplicate"),
        pytest.param('{"a,b":1,"a,b":2}', id="duplicate-key-with-comma"),
        pytest.param('{"a" : 1 , "a" : 2}', id="duplicate-with-spaces"),
        pytest.param('{"a":"\\u002c","a":1}', id="escaped-comma-and-duplicate"),
    ],
)
def test_flat_duplicates_are_refused(text: str) -> None:
    """Duplicate members of a flat object are refused by the separator count."""
    with pytest.raises(StrictJSONError):
        loads_object(text)


def test_flat_objects_match_the_oracle() -> None:
    """Random flat objects (commas, escapes, duplicates, whitespace) parse like the oracle."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    key = st.sampled_from(["a", "b", "a,", ",", "\\u0061", "\\u002c", "c d", "é"])
    scalar = st.sampled_from(['"x"', '"x,y"', '","', "1", "2.5", "true", "null", '"\\u002c"'])
    space = st.sampled_from(["", " ", "\n"])

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.tuples(key, scalar, space), max_size=6))
    def check(members: list[tuple[str, str, str]]) -> None:
        text = "{" + ",".join(f'{sp}"{k}"{sp}:{sp}{v}{sp}' for k, v, sp in members) + "}"
        expected = _reference(text)
        if expected is None:
            with pytest.raises(StrictJSONError):
                loads_object(text)
        else:
            assert loads_object(text) == expected

    check()
