"""One logic for sync and async: flows, effects and the two drivers.

Every piece of logic that waits on something (an HTTP exchange with the authorization
server, a Redis command, a shared fetch, a pause, the request body) is written **once**,
as a generator *flow* that yields what it waits for and receives the result (the shape
of httpx's ``Auth.auth_flow``)::

    def fetch_flow(self) -> Flow[KeySet]:
        response = yield httpx.Request("GET", self.jwks_uri)     # an HTTP exchange
        entry = yield cache.command("GET", key)                   # any other Effect
        ...
        return keys

Two drivers run a flow: :func:`run` for threads (WSGI, sync code) and :func:`arun` for
asyncio. They are the only sync/async pair: an :class:`httpx.Request` goes to the
:class:`HTTPRunner` (``httpx.Client`` or ``httpx.AsyncClient``), every other step is an
:class:`Effect` with a ``run`` and an ``arun`` method. A failure of a step is *thrown
into* the flow at its ``yield``, so the flow alone decides what a failure means.

The HTTP runner bounds every exchange by one **deadline** from the first byte sent to
the last byte read (connect, TLS, request, headers and body together): a server that
drips bytes cannot hold a request past it. The single flights (:class:`Flight`) share
one fetch among concurrent callers; cancelling one caller never cancels the fetch the
others wait on. :class:`ClientOwner` gives the ``close`` / ``aclose`` pair to the objects
that may make their own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Hashable, Iterator
from contextvars import ContextVar
from typing import Any, Generic, Protocol, TypeVar

import httpcore
import httpx

from scopegate._settings import number

__all__ = [
    "DEFAULT_MAX_BODY",
    "AsyncSingleFlight",
    "Call",
    "ClientOwner",
    "Effect",
    "Flight",
    "Flow",
    "HTTPRunner",
    "ResponseTooLargeError",
    "SingleFlight",
    "Sleep",
    "arun",
    "run",
]

T = TypeVar("T")
Flow = Generator[Any, Any, T]

#: Bodies above this are refused before they are parsed (a hostile AS cannot exhaust us).
DEFAULT_MAX_BODY = 1 << 20


class Effect(Protocol):
    """A step a flow waits on, other than an HTTP exchange.

    ``run`` performs it in the calling thread, ``arun`` on the running event loop; both
    return what the flow receives at its ``yield``. An exception is thrown into the flow.
    """

    def run(self) -> Any:
        """Perform the step (threads)."""
        ...

    async def arun(self) -> Any:
        """Perform the step (asyncio); never blocks the loop."""
        ...


class Call:
    """Call a sync function in threads, or await its async twin on a loop.

    Adapts an object that offers both (``get`` / ``aget``, ``verify`` / ``averify``) to
    a flow: ``entry = yield Call(cache.get, cache.aget, key)``.
    """

    __slots__ = ("args", "async_fn", "fn")

    def __init__(
        self, fn: Callable[..., Any], async_fn: Callable[..., Awaitable[Any]], *args: Any
    ) -> None:
        self.fn = fn
        self.async_fn = async_fn
        self.args = args

    def run(self) -> Any:
        """Call the sync function."""
        return self.fn(*self.args)

    async def arun(self) -> Any:
        """Await the async function."""
        return await self.async_fn(*self.args)


class Sleep:
    """Pause for *seconds*: ``time.sleep`` in threads, ``asyncio.sleep`` on a loop."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def run(self) -> None:
        """Sleep in the calling thread."""
        time.sleep(self.seconds)

    async def arun(self) -> None:
        """Sleep without blocking the loop."""
        await asyncio.sleep(self.seconds)


class _Closeable(Protocol):
    def close(self) -> None: ...

    async def aclose(self) -> None: ...


class ClientOwner:
    """Gives ``close`` / ``aclose`` to an object that uses a client it may have made.

    The client (an :class:`HTTPRunner`, a :class:`~scopegate.RedisConnection`) is closed
    only when the object made it, kept in ``_owned``: one passed in may be shared, so it
    is its owner's to close.
    """

    #: The client this object made and must close; ``None`` when it was given one.
    _owned: _Closeable | None = None

    def close(self) -> None:
        """Close the sync side of the client this object made (one passed in is left open)."""
        if self._owned is not None:
            self._owned.close()

    async def aclose(self) -> None:
        """Close the client this object made, both sides (call it on the loop that used it;
        one passed in is left open)."""
        if self._owned is not None:
            await self._owned.aclose()


#: ``first=`` default of the drivers: start the flow (rather than resume it).
_START: Any = object()


def run(flow: Flow[T], http: HTTPRunner | None = None, *, first: Any = _START) -> T:
    """Drive *flow* to completion in the calling thread and return its value.

    Args:
        flow: The flow.
        http: Runs the flow's :class:`httpx.Request` steps (required if it yields any).
        first: The effect the flow already yielded, when the caller started it with
            ``next(flow)`` to see whether it needs to wait at all (it then resumes here).
    """
    try:
        step = next(flow) if first is _START else first
        while True:
            try:
                if type(step) is httpx.Request:
                    if http is None:
                        raise RuntimeError("this flow needs an HTTPRunner")
                    result = http.send(step)
                else:
                    result = step.run()
            except Exception as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def arun(flow: Flow[T], http: HTTPRunner | None = None, *, first: Any = _START) -> T:
    """Drive *flow* to completion on the running event loop and return its value
    (*first*: see :func:`run`)."""
    try:
        step = next(flow) if first is _START else first
        while True:
            try:
                if type(step) is httpx.Request:
                    if http is None:
                        raise RuntimeError("this flow needs an HTTPRunner")
                    result = await http.asend(step)
                else:
                    result = await step.arun()
            except Exception as exc:
                step = flow.throw(exc)
            else:
                step = flow.send(result)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    finally:
        flow.close()


class ResponseTooLargeError(httpx.RequestError):
    """The response body exceeded the configured limit; thrown into the flow."""


# -- the deadline ------------------------------------------------------------------

# The monotonic time by which the exchange in progress must be over. In threads it is
# read by the network streams of our own sync client at every connect, read and write,
# so no single phase (and no server dripping one byte at a time) can outlast it; async
# exchanges run under asyncio.timeout instead.
_DEADLINE: ContextVar[float] = ContextVar("scopegate.http_deadline", default=math.inf)


def _budget(timeout: float | None) -> float | None:
    left = _DEADLINE.get() - time.monotonic()
    if left == math.inf:
        return timeout
    if left <= 0:
        raise httpcore.ReadTimeout("the exchange passed its deadline")
    return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    __slots__ = ("_inner",)

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _budget(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _budget(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, _budget(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        return _Stream(
            self._inner.connect_tcp(host, port, _budget(timeout), local_address, socket_options)
        )

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        return _Stream(self._inner.connect_unix_socket(path, _budget(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _Transport(httpx.HTTPTransport):
    """httpx's transport on a connection pool whose streams obey the deadline."""

    def __init__(self) -> None:
        super().__init__(trust_env=False)
        # httpx builds its pool in the same attribute; it takes no network backend.
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False), network_backend=_Backend()
        )


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[float]:
    deadline = time.monotonic() + seconds
    marker = _DEADLINE.set(min(deadline, _DEADLINE.get()))
    try:
        yield deadline
    finally:
        _DEADLINE.reset(marker)


class HTTPRunner:
    """Sends a flow's requests over a sync or an async httpx client, bounded in time and size.

    Redirects are never followed: a 3xx from an authorization server is an error for the
    flow to judge (a redirect could point key fetches anywhere).

    Args:
        timeout: Seconds for each phase (connect, read, write, pool); the whole
            exchange, from the first byte sent to the last byte read, must also end
            within ``2 * timeout`` (:attr:`total_timeout`).
        max_body: Largest response body accepted, in bytes.
        client: An ``httpx.Client`` to use instead of a private one (not closed by us).
            The overall deadline is then checked between body chunks only.
        async_client: An ``httpx.AsyncClient`` likewise (the deadline holds in full: the
            async exchange runs under :func:`asyncio.timeout`).
        transport: Transport for the private sync client (tests).
        async_transport: Transport for the private async client (tests).
    """

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_body: int = DEFAULT_MAX_BODY,
        client: httpx.Client | None = None,
        async_client: httpx.AsyncClient | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        number("timeout", timeout, low_open=True)
        self.timeout = httpx.Timeout(timeout)
        self.total_timeout = timeout * 2
        self.max_body = max_body
        self._client = client
        self._own_client = client is None
        self._async_client = async_client
        self._own_async_client = async_client is None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._transport = transport
        self._async_transport = async_transport
        self._lock = threading.Lock()

    def _sync_client(self) -> httpx.Client:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(
                        timeout=self.timeout,
                        follow_redirects=False,
                        transport=self._transport or _Transport(),
                        trust_env=False,
                    )
        return self._client

    def _aclient(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._async_client is None or (self._own_async_client and self._async_loop is not loop):
            # An AsyncClient's pool is bound to the loop that made it; a new loop (tests,
            # or a server restarted in-process) gets its own client.
            self._async_client = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                transport=self._async_transport,
                trust_env=False,
            )
            self._async_loop = loop
        return self._async_client

    def run(self, flow: Flow[T]) -> T:
        """Drive *flow* with this runner in the calling thread (see :func:`run`)."""
        return run(flow, self)

    async def arun(self, flow: Flow[T]) -> T:
        """Drive *flow* with this runner on the event loop (see :func:`arun`)."""
        return await arun(flow, self)

    def send(self, request: httpx.Request) -> httpx.Response:
        """Send *request* and read the whole body, within the deadline and the size cap."""
        client = self._sync_client()
        with _deadline(self.total_timeout) as deadline:
            response = client.send(request, stream=True)
            try:
                body = self._read(request, response, response.iter_raw(), deadline)
            finally:
                response.close()
        return self._buffered(response, body, request)

    async def asend(self, request: httpx.Request) -> httpx.Response:
        """Async twin of :meth:`send`."""
        client = self._aclient()
        with _deadline(self.total_timeout) as deadline:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    response = await client.send(request, stream=True)
                    try:
                        chunks = [
                            chunk async for chunk in _capped(response, self.max_body, request)
                        ]
                    finally:
                        await response.aclose()
            except TimeoutError as exc:
                raise httpx.ReadTimeout(
                    "the exchange passed its deadline", request=request
                ) from exc
        return self._buffered(response, b"".join(chunks), request)

    def _read(
        self, request: httpx.Request, response: httpx.Response, chunks: Any, deadline: float
    ) -> bytes:
        if response.is_stream_consumed:  # already buffered (e.g. a MockTransport)
            self._check(request, len(response.content), deadline)
            return response.content
        parts: list[bytes] = []
        size = 0
        for chunk in chunks:
            parts.append(chunk)
            size += len(chunk)
            self._check(request, size, deadline)
        return b"".join(parts)

    def _check(self, request: httpx.Request, size: int, deadline: float) -> None:
        if size > self.max_body:
            raise ResponseTooLargeError("response body too large", request=request)
        # Our own transports enforce the deadline at every read; a client passed in by
        # the caller is at least checked between chunks.
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("the exchange passed its deadline", request=request)

    @staticmethod
    def _buffered(response: httpx.Response, raw: bytes, request: httpx.Request) -> httpx.Response:
        # Content-Encoding is dropped: the raw bytes were capped before any decompression,
        # so a small gzip bomb cannot expand past the limit.
        headers = [
            (k, v)
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-encoding", "transfer-encoding")
        ]
        return httpx.Response(response.status_code, headers=headers, content=raw, request=request)

    def close(self) -> None:
        """Close the private sync client."""
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close the private async client (and the sync one)."""
        if self._own_async_client and self._async_client is not None:
            await self._async_client.aclose()
            self._async_client = None
        self.close()


async def _capped(response: httpx.Response, limit: int, request: httpx.Request) -> Any:
    if response.is_stream_consumed:  # already buffered (e.g. a MockTransport)
        if len(response.content) > limit:
            raise ResponseTooLargeError("response body too large", request=request)
        yield response.content
        return
    size = 0
    async for chunk in response.aiter_raw():
        size += len(chunk)
        if size > limit:
            raise ResponseTooLargeError("response body too large", request=request)
        yield chunk


# -- single flights ----------------------------------------------------------------


class _Call(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Coalesces concurrent calls with the same key into one (threads).

    The first caller runs the function; callers that arrive while it runs wait and get
    the same result or exception. Nothing is kept after the call ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call[T]] = {}

    def do(self, key: Hashable, fn: Callable[[], T]) -> T:
        """Run *fn* once for all concurrent callers with *key*."""
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result  # type: ignore[return-value]
        try:
            call.result = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result


class AsyncSingleFlight(Generic[T]):
    """Coalesces concurrent awaits with the same key into one task (asyncio).

    The shared work runs in its own task, which every caller awaits through
    :func:`asyncio.shield`: a caller that is cancelled (a client disconnect, a
    per-request timeout) stops waiting, and only it sees the cancellation; the work and
    every other caller carry on. The work itself is bounded by its own deadline.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Task[T]] = {}

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """Await *fn* once for all concurrent callers with *key*."""
        loop = asyncio.get_running_loop()
        task = self._tasks.get(key)
        if task is None or task.done() or task.get_loop() is not loop:
            task = loop.create_task(_call(fn))
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            # Retrieve the outcome: when every waiter left, nobody else will, and an
            # unretrieved exception would be logged by asyncio as a bug.
            task.exception()


async def _call(fn: Callable[[], Awaitable[T]]) -> T:
    return await fn()


class Flight:
    """A single flight for both worlds, as an :class:`Effect` factory.

    ``yield flight.join(key, make_flow, http)`` inside a flow runs ``make_flow()`` once
    for every concurrent caller with *key* (threads share one run, tasks share another)
    and hands each the result.
    """

    __slots__ = ("_async", "_sync")

    def __init__(self) -> None:
        self._sync: SingleFlight[Any] = SingleFlight()
        self._async: AsyncSingleFlight[Any] = AsyncSingleFlight()

    def join(
        self, key: Hashable, make: Callable[[], Flow[T]], http: HTTPRunner | None = None
    ) -> _Join[T]:
        """An effect that runs ``make()``'s flow once per key among concurrent callers."""
        return _Join(self, key, make, http)


class _Join(Generic[T]):
    __slots__ = ("flight", "http", "key", "make")

    def __init__(
        self, flight: Flight, key: Hashable, make: Callable[[], Flow[T]], http: HTTPRunner | None
    ) -> None:
        self.flight = flight
        self.key = key
        self.make = make
        self.http = http

    def run(self) -> T:
        result: T = self.flight._sync.do(self.key, lambda: run(self.make(), self.http))
        return result

    async def arun(self) -> T:
        result: T = await self.flight._async.do(self.key, lambda: arun(self.make(), self.http))
        return result
