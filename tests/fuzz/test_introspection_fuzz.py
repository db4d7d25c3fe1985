"""Property tests for the RFC 7662 introspection response parser.

An authorization server can answer anything: any status, content type and body. The
verifier must accept a token exactly when the answer is a well-typed ``active: true``
that passes the time, issuer, audience, token-type and ``cnf`` checks; a malformed
answer is a 503 (``IntrospectionUnavailableError``), a well-formed refusal a 401
(``InvalidTokenError``); nothing else ever escapes, and neither the token nor the client
secret shows up in an exception or a log record.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
from fractions import Fraction
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate._errors import BearerError, IntrospectionUnavailableError, InvalidTokenError
from scopegate._flow import HTTPRunner
from scopegate._introspection import IntrospectionVerifier
from scopegate._token import AccessToken
from tests.fuzz.profile import count, fuzz_settings
from tests.fuzz.strategies import json_values

NOW = 1_900_000_000.0
LEEWAY = 60
ISSUER = "https://as.fuzz.test"
AUDIENCE = "api://fuzz"
SECRET = "SecretCanary-7f3a"
TOKEN_PREFIX = "OpaqueCanary"
_tokens = itertools.count()


class Answer:
    """What the fake authorization server answers next."""

    status = 200
    content_type = "application/json"
    body = b"{}"


def _handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        Answer.status, headers={"content-type": Answer.content_type}, content=Answer.body
    )


VERIFIER = IntrospectionVerifier(
    introspection_uri="https://as.fuzz.test/introspect",
    issuer=ISSUER,
    client_id="rs",
    client_secret=SECRET,
    audience=AUDIENCE,
    cache_ttl=0,
    negative_ttl=0,
    leeway=LEEWAY,
    runner=HTTPRunner(transport=httpx.MockTransport(_handler)),
    clock=lambda: NOW,
)

_time = st.one_of(
    st.integers(min_value=-100_000, max_value=100_000).map(lambda d: int(NOW) + d),
    st.floats(min_value=NOW - 100_000, max_value=NOW + 100_000),
    st.sampled_from([True, "1900000000", [1], {}]),
    # Integers beyond float range: valid JSON numbers that overflow float arithmetic.
    st.sampled_from([10**400, -(10**400)]),
)
_str_or_junk = st.sampled_from(["x", "", 1, True, ["x"], {}])
answers = st.fixed_dictionaries(
    {},
    optional={
        "active": st.sampled_from([True, True, True, False, "true", "false", 1, 0, None, []]),
        "exp": _time,
        "nbf": _time,
        "iat": _time,
        "iss": st.sampled_from([ISSUER, ISSUER + "/", "https://evil.test", 1]),
        "aud": st.sampled_from(
            [AUDIENCE, [AUDIENCE], ["x", AUDIENCE], ["x"], [], "x", 5, [AUDIENCE, 1]]
        ),
        "token_type": st.sampled_from(
            ["Bearer", "bearer", "access_token", "refresh_token", "N_A", 3]
        ),
        "scope": st.sampled_from(["items:read", "a b", "", ["a"], 1, {}]),
        "scp": st.sampled_from(["a", ["a", "b"], [1], 2]),
        "sub": _str_or_junk,
        "client_id": _str_or_junk,
        "username": _str_or_junk,
        "jti": _str_or_junk,
        "cnf": st.sampled_from([{"jkt": "x"}, None, "x"]),
        "extra": json_values,
    },
)


def _number(value: Any) -> bool:
    # A NumericDate: a JSON number from the epoch to the end of year 9999.
    return (type(value) is int or (type(value) is float and math.isfinite(value))) and (
        0 <= value <= 253_402_300_799
    )


def classify(answer: dict[str, Any]) -> tuple[bool, bool]:
    """Independent reading of RFC 7662 §2.2: (malformed, refused) for an active answer."""
    malformed = False
    refused = False
    for name in ("username", "token_type", "scope"):
        if answer.get(name) is not None and type(answer[name]) is not str:
            malformed = True
    for name in ("sub", "client_id", "iss", "jti"):
        # The identifiers the JWT rules read must be non-empty strings there too.
        if answer.get(name) is not None and (type(answer[name]) is not str or not answer[name]):
            malformed = True
    for name in ("exp", "nbf", "iat"):
        if answer.get(name) is not None and not _number(answer[name]):
            malformed = True
    aud = answer.get("aud")
    if aud is not None:
        auds = [aud] if type(aud) is str else aud
        well_typed = type(auds) is list and auds and all(type(a) is str for a in auds)
        if not well_typed or (type(aud) is str and not aud):
            malformed = True
        elif AUDIENCE not in auds:
            refused = True
    scp = answer.get("scp")
    if scp is not None and not (
        type(scp) is str or (type(scp) is list and all(type(s) is str for s in scp))
    ):
        malformed = True
    # Semantic refusals, judged wherever the member has a comparable type.
    exp, nbf, iat = (
        answer.get(n) if _number(answer.get(n)) else None for n in ("exp", "nbf", "iat")
    )
    now = Fraction(NOW)
    # exp + leeway is the first instant the token is refused (the JWT rule's boundary).
    refused |= exp is not None and Fraction(exp) + LEEWAY <= now
    refused |= nbf is not None and Fraction(nbf) > now + LEEWAY
    refused |= iat is not None and Fraction(iat) > now + LEEWAY
    refused |= type(answer.get("iss")) is str and answer["iss"] != ISSUER
    token_type = answer.get("token_type")
    refused |= type(token_type) is str and token_type.lower() not in ("bearer", "access_token")
    refused |= answer.get("cnf") is not None
    return malformed, refused


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every log record at DEBUG."""
    caplog.set_level(logging.DEBUG)


def _call(token: str) -> AccessTokenOrError:
    try:
        return VERIFIER.verify(token)
    except BearerError as exc:
        return exc


AccessTokenOrError = Any


def _assert_clean(outcome: Any, token: str, caplog: pytest.LogCaptureFixture) -> None:
    text = caplog.text + (
        str(outcome) + repr(outcome) if isinstance(outcome, BaseException) else repr(outcome)
    )
    assert token not in text
    assert SECRET not in text
    assert TOKEN_PREFIX not in text


@fuzz_settings(dev=500, ci=5000)
@given(answer=answers)
def test_json_answers_match_oracle(
    answer: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A JSON answer is accepted, refused (401) or malformed (503) as RFC 7662 §2.2 says."""
    count("introspection.json_answers")
    caplog.clear()
    Answer.status, Answer.content_type = 200, "application/json"
    Answer.body = json.dumps(answer).encode()
    token = f"{TOKEN_PREFIX}{next(_tokens)}"
    outcome = _call(token)
    _assert_clean(outcome, token, caplog)
    active = answer.get("active")
    if type(active) is not bool:
        assert isinstance(outcome, IntrospectionUnavailableError)
        return
    if active is False:
        assert isinstance(outcome, InvalidTokenError)
        return
    malformed, refused = classify(answer)
    huge = any(type(answer.get(n)) is int and abs(answer[n]) > 2**63 for n in ("exp", "nbf", "iat"))
    if huge:
        # Out-of-range NumericDates: any documented outcome is defensible, a crash is not.
        assert isinstance(outcome, AccessToken | IntrospectionUnavailableError | InvalidTokenError)
    elif malformed and refused:
        assert isinstance(outcome, IntrospectionUnavailableError | InvalidTokenError)
    elif malformed:
        assert isinstance(outcome, IntrospectionUnavailableError), outcome
    elif refused:
        assert isinstance(outcome, InvalidTokenError), outcome
    else:
        assert not isinstance(outcome, BaseException), outcome
        assert outcome.token == token
        assert outcome.subject == answer.get("sub")


@fuzz_settings(dev=200, ci=2000)
@given(
    status=st.sampled_from(
        [200, 200, 200, 201, 204, 301, 302, 400, 401, 403, 404, 429, 500, 502, 503]
    ),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "text/html",
            "",
            "application/jwt",
        ]
    ),
    body=st.one_of(
        st.binary(max_size=200),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from(
            [
                b'{"active": true}',
                b'{"active": true, "active": false}',
                b'{"active": NaN}',
                b'{"active": true, "exp": 1e400}',
                b"[" * 3000,
                b'{"active": true, "exp": Infinity}',
            ]
        ),
    ),
)
def test_raw_answers_never_escape(
    status: int, content_type: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Any status, content type and body gives a token, 401 or 503, with 503 for every non-200."""
    count("introspection.raw_answers")
    caplog.clear()
    Answer.status, Answer.content_type, Answer.body = status, content_type, body
    token = f"{TOKEN_PREFIX}{next(_tokens)}"
    outcome = _call(token)
    _assert_clean(outcome, token, caplog)
    if status != 200 or content_type.split(";")[0].strip().lower() != "application/json":
        assert isinstance(outcome, IntrospectionUnavailableError)
        assert outcome.status == 503
    elif isinstance(outcome, BaseException):
        assert isinstance(outcome, IntrospectionUnavailableError | InvalidTokenError)
    else:
        assert json.loads(body)["active"] is True


@fuzz_settings(dev=200, ci=2000)
@given(token=st.text(max_size=60))
def test_token_format_before_network(token: str, caplog: pytest.LogCaptureFixture) -> None:
    """Arbitrary token text never crashes; non-b64token text is refused without the network."""
    count("introspection.token_text")
    caplog.clear()
    Answer.status, Answer.content_type, Answer.body = 500, "text/plain", b"boom"
    outcome = _call(token)
    # The endpoint fails, so a 401 can only come from the local format check.
    if re.fullmatch(r"[A-Za-z0-9\-._~+/]+=*", token):
        assert isinstance(outcome, IntrospectionUnavailableError)
    else:
        assert isinstance(outcome, InvalidTokenError)


@pytest.mark.parametrize(
    "member",
    [pytest.param("exp", id="exp"), pytest.param("nbf", id="nbf"), pytest.param("iat", id="iat")],
)
def test_out_of_float_range_numericdate(member: str) -> None:
    """A NumericDate of 10**400 (valid JSON) gives a documented outcome, not OverflowError."""
    Answer.status, Answer.content_type = 200, "application/json"
    Answer.body = b'{"active": true, "%s": 1%s}' % (member.encode(), b"0" * 400)
    outcome = _call(f"{TOKEN_PREFIX}{next(_tokens)}")
    assert isinstance(outcome, AccessToken | IntrospectionUnavailableError | InvalidTokenError)
