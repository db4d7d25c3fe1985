"""The core against a hostile or unlucky authorization server (issue: hostile token and AS).

Real servers on 127.0.0.1: one that drips its response headers forever, one that is
slow; clocks that step. Each test failed before its fix.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from scopegate import (
    IntrospectionUnavailableError,
    IntrospectionVerifier,
    InvalidTokenError,
    JWTVerifier,
    KeySetUnavailableError,
)
from tests.core.jwks_server import JWKSServer
from tests.core.tokens import AUDIENCE, ISSUER, RSA_KEY, RSA_KEY_2, jwks, mint

pytestmark = pytest.mark.timeout(60)


class DripServer:
    """Answers every connection with a status line, then one header line every *pause*
    seconds, forever (until the client goes away)."""

    def __init__(self, pause: float = 0.3) -> None:
        self.pause = pause
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            n = 0
            while not self._stop.is_set():
                time.sleep(self.pause)
                conn.sendall(f"X-Drip-{n}: x\r\n".encode())
                n += 1
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


@contextmanager
def drip_server() -> Iterator[DripServer]:
    server = DripServer()
    try:
        yield server
    finally:
        server.close()


def _jwt_verifier(url: str, **kwargs: Any) -> JWTVerifier:
    return JWTVerifier(
        issuer=ISSUER, audience=AUDIENCE, jwks_uri=url + "/jwks", http_timeout=1, **kwargs
    )


def _introspection_verifier(url: str) -> IntrospectionVerifier:
    return IntrospectionVerifier(
        introspection_uri=url + "/introspect", client_id="rs", client_secret="s", http_timeout=1
    )


# -- a server that drips its headers: the deadline holds from first byte to last ----------


def test_dripping_jwks_server_cannot_hold_verify_past_the_deadline() -> None:
    """verify() gives up at the overall deadline (2 x 1 s), not when the dripping stops."""
    with drip_server() as server:
        verifier = _jwt_verifier(server.url)
        started = time.monotonic()
        with pytest.raises(KeySetUnavailableError):
            verifier.verify(mint())
        elapsed = time.monotonic() - started
        verifier.close()
    assert elapsed < 3.0, elapsed


@pytest.mark.anyio
async def test_dripping_jwks_server_cannot_hold_averify_or_its_waiters() -> None:
    """averify() and every task waiting on the same fetch give up at the deadline."""
    with drip_server() as server:
        verifier = _jwt_verifier(server.url)
        started = time.monotonic()
        outcomes = await asyncio.gather(
            *(verifier.averify(mint(jti=f"t{i}")) for i in range(5)), return_exceptions=True
        )
        elapsed = time.monotonic() - started
        await verifier.aclose()
    assert all(isinstance(o, KeySetUnavailableError) for o in outcomes), outcomes
    assert elapsed < 3.0, elapsed
    assert server.connections == 1  # one shared fetch


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dripping_introspection_endpoint_is_a_timely_503(mode: str) -> None:
    """Introspection against a dripping endpoint is a 503 within the deadline."""
    with drip_server() as server:
        verifier = _introspection_verifier(server.url)
        started = time.monotonic()
        call = (
            (lambda: verifier.verify("opaque-token-value"))
            if mode == "sync"
            else (lambda: asyncio.run(verifier.averify("opaque-token-value")))
        )
        with pytest.raises(IntrospectionUnavailableError):
            call()
        elapsed = time.monotonic() - started
        verifier.close()
    assert elapsed < 3.0, elapsed


# -- cancelling one caller never cancels the others ---------------------------------------


@pytest.mark.anyio
async def test_cancelled_first_caller_does_not_cancel_the_shared_fetch() -> None:
    """The first caller of a single flight is cancelled; the others still get the keys."""
    with JWKSServer.running(keys=[RSA_KEY]) as server:
        server.mode = "slow"  # answers after a short delay
        server.delay = 0.5
        verifier = JWTVerifier(
            issuer=ISSUER, audience=AUDIENCE, jwks_uri=server.jwks_uri, http_timeout=5
        )
        first = asyncio.ensure_future(verifier.averify(mint(jti="first")))
        await asyncio.sleep(0.05)
        others = [asyncio.ensure_future(verifier.averify(mint(jti=f"o{i}"))) for i in range(3)]
        await asyncio.sleep(0.05)
        first.cancel()
        results = await asyncio.gather(*others)
        assert [r.subject for r in results] == ["alice"] * 3
        with pytest.raises(asyncio.CancelledError):
            await first
        assert server.hits["/jwks"] == 1
        await verifier.aclose()


# -- key-cache timers on the monotonic clock -----------------------------------------------


class WallClock:
    """A wall clock the test can step (claims are judged on it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_stepping_the_wall_clock_back_does_not_extend_the_key_cache() -> None:
    """After the wall clock steps back an hour, the JWKS TTL still runs on real time:
    a removed key stops verifying and a new key is picked up when the TTL ends."""
    with JWKSServer.running(keys=[RSA_KEY]) as server:
        wall = WallClock()
        verifier = JWTVerifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_uri=server.jwks_uri,
            jwks_ttl=1,
            jwks_cooldown=30,
            clock=wall,
        )
        assert verifier.verify(mint()).subject == "alice"
        server.keys = [RSA_KEY_2]
        wall.offset = -3600.0
        time.sleep(1.2)
        now = int(wall())
        stale = mint(RSA_KEY, jti="after", iat=now, exp=now + 600)
        with pytest.raises(InvalidTokenError) as info:
            verifier.verify(stale)
        assert info.value.reason == "unknown_key"
        fresh = mint(RSA_KEY_2, jti="new", iat=now, exp=now + 600)
        assert verifier.verify(fresh).subject == "alice"
        verifier.close()


# -- settled inconsistencies ------------------------------------------------------------


class FixedClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_expiry_boundary_is_the_same_for_jwt_and_introspection() -> None:
    """At exactly now == exp + leeway both kinds of token are expired."""
    exp, leeway = 2_000_000_000, 60
    jwt_verifier = JWTVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        keys=jwks(RSA_KEY),
        leeway=leeway,
        clock=FixedClock(exp + leeway),
    )
    with pytest.raises(InvalidTokenError) as info:
        jwt_verifier.verify(mint(iat=exp - 600, exp=exp))
    assert info.value.reason == "expired"
    introspection = IntrospectionVerifier(
        introspection_uri="https://as.test/introspect",
        client_id="rs",
        client_secret="s",
        leeway=leeway,
        clock=FixedClock(exp + leeway),
    )
    with pytest.raises(InvalidTokenError) as info:
        introspection._accept({"active": True, "exp": exp}, exp + leeway, log=False)
    assert info.value.reason == "expired"
    # One second earlier both accept.
    introspection._accept({"active": True, "exp": exp}, exp + leeway - 1, log=False)


def test_kidless_jwks_key_does_not_hide_a_new_kid() -> None:
    """A JWKS key published without kid no longer answers a token's new kid: the set is
    refreshed and the new key verifies (no bad_signature until the TTL ends)."""
    with JWKSServer.running(keys=[]) as server:
        server.jwks_extra = [RSA_KEY.jwk(kid=None)]
        verifier = JWTVerifier(
            issuer=ISSUER, audience=AUDIENCE, jwks_uri=server.jwks_uri, jwks_ttl=600
        )
        assert verifier.verify(mint(header={"kid": "anything"})).subject == "alice"
        server.jwks_extra = [RSA_KEY.jwk(kid=None), RSA_KEY_2.jwk()]
        assert verifier.verify(mint(RSA_KEY_2, jti="new")).subject == "alice"
        assert server.hits["/jwks"] == 2
        verifier.close()
