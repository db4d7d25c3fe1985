"""Shared fixtures: real servers on 127.0.0.1 (see tests/servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server for one test; skipped locally without the binary, fails in CI."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio (the only loop scopegate targets)."""
    return "asyncio"
