"""One logic for sync and async network work.

Network work (discovery, JWKS, introspection) is written once as a generator *flow*
that yields an :class:`httpx.Request` and receives the :class:`httpx.Response` (the shape
of httpx's ``Auth.auth_flow``). :class:`HTTPRunner` drives a flow with ``httpx.Client``
(WSGI, threads) or ``httpx.AsyncClient`` (asyncio); only the drivers and the locks in
:class:`SingleFlight` / :class:`AsyncSingleFlight` differ between the two worlds.

A transport failure is *thrown into* the flow as the exception the flow sees at its
``yield``, so the flow alone decides how a failure maps to a scopegate error.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Hashable
from typing import Generic, TypeVar

import httpx

__all__ = [
    "AsyncSingleFlight",
    "Flow",
    "HTTPRunner",
    "ResponseTooLargeError",
    "SingleFlight",
]

T = TypeVar("T")
Flow = Generator[httpx.Request, httpx.Response, T]

#: Bodies above this are refused before they are parsed (a hostile AS cannot exhaust us).
DEFAULT_MAX_BODY = 1 << 20


class ResponseTooLargeError(httpx.RequestError):
    """The response body exceeded the configured limit; thrown into the flow."""


class HTTPRunner:
    """Runs flows over a sync or an async httpx client with bounded time and size.

    Redirects are never followed: a 3xx from an authorization server is an error for
    the flow to judge (a redirect could point key fetches anywhere).

    Args:
        timeout: Seconds for connect, read, write and pool, each.
        max_body: Largest response body accepted, in bytes.
        client: An ``httpx.Client`` to use instead of a private one (not closed by us).
        async_client: An ``httpx.AsyncClient`` likewise.
        transport / async_transport: Transports for the private clients (tests).
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
                        transport=self._transport,
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
        """Drive *flow* to completion with the sync client and return its value."""
        client = self._sync_client()
        try:
            request = next(flow)
            while True:
                try:
                    response = self._send(client, request)
                except httpx.HTTPError as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(response)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def arun(self, flow: Flow[T]) -> T:
        """Drive *flow* to completion with the async client and return its value."""
        client = self._aclient()
        try:
            request = next(flow)
            while True:
                try:
                    response = await self._asend(client, request)
                except httpx.HTTPError as exc:
                    request = flow.throw(exc)
                else:
                    request = flow.send(response)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def _send(self, client: httpx.Client, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.total_timeout
        response = client.send(request, stream=True)
        if response.is_stream_consumed:  # already buffered (e.g. a MockTransport)
            self._check(request, len(response.content), deadline)
            return response
        try:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_raw():
                chunks.append(chunk)
                size += len(chunk)
                self._check(request, size, deadline)
        finally:
            response.close()
        return self._buffered(response, b"".join(chunks), request)

    async def _asend(self, client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        deadline = time.monotonic() + self.total_timeout
        response = await client.send(request, stream=True)
        if response.is_stream_consumed:  # already buffered (e.g. a MockTransport)
            self._check(request, len(response.content), deadline)
            return response
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_raw():
                chunks.append(chunk)
                size += len(chunk)
                self._check(request, size, deadline)
        finally:
            await response.aclose()
        return self._buffered(response, b"".join(chunks), request)

    def _check(self, request: httpx.Request, size: int, deadline: float) -> None:
        # httpx's timeouts are per phase; a server dripping one byte per second would
        # never trip them, so the whole exchange also has a deadline.
        if size > self.max_body:
            raise ResponseTooLargeError("response body too large", request=request)
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout("response took too long", request=request)

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


class _Call(Generic[T]):
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SingleFlight(Generic[T]):
    """Coalesces concurrent calls with the same key into one (threads).

    The first caller runs the function; callers that arrive while it runs wait and get
    the same result or exception. Nothing is cached after the call ends.
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
    """Coalesces concurrent awaits with the same key into one (asyncio)."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Future[T]] = {}

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[T]]) -> T:
        """Await *fn* once for all concurrent callers with *key*."""
        future = self._calls.get(key)
        loop = asyncio.get_running_loop()
        if future is not None and not future.done() and future.get_loop() is loop:
            # shield: one waiter being cancelled must not cancel the shared call.
            return await asyncio.shield(future)
        future = loop.create_future()
        self._calls[key] = future
        try:
            result = await fn()
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
                # Mark retrieved: waiters may not exist, and that is fine.
                future.exception()
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._calls.get(key) is future:
                del self._calls[key]
