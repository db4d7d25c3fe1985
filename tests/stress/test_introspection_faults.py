"""Fault injection on RFC 7662 introspection and on its Redis cache, with real processes.

The introspection endpoint is :mod:`tests.stress.faultserver` (a separate process);
the shared cache is a real ``redis-server``. Expected:

* a token with no cached answer during an endpoint fault: 503 with ``Retry-After``
  within the timeout plus a margin, and the same verifier recovers afterwards;
* a token whose answer is cached: still accepted during the fault;
* Redis stopped and restarted under load: every request still gets the right answer
  (the cache degrades to a miss, never to an error) and the cache is used again once
  Redis is back, without restarting anything.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest

from scopegate._cache import RedisCache
from scopegate._errors import BearerError, IntrospectionUnavailableError, InvalidTokenError
from scopegate._introspection import IntrospectionVerifier
from scopegate._token import AccessToken
from tests.servers import RedisServer
from tests.stress.figures import record
from tests.stress.procs import ASYNC_FAULTS, FAULTS, FaultServer, inject

TIMEOUT = 1.0
LATENCY_BOUND = 2 * TIMEOUT + 2.0
SECRET = "rs-secret-for-stress"

CASES = [pytest.param(p.values[0], False, id=f"sync-{p.id}") for p in FAULTS] + [
    pytest.param(name, True, id=f"async-{name}") for name in ASYNC_FAULTS
]


def answers(n: int = 20) -> dict[str, Any]:
    """Introspection answers for n active tokens and n inactive ones."""
    exp = int(time.time()) + 3600
    table: dict[str, Any] = {}
    for i in range(n):
        table[f"active-{i}"] = {
            "active": True,
            "scope": "items:read",
            "sub": f"user-{i}",
            "client_id": "app",
            "exp": exp,
        }
        table[f"inactive-{i}"] = {"active": False}
    return table


def make_verifier(server: FaultServer, **overrides: Any) -> IntrospectionVerifier:
    """A verifier introspecting at the fault server with short timers."""
    options: dict[str, Any] = {
        "introspection_uri": server.url + "/introspect",
        "client_id": "rs",
        "client_secret": SECRET,
        "cache_ttl": 60,
        "negative_ttl": 1,
        "http_timeout": TIMEOUT,
    }
    options.update(overrides)
    return IntrospectionVerifier(**options)


def heal(server: FaultServer, fault: str) -> None:
    """Bring the introspection server back (restarted processes lose their table)."""
    if fault == "down":
        server.start()
    server.control(mode="ok", tokens=answers())


def run(verifier: IntrospectionVerifier, token: str, use_async: bool) -> tuple[Any, float]:
    """Verify *token*; return the outcome (token or error) and the time taken."""
    start = time.monotonic()
    try:
        outcome: Any = asyncio.run(verifier.averify(token)) if use_async else verifier.verify(token)
    except BearerError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


@pytest.fixture
def as_server(fault_server: FaultServer) -> FaultServer:
    """The fault server answering introspection for the tokens of :func:`answers`."""
    fault_server.control(tokens=answers())
    return fault_server


@pytest.mark.parametrize(("fault", "use_async"), CASES)
def test_fault_without_cache_is_503_cached_tokens_survive(
    as_server: FaultServer, fault: str, use_async: bool
) -> None:
    """Uncached tokens get a bounded 503 + Retry-After during a fault; cached ones still pass."""
    verifier = make_verifier(as_server)
    assert isinstance(run(verifier, "active-0", use_async)[0], AccessToken)
    inject(as_server, fault)
    for i in range(1, 4):
        outcome, elapsed = run(verifier, f"active-{i}", use_async)
        assert isinstance(outcome, IntrospectionUnavailableError), outcome
        assert elapsed < LATENCY_BOUND
        response = outcome.to_response()
        assert response.status == 503
        assert dict(response.headers)["retry-after"].isdigit()
        cached, _ = run(verifier, "active-0", use_async)
        assert isinstance(cached, AccessToken)  # the cached answer rides out the fault
        record(f"introspection fault: {fault}")
    heal(as_server, fault)
    outcome, _ = run(verifier, "active-1", use_async)
    assert isinstance(outcome, AccessToken), outcome
    inactive, _ = run(verifier, "inactive-1", use_async)
    assert isinstance(inactive, InvalidTokenError)
    verifier.close()


def _right(token: str, outcome: Any) -> bool:
    if token.startswith("active-"):
        return isinstance(outcome, AccessToken) and outcome.subject == "user-" + token.split("-")[1]
    return isinstance(outcome, InvalidTokenError)


@pytest.mark.redis
def test_redis_stopped_and_restarted_under_load(
    as_server: FaultServer, redis_server: RedisServer
) -> None:
    """Two verifiers sharing Redis stay correct while Redis stops and restarts, then reuse it."""
    caches = [
        RedisCache(redis_server.url, socket_timeout=0.5, retry_interval=0.5) for _ in range(2)
    ]
    verifiers = [make_verifier(as_server, cache=cache, negative_ttl=30) for cache in caches]
    tokens = (
        [f"active-{i}" for i in range(10)] + [f"inactive-{i}" for i in range(10)] + ["unknown-x"]
    )
    stop = threading.Event()
    wrong: list[str] = []
    tally: Counter[str] = Counter()
    slowest = [0.0]
    lock = threading.Lock()

    def worker(n: int) -> None:
        verifier = verifiers[n % 2]
        i = n
        while not stop.is_set():
            token = tokens[i % len(tokens)]
            i += 1
            outcome, elapsed = run(verifier, token, use_async=False)
            with lock:
                tally["requests"] += 1
                slowest[0] = max(slowest[0], elapsed)
                if not _right(token, outcome):
                    wrong.append(f"{token}: {outcome!r}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        for _ in range(2):
            redis_server.stop()
            record("redis stopped under load")
            time.sleep(1.5)
            redis_server.start()
            time.sleep(1.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not wrong, wrong[:5]
    assert slowest[0] < LATENCY_BOUND
    record("introspection requests across redis restarts (all correct)", tally["requests"])

    # Recovered without a restart: a new token is introspected once, then served by Redis
    # to both verifiers.
    time.sleep(0.6)  # past the circuit breaker's retry interval
    for verifier in verifiers:
        verifier.verify("active-16")  # re-opens any connection the restart broke
    time.sleep(0.6)
    as_server.control(reset_stats=True)
    for verifier in verifiers * 3:
        assert isinstance(verifier.verify("active-15"), AccessToken)
    assert as_server.hits("/introspect") == 1
    for cache, verifier in zip(caches, verifiers, strict=True):
        verifier.close()
        cache.close()


@pytest.mark.redis
@pytest.mark.anyio
async def test_redis_restart_async(as_server: FaultServer, redis_server: RedisServer) -> None:
    """Concurrent averify calls with a Redis cache stay correct across a Redis restart."""
    cache = RedisCache(redis_server.url, socket_timeout=0.5, retry_interval=0.5)
    verifier = make_verifier(as_server, cache=cache)
    tokens = [f"active-{i}" for i in range(10)] + [f"inactive-{i}" for i in range(5)]
    wrong: list[str] = []
    done = [0]
    stop = asyncio.Event()

    async def worker(n: int) -> None:
        i = n
        while not stop.is_set():
            token = tokens[i % len(tokens)]
            i += 1
            try:
                outcome: Any = await verifier.averify(token)
            except BearerError as exc:
                outcome = exc
            done[0] += 1
            if not _right(token, outcome):
                wrong.append(f"{token}: {outcome!r} {getattr(outcome, 'reason', '')}")
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(worker(n)) for n in range(12)]
    await asyncio.sleep(0.5)
    await asyncio.to_thread(redis_server.stop)
    record("redis stopped under async load")
    await asyncio.sleep(1.5)
    await asyncio.to_thread(redis_server.start)
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.gather(*tasks)
    assert not wrong, wrong[:5]
    record("async introspection requests across a redis restart (all correct)", done[0])
    await verifier.aclose()
    await cache.aclose()


def test_flapping_endpoint_under_load(as_server: FaultServer) -> None:
    """A flapping endpoint (200/500 in turn) gives only right answers or 503, never a wrong one."""
    verifier = make_verifier(as_server, cache_ttl=0, negative_ttl=0)  # every request asks the AS
    as_server.control(mode="flap")
    tokens = [f"active-{i}" for i in range(5)] + [f"inactive-{i}" for i in range(5)]
    seen: Counter[str] = Counter()
    wrong: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        for i in range(n, n + 60):
            token = tokens[i % len(tokens)]
            outcome, elapsed = run(verifier, token, use_async=False)
            with lock:
                if isinstance(outcome, IntrospectionUnavailableError):
                    seen["503"] += 1
                elif _right(token, outcome):
                    seen["right"] += 1
                else:
                    wrong.append(f"{token}: {outcome!r}")
                if elapsed >= LATENCY_BOUND:
                    wrong.append(f"{token}: took {elapsed:.1f} s")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not wrong, wrong[:5]
    assert seen["503"] > 0
    assert seen["right"] > 0
    record("introspection fault: flap (under load)")
    record("introspection requests against a flapping endpoint (right or 503)", sum(seen.values()))
    verifier.close()
