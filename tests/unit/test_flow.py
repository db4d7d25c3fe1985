"""Flow drivers: one logic run sync or async, bounded in size and time."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scopegate._errors import ConfigurationError
from scopegate._flow import AsyncSingleFlight, Flow, HTTPRunner, ResponseTooLargeError, SingleFlight
from tests.servers import run_asgi


def fetch_flow(url: str) -> Flow[tuple[str, Any]]:
    """Yield one GET; return ('ok', status) or ('error', exception class name)."""
    try:
        response = yield httpx.Request("GET", url)
    except httpx.HTTPError as exc:
        return ("error", type(exc).__name__)
    return ("ok", response.status_code)


async def server_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A tiny real server: /ok, /big (2 MiB), /redirect, /slow, /drip."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    if path == "/redirect":
        await send({"type": "http.response.start", "status": 302,
                    "headers": [(b"location", b"/ok")]})
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/slow":
        await asyncio.sleep(2)
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if path == "/big":
        for _ in range(32):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
    if path == "/drip":
        for _ in range(20):
            await send({"type": "http.response.body", "body": b" ", "more_body": True})
            await asyncio.sleep(0.1)
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with run_asgi(server_app) as url:
        yield url


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/ok", ("ok", 200), id="ok"),
        pytest.param("/redirect", ("ok", 302), id="redirect-not-followed"),
        pytest.param("/big", ("error", "ResponseTooLargeError"), id="body-capped"),
        pytest.param("/slow", ("error", "ReadTimeout"), id="timeout"),
        pytest.param("/drip", ("error", "ReadTimeout"), id="drip-deadline"),
    ],
)
def test_sync_and_async_runs_agree(base_url: str, path: str, expected: tuple[str, Any]) -> None:
    """The same flow gives the same outcome under the sync and the async driver."""
    # The short deadline only where it is the subject; elsewhere a stalled CI host must not flake.
    runner = HTTPRunner(timeout=0.5 if expected[1] == "ReadTimeout" else 10.0, max_body=1 << 20)

    async def run_async() -> tuple[str, Any]:
        try:
            return await runner.arun(fetch_flow(base_url + path))
        finally:
            await runner.aclose()

    try:
        assert runner.run(fetch_flow(base_url + path)) == expected
        assert asyncio.run(run_async()) == expected
    finally:
        runner.close()


def test_connection_refused_is_thrown_into_the_flow() -> None:
    """A transport failure reaches the flow as an exception at its yield."""
    runner = HTTPRunner(timeout=0.5)
    result = runner.run(fetch_flow("http://127.0.0.1:9/"))
    assert result == ("error", "ConnectError")
    runner.close()


def test_mock_transport_and_multi_step_flow() -> None:
    """A flow may yield several requests; each response is sent back in order."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"path": request.url.path})

    def two_steps() -> Flow[list[str]]:
        first = yield httpx.Request("GET", "http://as.test/one")
        second = yield httpx.Request("GET", "http://as.test/two")
        return [first.json()["path"], second.json()["path"]]

    runner = HTTPRunner(transport=httpx.MockTransport(handler),
                        async_transport=httpx.MockTransport(handler))
    assert runner.run(two_steps()) == ["/one", "/two"]
    assert asyncio.run(runner.arun(two_steps())) == ["/one", "/two"]


def test_response_too_large_is_an_httpx_error() -> None:
    """Flows that catch httpx.HTTPError also see the size limit."""
    assert issubclass(ResponseTooLargeError, httpx.HTTPError)


def test_single_flight_threads_share_one_call() -> None:
    """Concurrent callers with one key run the function once and share its result."""
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    barrier = threading.Barrier(20)
    results: list[int] = []

    def slow() -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.3)
        return 42

    def worker() -> None:
        barrier.wait()
        results.append(flight.do("k", slow))

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == 1
    assert results == [42] * 20


def test_single_flight_shares_exceptions_and_forgets_them() -> None:
    """An exception reaches every waiter and is not cached for the next call."""
    flight: SingleFlight[int] = SingleFlight()

    def boom() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        flight.do("k", boom)
    assert flight.do("k", lambda: 1) == 1


@pytest.mark.anyio
async def test_async_single_flight_one_call_for_many_tasks() -> None:
    """Concurrent tasks with one key await a single call."""
    flight: AsyncSingleFlight[int] = AsyncSingleFlight()
    calls = 0

    async def slow() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.1)
        return 7

    results = await asyncio.gather(*(flight.do("k", slow) for _ in range(100)))
    assert calls == 1
    assert results == [7] * 100


@pytest.mark.anyio
async def test_async_single_flight_exception_shared() -> None:
    """Waiters see the leader's exception; the next call starts afresh."""
    flight: AsyncSingleFlight[int] = AsyncSingleFlight()

    async def boom() -> int:
        await asyncio.sleep(0.05)
        raise RuntimeError("boom")

    outcomes = await asyncio.gather(*(flight.do("k", boom) for _ in range(5)),
                                    return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)

    async def ok() -> int:
        return 1

    assert await flight.do("k", ok) == 1


@pytest.mark.parametrize("timeout", [0, -1, float("inf"), True, "5"], ids=str)
def test_runner_timeout_follows_the_settings_rule(timeout: Any) -> None:
    """A timeout that is not a finite positive number is a ConfigurationError (a ValueError)."""
    with pytest.raises(ConfigurationError, match="timeout"):
        HTTPRunner(timeout=timeout)
