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

from scopegate._dpop import DPoPPolicy, ProofVerifier
from scopegate._errors import BearerError, InvalidTokenError
from scopegate._issuers import IssuerRouter
from scopegate._jwt import JWTVerifier
from scopegate.testing import DPoPKey
from tests.core.hostile_tokens import (
    bad_signature_token,
    hostile_proofs,
    hostile_tokens,
    hostile_verifier,
    routed_tokens,
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
#: Bound for a token anyone can send to an IssuerRouter, which reads the whole payload for
#: iss before any signature check: the issue's target itself (measured about 2.5; 9.5 when
#: the router parsed the payload strictly to find iss).
ROUTED_RATIO = 5
#: Bound for a DPoP proof anyone can sign with a key of their own, against checking an
#: ordinary proof (measured about 2; 5.4 when any proof's claims were parsed whole).
PROOF_RATIO = 3.5
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


def _ratios(
    run: Callable[[str], object],
    items: dict[str, str],
    reference: str,
    bound: Callable[[str], float],
    runs: int = 200,
) -> tuple[float, dict[str, float]]:
    """The cost of *reference* (seconds), and each item's cost ÷ it. A slow run on a
    busy machine is measured again, reference included, while over its *bound*."""
    base = _cost(run, reference, runs=runs)
    ratios: dict[str, float] = {}
    for name, item in items.items():
        ratios[name] = _cost(run, item) / base
        for _ in range(ATTEMPTS - 1):
            if ratios[name] <= bound(name):
                break
            again = _cost(run, reference, runs=50)
            ratios[name] = min(ratios[name], _cost(run, item) / again)
    return base, ratios


def _assert_within(ratios: dict[str, float], bound: Callable[[str], float], unit: str) -> None:
    for name, ratio in sorted(ratios.items(), key=lambda item: -item[1])[:8]:
        print(f"  {name:36s} {ratio:6.1f}x")
    over = {name: ratio for name, ratio in ratios.items() if ratio > bound(name)}
    assert not over, f"costs over the bound (x {unit}): {over}"


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

    def bound(name: str) -> float:
        return UNSIGNED_RATIO if name.startswith("header-") else RATIO_AT_8K * cap / 8192

    reference, ratios = _ratios(
        verifier.verify, hostile_tokens(cap, key), bad_signature_token(key), bound
    )
    same_size = _cost(verifier.verify, bad_signature_token(key, cap), runs=50)
    print(
        f"\ncap {cap}: bad signature {reference * 1e6:.1f} us, "
        f"same-size bad signature {same_size * 1e6:.1f} us ({same_size / reference:.1f}x)"
    )
    _assert_within(ratios, bound, "a bad signature")


@pytest.fixture(scope="module")
def router() -> IssuerRouter:
    """Two trusted issuers; the hostile one is the issuer the routed tokens name."""
    other = hostile_verifier(signing_key(), issuer="https://other.hostile.test")
    return IssuerRouter([hostile_verifier(signing_key()), other])


def test_routed_hostile_tokens_are_refused(router: IssuerRouter) -> None:
    """Through an IssuerRouter, every hostile payload is invalid_token: without a trusted
    iss before any signature check, with one at the signature check."""
    for name, token in routed_tokens(8192, signing_key()).items():
        with pytest.raises(InvalidTokenError) as info:
            router.verify(token)
        if name.startswith("routed-") and info.value.reason != "bad_signature":
            # The shape broke the quote pairing the scan relies on (an open string):
            # the iss after it reads as text, so the token names no issuer.
            assert info.value.reason in {"missing_claim", "malformed"}, (name, info.value)


def test_routed_hostile_tokens_cost_about_a_bad_signature(router: IssuerRouter) -> None:
    """A router reads the payload of a token anyone can send before any signature check
    (to find iss): that read stays near the cost of a bad signature, for every shape."""
    key = signing_key()
    reference, ratios = _ratios(
        router.verify, routed_tokens(8192, key), bad_signature_token(key), lambda _: ROUTED_RATIO
    )
    print(f"\nrouter: bad signature {reference * 1e6:.1f} us")
    _assert_within(ratios, lambda _: ROUTED_RATIO, "a bad signature")


def test_hostile_proofs_cost_about_a_proof() -> None:
    """A token endpoint checks a DPoP proof before it knows the client, and anyone can
    sign one with a key of their own: each crafted proof costs a bounded multiple of
    checking an ordinary one (a proof's claims are scalars and at most 4 KiB of text)."""
    verifier = ProofVerifier(DPoPPolicy())
    key = DPoPKey.generate()
    url = "https://issuer.hostile.test/token"

    def check(proof: str) -> None:
        with contextlib.suppress(BearerError):
            verifier.check(proof, method="POST", url=url, token=None, now=time.time())

    proofs = hostile_proofs(key)
    for proof in proofs.values():
        with pytest.raises(BearerError):
            verifier.check(proof, method="POST", url=url, token=None, now=time.time())
    reference, ratios = _ratios(
        check, proofs, key.proof("POST", url), lambda _: PROOF_RATIO, runs=100
    )
    print(f"\nproofs: an ordinary proof {reference * 1e6:.1f} us")
    _assert_within(ratios, lambda _: PROOF_RATIO, "an ordinary proof")
