"""Memory per verified-token cache entry, and the cost of a scope string not seen before.

In-process, no server:

* **Memory per cache entry**: 10 000 unique RS256 tokens go through Starlette + scopegate's
  ASGI middleware (default verifier, cache on). The ``Authorization`` header values are
  ``bytes`` read from the token file, so the middleware decodes a fresh ``str`` per
  request as under a server (the cache key is that ``str``, not the fixture list's).
  Measured twice, each time with a fresh app: the **tracemalloc** delta (every Python
  allocation still alive after ``gc.collect()``, token string included) and the **RSS**
  delta of the process (allocator overhead and fragmentation included), each ÷ 10 000.
  The tracemalloc pass also lists the allocation sites that hold the memory.
* **500-scope token, scope string not seen before ÷ known**: ``JWTVerifier`` with the
  verified-token cache **off** (so the scope handling is what differs), verifying RS256
  tokens with 500 scopes: "new" tokens each carry a scope string of their own (500 names
  drawn from a 1000-name vocabulary, shuffled: a new string, known names), "known" tokens
  all carry one string. Steady state first: more distinct new-scope tokens than twice
  the verifier's scope memo are verified before timing, so any internal memo is full and
  evicting. Then interleaved rounds (order reversed every other round), fixed batches,
  GC off (as in ``bench_verify``), CPU time of the thread; the ratio is taken per round.
  A 5-scope token (known) is timed beside them for scale.

Usage::

    .venv/bin/python benchmarks/bench_tokens.py [--entries 10000] [--rounds 21] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import _apps
import _fixtures
import _harness
from bench_inproc import _receive as receive
from bench_inproc import asgi_scope
from bench_profile import short_path

TITLE = "Memory per cache entry and scope strings (in-process)"
#: Issue-18 goals.
MEMORY_GOAL_KB = 1.5
SCOPES_GOAL = 1.3
KB = 1024


# --- memory per verified-cache entry ----------------------------------------------------


def _drive(loop: asyncio.AbstractEventLoop, app: Any, scopes: Sequence[dict[str, Any]]) -> int:
    """Send every scope through *app*; returns how many were not answered 200."""
    bad = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal bad
        if message["type"] == "http.response.start" and message["status"] != 200:
            bad += 1

    async def all_requests() -> None:
        for scope in scopes:
            await app(dict(scope), receive, send)

    loop.run_until_complete(all_requests())
    return bad


def rss_bytes() -> int:
    """Resident set size of this process (``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _cache_len(app: Any) -> int:
    try:
        return len(app.guard.verifier._cache)
    except (AttributeError, TypeError):
        return 0


def protected_app(material: _fixtures.Material, cache_size: int) -> Any:
    """Starlette + scopegate's ASGI middleware whose cache holds *cache_size* tokens (the
    bench apps' routes; a cache big enough that nothing is evicted during the count)."""
    from starlette.applications import Starlette

    from scopegate._jwt import JWTVerifier
    from scopegate.asgi import BearerAuthMiddleware

    verifier = JWTVerifier(
        issuer=_fixtures.ISSUER,
        audience=_fixtures.AUDIENCE,
        keys=material.jwks,
        cache_size=cache_size,
    )
    inner = Starlette(routes=_apps._starlette_routes(protected_scope=False))
    return BearerAuthMiddleware(inner, verifier=verifier, exclude_paths=("/bare",))


def _read_tokens(material: _fixtures.Material, count: int) -> list[bytes]:
    """The first *count* unique tokens as ``bytes`` (read line by line: no large garbage
    freed before the baseline, which the next allocations would reuse without RSS growth)."""
    out: list[bytes] = []
    with material.unique_path.open("rb") as lines:
        for line in lines:
            if len(out) >= count:
                break
            if line.strip():
                out.append(line.strip())
    if len(out) < count:
        raise RuntimeError(f"only {len(out)} unique tokens available")
    return out


def _fill(
    material: _fixtures.Material, entries: int, measure: Callable[[], Any]
) -> tuple[Any, Any, int, int]:
    """Run *entries* unique tokens through a fresh app; ``measure()`` is taken before and
    after (after ``gc.collect()``). Returns (before, after, entries added, token length)."""
    scopes = [asgi_scope("/protected", token.decode()) for token in _read_tokens(material, entries)]
    length = len(scopes[0]["headers"][-1][1]) - len(b"Bearer ")
    loop = asyncio.new_event_loop()
    try:
        app = protected_app(material, entries + 64)
        if _drive(loop, app, [asgi_scope("/protected", material.tokens["RS256"])]):
            raise AssertionError("the warm-up request was refused")
        gc.collect()
        held = _cache_len(app)
        before = measure()
        bad = _drive(loop, app, scopes)
        gc.collect()
        after = measure()
        added = _cache_len(app) - held
    finally:
        loop.close()
    if bad or added != entries:
        raise AssertionError(f"{bad} requests refused, {added} of {entries} tokens cached")
    return before, after, added, length


def rss_child(entries: int) -> dict[str, Any]:
    """The RSS measure, run in a fresh interpreter (``--rss-child``)."""
    material = _fixtures.load(unique=0)
    before, after, added, _length = _fill(material, entries, rss_bytes)
    return {"rss_bytes": (after - before) / added, "added": added}


def memory_per_entry(material: _fixtures.Material, entries: int) -> dict[str, Any]:
    """tracemalloc and RSS bytes per verified-cache entry after *entries* unique tokens.

    RSS comes from a fresh child process (nothing freed before its baseline); the
    tracemalloc pass runs here and also lists the allocation sites that hold the memory.
    """
    import json
    import subprocess

    child = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(entries)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "SCOPEGATE_BENCH_DIR": str(material.root)},
    )
    if child.returncode != 0:
        raise RuntimeError(f"RSS child failed: {child.stderr.strip()[-500:]}")
    rss = json.loads(child.stdout.strip().splitlines()[-1])

    def snapshot() -> tracemalloc.Snapshot:
        return tracemalloc.take_snapshot()

    tracemalloc.start(1)
    try:
        first, second, added, length = _fill(material, entries, snapshot)
    finally:
        tracemalloc.stop()
    keep = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    diff = second.filter_traces(keep).compare_to(first.filter_traces(keep), "lineno")
    total = sum(d.size_diff for d in diff)
    key = _read_tokens(material, 1)[0].decode("latin-1")
    return {
        "entries": added,
        "cache_size": entries + 64,
        "rss_bytes": rss["rss_bytes"],
        "traced_bytes": total / added,
        "sites": [
            {
                "site": f"{short_path(d.traceback[0].filename)}:{d.traceback[0].lineno}",
                "bytes_per_entry": d.size_diff / added,
                "blocks_per_entry": d.count_diff / added,
            }
            for d in sorted(diff, key=lambda d: -d.size_diff)[:8]
            if d.size_diff > 0
        ],
        "token_bytes": sys.getsizeof(key),
        "token_length": length,
    }


# --- scope strings not seen before ------------------------------------------------------


def _memo_size() -> int:
    """The verifier's scope memo size when it has one (else 1024)."""
    try:
        from scopegate import _jwt

        return int(getattr(_jwt, "_SCOPE_CACHE_SIZE", 1024))
    except ImportError:  # pragma: no cover
        return 1024


def scope_ratio(
    material: _fixtures.Material, *, rounds: int, batch: int, fill: int
) -> dict[str, Any]:
    """Per-round ratio of verifying a 500-scope token with a new scope string ÷ a known one."""
    verifier = _apps.scopegate_verifier(material, cached=False)
    need = fill + rounds * batch
    new = _fixtures.new_scope_tokens(material, need)
    _rep, known_file = _fixtures.variant_files(material, "scopes-500", 64)
    known = known_file.read_text().split()[:64]
    _rep5, small_file = _fixtures.variant_files(material, "scopes-5", 64)
    small = small_file.read_text().split()[:64]
    for token, count in ((new[0], 500), (known[0], 500), (small[0], 5)):
        got = verifier.verify(token)
        if len(got.scopes) != count or "items:read" not in got.scopes:
            raise AssertionError(f"unexpected scopes: {len(got.scopes)}")
    for token in new[:fill]:  # steady state: any scope memo full and evicting
        verifier.verify(token)
    fresh: Iterator[str] = iter(new[fill:])
    verify = verifier.verify

    def cycle(tokens: list[str]) -> Callable[[], str]:
        state = {"i": 0}

        def nxt() -> str:
            state["i"] = (state["i"] + 1) % len(tokens)
            return tokens[state["i"]]

        return nxt

    sources: dict[str, Callable[[], str]] = {
        "new": lambda: next(fresh),
        "known": cycle(known),
        "5 scopes": cycle(small),
    }
    samples: dict[str, list[float]] = {k: [] for k in sources}
    clock = _harness.clock
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            order = list(sources) if r % 2 == 0 else list(reversed(sources))
            for name in order:
                batch_tokens = [sources[name]() for _ in range(batch)]
                start = clock()
                for token in batch_tokens:
                    verify(token)
                samples[name].append((clock() - start) / batch * 1e6)
    finally:
        if gc_was:
            gc.enable()
    ratios = [a / b for a, b in zip(samples["new"], samples["known"], strict=True)]
    return {
        "rounds": rounds,
        "batch": batch,
        "fill": fill,
        "memo": _memo_size(),
        "us": {k: _harness.summary(v) for k, v in samples.items()},
        "ratio": _harness.summary(ratios),
        "token_length": len(new[0]),
    }


# --- report -----------------------------------------------------------------------------


def report(memory: dict[str, Any], scopes: dict[str, Any]) -> dict[str, Any]:
    traced_kb = memory["traced_bytes"] / KB
    rss_kb = memory["rss_bytes"] / KB
    one = {"median": traced_kb, "min": traced_kb, "max": traced_kb}
    targets = [
        {
            "key": "scopes new",
            "group": "issue 18",
            "figure": "500-scope token with a scope string not seen before ÷ a known one "
            "(verification, verified-token cache off)",
            "value": scopes["ratio"],
            "shown": _harness.fmt_summary(scopes["ratio"], digits=3),
            "target": f"≤ {SCOPES_GOAL}",
            "met": scopes["ratio"]["median"] <= SCOPES_GOAL,
            "also": f"new {scopes['us']['new']['median']:.1f} µs, known "
            f"{scopes['us']['known']['median']:.1f} µs",
        },
        {
            "key": "cache entry memory",
            "group": "issue 18",
            "figure": f"memory per verified-cache entry ({memory['entries']} unique tokens "
            "through the ASGI middleware, tracemalloc)",
            "value": one,
            "shown": f"{traced_kb:.2f} KB ({memory['traced_bytes']:.0f} B)",
            "keep_shown": True,
            "target": f"≤ {MEMORY_GOAL_KB} KB",
            "met": traced_kb <= MEMORY_GOAL_KB,
            "also": f"RSS: {rss_kb:.2f} KB/entry "
            f"({memory['rss_bytes'] * memory['entries'] / 1e6:.1f} MB in all)",
        },
    ]
    mem_rows = [
        [
            "tracemalloc (Python allocations alive after gc.collect)",
            f"**{memory['traced_bytes']:.0f}** B ({traced_kb:.2f} KB)",
            f"{memory['traced_bytes'] * memory['entries'] / 1e6:.1f} MB",
        ],
        [
            "RSS of the process",
            f"**{memory['rss_bytes']:.0f}** B ({rss_kb:.2f} KB)",
            f"{memory['rss_bytes'] * memory['entries'] / 1e6:.1f} MB",
        ],
    ]
    sites = [
        [s["site"], f"{s['bytes_per_entry']:.0f}", f"{s['blocks_per_entry']:.2f}"]
        for s in memory.get("sites", [])
    ]
    us = scopes["us"]
    scope_rows = [
        [
            "500 scopes, scope string not seen before",
            _harness.fmt_summary(us["new"], prefix="", digits=1),
            _harness.fmt_summary(scopes["ratio"]),
        ],
        [
            "500 scopes, known scope string",
            _harness.fmt_summary(us["known"], prefix="", digits=1),
            "x1",
        ],
        [
            "5 scopes, known scope string (scale)",
            _harness.fmt_summary(us["5 scopes"], prefix="", digits=1),
            "-",
        ],
    ]
    markdown = "\n\n".join(
        [
            f"### Memory per verified-token cache entry ({memory['entries']} unique RS256 "
            f"tokens of {memory['token_length']} characters; the key `str` alone is "
            f"{memory['token_bytes']} B)",
            _harness.markdown_table(["measure", "per entry", "all entries"], mem_rows),
            "Where it is held (tracemalloc, innermost allocating line):",
            _harness.markdown_table(["allocation site", "bytes/entry", "blocks/entry"], sites),
            "### 500-scope tokens: scope string not seen before vs known (µs/verification)",
            _harness.markdown_table(
                ["case", "µs/verification median (min-max)", "÷ known, per round"], scope_rows
            ),
        ]
    )
    return {"targets": targets, "markdown": markdown}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=10_000, help="unique tokens cached")
    parser.add_argument("--rounds", type=int, default=21, help="scope rounds")
    parser.add_argument("--batch", type=int, default=100, help="verifications per sample")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        import json

        print(json.dumps(rss_child(args.rss_child)))
        return 0
    warnings.simplefilter("ignore")
    if args.quick:
        args.entries, args.rounds, args.batch = 200, 2, 3
    fill = 20 if args.quick else max(2048, 2 * _memo_size())
    material = _fixtures.load(unique=max(args.entries, 64))
    start, load_before = time.monotonic(), _harness.loadavg()
    memory = memory_per_entry(material, args.entries)
    scopes = scope_ratio(material, rounds=args.rounds, batch=args.batch, fill=fill)
    out = report(memory, scopes)
    out["title"] = TITLE
    out["rows"] = []
    out["memory"], out["scopes"] = memory, scopes
    out["notes"] = (
        f"Memory: Starlette + scopegate ASGI middleware, default verifier settings but "
        f"`cache_size={memory['cache_size']}` so that none of the {memory['entries']} entries "
        "is evicted during the count; header values as bytes so each cached key is a fresh "
        "str; one fresh app per measure (RSS in a fresh process); per entry = delta ÷ "
        "entries added to the cache. Scopes: verified-token cache off; "
        f"{fill} distinct new-scope tokens verified first (the scope memo holds "
        f"{scopes['memo']}); {scopes['rounds']} interleaved rounds of {scopes['batch']} "
        f"verifications per case, GC off, thread CPU time; tokens {scopes['token_length']} "
        f"characters. loadavg {load_before} → {_harness.loadavg()}; elapsed "
        f"{time.monotonic() - start:.0f}s"
    )
    out["versions"] = _harness.versions("starlette", "cryptography", "scopegate")
    print(f"## {TITLE}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out["targets"]:
        print(f"- {t['figure']}: {t['shown']} (goal {t['target']}; {t['also']})")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
