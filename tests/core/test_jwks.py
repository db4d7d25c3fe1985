"""JWKS fetching and caching against a real HTTP server on 127.0.0.1 (attacks.md G, C-13).

The JWKS server (tests/core/jwks_server.py) runs under uvicorn; each test switches its
behaviour (rotate, fail, slow down, serve garbage) and counts the requests it got. Time
for TTL, cooldown and stale-if-error is an injected clock; only HTTP timeouts are real.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scopegate._errors import ConfigurationError, InvalidTokenError, KeySetUnavailableError
from scopegate._flow import HTTPRunner
from scopegate._jwt import JWTVerifier
from tests.core.jwks_server import JWKSServer
from tests.core.tokens import AUDIENCE, EC_KEY, ISSUER, RSA_1024, RSA_KEY, RSA_KEY_2, mint
from tests.servers import free_port


class Clock:
    """A settable Unix clock shared by the verifier and its JWKS cache."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def _running() -> Iterator[JWKSServer]:
    with JWKSServer.running(keys=[RSA_KEY, EC_KEY]) as server:
        yield server


@pytest.fixture
def server(_running: JWKSServer) -> JWKSServer:
    """The module's JWKS server, reset to serving RSA_KEY and EC_KEY."""
    _running.reset()
    return _running


@pytest.fixture
def clock() -> Clock:
    """A fake clock starting now."""
    return Clock()


_CREATED: list[JWTVerifier] = []


@pytest.fixture(autouse=True)
def _close_verifiers() -> Iterator[None]:
    """Close every verifier's sync client after each test (no leaked sockets)."""
    yield
    while _CREATED:
        _CREATED.pop().close()


def make(server: JWKSServer, clock: Clock, **kwargs: Any) -> JWTVerifier:
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "jwks_uri": server.jwks_uri,
        "clock": clock,
        "timer": clock,
        "http_timeout": 0.5,
    }
    options.update(kwargs)
    verifier = JWTVerifier(**options)
    _CREATED.append(verifier)
    return verifier


def unavailable(verifier: JWTVerifier, token: str) -> KeySetUnavailableError:
    with pytest.raises(KeySetUnavailableError) as info:
        verifier.verify(token)
    return info.value


def invalid(verifier: JWTVerifier, token: str) -> str:
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(token)
    return info.value.reason


# -- happy path ------------------------------------------------------------------------


def test_keys_are_fetched_once_and_cached(server: JWKSServer, clock: Clock) -> None:
    """The first token fetches the JWKS; later tokens (any known kid) do not."""
    verifier = make(server, clock)
    assert verifier.verify(mint()).subject == "alice"
    assert verifier.verify(mint(EC_KEY)).subject == "alice"
    assert verifier.verify(mint(jti="other")).subject == "alice"
    assert server.hits["/jwks"] == 1
    verifier.close()


@pytest.mark.anyio
async def test_keys_are_fetched_once_async(server: JWKSServer, clock: Clock) -> None:
    """averify fetches with the async client and caches the same way."""
    verifier = make(server, clock)
    assert (await verifier.averify(mint())).subject == "alice"
    assert (await verifier.averify(mint(EC_KEY))).subject == "alice"
    assert server.hits["/jwks"] == 1
    await verifier.aclose()


def test_ttl_expiry_refetches(server: JWKSServer, clock: Clock) -> None:
    """After jwks_ttl the next token fetches the set again."""
    verifier = make(server, clock, jwks_ttl=600)
    verifier.verify(mint())
    clock.now += 601
    verifier.verify(mint(jti="x"))
    assert server.hits["/jwks"] == 2


def test_shared_runner_is_not_closed(server: JWKSServer, clock: Clock) -> None:
    """A runner passed in is used and left open by close()."""
    runner = HTTPRunner(timeout=10)
    verifier = make(server, clock, runner=runner)
    verifier.verify(mint())
    verifier.close()
    assert runner._client is not None
    runner.close()


# -- rotation and removal --------------------------------------------------------------


def test_rotated_key_is_used_at_once(server: JWKSServer, clock: Clock) -> None:
    """A key published and used right after an ordinary fetch verifies at once.

    Certified servers sign with a new key as soon as they publish it: the first unknown
    kid refreshes the set even when the last (ordinary) fetch was a second ago.
    """
    server.keys = [RSA_KEY]
    verifier = make(server, clock, jwks_cooldown=30)
    verifier.verify(mint())
    server.keys = [RSA_KEY, RSA_KEY_2]
    clock.now += 1
    assert verifier.verify(mint(RSA_KEY_2)).subject == "alice"
    assert server.hits["/jwks"] == 2


def test_second_rotation_within_cooldown_waits(server: JWKSServer, clock: Clock) -> None:
    """Unknown-kid refreshes are spaced by the cooldown; after it, the next one fetches."""
    server.keys = [RSA_KEY]
    verifier = make(server, clock, jwks_cooldown=30)
    verifier.verify(mint())
    assert invalid(verifier, mint(header={"kid": "ghost"})) == "unknown_key"  # refreshes
    assert server.hits["/jwks"] == 2
    server.keys = [RSA_KEY, RSA_KEY_2]
    clock.now += 5
    new = mint(RSA_KEY_2)
    assert invalid(verifier, new) == "unknown_key"  # inside the cooldown: no fetch
    assert server.hits["/jwks"] == 2
    clock.now += 26
    assert verifier.verify(new).subject == "alice"
    assert server.hits["/jwks"] == 3


def test_removed_key_invalidates_cached_tokens(server: JWKSServer, clock: Clock) -> None:
    """A verified token stops being served from cache once its key left the set."""
    server.keys = [RSA_KEY, RSA_KEY_2]
    verifier = make(server, clock, jwks_ttl=600)
    old = mint()
    verifier.verify(old)
    server.keys = [RSA_KEY_2]
    clock.now += 601
    verifier.verify(mint(RSA_KEY_2))  # the TTL refresh sees RSA_KEY gone
    assert invalid(verifier, old) == "unknown_key"


def test_unchanged_key_keeps_cached_tokens(server: JWKSServer, clock: Clock) -> None:
    """A refresh that keeps the key keeps the cache entry (same key object)."""
    verifier = make(server, clock, jwks_ttl=600)
    token = mint()
    first = verifier.verify(token)
    clock.now += 601
    verifier.verify(mint(EC_KEY))
    assert verifier.verify(token) is first


# -- kid flood (C-13) ------------------------------------------------------------------


def test_random_kid_flood_costs_one_fetch_per_cooldown(server: JWKSServer, clock: Clock) -> None:
    """Hundreds of random kids cause at most one extra refresh per cooldown."""
    verifier = make(server, clock, jwks_cooldown=30)
    verifier.verify(mint())
    for _ in range(200):
        assert invalid(verifier, mint(header={"kid": secrets.token_hex(8)})) == "unknown_key"
    assert server.hits["/jwks"] == 2  # the start-up fetch, then one for the first kid
    clock.now += 31
    for _ in range(200):
        assert invalid(verifier, mint(header={"kid": secrets.token_hex(8)})) == "unknown_key"
    assert server.hits["/jwks"] == 3


@pytest.mark.anyio
async def test_random_kid_flood_async(server: JWKSServer, clock: Clock) -> None:
    """The same bound holds for concurrent asyncio tasks."""
    verifier = make(server, clock, jwks_cooldown=30)
    await verifier.averify(mint())
    clock.now += 31

    async def attempt() -> str:
        try:
            await verifier.averify(mint(header={"kid": secrets.token_hex(8)}))
        except InvalidTokenError as exc:
            return exc.reason
        return "accepted"

    reasons = await asyncio.gather(*(attempt() for _ in range(100)))
    assert set(reasons) == {"unknown_key"}
    assert server.hits["/jwks"] == 2
    await verifier.aclose()


def test_same_unknown_kid_is_negatively_cached(server: JWKSServer, clock: Clock) -> None:
    """A kid just confirmed absent does not trigger another fetch."""
    verifier = make(server, clock, jwks_cooldown=30)
    token = mint(header={"kid": "ghost"})
    for _ in range(5):
        assert invalid(verifier, token) == "unknown_key"
    assert server.hits["/jwks"] == 1


# -- single flight ---------------------------------------------------------------------


def test_concurrent_threads_share_one_fetch(server: JWKSServer, clock: Clock) -> None:
    """50 threads verifying on a cold cache cause exactly one JWKS request."""
    server.mode = "slow"
    server.delay = 0.3
    verifier = make(server, clock, http_timeout=5)
    barrier = threading.Barrier(50)
    results: list[Any] = []

    def work(i: int) -> None:
        barrier.wait()
        try:
            results.append(verifier.verify(mint(jti=f"t{i}")).subject)
        except Exception as exc:  # pragma: no cover - reported by the assert
            results.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["alice"] * 50
    assert server.hits["/jwks"] == 1
    verifier.close()


@pytest.mark.anyio
async def test_concurrent_tasks_share_one_fetch(server: JWKSServer, clock: Clock) -> None:
    """50 asyncio tasks verifying on a cold cache cause exactly one JWKS request."""
    server.mode = "slow"
    server.delay = 0.3
    verifier = make(server, clock, http_timeout=5)
    tokens = [mint(jti=f"t{i}") for i in range(50)]
    results = await asyncio.gather(*(verifier.averify(t) for t in tokens))
    assert {r.subject for r in results} == {"alice"}
    assert server.hits["/jwks"] == 1
    await verifier.aclose()


# -- failures (G-1, G-2, G-3) ----------------------------------------------------------

FAILURES = [
    pytest.param("error", "jwks_http_status", id="g1-503"),
    pytest.param("not_found", "jwks_http_status", id="g1-404"),
    pytest.param("slow", "jwks_unreachable", id="g1-timeout"),
    pytest.param("garbage", "jwks_malformed", id="g2-not-json"),
    pytest.param("html", "jwks_malformed", id="g2-wrong-content-type"),
    pytest.param("not_object", "jwks_malformed", id="g2-json-array"),
    pytest.param("empty", "jwks_malformed", id="g2-no-keys"),
    pytest.param("huge", "jwks_too_large", id="g2-too-big"),
    pytest.param("redirect", "jwks_http_status", id="g3-redirect-not-followed"),
]


@pytest.mark.parametrize(("mode", "reason"), FAILURES)
def test_cold_cache_failure_is_503(
    server: JWKSServer, clock: Clock, mode: str, reason: str
) -> None:
    """Any fetch failure without cached keys is KeySetUnavailableError (503), never 401."""
    server.mode = mode
    error = unavailable(make(server, clock), mint())
    assert error.reason == reason
    response = error.to_response("api")
    assert response.status == 503
    assert dict(response.headers)["retry-after"].isdigit()
    assert b"invalid_token" not in response.body
    assert set(server.hits) == {"/jwks"}  # the redirect was never followed


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "reason"), FAILURES)
async def test_cold_cache_failure_is_503_async(
    server: JWKSServer, clock: Clock, mode: str, reason: str
) -> None:
    """The async path maps every failure to the same 503."""
    server.mode = mode
    verifier = make(server, clock)
    with pytest.raises(KeySetUnavailableError) as info:
        await verifier.averify(mint())
    assert info.value.reason == reason
    await verifier.aclose()


def test_connection_refused_is_503(clock: Clock) -> None:
    """Nothing listening on the JWKS port is a 503."""
    verifier = JWTVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_uri=f"http://127.0.0.1:{free_port()}/jwks",
        clock=clock,
        http_timeout=0.5,
    )
    with pytest.raises(KeySetUnavailableError):
        verifier.verify(mint())


@pytest.mark.anyio
async def test_connection_refused_is_503_async(clock: Clock) -> None:
    """Connection refused on the async path is a 503."""
    verifier = JWTVerifier(
        issuer=ISSUER,
        audience=AUDIENCE,
        jwks_uri=f"http://127.0.0.1:{free_port()}/jwks",
        clock=clock,
        http_timeout=0.5,
    )
    with pytest.raises(KeySetUnavailableError):
        await verifier.averify(mint())
    await verifier.aclose()


def test_failed_fetch_is_retried_after_retry_interval(server: JWKSServer, clock: Clock) -> None:
    """After a failure, requests get 503 without refetching until the retry interval."""
    server.mode = "error"
    verifier = make(server, clock, jwks_cooldown=30)
    for _ in range(10):
        unavailable(verifier, mint())
    assert server.hits["/jwks"] == 1
    server.mode = "ok"
    clock.now += 5
    assert verifier.verify(mint()).subject == "alice"
    assert server.hits["/jwks"] == 2


def test_forged_token_is_401_even_when_keys_are_cached(server: JWKSServer, clock: Clock) -> None:
    """Bad signatures stay 401 whatever the JWKS does."""
    verifier = make(server, clock)
    verifier.verify(mint())
    forged = mint()[:-8] + "AAAAAAAA"
    assert invalid(verifier, forged) in ("bad_signature", "malformed")


# -- stale-if-error --------------------------------------------------------------------


def test_stale_keys_serve_while_the_endpoint_fails(server: JWKSServer, clock: Clock) -> None:
    """Past the TTL, a failing refresh keeps the last good keys until stale_if_error."""
    verifier = make(server, clock, jwks_ttl=600, stale_if_error=3600, cache_verified=False)
    token = mint()
    verifier.verify(token)
    server.mode = "error"
    clock.now += 601
    assert verifier.verify(token).subject == "alice"  # refresh failed, stale keys used
    assert verifier.verify(mint(EC_KEY)).subject == "alice"
    assert server.hits["/jwks"] == 2
    clock.now += 3600
    unavailable(verifier, mint(exp=int(clock.now) + 600, iat=int(clock.now)))


def test_unknown_kid_during_outage_is_503(server: JWKSServer, clock: Clock) -> None:
    """A kid we could not look up because the AS is down is an outage, not a bad token."""
    verifier = make(server, clock)
    verifier.verify(mint())
    server.mode = "error"
    clock.now += 31
    unavailable(verifier, mint(RSA_KEY_2))


def test_recovery_after_outage(server: JWKSServer, clock: Clock) -> None:
    """Once the endpoint answers again, fresh keys replace the stale ones."""
    verifier = make(server, clock, jwks_ttl=600, cache_verified=False)
    verifier.verify(mint())
    server.mode = "error"
    clock.now += 601
    verifier.verify(mint())
    server.mode = "ok"
    server.keys = [RSA_KEY_2]
    clock.now += 6
    assert verifier.verify(mint(RSA_KEY_2)).subject == "alice"


# -- served key sets (G-4, G-5, G-6, D-6) ----------------------------------------------


def test_duplicate_kid_in_served_jwks(server: JWKSServer, clock: Clock) -> None:
    """G-4: two served keys with one kid and alg make that kid ambiguous (401)."""
    server.keys = [RSA_KEY]
    server.jwks_extra = [RSA_KEY_2.jwk(kid=RSA_KEY.kid)]
    verifier = make(server, clock)
    with pytest.raises(InvalidTokenError) as info:
        verifier.verify(mint())
    assert info.value.reason == "ambiguous_key"


def test_unusable_served_keys_are_skipped(server: JWKSServer, clock: Clock) -> None:
    """G-5/D-6: enc, oct and 1024-bit keys are skipped; the good key still works."""
    server.keys = [RSA_KEY, RSA_1024]
    server.jwks_extra = [EC_KEY.jwk(use="enc"), {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"}]
    verifier = make(server, clock)
    assert verifier.verify(mint()).subject == "alice"
    assert invalid(verifier, mint(RSA_1024)) == "unknown_key"
    assert invalid(verifier, mint(EC_KEY)) == "unknown_key"


def test_only_unusable_served_keys_is_503(server: JWKSServer, clock: Clock) -> None:
    """G-2: a set where no key is usable is a key-set failure (503)."""
    server.keys = [RSA_1024]
    unavailable(make(server, clock), mint(RSA_1024))


def test_alg_less_served_key_is_derived(server: JWKSServer, clock: Clock) -> None:
    """G-6: a served RSA key without alg verifies the configured RSA algorithms."""
    server.keys = []
    server.jwks_extra = [RSA_KEY.jwk(alg=None)]
    verifier = make(server, clock, algorithms=("PS256",))
    assert verifier.verify(mint(alg="PS256")).subject == "alice"


def test_warm_up_refresh(server: JWKSServer, clock: Clock) -> None:
    """key_source.refresh() fetches eagerly (start-up warm-up)."""
    verifier = make(server, clock)
    keys = verifier.key_source.refresh()  # type: ignore[union-attr]
    assert keys is not None
    assert len(keys) == 2
    verifier.verify(mint())
    assert server.hits["/jwks"] == 1


@pytest.mark.anyio
async def test_warm_up_refresh_async(server: JWKSServer, clock: Clock) -> None:
    """key_source.arefresh() fetches eagerly on the event loop."""
    verifier = make(server, clock)
    keys = await verifier.key_source.arefresh()  # type: ignore[union-attr]
    assert keys is not None
    assert len(keys) == 2
    await verifier.aclose()


def test_explain_reports_key_set_outage(server: JWKSServer, clock: Clock) -> None:
    """explain() shows a JWKS outage as the key check's 503 reason, claims still checked."""
    server.mode = "error"
    checks = {c.check: c for c in make(server, clock).explain(mint())}
    assert checks["key"] == ("key", False, "jwks_http_status")
    assert "signature" not in checks
    assert checks["expiry"].passed


def test_explain_without_fetch_uses_only_keys_in_memory(server: JWKSServer, clock: Clock) -> None:
    """explain(fetch=False) never fetches: key and signature are not checked until keys are in."""
    verifier = make(server, clock)
    token = mint()
    checks = {c.check: c for c in verifier.explain(token, fetch=False)}
    assert server.hits["/jwks"] == 0
    assert checks["key"] == ("key", None, None)
    assert checks["signature"] == ("signature", None, None)
    assert checks["expiry"].passed
    verifier.verify(token)
    assert all(c.passed for c in verifier.explain(token, fetch=False))
    assert server.hits["/jwks"] == 1


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"jwks_ttl": float("inf")}, id="infinite-ttl"),
        pytest.param({"jwks_ttl": -1}, id="negative-ttl"),
        pytest.param({"jwks_ttl": "600"}, id="string-ttl"),
        pytest.param({"jwks_cooldown": True}, id="boolean-cooldown"),
        pytest.param({"stale_if_error": float("nan")}, id="nan-stale"),
        pytest.param({"http_timeout": 0}, id="zero-timeout"),
        pytest.param({"http_timeout": True}, id="boolean-timeout"),
    ],
)
def test_key_fetch_durations_follow_the_settings_rule(settings: dict[str, Any]) -> None:
    """JWKS durations and the HTTP timeout are checked by the one number rule, by name."""
    with pytest.raises(ConfigurationError, match=next(iter(settings))):
        JWTVerifier(
            issuer=ISSUER,
            audience=AUDIENCE,
            jwks_uri="https://as.example/jwks",
            **settings,
        )
