"""Where introspection results are kept between requests: in memory or in Redis.

An :class:`IntrospectionCache` stores one :class:`CacheEntry` per token under a key the
verifier derives from SHA-256 of the full token; the cache never sees the token itself.
It stores what the authorization server *said* (the introspection claims and until when
that may be reused), never an authorization decision: scopes are checked on every
request by the caller.

Two backends ship:

* :class:`MemoryCache`: one process, bounded in size, no dependency.
* :class:`RedisCache` (``pip install 'scopegate[redis]'``): shared by every worker
  process and host. It also lets processes coalesce: while one process introspects a
  token, the others wait briefly for its answer instead of asking too (a short
  ``SET NX PX`` lock). When Redis is down every operation degrades to a cache miss, a
  warning is logged at most once per ``log_interval``, and Redis is tried again after
  ``retry_interval``: a cache outage never fails a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from scopegate._errors import ConfigurationError

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "CacheEntry",
    "IntrospectionCache",
    "MemoryCache",
    "RedisCache",
    "SharedIntrospectionCache",
]

logger = logging.getLogger("scopegate.cache")


class CacheEntry:
    """One cached introspection outcome.

    Attributes:
        active: ``True`` for a validated ``active: true`` response, ``False`` for an
            inactive token (negative entry).
        claims: The introspection response as parsed JSON (empty for negative entries).
        until: Time (on the verifier's clock, Unix seconds) after which the entry must
            not be used, whatever the backend still holds.
        view: Scratch slot where the verifier memoises values derived from ``claims``
            (so an in-memory hit does not re-derive them); not part of the stored value.
    """

    __slots__ = ("active", "claims", "until", "view")

    def __init__(self, active: bool, claims: Mapping[str, Any], until: float) -> None:
        self.active = active
        self.claims = claims
        self.until = until
        self.view: object = None

    def __repr__(self) -> str:
        # Claims may carry personal data (sub, username): keep them out of logs.
        return f"CacheEntry(active={self.active}, until={self.until})"

    def dumps(self) -> bytes:
        """Serialise for an external store (JSON)."""
        return json.dumps(
            {"active": self.active, "claims": self.claims, "until": self.until},
            separators=(",", ":"),
        ).encode()

    @classmethod
    def loads(cls, raw: bytes | str) -> CacheEntry | None:
        """Parse :meth:`dumps` output; ``None`` when it is not a well-formed entry."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict):
            return None
        active, claims, until = data.get("active"), data.get("claims"), data.get("until")
        if (
            not isinstance(active, bool)
            or not isinstance(claims, dict)
            or not isinstance(until, int | float)
            or isinstance(until, bool)
            or not math.isfinite(until)
        ):
            return None
        return cls(active, claims, float(until))


@runtime_checkable
class IntrospectionCache(Protocol):
    """Storage for introspection outcomes, keyed by an opaque string.

    Implementations must be safe to call from many threads (``get``/``set``) and from
    coroutines (``aget``/``aset``), and must never raise because the store is
    unreachable: a failing store behaves as a miss and drops writes.
    """

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry stored under *key*, or ``None``."""
        ...

    def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Store *entry* under *key* for *ttl* seconds (> 0)."""
        ...

    async def aget(self, key: str) -> CacheEntry | None:
        """Async twin of :meth:`get`."""
        ...

    async def aset(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Async twin of :meth:`set`."""
        ...


@runtime_checkable
class SharedIntrospectionCache(IntrospectionCache, Protocol):
    """A cache shared between processes that can also coalesce their introspections.

    ``try_lock`` returns a handle when the caller should introspect (it holds the lock,
    or the lock service is down and everyone must fend for themselves: handle ``""``),
    or ``None`` when another process is already introspecting that key.
    """

    lock_wait: float
    poll_interval: float

    def try_lock(self, key: str) -> str | None:
        """Try to become the one process that introspects *key*."""
        ...

    def unlock(self, key: str, handle: str) -> None:
        """Release a lock taken by :meth:`try_lock` (no-op for handle ``""``)."""
        ...

    async def atry_lock(self, key: str) -> str | None:
        """Async twin of :meth:`try_lock`."""
        ...

    async def aunlock(self, key: str, handle: str) -> None:
        """Async twin of :meth:`unlock`."""
        ...


class MemoryCache:
    """A bounded in-process cache (one per worker process).

    Entries expire after their own TTL; when ``maxsize`` is reached, expired entries
    are purged and then the oldest entries are evicted, so a flood of distinct junk
    tokens cannot grow memory without bound. Reads take no lock (a ``dict`` lookup is
    atomic under the GIL); writes take one.

    Args:
        maxsize: Most entries kept.
        timer: Monotonic clock used for expiry (tests may inject one).
    """

    __slots__ = ("_data", "_lock", "_timer", "maxsize")

    def __init__(
        self, maxsize: int = 10_000, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if maxsize < 1:
            raise ConfigurationError("MemoryCache maxsize must be at least 1")
        self.maxsize = maxsize
        self._timer = timer
        # key -> (expires at on ``timer``, entry); insertion order is age order.
        self._data: dict[str, tuple[float, CacheEntry]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> CacheEntry | None:
        """Return the live entry under *key*, or ``None``."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._timer():
            with self._lock:
                if self._data.get(key) is item:
                    del self._data[key]
            return None
        return item[1]

    def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Store *entry* for *ttl* seconds, evicting expired then oldest entries."""
        now = self._timer()
        with self._lock:
            data = self._data
            data.pop(key, None)
            if len(data) >= self.maxsize:
                for stale in [k for k, (exp, _) in data.items() if exp <= now]:
                    del data[stale]
                while len(data) >= self.maxsize:
                    del data[next(iter(data))]
            data[key] = (now + ttl, entry)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()

    async def aget(self, key: str) -> CacheEntry | None:
        """Async twin of :meth:`get` (never blocks)."""
        return self.get(key)

    async def aset(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Async twin of :meth:`set` (never blocks)."""
        self.set(key, entry, ttl)


def _import_redis() -> tuple[ModuleType, ModuleType]:
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "RedisCache needs redis-py; install it with: pip install 'scopegate[redis]'"
        ) from exc
    return redis, redis.asyncio


# Release the lock only if it is still ours: it may have expired and been retaken.
_UNLOCK_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisCache:
    """Introspection results shared through Redis (``pip install 'scopegate[redis]'``).

    Values are the JSON of a :class:`CacheEntry` stored with ``SET ... PX ttl`` so Redis
    expires them; keys are ``prefix`` + the verifier's key (a SHA-256 hex digest).

    Args:
        url: ``redis://`` / ``rediss://`` URL; clients for both worlds are made from it.
        client: A ``redis.Redis`` to use for the sync path (not closed by us).
        async_client: A ``redis.asyncio.Redis`` for the async path (not closed by us).
            With neither it nor ``url``, async calls run the sync client in a thread.
        prefix: Key namespace.
        socket_timeout: Seconds for connecting to and answering from Redis (own clients).
        retry_interval: After a Redis error, seconds during which Redis is not tried
            (requests introspect directly), then it is tried again.
        log_interval: At most one "Redis unavailable" warning per this many seconds.
        lock_ttl: Lifetime of the cross-process introspection lock (``PX``); bounds how
            long a crashed holder can delay others.
        lock_wait: How long a process waits for another's introspection before it
            introspects by itself.
        poll_interval: Seconds between reads while waiting.

    Raises:
        ImportError: redis-py is not installed (names the ``scopegate[redis]`` extra).
        ConfigurationError: No ``url``, ``client`` or ``async_client``, or a bad value.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        async_client: Any = None,
        prefix: str = "scopegate:introspection:",
        socket_timeout: float = 1.0,
        retry_interval: float = 2.0,
        log_interval: float = 60.0,
        lock_ttl: float = 10.0,
        lock_wait: float = 3.0,
        poll_interval: float = 0.02,
    ) -> None:
        redis, redis_asyncio = _import_redis()
        if url is None and client is None and async_client is None:
            raise ConfigurationError("RedisCache needs url=, client= or async_client=")
        if min(socket_timeout, lock_ttl, poll_interval) <= 0 or min(retry_interval, lock_wait) < 0:
            raise ConfigurationError("RedisCache timeouts must be positive")
        self.url = url
        self.prefix = prefix
        self.lock_wait = lock_wait
        self.poll_interval = poll_interval
        self._lock_ms = max(1, int(lock_ttl * 1000))
        self._retry_interval = retry_interval
        self._log_interval = log_interval
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        # Our circuit breaker below decides when to try again; redis-py's own retries
        # with backoff would stall every request while Redis is down.
        self._client_kwargs: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
        }
        self._redis_asyncio = redis_asyncio
        self._own_client = client is None and url is not None
        if self._own_client:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), **self._client_kwargs)
        self._client = client
        self._async_client = async_client
        self._own_async_client = async_client is None and url is not None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._down_until = 0.0
        self._degraded = False
        self._last_log = -math.inf
        self._state_lock = threading.Lock()

    def __repr__(self) -> str:
        # The URL may carry a password: never show it.
        return f"RedisCache(prefix={self.prefix!r})"

    # -- health --------------------------------------------------------------------

    def _available(self) -> bool:
        return self._down_until <= time.monotonic()

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        with self._state_lock:
            self._down_until = now + self._retry_interval
            self._degraded = True
            should_log = now - self._last_log >= self._log_interval
            if should_log:
                self._last_log = now
        if should_log:
            # The exception class only: redis-py messages may echo the URL.
            logger.warning(
                "Redis cache unavailable (%s); introspecting without it, retrying in %.1fs",
                type(exc).__name__,
                self._retry_interval,
            )

    def _recovered(self) -> None:
        if self._degraded:
            with self._state_lock:
                was, self._degraded = self._degraded, False
            if was:
                logger.info("Redis cache available again")

    # -- sync ----------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """Return the entry under *key*; ``None`` on a miss or when Redis is down."""
        if self._client is None or not self._available():
            return None
        try:
            raw = self._client.get(self.prefix + key)
        except self._errors as exc:
            self._failed(exc)
            return None
        self._recovered()
        return None if raw is None else CacheEntry.loads(raw)

    def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Store *entry* with ``PX`` = *ttl*; dropped silently when Redis is down."""
        if self._client is None or not self._available():
            return
        try:
            self._client.set(self.prefix + key, entry.dumps(), px=max(1, int(ttl * 1000)))
        except self._errors as exc:
            self._failed(exc)
        else:
            self._recovered()

    def try_lock(self, key: str) -> str | None:
        """Take the introspection lock for *key* (``SET NX PX``); see the protocol."""
        if self._client is None or not self._available():
            return ""
        handle = secrets.token_hex(8)
        try:
            taken = self._client.set(self.prefix + "lock:" + key, handle, nx=True, px=self._lock_ms)
        except self._errors as exc:
            self._failed(exc)
            return ""
        return handle if taken else None

    def unlock(self, key: str, handle: str) -> None:
        """Release the lock if it is still ours."""
        if not handle or self._client is None:
            return
        try:
            self._client.eval(_UNLOCK_SCRIPT, 1, self.prefix + "lock:" + key, handle)
        except self._errors as exc:
            # The lock expires by itself after lock_ttl.
            self._failed(exc)

    def close(self) -> None:
        """Close the sync client if this cache made it."""
        if self._own_client and self._client is not None:
            self._client.close()

    # -- async ---------------------------------------------------------------------

    def _aclient(self) -> Any:
        if not self._own_async_client:
            return self._async_client
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_loop is not loop:
            # A redis.asyncio connection belongs to the loop that opened it.
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._async_client = self._redis_asyncio.Redis.from_url(
                self.url, retry=Retry(NoBackoff(), 0), **self._client_kwargs
            )
            self._async_loop = loop
        return self._async_client

    async def aget(self, key: str) -> CacheEntry | None:
        """Async twin of :meth:`get`."""
        client = self._aclient()
        if client is None:
            return await asyncio.to_thread(self.get, key)
        if not self._available():
            return None
        try:
            raw = await client.get(self.prefix + key)
        except self._errors as exc:
            self._failed(exc)
            return None
        self._recovered()
        return None if raw is None else CacheEntry.loads(raw)

    async def aset(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Async twin of :meth:`set`."""
        client = self._aclient()
        if client is None:
            await asyncio.to_thread(self.set, key, entry, ttl)
            return
        if not self._available():
            return
        try:
            await client.set(self.prefix + key, entry.dumps(), px=max(1, int(ttl * 1000)))
        except self._errors as exc:
            self._failed(exc)
        else:
            self._recovered()

    async def atry_lock(self, key: str) -> str | None:
        """Async twin of :meth:`try_lock`."""
        client = self._aclient()
        if client is None:
            return await asyncio.to_thread(self.try_lock, key)
        if not self._available():
            return ""
        handle = secrets.token_hex(8)
        try:
            taken = await client.set(self.prefix + "lock:" + key, handle, nx=True, px=self._lock_ms)
        except self._errors as exc:
            self._failed(exc)
            return ""
        return handle if taken else None

    async def aunlock(self, key: str, handle: str) -> None:
        """Async twin of :meth:`unlock`."""
        if not handle:
            return
        client = self._aclient()
        if client is None:
            await asyncio.to_thread(self.unlock, key, handle)
            return
        try:
            await client.eval(_UNLOCK_SCRIPT, 1, self.prefix + "lock:" + key, handle)
        except self._errors as exc:
            self._failed(exc)

    async def aclose(self) -> None:
        """Close the clients this cache made (call it on the loop that used them)."""
        if self._own_async_client and self._async_client is not None:
            client, self._async_client = self._async_client, None
            await client.aclose()
        self.close()
