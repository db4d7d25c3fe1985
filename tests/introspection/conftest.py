"""Fixtures for the introspection tests: a real counting server and a settable clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scopegate._introspection import IntrospectionVerifier
from tests.introspection.introspection_server import IntrospectionServer

NOW = 1_900_000_000.0


class FakeClock:
    """Unix time that only moves when a test says so."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def server() -> Iterator[IntrospectionServer]:
    """A started introspection server on a free 127.0.0.1 port."""
    srv = IntrospectionServer()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def clock() -> FakeClock:
    """A clock frozen at NOW."""
    return FakeClock()


def active(**claims: Any) -> dict[str, Any]:
    """An active introspection answer valid for an hour at NOW."""
    base: dict[str, Any] = {
        "active": True,
        "scope": "items:read items:write",
        "sub": "alice",
        "client_id": "svc-a",
        "exp": int(NOW) + 3600,
        "iat": int(NOW) - 10,
    }
    base.update(claims)
    return {k: v for k, v in base.items() if v is not None}


@pytest.fixture
def make_verifier(
    server: IntrospectionServer, clock: FakeClock
) -> Iterator[Callable[..., IntrospectionVerifier]]:
    """Builds verifiers against the server (closed after the test)."""
    made: list[IntrospectionVerifier] = []

    def make(**kwargs: Any) -> IntrospectionVerifier:
        options: dict[str, Any] = {
            "introspection_uri": server.url,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "clock": clock,
            "http_timeout": 1.0,
        }
        options.update(kwargs)
        verifier = IntrospectionVerifier(**options)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        verifier.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll *predicate* until true (not a timing assertion: it only bounds a wait)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)
