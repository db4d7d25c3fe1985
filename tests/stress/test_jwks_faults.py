"""Fault injection on the JWKS endpoint, against a real misbehaving server process.

The verifier (sync and async) fetches keys from :mod:`tests.stress.faultserver`, which
goes down, answers slowly, drips, returns garbage, redirects, sends 4 MiB, resets
connections and flaps. Expected behaviour:

* nothing cached: 503 ``KeySetUnavailableError`` with ``Retry-After``, within the HTTP
  timeout plus a margin; once the server behaves, the same verifier recovers;
* keys cached: requests keep being answered from the last good key set
  (stale-if-error), so no 503 at all; a token with an unknown ``kid`` is a 503 (we
  cannot tell), and works once the server is back;
* under concurrent load through all of the above: never anything but the right answer
  for each token, never an unexpected exception.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from scopegate._errors import BearerError, InvalidTokenError, KeySetUnavailableError
from scopegate._jwt import JWTVerifier
from scopegate._token import AccessToken
from tests.fuzz import material
from tests.stress.figures import record
from tests.stress.procs import ASYNC_FAULTS, FAULTS, FaultServer, inject

TIMEOUT = 1.0
# The runner's overall deadline is 2 x timeout; allow generous scheduling slack on CI.
LATENCY_BOUND = 2 * TIMEOUT + 2.0
COOLDOWN = 0.5

# Every fault through the sync driver; the async driver runs the same flow, so a subset.
CASES = [pytest.param(p.values[0], False, id=f"sync-{p.id}") for p in FAULTS] + [
    pytest.param(name, True, id=f"async-{name}") for name in ASYNC_FAULTS
]


def make_verifier(server: FaultServer, **overrides: Any) -> JWTVerifier:
    """A verifier fetching keys from the fault server, with short timers."""
    options: dict[str, Any] = {
        "issuer": material.ISSUER,
        "audience": material.AUDIENCE,
        "jwks_uri": server.url + "/jwks",
        "http_timeout": TIMEOUT,
        "jwks_ttl": 1.0,
        "jwks_cooldown": COOLDOWN,
        "stale_if_error": 3600,
        "cache_verified": False,
    }
    options.update(overrides)
    return JWTVerifier(**options)


def heal(server: FaultServer, fault: str) -> None:
    """Bring the server back to normal service."""
    if fault == "down":
        server.start()
    server.control(mode="ok", documents={"/jwks": material.jwks()})


def run(
    verifier: JWTVerifier, token: str, use_async: bool
) -> tuple[AccessToken | BearerError, float]:
    """Verify *token*; return the outcome and how long it took."""
    start = time.monotonic()
    try:
        if use_async:
            outcome: AccessToken | BearerError = asyncio.run(verifier.averify(token))
        else:
            outcome = verifier.verify(token)
    except BearerError as exc:
        outcome = exc
    return outcome, time.monotonic() - start


@pytest.fixture
def jwks_server(fault_server: FaultServer) -> FaultServer:
    """The fault server serving the issuer's JWKS at /jwks."""
    fault_server.control(documents={"/jwks": material.jwks()})
    return fault_server


@pytest.mark.parametrize(("fault", "use_async"), CASES)
def test_cold_cache_fault_is_503_then_recovers(
    jwks_server: FaultServer, fault: str, use_async: bool
) -> None:
    """With nothing cached, a JWKS fault is a bounded-time 503 with Retry-After, then recovery."""
    verifier = make_verifier(jwks_server)
    token = material.mint()
    inject(jwks_server, fault)
    attempts = 9 if fault == "garbage" else 1  # every garbage variant once
    for _ in range(attempts):
        outcome, elapsed = run(verifier, token, use_async)
        assert isinstance(outcome, KeySetUnavailableError), outcome
        assert elapsed < LATENCY_BOUND
        response = outcome.to_response()
        assert response.status == 503
        assert ("retry-after", str(outcome.retry_after)) in response.headers
        assert "invalid_token" not in dict(response.headers)["www-authenticate"]
        record(f"jwks fault (cold cache): {fault}")
        time.sleep(COOLDOWN + 0.05)
    heal(jwks_server, fault)
    time.sleep(COOLDOWN + 0.05)
    outcome, _ = run(verifier, token, use_async)
    assert isinstance(outcome, AccessToken), outcome
    verifier.close()


@pytest.mark.parametrize(("fault", "use_async"), CASES)
def test_warm_cache_rides_out_fault(jwks_server: FaultServer, fault: str, use_async: bool) -> None:
    """With keys cached, a JWKS fault costs no request; an unknown kid waits for recovery."""
    verifier = make_verifier(jwks_server)
    assert isinstance(run(verifier, material.mint(), use_async)[0], AccessToken)
    inject(jwks_server, fault)
    time.sleep(1.1)  # past the TTL: the next request must try to refresh
    for _ in range(2):
        outcome, elapsed = run(verifier, material.mint(), use_async)
        assert isinstance(outcome, AccessToken), outcome  # stale-if-error
        assert elapsed < LATENCY_BOUND
        forged, _ = run(verifier, material.forged(), use_async)
        assert isinstance(forged, InvalidTokenError)
        record(f"jwks fault (warm cache): {fault}")
        time.sleep(COOLDOWN + 0.05)
    rotated = material.mint(kid="rsa-2")
    outcome, elapsed = run(verifier, rotated, use_async)
    assert isinstance(outcome, KeySetUnavailableError), outcome  # cannot know the new kid yet
    assert elapsed < LATENCY_BOUND
    heal(jwks_server, fault)
    jwks_server.control(
        documents={
            "/jwks": {"keys": material.jwks()["keys"] + material.jwks(rsa_kid="rsa-2")["keys"][:1]}
        }
    )
    time.sleep(COOLDOWN + 0.05)
    outcome, _ = run(verifier, rotated, use_async)
    assert isinstance(outcome, AccessToken), outcome
    verifier.close()


TOKENS: dict[str, Callable[[], str]] = {
    "valid": material.mint,
    "expired": material.expired,
    "forged": material.forged,
    "junk": lambda: "a.b.c",
    "wrong-audience": lambda: material.mint(audience="api://other"),
}


def _expected(kind: str, outcome: AccessToken | BearerError) -> bool:
    if kind == "valid":
        return isinstance(outcome, AccessToken)
    return isinstance(outcome, InvalidTokenError)


def test_faults_under_concurrent_load(jwks_server: FaultServer) -> None:
    """Threads verifying mixed tokens through down/slow/flap/garbage phases all answer right."""
    verifier = make_verifier(jwks_server)
    tokens = {kind: make() for kind, make in TOKENS.items()}
    assert isinstance(verifier.verify(tokens["valid"]), AccessToken)
    stop = threading.Event()
    tally: Counter[str] = Counter()
    wrong: list[str] = []
    slowest = [0.0]
    lock = threading.Lock()

    def worker(offset: int) -> None:
        kinds = list(tokens)
        i = offset
        while not stop.is_set():
            kind = kinds[i % len(kinds)]
            i += 1
            outcome, elapsed = run(verifier, tokens[kind], use_async=False)
            with lock:
                tally[kind] += 1
                slowest[0] = max(slowest[0], elapsed)
                if not _expected(kind, outcome):
                    wrong.append(f"{kind}: {outcome!r} {getattr(outcome, 'reason', '')}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    try:
        for fault, seconds in [
            ("down", 2.0),
            ("slow", 2.5),
            ("flap", 2.0),
            ("garbage", 2.0),
            ("huge", 1.5),
            ("reset", 1.5),
        ]:
            inject(jwks_server, fault)
            time.sleep(seconds)
            heal(jwks_server, fault)
            record(f"jwks fault (under load): {fault}")
            time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not wrong, wrong[:5]
    assert slowest[0] < LATENCY_BOUND
    record("jwks verifications under fault load (all correct)", sum(tally.values()))
    verifier.close()


@pytest.mark.anyio
async def test_faults_under_concurrent_async_load(jwks_server: FaultServer) -> None:
    """Concurrent averify tasks through down/flap/slow phases all get the right answer."""
    verifier = make_verifier(jwks_server)
    tokens = {kind: make() for kind, make in TOKENS.items()}
    assert isinstance(await verifier.averify(tokens["valid"]), AccessToken)
    stop = asyncio.Event()
    wrong: list[str] = []
    done = [0]
    slowest = [0.0]

    async def worker(offset: int) -> None:
        kinds = list(tokens)
        i = offset
        while not stop.is_set():
            kind = kinds[i % len(kinds)]
            i += 1
            start = time.monotonic()
            try:
                outcome: AccessToken | BearerError = await verifier.averify(tokens[kind])
            except BearerError as exc:
                outcome = exc
            slowest[0] = max(slowest[0], time.monotonic() - start)
            done[0] += 1
            if not _expected(kind, outcome):
                wrong.append(f"{kind}: {outcome!r} {getattr(outcome, 'reason', '')}")
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(worker(n)) for n in range(16)]
    for fault, seconds in [("down", 2.0), ("flap", 1.5), ("slow", 2.5), ("drip", 2.5)]:
        await asyncio.to_thread(inject, jwks_server, fault)
        await asyncio.sleep(seconds)
        await asyncio.to_thread(heal, jwks_server, fault)
        record(f"jwks fault (under async load): {fault}")
        await asyncio.sleep(0.5)
    stop.set()
    await asyncio.gather(*tasks)
    assert not wrong, wrong[:5]
    assert slowest[0] < LATENCY_BOUND
    record("jwks async verifications under fault load (all correct)", done[0])
    await verifier.aclose()


DISCOVERY_FAULTS = [
    pytest.param("down", id="down"),
    pytest.param("slow", id="slow"),
    pytest.param("garbage", id="garbage"),
    pytest.param("redirect", id="redirect"),
    pytest.param("error", id="http-500"),
    pytest.param("mismatch", id="issuer-mismatch"),
    pytest.param("bad-jwks-uri", id="jwks-uri-not-allowed"),
]


@pytest.mark.parametrize("fault", DISCOVERY_FAULTS)
def test_discovery_fault_is_503_then_recovers(fault_server: FaultServer, fault: str) -> None:
    """RFC 8414 discovery faults (incl. an issuer mix-up) are a bounded 503, then recovery."""
    issuer = fault_server.url
    good = {"issuer": issuer, "jwks_uri": issuer + "/jwks"}
    well_known = "/.well-known/oauth-authorization-server"
    fault_server.control(documents={well_known: good, "/jwks": material.jwks()})
    if fault == "mismatch":
        fault_server.control(documents={well_known: {**good, "issuer": issuer + "/evil"}})
    elif fault == "bad-jwks-uri":
        fault_server.control(
            documents={well_known: {**good, "jwks_uri": "http://203.0.113.9/jwks"}}
        )
    else:
        inject(fault_server, fault)
    verifier = JWTVerifier(
        issuer=issuer,
        audience=material.AUDIENCE,
        http_timeout=TIMEOUT,
        jwks_cooldown=COOLDOWN,
        cache_verified=False,
    )
    token = material.mint(issuer=issuer)
    outcome, elapsed = run(verifier, token, use_async=False)
    assert isinstance(outcome, KeySetUnavailableError), outcome
    assert elapsed < LATENCY_BOUND
    record(f"discovery fault: {fault}")
    if fault == "down":
        fault_server.start()
    fault_server.control(mode="ok", documents={well_known: good, "/jwks": material.jwks()})
    deadline = time.monotonic() + outcome.retry_after + 3
    while isinstance(outcome, KeySetUnavailableError) and time.monotonic() < deadline:
        time.sleep(0.25)
        outcome, _ = run(verifier, token, use_async=False)
    assert isinstance(outcome, AccessToken), outcome
    verifier.close()
