"""Opaque-token (RFC 7662) cost: cached hits in memory and in Redis, and calls under load.

Measured in one run, interleaved rounds (see ``_harness``), against a real introspection
server on 127.0.0.1 (``tests/introspection/introspection_server.py``) and, when the
binary is installed, a real ``redis-server`` started on a free port:

* ``cached hit (memory)``: ``IntrospectionVerifier.verify`` of a token already in the
  default ``MemoryCache`` (SHA-256 key, lookup, AccessToken built);
* ``cached hit (memory, async)``: the same through ``averify`` inside a running loop;
* ``cached hit (Redis)`` / ``(Redis, async)``: the same with ``RedisCache`` (one Redis
  ``GET`` round trip on loopback plus JSON decoding and re-validation of the claims);
* ``uncached (HTTP introspection)``: ``cache_ttl=0``, so every call is a real HTTP
  round trip to the local server: what the cache saves.

Then the introspection call counts for one uncached token under concurrency: 100
concurrent ``averify`` calls, 32 threads, and 8 verifiers sharing one Redis (each its
own "worker"), with the server answering in 200 ms.

Usage::

    .venv/bin/python benchmarks/bench_introspection.py [--rounds 9] [--target 0.1]
        [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.introspection.introspection_server import IntrospectionServer  # noqa: E402
from tests.servers import free_port, wait_for_port  # noqa: E402

from scopegate._cache import RedisCache  # noqa: E402
from scopegate._introspection import IntrospectionVerifier  # noqa: E402

TITLE = "Opaque tokens: introspection cache (µs/verification)"
TOKEN = "bench-opaque-token-0123456789abcdefghijklmnopqrstuvwxyzABCDEF"


def claims() -> dict[str, Any]:
    """An active answer valid for an hour from now."""
    now = int(time.time())
    return {
        "active": True,
        "scope": "items:read items:write",
        "sub": "alice",
        "client_id": "svc-a",
        "exp": now + 3600,
        "iat": now - 5,
        "iss": "https://as.example",
        "aud": "api",
    }


class Redis:
    """A throwaway redis-server on a free port."""

    def __init__(self, binary: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def make(server: IntrospectionServer, **kwargs: Any) -> IntrospectionVerifier:
    """A verifier against the bench server."""
    return IntrospectionVerifier(
        introspection_uri=server.url,
        client_id=server.client_id,
        client_secret=server.client_secret,
        issuer="https://as.example",
        audience="api",
        **kwargs,
    )


def async_case(
    name: str, loop: asyncio.AbstractEventLoop, fn: Callable[[], Any], group: str
) -> _harness.Case:
    """A case timing ``await fn()`` n times inside one running loop (GC off, as timeit)."""

    async def batch(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        return time.perf_counter() - start

    def run(n: int) -> float:
        enabled = gc.isenabled()
        gc.disable()
        try:
            return loop.run_until_complete(batch(n))
        finally:
            if enabled:
                gc.enable()

    return _harness.Case(name, run, group)


def concurrency(server: IntrospectionServer, redis_url: str | None, quick: bool) -> dict[str, Any]:
    """Introspection calls made for one uncached token under concurrent load."""
    server.delay = 0.2
    results: dict[str, Any] = {}

    server.calls = 0
    verifier = make(server)
    n_async = 20 if quick else 100

    async def gather() -> None:
        try:
            await asyncio.gather(*(verifier.averify(TOKEN) for _ in range(n_async)))
        finally:
            await verifier.aclose()

    asyncio.run(gather())
    results[f"{n_async} concurrent averify, memory cache"] = server.calls

    server.calls = 0
    verifier = make(server)
    n_threads = 8 if quick else 32
    barrier = threading.Barrier(n_threads)

    def worker() -> None:
        barrier.wait()
        verifier.verify(TOKEN)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verifier.close()
    results[f"{n_threads} threads, memory cache"] = server.calls

    if redis_url is not None:
        server.calls = 0
        caches = [RedisCache(redis_url, prefix=f"bench-{time.time_ns()}:") for _ in range(1)]
        prefix = caches[0].prefix
        caches += [RedisCache(redis_url, prefix=prefix) for _ in range(7)]
        verifiers = [make(server, cache=c) for c in caches]
        barrier = threading.Barrier(len(verifiers))

        def redis_worker(v: IntrospectionVerifier) -> None:
            barrier.wait()
            v.verify(TOKEN)

        threads = [threading.Thread(target=redis_worker, args=(v,)) for v in verifiers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for v, c in zip(verifiers, caches, strict=True):
            v.close()
            c.close()
        results["8 verifiers (workers) sharing Redis, 1 thread each"] = server.calls
    server.delay = 0.0
    return results


def main() -> int:
    """Run the benchmark; print a table; optionally write JSON for benchmarks/run.py."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--target", type=float, default=0.1)
    parser.add_argument("--json", dest="json_path")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    server = IntrospectionServer()
    server.start()
    server.tokens[TOKEN] = claims()
    binary = shutil.which("redis-server")
    redis = Redis(binary) if binary else None
    loop = asyncio.new_event_loop()
    verifiers: list[IntrospectionVerifier] = []
    caches: list[RedisCache] = []
    try:
        memory = make(server)
        memory_async = make(server)
        uncached = make(server, cache_ttl=0)
        verifiers += [memory, memory_async, uncached]
        memory.verify(TOKEN)
        loop.run_until_complete(memory_async.averify(TOKEN))
        cases = [
            _harness.call_case("cached hit (memory)", lambda: memory.verify(TOKEN), group="hit"),
            async_case(
                "cached hit (memory, async)", loop, lambda: memory_async.averify(TOKEN), "hit"
            ),
        ]
        if redis is not None:
            redis_cache = RedisCache(redis.url)
            redis_async_cache = RedisCache(redis.url)
            caches += [redis_cache, redis_async_cache]
            on_redis = make(server, cache=redis_cache)
            on_redis_async = make(server, cache=redis_async_cache)
            verifiers += [on_redis, on_redis_async]
            on_redis.verify(TOKEN)
            loop.run_until_complete(on_redis_async.averify(TOKEN))
            cases += [
                _harness.call_case(
                    "cached hit (Redis)", lambda: on_redis.verify(TOKEN), group="hit"
                ),
                async_case(
                    "cached hit (Redis, async)", loop, lambda: on_redis_async.averify(TOKEN), "hit"
                ),
            ]
        cases.append(
            _harness.call_case(
                "uncached (HTTP introspection, 127.0.0.1)",
                lambda: uncached.verify(TOKEN),
                group="miss",
                gc_off=False,
            )
        )
        calls_before = server.calls
        stats = _harness.run_cases(cases, rounds=args.rounds, target=args.target, quick=args.quick)
        hit_calls = server.calls - calls_before
        counts = concurrency(server, redis.url if redis else None, args.quick)
    finally:
        for verifier in verifiers:
            verifier.close()
        loop.run_until_complete(_close_async(verifiers, caches))
        loop.close()
        for cache in caches:
            cache.close()
        if redis is not None:
            redis.stop()
        server.stop()

    rows = [stats[c.name] for c in cases]
    table = _harness.markdown_table(
        ["case", "µs/verification median (min to max)"],
        [[s.case, _harness.fmt_us(s)] for s in rows],
    )
    notes = []
    base = "cached hit (memory)"
    for name in ("cached hit (Redis)", "uncached (HTTP introspection, 127.0.0.1)"):
        if name in stats:
            notes.append(
                f"{name} ÷ {base}: {_harness.fmt_summary(_harness.ratio(stats, name, base))}"
            )
    notes.append(
        "Introspection calls for one uncached token under concurrency (server answers in 200 ms): "
        + "; ".join(f"{k}: {v}" for k, v in counts.items())
    )
    if redis is None:
        notes.append("redis-server not installed: Redis rows skipped.")
    notes.append(f"(The timed loops made {hit_calls} HTTP calls, all from the uncached case.)")
    print(f"## {TITLE}\n")
    print(table)
    print()
    for note in notes:
        print(f"- {note}")
    if args.json_path:
        _harness.write_json(
            args.json_path,
            {
                "title": TITLE,
                "rows": [s.row() for s in rows],
                "notes": "\n".join(notes),
                "concurrency_calls": counts,
                "versions": _harness.versions("httpx", "redis", "cachetools"),
                "loadavg": _harness.loadavg(),
            },
        )
    return 0


async def _close_async(verifiers: list[IntrospectionVerifier], caches: list[RedisCache]) -> None:
    for verifier in verifiers:
        await verifier.aclose()
    for cache in caches:
        await cache.aclose()


if __name__ == "__main__":
    raise SystemExit(main())
