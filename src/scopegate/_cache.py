"""Caches: the bounded in-process map, and where introspection results are kept.

:class:`BoundedDict` is the one bounded in-process map of the library (verified tokens,
remembered headers, parsed JOSE headers, scope sets, negative kid entries, introspection
answers): reads take no lock, writes do, and when it is full the oldest eighth goes in
one pass, so a flood of distinct junk keys cannot grow memory without bound.

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
  warning is logged when the outage starts (and at most once per ``log_interval`` while
  it lasts), the recovery at INFO, and Redis is tried again after ``retry_interval``: a
  cache outage never fails a request. With hooks, each operation that could not use
  Redis is a ``redis_fallback`` record (:mod:`scopegate._observe`).

Redis work is written once, as flows of :class:`RedisConnection` commands (one effect
that runs on the sync client in threads and on the async client on a loop; see
:mod:`scopegate._flow`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from scopegate import _observe
from scopegate._errors import ConfigurationError
from scopegate._extras import install_hint
from scopegate._flow import ClientOwner, Flow, arun, run
from scopegate._settings import number

if TYPE_CHECKING:
    from types import ModuleType

__all__ = [
    "BoundedDict",
    "CacheEntry",
    "IntrospectionCache",
    "MemoryCache",
    "RedisCache",
    "RedisConnection",
    "SharedIntrospectionCache",
]

logger = logging.getLogger("scopegate.cache")

K = TypeVar("K")
V = TypeVar("V")


class BoundedDict(Generic[K, V]):
    """A dict of at most *maxsize* entries; when full, the oldest eighth is dropped.

    ``get`` is the dict's own method (no lock: a lookup is atomic under the GIL);
    ``put``, ``pop`` and ``clear`` take a lock because eviction iterates the dict.
    Dropping an eighth in one pass keeps eviction amortised O(1): evicting one entry at
    a time would rescan the freed slots at the front of the dict each time.
    """

    __slots__ = ("_data", "_drop", "_lock", "get", "maxsize")

    def __init__(self, maxsize: int) -> None:
        if type(maxsize) is not int or maxsize < 1:
            raise ConfigurationError("a cache size must be a positive integer")
        self.maxsize = maxsize
        self._drop = max(1, maxsize // 8)
        self._data: dict[K, V] = {}
        self._lock = threading.Lock()
        self.get = self._data.get

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def put(self, key: K, value: V) -> None:
        """Store *value*, evicting the oldest entries first when full."""
        data = self._data
        with self._lock:
            if key not in data and len(data) >= self.maxsize:
                for old in list(itertools.islice(data, self._drop)):
                    del data[old]
            data[key] = value

    def pop(self, key: K) -> V | None:
        """Remove *key*; return its value, or ``None``."""
        with self._lock:
            return self._data.pop(key, None)

    def pop_if(self, key: K, value: V) -> None:
        """Remove *key* only while it still maps to *value* (identity)."""
        with self._lock:
            if self._data.get(key) is value:
                del self._data[key]

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._data.clear()

    def values(self) -> list[V]:
        """A snapshot of the values."""
        with self._lock:
            return list(self._data.values())


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

    Entries expire after their own TTL; when ``maxsize`` is reached the oldest eighth
    is evicted (:class:`BoundedDict`), so a flood of distinct junk tokens cannot grow
    memory without bound.

    Args:
        maxsize: Most entries kept.
        timer: Monotonic clock used for expiry (tests may inject one).
    """

    __slots__ = ("_data", "_timer", "maxsize")

    def __init__(
        self, maxsize: int = 10_000, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if type(maxsize) is not int or maxsize < 1:
            raise ConfigurationError("MemoryCache maxsize must be at least 1")
        self.maxsize = maxsize
        self._timer = timer
        # key -> (expires at on ``timer``, entry); insertion order is age order.
        self._data: BoundedDict[str, tuple[float, CacheEntry]] = BoundedDict(maxsize)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: str) -> CacheEntry | None:
        """Return the live entry under *key*, or ``None``."""
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._timer():
            self._data.pop_if(key, item)
            return None
        return item[1]

    def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Store *entry* for *ttl* seconds."""
        self._data.pop(key)  # a rewrite moves the key to the young end
        self._data.put(key, (self._timer() + ttl, entry))

    def clear(self) -> None:
        """Drop every entry."""
        self._data.clear()

    async def aget(self, key: str) -> CacheEntry | None:
        """Same as :meth:`get` (never blocks)."""
        return self.get(key)

    async def aset(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Same as :meth:`set` (never blocks)."""
        self.set(key, entry, ttl)


def _import_redis() -> tuple[ModuleType, ModuleType]:
    try:
        import redis
        import redis.asyncio
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise ImportError(install_hint("RedisCache", "redis-py", "redis")) from exc
    return redis, redis.asyncio


# Release the lock only if it is still ours: it may have expired and been retaken.
_UNLOCK_SCRIPT = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


class RedisConnection:
    """Sync and async Redis clients for one server, with a shared circuit breaker.

    Every Redis user of the library (the introspection cache, the DPoP replay store)
    sends its commands through :meth:`command`, an effect that the flow drivers run on
    the sync client in threads and on the async client on an event loop. After a Redis
    error, :meth:`available` is false for ``retry_interval`` seconds (callers degrade
    as they must: a cache misses, a replay store fails closed). The outage is logged on
    ``scopegate.cache`` once when it starts (WARNING, with the exception's class only;
    again at most once per ``log_interval`` while it lasts), the recovery at INFO.

    Args:
        url: ``redis://`` / ``rediss://`` URL; clients for both worlds are made from it.
        client: A ``redis.Redis`` to use for the sync path (not closed by us).
        async_client: A ``redis.asyncio.Redis`` for the async path (not closed by us).
            With neither it nor ``url``, async calls run the sync client in a thread.
        socket_timeout: Seconds for connecting to and answering from Redis (own clients).
        retry_interval: After an error, seconds during which Redis is not tried.
        log_interval: While Redis stays down, at most one more "unavailable" warning per
            this many seconds.
        purpose: Named in log lines and ``redis_fallback`` records ("Redis cache",
            "DPoP replay store"; fixed text, never a URL).

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
        socket_timeout: float = 1.0,
        retry_interval: float = 2.0,
        log_interval: float = 60.0,
        purpose: str = "Redis",
    ) -> None:
        redis, redis_asyncio = _import_redis()
        if url is None and client is None and async_client is None:
            raise ConfigurationError("Redis needs url=, client= or async_client=")
        if url is not None and (
            type(url) is not str or not url.startswith(("redis://", "rediss://", "unix://"))
        ):
            raise ConfigurationError("the Redis URL must start with redis://, rediss:// or unix://")
        number("socket_timeout", socket_timeout, low_open=True)
        number("retry_interval", retry_interval)
        number("log_interval", log_interval)
        self.url = url
        self.purpose = purpose
        self.errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._retry_interval = retry_interval
        # Our circuit breaker decides when to try again; redis-py's own retries with
        # backoff would stall every request while Redis is down.
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
        self._state_lock = threading.Lock()
        self._incident = _observe.Incident(
            logger,
            purpose,
            failure="unavailable",
            recovery="available again",
            remind=log_interval,
        )
        self._fallback = _observe.parts("redis_fallback", "unavailable", purpose=purpose)

    def __repr__(self) -> str:
        # The URL may carry a password: never show it.
        return f"RedisConnection({self.purpose!r})"

    def command(self, *args: Any) -> _Command:
        """An effect sending one Redis command (``GET``, ``SET``, ``EVAL``...)."""
        return _Command(self, args)

    def available(self) -> bool:
        """False while the circuit breaker is open after an error (call it right before
        an operation: a ``False`` is reported as a ``redis_fallback`` record)."""
        if self._down_until <= time.monotonic():
            return True
        if _observe.HOOKS:
            _observe.emit_parts(self._fallback)
        return False

    def failed(self, exc: BaseException) -> None:
        """Record a Redis error: open the breaker, log it once per incident."""
        with self._state_lock:
            self._down_until = time.monotonic() + self._retry_interval
        if _observe.HOOKS:
            _observe.emit_parts(self._fallback)
        # The exception class only: redis-py messages may echo the URL.
        self._incident.failed("%s; retrying in %.1fs", type(exc).__name__, self._retry_interval)

    def recovered(self) -> None:
        """Record a successful command after errors."""
        self._incident.recovered()

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

    def close(self) -> None:
        """Close the sync client if this connection made it."""
        if self._own_client and self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the clients this connection made (call it on the loop that used them)."""
        if self._own_async_client and self._async_client is not None:
            client, self._async_client = self._async_client, None
            await client.aclose()
        self.close()


class _Command:
    """One Redis command as a flow effect."""

    __slots__ = ("args", "connection")

    def __init__(self, connection: RedisConnection, args: tuple[Any, ...]) -> None:
        self.connection = connection
        self.args = args

    def run(self) -> Any:
        client = self.connection._client
        if client is None:
            raise ConnectionError("no sync Redis client configured")
        return client.execute_command(*self.args)

    async def arun(self) -> Any:
        client = self.connection._aclient()
        if client is None:
            # Only a sync client was given: run it off the event loop.
            return await asyncio.to_thread(self.run)
        return await client.execute_command(*self.args)


class RedisCache(ClientOwner):
    """Introspection results shared through Redis (``pip install 'scopegate[redis]'``).

    Values are the JSON of a :class:`CacheEntry` stored with ``SET ... PX ttl`` so Redis
    expires them; keys are ``prefix`` + the verifier's key (a SHA-256 hex digest).

    Args:
        url: ``redis://`` / ``rediss://`` URL (see :class:`RedisConnection`).
        connection: A :class:`RedisConnection` to share (instead of the URL or clients).
        client: A ``redis.Redis`` to use for the sync path (not closed by us).
        async_client: A ``redis.asyncio.Redis`` for the async path (not closed by us).
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
        ConfigurationError: No ``url``, ``connection``, ``client`` or ``async_client``,
            or a bad value.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        connection: RedisConnection | None = None,
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
        number("lock_ttl", lock_ttl, low_open=True)
        number("lock_wait", lock_wait)
        number("poll_interval", poll_interval, low_open=True)
        if connection is None:
            connection = self._owned = RedisConnection(
                url,
                client=client,
                async_client=async_client,
                socket_timeout=socket_timeout,
                retry_interval=retry_interval,
                log_interval=log_interval,
                purpose="Redis cache",
            )
        self.redis = connection
        self.url = self.redis.url
        self.prefix = prefix
        self.lock_wait = lock_wait
        self.poll_interval = poll_interval
        self._lock_ms = max(1, int(lock_ttl * 1000))

    def __repr__(self) -> str:
        # The URL may carry a password: never show it.
        return f"RedisCache(prefix={self.prefix!r})"

    # -- the operations, written once ----------------------------------------------------

    def _call(self, default: Any, *args: Any) -> Flow[Any]:
        redis = self.redis
        if not redis.available():
            return default
        try:
            reply = yield redis.command(*args)
        except redis.errors as exc:
            redis.failed(exc)
            return default
        redis.recovered()
        return reply

    def get_flow(self, key: str) -> Flow[CacheEntry | None]:
        """The entry under *key*; ``None`` on a miss or when Redis is down."""
        raw = yield from self._call(None, "GET", self.prefix + key)
        return None if raw is None else CacheEntry.loads(raw)

    def set_flow(self, key: str, entry: CacheEntry, ttl: float) -> Flow[None]:
        """Store *entry* with ``PX`` = *ttl*; dropped silently when Redis is down."""
        px = max(1, int(ttl * 1000))
        yield from self._call(None, "SET", self.prefix + key, entry.dumps(), "PX", px)

    def try_lock_flow(self, key: str) -> Flow[str | None]:
        """Take the introspection lock for *key* (``SET NX PX``).

        Returns a handle when the caller should introspect (``""`` when Redis is down and
        everyone fends for themselves), or ``None`` when another process holds it.
        """
        handle = secrets.token_hex(8)
        taken = yield from self._call(
            _DOWN, "SET", self.prefix + "lock:" + key, handle, "NX", "PX", self._lock_ms
        )
        if taken is _DOWN:
            return ""
        return handle if taken else None

    def unlock_flow(self, key: str, handle: str) -> Flow[None]:
        """Release a lock taken by :meth:`try_lock_flow` if it is still ours."""
        if handle:
            # A lost release is harmless: the lock expires by itself after lock_ttl.
            yield from self._call(
                None, "EVAL", _UNLOCK_SCRIPT, 1, self.prefix + "lock:" + key, handle
            )

    # -- the IntrospectionCache protocol: the two drivers ---------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The entry under *key* (threads)."""
        return run(self.get_flow(key))

    async def aget(self, key: str) -> CacheEntry | None:
        """The entry under *key* (asyncio)."""
        return await arun(self.get_flow(key))

    def set(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Store *entry* (threads)."""
        run(self.set_flow(key, entry, ttl))

    async def aset(self, key: str, entry: CacheEntry, ttl: float) -> None:
        """Store *entry* (asyncio)."""
        await arun(self.set_flow(key, entry, ttl))

    def try_lock(self, key: str) -> str | None:
        """See :meth:`try_lock_flow` (threads)."""
        return run(self.try_lock_flow(key))

    async def atry_lock(self, key: str) -> str | None:
        """See :meth:`try_lock_flow` (asyncio)."""
        return await arun(self.try_lock_flow(key))

    def unlock(self, key: str, handle: str) -> None:
        """See :meth:`unlock_flow` (threads)."""
        run(self.unlock_flow(key, handle))

    async def aunlock(self, key: str, handle: str) -> None:
        """See :meth:`unlock_flow` (asyncio)."""
        await arun(self.unlock_flow(key, handle))


_DOWN: Any = object()
