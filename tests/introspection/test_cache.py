"""MemoryCache and CacheEntry on their own."""

from __future__ import annotations

import threading

import pytest

from scopegate._cache import (
    CacheEntry,
    IntrospectionCache,
    MemoryCache,
    RedisCache,
    SharedIntrospectionCache,
)
from scopegate._errors import ConfigurationError


class Timer:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def entry(sub: str = "a") -> CacheEntry:
    """An active entry."""
    return CacheEntry(True, {"active": True, "sub": sub}, 1e12)


def test_memory_cache_get_set_and_expiry() -> None:
    """An entry is returned until its TTL passes, then dropped."""
    timer = Timer()
    cache = MemoryCache(timer=timer)
    value = entry()
    cache.set("k", value, 10)
    assert cache.get("k") is value
    timer.now += 9.9
    assert cache.get("k") is value
    timer.now += 0.2
    assert cache.get("k") is None
    assert len(cache) == 0


def test_memory_cache_is_bounded() -> None:
    """A flood of distinct keys never grows the cache past maxsize."""
    cache = MemoryCache(maxsize=100)
    for i in range(5000):
        cache.set(f"junk-{i}", entry(), 60)
    assert len(cache) <= 100
    assert cache.get("junk-4999") is not None
    assert cache.get("junk-0") is None


def test_memory_cache_evicts_the_oldest_first() -> None:
    """At maxsize the oldest entries go (an eighth at a time); the newest survive."""
    cache = MemoryCache(maxsize=16)
    for i in range(16):
        cache.set(f"k{i}", entry(), 100)
    cache.set("new", entry(), 100)
    assert cache.get("k0") is None
    assert cache.get("k1") is None
    assert cache.get("k2") is not None
    assert cache.get("new") is not None
    assert len(cache) == 15


def test_memory_cache_expired_entries_miss() -> None:
    """An entry past its TTL is a miss, and is dropped."""
    timer = Timer()
    cache = MemoryCache(maxsize=3, timer=timer)
    cache.set("short", entry(), 1)
    timer.now += 5
    assert cache.get("short") is None
    assert len(cache) == 0


def test_memory_cache_overwrite_and_clear() -> None:
    """Setting a key again replaces it; clear() empties the cache."""
    cache = MemoryCache()
    cache.set("k", entry("a"), 10)
    cache.set("k", entry("b"), 10)
    stored = cache.get("k")
    assert stored is not None
    assert stored.claims["sub"] == "b"
    cache.clear()
    assert cache.get("k") is None


def test_memory_cache_threads() -> None:
    """Concurrent writers and readers keep the bound and never crash."""
    cache = MemoryCache(maxsize=50)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2000):
                cache.set(f"{n}-{i}", entry(), 60)
                cache.get(f"{n}-{i - 1}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(cache) <= 50


@pytest.mark.anyio
async def test_memory_cache_async_twins() -> None:
    """aget/aset behave like get/set."""
    cache = MemoryCache()
    value = entry()
    await cache.aset("k", value, 10)
    assert await cache.aget("k") is value


def test_memory_cache_rejects_zero_size() -> None:
    """maxsize below 1 is a configuration error."""
    with pytest.raises(ConfigurationError):
        MemoryCache(maxsize=0)


def test_protocols_are_satisfied() -> None:
    """MemoryCache is an IntrospectionCache; RedisCache is also shared (lockable)."""
    assert isinstance(MemoryCache(), IntrospectionCache)
    assert not isinstance(MemoryCache(), SharedIntrospectionCache)
    redis_cache = RedisCache("redis://127.0.0.1:1/0")
    assert isinstance(redis_cache, SharedIntrospectionCache)
    redis_cache.close()


def test_entry_roundtrip_and_repr() -> None:
    """dumps/loads round-trip; repr shows no claims."""
    value = CacheEntry(True, {"active": True, "sub": "alice@example"}, 12.5)
    back = CacheEntry.loads(value.dumps())
    assert back is not None
    assert (back.active, back.claims, back.until) == (True, value.claims, 12.5)
    assert "alice" not in repr(value)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"nope", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"active": 1, "claims": {}, "until": 1}', id="active-int"),
        pytest.param(b'{"active": true, "claims": [], "until": 1}', id="claims-list"),
        pytest.param(b'{"active": true, "claims": {}, "until": "1"}', id="until-string"),
        pytest.param(b'{"active": true, "claims": {}, "until": true}', id="until-bool"),
        pytest.param(b'{"active": true, "claims": {}, "until": Infinity}', id="until-inf"),
        pytest.param(b'{"active": true, "claims": {}}', id="until-missing"),
        pytest.param(b"[" * 100000, id="deep"),
    ],
)
def test_entry_loads_rejects_malformed(raw: bytes) -> None:
    """Anything but a well-formed entry loads as None (a miss)."""
    assert CacheEntry.loads(raw) is None


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({}, id="nothing"),
        pytest.param({"url": "redis://x", "socket_timeout": 0}, id="zero-timeout"),
        pytest.param({"url": "redis://x", "lock_wait": -1}, id="negative-wait"),
    ],
)
def test_redis_cache_bad_configuration(kwargs: dict[str, object]) -> None:
    """RedisCache needs a client or URL and positive timeouts."""
    with pytest.raises(ConfigurationError):
        RedisCache(**kwargs)  # type: ignore[arg-type]


def test_unreachable_redis_degrades_to_misses(caplog: pytest.LogCaptureFixture) -> None:
    """With nothing listening, every operation is a miss or a no-op, logged once."""
    from tests.servers import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_interval=0, log_interval=3600)
    try:
        assert cache.get("k") is None
        cache.set("k", entry(), 10)
        assert cache.try_lock("k") == ""
        cache.unlock("k", "handle")
        cache.unlock("k", "")
    finally:
        cache.close()
    warnings = [r for r in caplog.records if r.name == "scopegate.cache"]
    assert len(warnings) == 1
    assert "ConnectionError" in warnings[0].getMessage()


@pytest.mark.anyio
async def test_unreachable_redis_degrades_to_misses_async() -> None:
    """The async twins degrade the same way, and aclose works on a never-used client."""
    from tests.servers import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_interval=0)
    try:
        assert await cache.aget("k") is None
        await cache.aset("k", entry(), 10)
        assert await cache.atry_lock("k") == ""
        await cache.aunlock("k", "handle")
        await cache.aunlock("k", "")
    finally:
        await cache.aclose()


@pytest.mark.anyio
async def test_redis_in_retry_interval_skips_the_network() -> None:
    """After a failure, Redis is not tried again until retry_interval has passed."""
    from tests.servers import free_port

    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_interval=3600)
    try:
        assert cache.get("k") is None  # fails, opens the breaker
        assert cache.try_lock("k") == ""
        cache.set("k", entry(), 10)
        assert await cache.aget("k") is None
        await cache.aset("k", entry(), 10)
        assert await cache.atry_lock("k") == ""
    finally:
        await cache.aclose()
