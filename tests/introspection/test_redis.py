"""Introspection shared through a real redis-server: processes, outages and recovery."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from scopegate._cache import CacheEntry, RedisCache
from scopegate._errors import InvalidTokenError
from scopegate._flow import arun, run
from scopegate._introspection import IntrospectionVerifier
from tests.introspection.conftest import FakeClock, active
from tests.introspection.introspection_server import IntrospectionServer
from tests.servers import ROOT, RedisServer

pytestmark = pytest.mark.redis

MakeVerifier = Callable[..., IntrospectionVerifier]
MODES = [pytest.param("sync", id="sync"), pytest.param("async", id="async")]
TOKEN = "redis-shared-token-0123456789abcdefghijklmnopqrstuvwxyz"


@pytest.fixture
def caches(redis_server: RedisServer) -> Iterator[Callable[..., RedisCache]]:
    """Builds RedisCache objects on the test's redis-server (closed afterwards)."""
    made: list[RedisCache] = []

    def make(**kwargs: Any) -> RedisCache:
        cache = RedisCache(redis_server.url, **kwargs)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        cache.close()


def raw_redis(server: RedisServer) -> redis.Redis:
    """A plain client to look inside Redis."""
    return redis.Redis.from_url(server.url)


def test_two_verifiers_share_one_introspection(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
) -> None:
    """A second verifier (another worker) reuses the first one's answer through Redis."""
    server.tokens[TOKEN] = active()
    first = make_verifier(cache=caches())
    second = make_verifier(cache=caches())
    assert first.verify(TOKEN).subject == "alice"
    assert second.verify(TOKEN).scopes == frozenset({"items:read", "items:write"})
    assert server.calls == 1
    client = raw_redis(redis_server)
    try:
        keys = client.keys("*")
        assert len(keys) == 1
        (key,) = keys
        assert key.startswith(b"scopegate:introspection:")
        assert TOKEN.encode() not in key
        assert TOKEN[:10].encode() not in key
        assert TOKEN.encode() not in client.get(key)
        # Stored with an expiry no longer than cache_ttl.
        assert 0 < client.pttl(key) <= 60_000
    finally:
        client.close()


def test_async_path_shares_with_sync_path(
    server: IntrospectionServer, make_verifier: MakeVerifier, caches: Callable[..., RedisCache]
) -> None:
    """An answer stored by averify (redis.asyncio) is read by verify (redis-py sync)."""
    server.tokens[TOKEN] = active()
    cache = caches()
    first = make_verifier(cache=cache)

    async def go() -> None:
        try:
            assert (await first.averify(TOKEN)).subject == "alice"
            assert (await first.averify(TOKEN)).subject == "alice"
        finally:
            await first.aclose()
            await cache.aclose()

    asyncio.run(go())
    assert make_verifier(cache=caches()).verify(TOKEN).subject == "alice"
    assert server.calls == 1


def test_negative_answers_are_shared(
    server: IntrospectionServer, make_verifier: MakeVerifier, caches: Callable[..., RedisCache]
) -> None:
    """An inactive token is introspected once for all processes during negative_ttl."""
    for verifier in (make_verifier(cache=caches()), make_verifier(cache=caches())):
        with pytest.raises(InvalidTokenError):
            verifier.verify(TOKEN)
    assert server.calls == 1


def test_ttl_capped_by_exp_with_redis(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    clock: FakeClock,
) -> None:
    """The entry's own deadline (exp) is honoured on read, whatever Redis still holds."""
    server.tokens[TOKEN] = active(exp=int(clock.now) + 5)
    verifier = make_verifier(cache=caches(), leeway=0)
    verifier.verify(TOKEN)
    clock.advance(6)
    with pytest.raises(InvalidTokenError):
        verifier.verify(TOKEN)
    assert server.calls == 2


@pytest.mark.parametrize(
    "mode", [pytest.param("sync", id="sync"), pytest.param("async", id="async")]
)
def test_concurrent_verifiers_coalesce_through_the_redis_lock(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    mode: str,
) -> None:
    """Eight verifiers (as separate workers) asking at once make one introspection call."""
    server.tokens[TOKEN] = active()
    server.delay = 0.4
    verifiers = [make_verifier(cache=caches()) for _ in range(8)]
    if mode == "sync":
        barrier = threading.Barrier(len(verifiers))
        results: list[Any] = []

        def worker(verifier: IntrospectionVerifier) -> None:
            barrier.wait()
            results.append(verifier.verify(TOKEN))

        threads = [threading.Thread(target=worker, args=(v,)) for v in verifiers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
    else:

        async def go() -> list[Any]:
            try:
                return await asyncio.gather(*(v.averify(TOKEN) for v in verifiers))
            finally:
                for verifier in verifiers:
                    await verifier.aclose()
                    await verifier._cache.aclose()  # type: ignore[attr-defined]

        results = asyncio.run(go())
    assert len(results) == 8
    assert {r.subject for r in results} == {"alice"}
    assert server.calls == 1


def test_two_os_processes_share_one_introspection(
    server: IntrospectionServer, redis_server: RedisServer
) -> None:
    """Two python processes (one sync, one async) verifying at once cause one call."""
    server.tokens[TOKEN] = active(exp=None, iat=None)
    server.delay = 0.5
    start_at = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.introspection._worker",
                server.url,
                redis_server.url,
                TOKEN,
                str(start_at),
                mode,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for mode in ("sync", "async")
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        outputs.append(json.loads(out))
    assert outputs == [{"sub": "alice", "scopes": ["items:read", "items:write"]}] * 2
    assert server.calls == 1


def test_lock_held_by_a_dead_peer_is_bounded(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
) -> None:
    """If the lock holder never answers, a waiter introspects itself after lock_wait."""
    server.tokens[TOKEN] = active()
    cache = caches(lock_wait=0.2)
    verifier = make_verifier(cache=cache)
    key = verifier._prefix + __import__("hashlib").sha256(TOKEN.encode()).hexdigest()
    client = raw_redis(redis_server)
    try:
        client.set(cache.prefix + "lock:" + key, "someone-else", px=60_000)
        assert verifier.verify(TOKEN).subject == "alice"
        assert server.calls == 1
        # The stranger's lock was left alone.
        assert client.get(cache.prefix + "lock:" + key) == b"someone-else"
    finally:
        client.close()


def test_lock_is_released_after_introspection(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
) -> None:
    """After a failed (uncached) introspection the lock is gone, so peers need not wait."""
    cache = caches()
    verifier = make_verifier(cache=cache, negative_ttl=0)
    with pytest.raises(InvalidTokenError):
        verifier.verify(TOKEN)
    client = raw_redis(redis_server)
    try:
        assert client.keys("*lock:*") == []
    finally:
        client.close()


def test_lock_primitives(caches: Callable[..., RedisCache]) -> None:
    """try_lock is exclusive; unlock only releases our own lock."""
    cache = caches()
    handle = cache.try_lock("k")
    assert handle
    assert cache.try_lock("k") is None
    cache.unlock("k", "not-mine")
    assert cache.try_lock("k") is None
    cache.unlock("k", handle)
    assert cache.try_lock("k")


@pytest.mark.anyio
async def test_async_lock_primitives(caches: Callable[..., RedisCache]) -> None:
    """The async lock behaves like the sync one."""
    cache = caches()
    try:
        handle = await cache.atry_lock("k")
        assert handle
        assert await cache.atry_lock("k") is None
        await cache.aunlock("k", handle)
        assert await cache.atry_lock("k")
    finally:
        await cache.aclose()


def test_redis_cache_roundtrip_and_expiry(caches: Callable[..., RedisCache]) -> None:
    """Entries come back equal and Redis expires them after their PX."""
    cache = caches()
    cache.set("k", CacheEntry(True, {"active": True, "sub": "a"}, 123.5), 0.05)
    entry = cache.get("k")
    assert entry is not None
    assert (entry.active, dict(entry.claims), entry.until) == (
        True,
        {"active": True, "sub": "a"},
        123.5,
    )
    time.sleep(0.1)
    assert cache.get("k") is None


def test_corrupt_redis_value_is_a_miss(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
) -> None:
    """A value that is not a valid entry (or has bad claims) is ignored: the AS is asked."""
    server.tokens[TOKEN] = active()
    cache = caches()
    verifier = make_verifier(cache=cache)
    key = verifier._prefix + __import__("hashlib").sha256(TOKEN.encode()).hexdigest()
    client = raw_redis(redis_server)
    try:
        client.set(cache.prefix + key, b"not json")
        assert verifier.verify(TOKEN).subject == "alice"
        bad = CacheEntry(True, {"active": True, "scope": ["admin"]}, 2e9 + 1e9)
        client.set(cache.prefix + key, bad.dumps())
        assert verifier.verify(TOKEN).scopes == frozenset({"items:read", "items:write"})
    finally:
        client.close()
    assert server.calls == 2


@pytest.mark.parametrize(
    "mode", [pytest.param("sync", id="sync"), pytest.param("async", id="async")]
)
def test_redis_outage_never_fails_requests_and_recovers(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    mode: str,
) -> None:
    """Redis stopped mid-run: requests succeed by introspecting; restarted: Redis serves again."""
    server.tokens[TOKEN] = active()
    cache = caches(retry_interval=0.1, log_interval=3600)
    verifier = make_verifier(cache=cache)
    caplog.set_level(logging.INFO, logger="scopegate.cache")

    async def averify() -> Any:
        return await verifier.averify(TOKEN)

    async def run_async(steps: Callable[[], Any]) -> Any:
        return await steps()

    def check() -> Any:
        if mode == "sync":
            return verifier.verify(TOKEN)
        return loop.run_until_complete(averify())

    loop = asyncio.new_event_loop()
    try:
        assert check().subject == "alice"
        assert server.calls == 1
        redis_server.stop()
        for _ in range(3):
            assert check().subject == "alice"
        degraded_calls = server.calls
        assert degraded_calls >= 2  # the cache is gone, so the AS is asked again
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per log_interval, not per request
        assert TOKEN not in caplog.text
        assert redis_server.url not in caplog.text
        redis_server.start()
        time.sleep(0.15)  # past retry_interval: the cache is tried again
        check()  # repopulates Redis
        calls = server.calls
        for _ in range(3):
            assert check().subject == "alice"
        assert server.calls == calls  # served from Redis again
        assert "Redis cache available again" in caplog.text
    finally:
        if mode == "async":
            loop.run_until_complete(verifier.aclose())
            loop.run_until_complete(cache.aclose())
        loop.close()


def test_redis_down_from_the_start(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
) -> None:
    """A verifier whose Redis was never reachable still answers by introspecting."""
    server.tokens[TOKEN] = active()
    redis_server.stop()
    verifier = make_verifier(cache=caches())
    assert verifier.verify(TOKEN).subject == "alice"
    assert verifier.verify(TOKEN).subject == "alice"
    assert server.calls == 2
    redis_server.start()


def test_user_supplied_clients_are_not_closed(redis_server: RedisServer) -> None:
    """RedisCache(client=...) leaves the client open; async calls run it in a thread."""
    client = raw_redis(redis_server)
    try:
        cache = RedisCache(client=client)
        cache.set("k", CacheEntry(False, {}, 1.0), 10)
        cache.close()
        assert client.ping()

        async def go() -> CacheEntry | None:
            await cache.aset("k2", CacheEntry(True, {"active": True}, 2.0), 10)
            return await cache.aget("k2")

        entry = asyncio.run(go())
        assert entry is not None
        assert entry.active
        assert "127.0.0.1" not in repr(cache)
    finally:
        client.close()


@pytest.mark.anyio
async def test_sync_client_only_runs_async_locks_in_a_thread(redis_server: RedisServer) -> None:
    """Without an async client, atry_lock/aunlock use the sync client off the loop."""
    client = raw_redis(redis_server)
    try:
        cache = RedisCache(client=client)
        handle = await cache.atry_lock("k")
        assert handle
        assert await cache.atry_lock("k") is None
        await cache.aunlock("k", handle)
        assert await cache.atry_lock("k")
    finally:
        client.close()


@pytest.mark.anyio
async def test_from_env_redis_verifier_async_close(
    server: IntrospectionServer, redis_server: RedisServer
) -> None:
    """A from_env verifier with SCOPEGATE_REDIS_URL works async and aclose() closes its cache."""
    server.tokens[TOKEN] = active(exp=None, iat=None)
    verifier = IntrospectionVerifier.from_env(
        {
            "SCOPEGATE_INTROSPECTION_URI": server.url,
            "SCOPEGATE_INTROSPECTION_CLIENT_ID": server.client_id,
            "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": server.client_secret,
            "SCOPEGATE_REDIS_URL": redis_server.url,
        }
    )
    assert verifier is not None
    try:
        assert (await verifier.averify(TOKEN)).subject == "alice"
        assert (await verifier.averify(TOKEN)).subject == "alice"
    finally:
        await verifier.aclose()
    assert server.calls == 1
    assert verifier._cache.redis._async_client is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "active_entry", [pytest.param(True, id="active"), pytest.param(False, id="inactive")]
)
def test_answer_stored_just_before_we_lock_is_used(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caches: Callable[..., RedisCache],
    redis_server: RedisServer,
    clock: FakeClock,
    mode: str,
    active_entry: bool,
) -> None:
    """A peer's answer that lands between our miss and our lock is used, and the lock freed."""
    cache = caches()
    verifier = make_verifier(cache=cache)
    key = verifier._prefix + __import__("hashlib").sha256(TOKEN.encode()).hexdigest()
    claims = active() if active_entry else {}
    cache.set(key, CacheEntry(active_entry, claims, clock.now + 30), 30)

    def wait() -> Any:
        if mode == "sync":
            return run(verifier._peer_flow(cache, key, TOKEN))

        async def go() -> Any:
            try:
                return await arun(verifier._peer_flow(cache, key, TOKEN))
            finally:
                await cache.aclose()

        return asyncio.run(go())

    if active_entry:
        result, handle = wait()
        assert result.subject == "alice"
        assert handle == ""
    else:
        with pytest.raises(InvalidTokenError):
            wait()
    client = raw_redis(redis_server)
    try:
        assert client.keys("*lock:*") == []
    finally:
        client.close()
    assert server.calls == 0
