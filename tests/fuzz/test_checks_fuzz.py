"""The fused check functions say exactly what the rule table says.

``compile_checks`` generates one function per policy and part from ``_checks.RULES``,
with helper calls and policy attributes inlined (``_checks._inline``);
``compile_explainers`` compiles each rule's expression as written. For random headers,
claims, clocks and policies, the fused function must raise the reason of the first rule
whose explainer fails, and pass exactly when every rule passes.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate._checks import Policy, compile_checks, compile_explainers
from scopegate._errors import InvalidTokenError
from tests.fuzz.profile import count, fuzz_settings
from tests.fuzz.strategies import json_values

ISSUER = "https://as.example"
AUDIENCES = frozenset({"api://a", "api://b"})

dates = st.one_of(
    st.integers(min_value=-10, max_value=2_000_000_000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([True, False, None, "1900000000", 253402300799, 253402300800, 10**30]),
)
strings = st.one_of(st.sampled_from(["", ISSUER, "api://a", "x"]), st.text(max_size=5), json_values)
claims = st.fixed_dictionaries(
    {},
    optional={
        "iss": strings,
        "sub": strings,
        "jti": strings,
        "client_id": strings,
        "azp": strings,
        "aud": st.one_of(strings, st.lists(strings, max_size=3)),
        "exp": dates,
        "iat": dates,
        "nbf": dates,
        "scope": strings,
        "cnf": st.one_of(
            json_values,
            st.just({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}),
            st.just({"jkt": "short"}),
        ),
    },
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["RS256", "ES256", "HS256", "none", 1]),
        "typ": st.sampled_from(["at+jwt", "JWT", "application/at+jwt", "", 3]),
        "kid": st.one_of(st.sampled_from(["k1", "", "x" * 257, None]), json_values),
        "crit": st.just(["exp"]),
        "b64": st.booleans(),
    },
)
policies = st.builds(
    Policy,
    algorithms=st.just(frozenset({"RS256", "ES256"})),
    typ_allowed=st.sampled_from(
        [frozenset({"at+jwt", "application/at+jwt"}), frozenset({"at+jwt", "jwt"})]
    ),
    typ_required=st.booleans(),
    issuer=st.sampled_from([ISSUER, None]),
    audiences=st.sampled_from([AUDIENCES, None]),
    leeway=st.sampled_from([0, 60.0]),
    max_lifetime=st.sampled_from([None, 3600, 86400.0]),
    required=st.sampled_from([frozenset({"exp"}), frozenset({"exp", "sub", "iat"})]),
    client_id_claims=st.sampled_from([("client_id",), ("client_id", "azp")]),
    client_id_required=st.booleans(),
)


def _table_says(policy: Policy, part: Any, document: dict[str, Any], now: float) -> str | None:
    for rule, fails, _requires in compile_explainers(policy, part):
        if fails(document, now):
            return rule.reason
    return None


def _fused_says(policy: Policy, part: Any, document: dict[str, Any], now: float) -> str | None:
    try:
        compile_checks(policy, part)(document, now)
    except InvalidTokenError as error:
        return error.reason
    return None


@fuzz_settings(dev=600, ci=6000)
@given(policy=policies, document=claims, now=st.sampled_from([1_900_000_000.0, 0.0, 1e12]))
def test_fused_claim_checks_equal_the_table(
    policy: Policy, document: dict[str, Any], now: float
) -> None:
    count("checks.claims")
    assert _fused_says(policy, "claims", document, now) == _table_says(
        policy, "claims", document, now
    )


@fuzz_settings(dev=300, ci=3000)
@given(policy=policies, document=headers)
def test_fused_header_checks_equal_the_table(policy: Policy, document: dict[str, Any]) -> None:
    count("checks.header")
    assert _fused_says(policy, "header", document, 0.0) == _table_says(
        policy, "header", document, 0.0
    )


@pytest.mark.parametrize("part", ["header", "claims"])
def test_the_inlined_source_differs_from_the_table(part: Any) -> None:
    """The property above compares two different programs (the inlining really ran)."""
    from scopegate._checks import RULES, _inline

    policy = Policy(
        algorithms=frozenset({"RS256"}),
        typ_allowed=frozenset({"at+jwt"}),
        typ_required=True,
        issuer=ISSUER,
        audiences=AUDIENCES,
        leeway=60,
        max_lifetime=3600,
        required=frozenset({"exp"}),
        client_id_claims=("client_id",),
        client_id_required=False,
    )
    rewritten = [
        rule for rule in RULES if rule.part == part and _inline(rule.fails, policy) != rule.fails
    ]
    assert rewritten
