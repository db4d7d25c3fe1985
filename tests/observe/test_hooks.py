"""Hooks are public, cheap and harmless; the fetch, rotation, cache and fallback records."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import scopegate
from scopegate import (
    ConfigurationError,
    IntrospectionVerifier,
    JWTVerifier,
    MemoryCache,
    Record,
    RedisCache,
    _observe,
    add_hook,
    remove_hook,
    set_rejection_log_level,
)
from scopegate.testing import LocalIssuer
from tests.core.jwks_server import JWKSServer
from tests.core.tokens import RSA_KEY, RSA_KEY_2, mint
from tests.introspection.introspection_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    IntrospectionServer,
)
from tests.observe.stack import KINDS, Records, Stack
from tests.servers import free_port

ISS = LocalIssuer()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Boom:
    """A hook that raises on every record, and counts them."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, record: Record) -> None:
        self.calls += 1
        raise RuntimeError("secret-looking text that must not be logged")


def test_the_hook_api_is_public() -> None:
    """Record, add_hook, remove_hook and set_rejection_log_level come from scopegate."""
    for name in ("Record", "add_hook", "remove_hook", "set_rejection_log_level"):
        assert name in scopegate.__all__
    assert scopegate.add_hook is _observe.add_hook


def test_add_hook_refuses_what_cannot_be_called() -> None:
    """A hook that is not callable is a configuration error, not a failure per request."""
    with pytest.raises(ConfigurationError):
        add_hook("not a function")  # type: ignore[arg-type]
    assert not _observe.hooks_enabled()


def test_remove_hook_stops_delivery_and_tolerates_strangers() -> None:
    """After remove_hook nothing arrives (a bound method is removed by an equal one);
    removing an unknown hook is no error."""
    seen: list[Record] = []
    add_hook(seen.append)
    _observe.report("key_rotation", "rotated", added=1, removed=0)
    remove_hook(seen.append)
    remove_hook(seen.append)
    _observe.report("key_rotation", "rotated", added=1, removed=0)
    assert len(seen) == 1
    assert not _observe.HOOKS


def test_without_hooks_nothing_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no hook, report() does not even build a record."""
    monkeypatch.setattr(_observe, "_dimensions", lambda *a: pytest.fail("built"))
    _observe.report("jwks_fetch", "ok", None, 0.1, keys=1, cause="ttl")


def test_a_record_is_an_immutable_tuple_with_dimensions() -> None:
    """Record() fills time and dimensions; attributes are read-only."""
    before = time.time()
    record = Record("cache", "hit", attributes={"backend": "memory"})
    assert before <= record.time <= time.time()
    assert record.dimensions == ("cache", "hit", None, "memory")
    with pytest.raises(AttributeError):
        record.outcome = "miss"  # type: ignore[misc]
    parts = _observe.decision_parts("accepted", 200, None, "jwt", "bearer", True, "i", "c")
    with pytest.raises(TypeError):
        parts[3]["issuer"] = "x"  # type: ignore[index]
    assert "i" not in parts[4]  # the issuer is never a dimension
    assert "c" not in parts[4]


def _scenarios(client: Any) -> list[httpx.Response]:
    good = ISS.make_token(["items:read"])
    return [
        client.get(headers=bearer(good)),  # verified
        client.get(headers=bearer(good)),  # cached
        client.get(headers=bearer(ISS.make_token(["items:read"], expires_in=-600))),
        client.get(),
        client.get("/scoped", headers=bearer(good)),
        client.get(headers=bearer("a b")),
    ]


def _shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], bytes]:
    return response.status_code, sorted(response.headers.multi_items()), response.content


@pytest.mark.parametrize("kind", KINDS)
def test_a_raising_hook_changes_no_answer(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """Same status, headers and body with and without a hook that raises on every record;
    the hook's failure is logged once, by type only."""
    caplog.set_level(logging.DEBUG)
    baseline_stack = Stack(ISS.verifier())
    client = baseline_stack.client(kind)
    expected = [_shape(r) for r in _scenarios(client)]
    client.close()
    boom = Boom()
    add_hook(boom)
    try:
        client = Stack(ISS.verifier()).client(kind)
        got = [_shape(r) for r in _scenarios(client)]
        client.close()
    finally:
        remove_hook(boom)
    assert got == expected
    assert [s for s, _, _ in got] == [200, 200, 401, 401, 403, 401]
    assert boom.calls >= 6
    errors = [r for r in caplog.records if r.name == "scopegate.observe"]
    assert len(errors) == 1
    assert errors[0].levelno == logging.ERROR
    assert "RuntimeError" in errors[0].getMessage()
    assert "secret-looking" not in caplog.text


@pytest.mark.parametrize("kind", KINDS)
def test_accepted_and_cached_decisions_carry_the_verified_identity(kind: str) -> None:
    """An accepted decision names the token's issuer and client; the repeat is cached."""
    client = Stack(ISS.verifier()).client(kind)
    token = ISS.make_token(["items:read"])
    with Records() as records:
        client.get(headers=bearer(token))
        client.get(headers=bearer(token))
    client.close()
    first, second = records.named("decision")
    for record in (first, second):
        assert record.outcome == "accepted"
        assert record.attributes["issuer"] == ISS.issuer
        assert record.attributes["client_id"] == ISS.client_id
        assert record.attributes["kind"] == "jwt"
        assert record.attributes["scheme"] == "bearer"
        assert 0 <= record.duration < 1
    assert (first.attributes["cached"], second.attributes["cached"]) == (False, True)


def test_rejections_are_logged_at_the_level_chosen(caplog: pytest.LogCaptureFixture) -> None:
    """One INFO line per refusal on scopegate.rejections; set_rejection_log_level moves or
    silences it; a bad level is refused."""
    caplog.set_level(logging.DEBUG, logger="scopegate.rejections")
    client = Stack(ISS.verifier()).client("wsgi")
    expired = ISS.make_token(["items:read"], expires_in=-600)
    try:
        client.get(headers=bearer(expired))
        set_rejection_log_level(logging.WARNING)
        client.get("/scoped", headers=bearer(ISS.make_token(["items:read"])))
        set_rejection_log_level(None)
        client.get(headers=bearer(expired))
    finally:
        set_rejection_log_level(logging.INFO)
        client.close()
    lines = [
        (r.levelno, r.getMessage()) for r in caplog.records if r.name == "scopegate.rejections"
    ]
    assert lines == [
        (logging.INFO, "guard 401 invalid_token (expired)"),
        (logging.WARNING, "endpoint 403 insufficient_scope (insufficient_scope)"),
    ]
    for bad in (0, 99, "INFO", True):
        with pytest.raises(ConfigurationError):
            set_rejection_log_level(bad)  # type: ignore[arg-type]


# -- records of the work behind a decision -------------------------------------------


@pytest.fixture
def jwks() -> Iterator[JWKSServer]:
    with JWKSServer.running(keys=[RSA_KEY]) as server:
        yield server


def test_jwks_fetches_and_rotations_are_recorded(jwks: JWKSServer) -> None:
    """jwks_fetch with keys and cause; key_rotation with counts, never kids."""
    verifier = JWTVerifier(
        issuer="https://issuer.test",
        audience="api://test",
        jwks_uri=jwks.jwks_uri,
        jwks_cooldown=0,
    )
    client = Stack(verifier).client("wsgi")
    with Records() as records:
        assert client.get(headers=bearer(mint())).status_code == 200
        jwks.keys = [RSA_KEY_2]
        assert client.get(headers=bearer(mint(RSA_KEY_2))).status_code == 200
        jwks.mode = "error"
        assert client.get(headers=bearer(mint(RSA_KEY, kid="gone"))).status_code in (401, 503)
    client.close(verifier)
    fetches = records.named("jwks_fetch")
    assert [(r.outcome, r.attributes["cause"], r.attributes["keys"]) for r in fetches[:2]] == [
        ("ok", "initial", 1),
        ("ok", "unknown_kid", 1),
    ]
    assert all(r.duration is not None and r.duration >= 0 for r in fetches)
    (rotation,) = records.named("key_rotation")
    assert dict(rotation.attributes) == {"added": 1, "removed": 1}
    assert RSA_KEY.kid not in repr(records.all)
    assert RSA_KEY_2.kid not in repr(records.all)


def test_discovery_fetches_are_recorded(jwks: JWKSServer) -> None:
    """A discovered JWKS: one discovery_fetch, then a jwks_fetch."""
    verifier = JWTVerifier(issuer=jwks.url, audience="api://test", discovery="oauth")
    client = Stack(verifier).client("asgi")
    with Records() as records:
        client.get(headers=bearer(mint(iss=jwks.url)))
    client.close(verifier)
    (discovery,) = records.named("discovery_fetch")
    assert (discovery.outcome, discovery.attributes["kind"]) == ("ok", "oauth")
    assert [r.outcome for r in records.named("jwks_fetch")] == ["ok"]


@pytest.mark.parametrize("kind", KINDS)
def test_introspection_and_cache_lookups_are_recorded(kind: str) -> None:
    """Per request one cache record (miss, then hit); each call an introspection record."""
    with IntrospectionServer() as server:
        server.tokens["live"] = {"active": True, "scope": "items:read", "client_id": "c"}
        verifier = IntrospectionVerifier(
            introspection_uri=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        client = Stack(verifier).client(kind)
        with Records() as records:
            for _ in range(3):
                assert client.get(headers=bearer("live")).status_code == 200
            for _ in range(2):
                assert client.get(headers=bearer("dead")).status_code == 401
        client.close(verifier)
    lookups = [(r.outcome, r.attributes["backend"]) for r in records.named("cache")]
    assert lookups == [
        ("miss", "memory"),
        ("hit", "memory"),
        ("hit", "memory"),
        ("miss", "memory"),
        ("hit", "memory"),  # the inactive answer is cached (negative_ttl)
    ]
    calls = [(r.outcome, r.reason) for r in records.named("introspection")]
    assert calls == [("active", None), ("inactive", "inactive")]
    decisions = records.named("decision")
    assert [d.attributes["kind"] for d in decisions] == ["opaque"] * 5
    assert decisions[0].attributes["client_id"] == "c"


def test_redis_fallbacks_are_recorded() -> None:
    """A Redis cache that cannot be reached: each operation falls back, once recorded."""
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", retry_interval=60)
    with Records() as records:
        assert cache.get("k") is None
        assert cache.get("k") is None  # the breaker is open: no attempt, still a fallback
    cache.close()
    fallbacks = records.named("redis_fallback")
    assert [(r.outcome, r.attributes["purpose"]) for r in fallbacks] == [
        ("unavailable", "Redis cache"),
        ("unavailable", "Redis cache"),
    ]


def test_a_memory_cache_reports_the_memory_backend() -> None:
    """The backend attribute names the configured cache."""
    verifier = IntrospectionVerifier(
        introspection_uri="http://127.0.0.1:1/i",
        client_id="a",
        client_secret="b",
        cache=MemoryCache(),
    )
    assert verifier._hit[3]["backend"] == "memory"
    other = IntrospectionVerifier(
        introspection_uri="http://127.0.0.1:1/i",
        client_id="a",
        client_secret="b",
        cache=RedisCache("redis://127.0.0.1:1/0"),
    )
    assert other._hit[3]["backend"] == "redis"
