"""What routing by issuer costs: ``IssuerRouter`` vs one ``JWTVerifier``, in process.

Same RS256 tokens, same keys, same checks; the only difference is the router in front
(issue 15: "routing adds ≤ 1 µs to a cached hit and ≤ 2 µs to an uncached
verification"). Each router trusts several issuers (static keys, no network), and the
token's issuer is the **last** one it knows, the worst case for anything that looks
issuers up one after another.

Cases, interleaved round by round (``_harness``), GC off, thread CPU time:

* cached: the same token again (verified-token cache hit), one verifier vs a router of
  2 and of 8 issuers;
* uncached: the same token with ``cache_verified=False`` everywhere (every call parses,
  checks the signature and the claims);
* cache miss: a new token on every call (25 000 pre-minted tokens cycled through a
  10 000-entry cache), with the default settings: what a first request costs.

The figures are per-round differences, router minus single verifier, summarised as
median (min-max) µs.

Usage::

    .venv/bin/python benchmarks/bench_issuers.py [--rounds 41] [--target 0.03] [--json OUT]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from typing import Any

import _fixtures
import _harness

TITLE = "Routing by issuer: IssuerRouter vs one JWTVerifier (µs/verification)"
#: Budgets of issue 15, in µs added by the router.
CACHED_BUDGET = 1.0
UNCACHED_BUDGET = 2.0

SINGLE_HIT = "single JWTVerifier · cached (same token)"
ROUTER_HIT = "IssuerRouter, 2 issuers · cached (same token)"
ROUTER8_HIT = "IssuerRouter, 8 issuers · cached (same token)"
SINGLE_OFF = "single JWTVerifier · uncached (cache off)"
ROUTER_OFF = "IssuerRouter, 2 issuers · uncached (cache off)"
SINGLE_MISS = "single JWTVerifier · cache miss (new token each call)"
ROUTER_MISS = "IssuerRouter, 2 issuers · cache miss (new token each call)"

#: (figure, router case, baseline case, budget in µs)
FIGURES = (
    ("cached hit: router (2 issuers) - single verifier", ROUTER_HIT, SINGLE_HIT, CACHED_BUDGET),
    ("cached hit: router (8 issuers) - single verifier", ROUTER8_HIT, SINGLE_HIT, CACHED_BUDGET),
    ("uncached: router (2 issuers) - single verifier", ROUTER_OFF, SINGLE_OFF, UNCACHED_BUDGET),
    ("cache miss: router (2 issuers) - single verifier", ROUTER_MISS, SINGLE_MISS, UNCACHED_BUDGET),
)


def _verifier(material: _fixtures.Material, issuer: str, **options: Any) -> Any:
    from scopegate import JWTVerifier

    return JWTVerifier(
        issuer=issuer,
        audience=_fixtures.AUDIENCE,
        keys={"keys": [material.jwk("RS256")]},
        **options,
    )


def _router(material: _fixtures.Material, issuers: int, **options: Any) -> Any:
    """A router whose last issuer is the bench tokens' issuer."""
    from scopegate import IssuerRouter

    others = [
        _verifier(material, f"https://other-{i}.bench.example", **options)
        for i in range(issuers - 1)
    ]
    return IssuerRouter([*others, _verifier(material, _fixtures.ISSUER, **options)])


def _cycling(verify: Any, tokens: list[str]) -> Any:
    """``verify`` called with the next token of an endless cycle over *tokens*."""
    following = itertools.cycle(tokens).__next__
    return lambda: verify(following())


def build_cases(material: _fixtures.Material, unique: list[str]) -> list[_harness.Case]:
    token = material.tokens["RS256"]
    subject = "user-1234"
    runs: dict[str, Any] = {
        SINGLE_HIT: _verifier(material, _fixtures.ISSUER).verify,
        ROUTER_HIT: _router(material, 2).verify,
        ROUTER8_HIT: _router(material, 8).verify,
        SINGLE_OFF: _verifier(material, _fixtures.ISSUER, cache_verified=False).verify,
        ROUTER_OFF: _router(material, 2, cache_verified=False).verify,
    }
    cases = []
    for name, verify in runs.items():
        # Every case judges the same token the same way before it is timed.
        if verify(token).subject != subject:  # pragma: no cover - a broken bench
            raise AssertionError(f"{name}: wrong subject")
        cases.append(_harness.call_case(name, lambda v=verify: v(token), group="issuers"))
    for name, verify in (
        (SINGLE_MISS, _verifier(material, _fixtures.ISSUER).verify),
        (ROUTER_MISS, _router(material, 2).verify),
    ):
        if verify(unique[0]).subject != subject:  # pragma: no cover - a broken bench
            raise AssertionError(f"{name}: wrong subject")
        cases.append(_harness.call_case(name, _cycling(verify, unique), group="issuers"))
    # Interleave each router case next to its baseline, so both see the same noise.
    order = [SINGLE_HIT, ROUTER_HIT, ROUTER8_HIT, SINGLE_OFF, ROUTER_OFF, SINGLE_MISS, ROUTER_MISS]
    return sorted(cases, key=lambda c: order.index(c.name))


def report(stats: dict[str, _harness.Stat]) -> dict[str, Any]:
    baselines = {ROUTER_HIT: SINGLE_HIT, ROUTER8_HIT: SINGLE_HIT, ROUTER_OFF: SINGLE_OFF}
    baselines[ROUTER_MISS] = SINGLE_MISS
    rows = []
    for name, stat in stats.items():
        base = baselines.get(name)
        extra = (
            _harness.fmt_summary(_harness.difference(stats, name, base), prefix="+")
            if base
            else "-"
        )
        rows.append([name, _harness.fmt_us(stat), extra])
    targets = []
    for figure, case, base, budget in FIGURES:
        value = _harness.difference(stats, case, base)
        targets.append(
            {
                "figure": f"Issue 15: routing by issuer, {figure} (µs)",
                "value": value,
                "shown": _harness.fmt_summary(value, prefix="+"),
                "target": f"≤ {budget:g} µs",
                "met": value["median"] <= budget,
            }
        )
    table = _harness.markdown_table(
        ["case", "µs/verification median (min-max)", "router - single, µs"], rows
    )
    return {"rows": [s.row() for s in stats.values()], "markdown": table, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--target", type=float, default=0.03, help="seconds per sample")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    args = parser.parse_args(argv)
    material = _fixtures.load(unique=0 if args.quick else _fixtures.UNIQUE_TOKENS)
    unique = material.unique_tokens() if not args.quick else [material.tokens["RS256"]]
    if args.quick and not unique[0]:  # pragma: no cover - material without tokens
        raise SystemExit("no bench tokens")
    start, load_before = time.monotonic(), _harness.loadavg()
    cases = build_cases(material, unique)
    stats = _harness.run_cases(cases, rounds=args.rounds, target=args.target, quick=args.quick)
    out = report(stats)
    out["title"] = TITLE
    out["notes"] = (
        f"{args.rounds if not args.quick else 2} interleaved rounds, ~{args.target}s/sample, "
        f"GC off, thread CPU time; RS256, static keys; {len(unique)} unique tokens for the "
        f"cache-miss cases; loadavg {load_before} → {_harness.loadavg()}; "
        f"elapsed {time.monotonic() - start:.0f}s"
    )
    out["versions"] = _harness.versions("cryptography", "scopegate")
    print(f"## {TITLE}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out["targets"]:
        verdict = "met" if t["met"] else "NOT met"
        print(f"- {t['figure']}: {t['shown']} (target {t['target']}: {verdict})")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
