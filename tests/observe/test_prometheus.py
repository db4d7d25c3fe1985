"""scopegate.prometheus: bounded counters in a registry, served at /metrics; and every
example, run as a real server with SCOPEGATE_METRICS=prometheus, scraped over HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import scopegate.prometheus
from scopegate import ConfigurationError, Record, _observe
from scopegate.testing import LocalIssuer
from tests.core.tokens import AUDIENCE, ISSUER, RSA_KEY, mint
from tests.observe.stack import KINDS, Stack
from tests.servers import ROOT, free_port, run_process, run_wsgi

ISS = LocalIssuer()
EXAMPLES = ("asgi", "wsgi", "starlette", "fastapi", "flask", "django")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called *name* in an exposition text."""
    return [
        (dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """A private registry, instrumented; uninstrumented afterwards."""
    registry = CollectorRegistry()
    instrumentation = scopegate.prometheus.instrument(registry)
    try:
        yield registry
    finally:
        instrumentation.uninstrument()


def test_instrument_is_idempotent_per_registry() -> None:
    """The same registry gets the same instrumentation (one hook); uninstrument undoes it,
    twice is harmless, and the registry can be instrumented again."""
    registry = CollectorRegistry()
    first = scopegate.prometheus.instrument(registry)
    assert scopegate.prometheus.instrument(registry) is first
    assert len(_observe.HOOKS) == 1
    other = scopegate.prometheus.instrument(CollectorRegistry())
    assert other is not first
    assert len(_observe.HOOKS) == 2
    other.uninstrument()
    first.uninstrument()
    first.uninstrument()
    assert not _observe.HOOKS
    assert "scopegate_" not in generate_latest(registry).decode()
    again = scopegate.prometheus.instrument(registry)
    assert again is not first
    again.uninstrument()


@pytest.mark.parametrize("kind", KINDS)
def test_decisions_are_counted_with_fixed_labels(kind: str, registry: CollectorRegistry) -> None:
    """Counters and the duration histogram move with the right labels; no identity labels."""
    token = ISS.make_token(["items:read"])
    client = Stack(ISS.verifier()).client(kind)
    for _ in range(3):
        assert client.get(headers=bearer(token)).status_code == 200
    assert client.get(headers=bearer(ISS.make_token(None, expires_in=-600))).status_code == 401
    assert client.get("/scoped", headers=bearer(token)).status_code == 403
    client.close()
    text = generate_latest(registry).decode()
    counts = {
        (labels["outcome"], labels["reason"], labels["stage"]): value
        for labels, value in samples(text, "scopegate_decisions_total")
    }
    assert counts == {
        ("accepted", "none", "guard"): 4,
        ("rejected", "expired", "guard"): 1,
        ("rejected", "insufficient_scope", "endpoint"): 1,
    }
    for labels, _ in samples(text, "scopegate_decisions_total"):
        assert set(labels) == {"outcome", "reason", "kind", "scheme", "stage"}
    durations = {
        labels["cached"]: value
        for labels, value in samples(text, "scopegate_decision_duration_seconds_count")
    }
    assert durations == {"false": 2, "true": 3}
    assert ISS.issuer not in text
    assert ISS.client_id not in text


def test_unknown_values_become_other(registry: CollectorRegistry) -> None:
    """A reason or a value outside the fixed sets is counted under "other"."""
    emit = _observe.emit
    emit(
        Record(
            "decision",
            "rejected",
            "made_up_reason",
            0.1,
            {},
            None,
            ("decision", "rejected", "made_up_reason", "jwt", "bearer", "guard", False),
        )
    )
    emit(
        Record(
            "decision",
            "weird",
            None,
            0.1,
            {},
            None,
            ("decision", "weird", None, "x", "y", "guard", "z"),
        )
    )
    emit(Record("redis_fallback", "unavailable", attributes={"purpose": "my special store"}))
    emit(Record("issuer_grant", "issued", attributes={"grant_type": "evil:grant"}))
    emit(Record("no_such_record", "x"))
    text = generate_latest(registry).decode()
    decisions = [labels for labels, _ in samples(text, "scopegate_decisions_total")]
    assert {
        "outcome": "rejected",
        "reason": "other",
        "kind": "jwt",
        "scheme": "bearer",
        "stage": "guard",
    } in decisions
    assert {
        "outcome": "other",
        "reason": "none",
        "kind": "other",
        "scheme": "other",
        "stage": "guard",
    } in decisions
    assert samples(text, "scopegate_redis_fallbacks_total") == [({"purpose": "other"}, 1.0)]
    assert samples(text, "scopegate_issuer_grants_total") == [
        ({"grant_type": "other", "outcome": "issued"}, 1.0)
    ]
    assert "made_up_reason" not in text
    assert "evil" not in text


def test_every_record_has_its_metric(registry: CollectorRegistry) -> None:
    """Each record name moves the metric documented for it."""
    report = _observe.report
    report("jwks_fetch", "failed", "jwks_unreachable", 0.5, keys=0, cause="ttl")
    report("discovery_fetch", "ok", None, 0.01, kind="oauth")
    report("introspection", "inactive", "inactive", 0.02)
    report("cache", "hit", backend="redis")
    report("redis_fallback", "unavailable", purpose="DPoP replay store")
    report("key_rotation", "rotated", added=1, removed=2)
    report("issuer_grant", "invalid_grant", grant_type="password")
    report("issuer_failure", "invalid_client", endpoint="token", status=401)
    report("issuer_throttled", "throttled", limit="user")
    report("issuer_refresh_reuse", "revoked", client_id="app")
    text = generate_latest(registry).decode()
    fetches = {
        (labels["kind"], labels["outcome"]): value
        for labels, value in samples(text, "scopegate_fetch_duration_seconds_count")
    }
    assert fetches == {
        ("jwks", "failed"): 1,
        ("discovery", "ok"): 1,
        ("introspection", "inactive"): 1,
    }
    (jwks_sum,) = [
        value
        for labels, value in samples(text, "scopegate_fetch_duration_seconds_sum")
        if labels["kind"] == "jwks"
    ]
    assert jwks_sum == pytest.approx(0.5)
    assert samples(text, "scopegate_cache_lookups_total") == [
        ({"backend": "redis", "outcome": "hit"}, 1.0)
    ]
    assert samples(text, "scopegate_redis_fallbacks_total") == [
        ({"purpose": "dpop_replay_store"}, 1.0)
    ]
    assert samples(text, "scopegate_key_rotations_total") == [({}, 1.0)]
    assert samples(text, "scopegate_issuer_grants_total") == [
        ({"grant_type": "password", "outcome": "invalid_grant"}, 1.0)
    ]
    assert samples(text, "scopegate_issuer_failures_total") == [
        ({"endpoint": "token", "error": "invalid_client"}, 1.0)
    ]
    assert samples(text, "scopegate_issuer_throttled_total") == [({"limit": "user"}, 1.0)]
    assert samples(text, "scopegate_issuer_refresh_reuse_total") == [({}, 1.0)]
    assert "app" not in text.replace("scopegate_", "")


def test_mounts_serve_metrics_and_pass_everything_else(registry: CollectorRegistry) -> None:
    """GET /metrics answers the exposition; other paths, and lifespan, reach the app."""
    calls: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    asgi = scopegate.prometheus.mount_asgi(inner, registry=registry)

    async def run() -> tuple[httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(asgi)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            metrics = await client.get("/metrics")
            other = await client.get("/metricsx")
        await asgi({"type": "lifespan"}, None, None)
        return metrics, other

    metrics, other = asyncio.run(run())
    assert metrics.status_code == 200
    assert "scopegate_decisions_total" in metrics.text
    assert other.status_code == 204
    assert calls == ["http", "lifespan"]

    def wsgi_inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("204 No Content", [])
        return [b""]

    wsgi = scopegate.prometheus.mount_wsgi(wsgi_inner, registry=registry)
    with httpx.Client(transport=httpx.WSGITransport(wsgi), base_url="http://t") as client:
        assert "scopegate_decisions_total" in client.get("/metrics").text
        assert client.get("/other").status_code == 204


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No prometheus-client: a ConfigurationError naming scopegate[prometheus]."""
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"scopegate\[prometheus\]"):
        scopegate.prometheus.instrument()
    with pytest.raises(ConfigurationError, match=r"scopegate\[prometheus\]"):
        scopegate.prometheus.mount_asgi(lambda *a: None)
    assert not _observe.HOOKS


# -- the examples, as real servers ----------------------------------------------------


def _jwks_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"keys": [RSA_KEY.jwk()]}).encode()]


@pytest.fixture(scope="module")
def jwks_uri() -> Iterator[str]:
    with run_wsgi(_jwks_app) as base:
        yield f"{base}/jwks"


@pytest.mark.parametrize("name", EXAMPLES)
def test_each_example_serves_its_metrics(name: str, jwks_uri: str) -> None:
    """SCOPEGATE_METRICS=prometheus: GET /metrics without a token, counters that moved
    with the traffic; and one INFO line per refusal on stderr, naming the reason."""
    port = free_port()
    env = {
        "SCOPEGATE_ISSUER": ISSUER,
        "SCOPEGATE_AUDIENCE": AUDIENCE,
        "SCOPEGATE_JWKS_URI": jwks_uri,
        "SCOPEGATE_METRICS": "prometheus",
    }
    args = [sys.executable, "examples/serve.py", name, "--port", str(port)]
    base = f"http://127.0.0.1:{port}"
    good = mint(scope="items:read")
    expired = mint(scope="items:read", exp=1_000, iat=900)
    with run_process(args, port, env=env, ready_path="/public") as proc:
        assert httpx.get(f"{base}/me", headers=bearer(good)).status_code == 200
        assert httpx.get(f"{base}/me", headers=bearer(good)).status_code == 200
        assert httpx.get(f"{base}/me", headers=bearer(expired)).status_code == 401
        assert httpx.get(f"{base}/me").status_code == 401
        assert httpx.get(f"{base}/admin", headers=bearer(good)).status_code == 403
        scrape = httpx.get(f"{base}/metrics")
        proc.terminate()
        proc.wait(15)
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    counts: dict[tuple[str, str], float] = {}
    for labels, value in samples(scrape.text, "scopegate_decisions_total"):
        key = (labels["outcome"], labels["reason"])
        counts[key] = counts.get(key, 0) + value
    assert counts[("accepted", "none")] >= 2
    assert counts[("rejected", "expired")] == 1
    assert counts[("rejected", "missing_token")] == 1
    assert counts[("rejected", "insufficient_scope")] == 1
    assert ISSUER not in scrape.text
    assert "INFO scopegate.rejections: guard 401 invalid_token (expired)" in output
    assert "insufficient_scope (insufficient_scope)" in output
    for secret in (good, expired):
        assert secret[-20:] not in output


def test_a_bad_metrics_setting_stops_the_example() -> None:
    """Any other SCOPEGATE_METRICS value is a start-up error with a clear message."""
    env = {
        "SCOPEGATE_ISSUER": ISSUER,
        "SCOPEGATE_AUDIENCE": AUDIENCE,
        "SCOPEGATE_JWKS_URI": "http://127.0.0.1:1/jwks",
        "SCOPEGATE_METRICS": "statsd",
    }
    proc = subprocess.run(
        [sys.executable, "examples/serve.py", "asgi", "--port", str(free_port())],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "SCOPEGATE_METRICS must be 'prometheus' or unset, not 'statsd'" in proc.stderr
    assert "Traceback" not in proc.stderr
