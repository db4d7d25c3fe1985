"""Issue 19: no token costs much more to reject than one with a bad signature.

A coarse guard against super-linear parsing, not a benchmark: timings are the minimum of
several runs on a shared machine, and the bound is far above what linear code needs
(the issue's unterminated-string header once cost thousands of times a bad signature).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import pytest

from scopegate._errors import InvalidTokenError
from scopegate._jwt import JWTVerifier
from tests.core.hostile_tokens import (
    bad_signature_token,
    hostile_tokens,
    hostile_verifier,
    signing_key,
)

#: Bound on cost / bad-signature cost for a *signed* token of the bearer guard's 8 KiB
#: cap (only an issuer can make one); it scales with the cap, since the cost of reading a
#: token is (and must stay) linear.
RATIO_AT_8K = 20
#: Bound for an unsigned token, which anyone can send: only its header (at most
#: MAX_HEADER_LENGTH characters) is parsed before the signature fails. The issue's target
#: is 5 (measured by ``make bench``); twice that here leaves room for a noisy machine.
UNSIGNED_RATIO = 10
RUNS = 15
ATTEMPTS = 3


def _cost(verify: Callable[[str], object], token: str, runs: int = RUNS) -> float:
    """The fastest of *runs* rejections of *token*, in seconds."""
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        with contextlib.suppress(InvalidTokenError):
            verify(token)
        best = min(best, time.perf_counter() - start)
    return best


@pytest.fixture(scope="module")
def verifier() -> JWTVerifier:
    """A verifier with the hostile key as its only static key, and its token cap raised
    to 16 KiB so the larger shapes reach the parser."""
    return hostile_verifier(signing_key(), max_token_length=16384)


@pytest.mark.parametrize("cap", [pytest.param(8192, id="8k"), pytest.param(16384, id="16k")])
def test_hostile_tokens_are_refused(verifier: JWTVerifier, cap: int) -> None:
    """Every costliest-to-reject token is invalid_token."""
    for name, token in hostile_tokens(cap, signing_key()).items():
        assert len(token) <= cap, name
        with pytest.raises(InvalidTokenError):
            verifier.verify(token)


@pytest.mark.parametrize("cap", [pytest.param(8192, id="8k"), pytest.param(16384, id="16k")])
def test_hostile_tokens_cost_about_a_bad_signature(verifier: JWTVerifier, cap: int) -> None:
    """Each hostile token costs a bounded multiple of a bad-signature rejection."""
    key = signing_key()
    tokens = hostile_tokens(cap, key)
    reference = _cost(verifier.verify, bad_signature_token(key), runs=200)
    same_size = _cost(verifier.verify, bad_signature_token(key, cap), runs=50)
    ratios: dict[str, float] = {}
    bounds: dict[str, float] = {}
    for name, token in tokens.items():
        bound = bounds[name] = (
            UNSIGNED_RATIO if name.startswith("header-") else RATIO_AT_8K * cap / 8192
        )
        ratios[name] = _cost(verifier.verify, token) / reference
        # A slow run on a busy machine is measured again, reference included.
        for _ in range(ATTEMPTS - 1):
            if ratios[name] <= bound:
                break
            again = _cost(verifier.verify, bad_signature_token(key), runs=50)
            ratios[name] = min(ratios[name], _cost(verifier.verify, token) / again)
    print(
        f"\ncap {cap}: bad signature {reference * 1e6:.1f} us, "
        f"same-size bad signature {same_size * 1e6:.1f} us ({same_size / reference:.1f}x)"
    )
    for name, ratio in sorted(ratios.items(), key=lambda item: -item[1]):
        print(f"  {name:36s} {ratio:6.1f}x  ({ratio * reference / same_size:4.1f}x same-size)")
    over = {name: ratio for name, ratio in ratios.items() if ratio > bounds[name]}
    assert not over, f"costs over the bound (x a bad signature): {over}"
