"""scopegate.otel: retroactive spans and metrics, read back with the SDK's in-memory
exporter and metric reader."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import scopegate.otel
from scopegate import ConfigurationError, IntrospectionVerifier, JWTVerifier, _observe
from scopegate.testing import LocalIssuer
from tests.introspection.introspection_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    IntrospectionServer,
)
from tests.observe.stack import KINDS, Stack
from tests.servers import free_port

ISS = LocalIssuer()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    tracer_provider: TracerProvider
    instrumentation: scopegate.otel.Instrumentation

    def finished(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if s.name == name]

    def points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    """An SDK tracer and meter, exported to memory, with scopegate instrumented."""
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    instrumentation = scopegate.otel.instrument(tracer_provider, meter_provider)
    try:
        yield Telemetry(exporter, reader, tracer_provider, instrumentation)
    finally:
        instrumentation.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


@pytest.mark.parametrize("kind", KINDS)
def test_decisions_become_spans_and_metrics(kind: str, telemetry: Telemetry) -> None:
    """Accepted, cached, rejected and unavailable decisions: names, attributes, status,
    plausible times, and the decision metrics."""
    began = time.time_ns()
    token = ISS.make_token(["items:read"])
    client = Stack(ISS.verifier()).client(kind)
    assert client.get(headers=bearer(token)).status_code == 200
    assert client.get(headers=bearer(token)).status_code == 200
    assert client.get(headers=bearer(ISS.make_token(None, expires_in=-600))).status_code == 401
    client.close()
    down = ISS.verifier(jwks_uri=f"http://127.0.0.1:{free_port()}/jwks", keys=None)
    client = Stack(down).client(kind)
    assert client.get(headers=bearer(token)).status_code == 503
    client.close(down)
    ended = time.time_ns()

    spans = telemetry.finished("scopegate.decision")
    assert [s.attributes["scopegate.outcome"] for s in spans] == [
        "accepted",
        "accepted",
        "rejected",
        "unavailable",
    ]
    accepted, cached, rejected, unavailable = spans
    for span in spans:
        assert began <= span.start_time <= span.end_time <= ended
        assert span.end_time - span.start_time < 5e9
        assert span.attributes["scopegate.token.kind"] == "jwt"
        assert span.attributes["scopegate.scheme"] == "bearer"
        assert span.attributes["scopegate.stage"] == "guard"
    assert accepted.attributes["scopegate.cached"] is False
    assert cached.attributes["scopegate.cached"] is True
    assert accepted.attributes["scopegate.issuer"] == ISS.issuer
    assert accepted.attributes["scopegate.client_id"] == ISS.client_id
    assert accepted.attributes["http.response.status_code"] == 200
    assert "scopegate.reason" not in accepted.attributes
    assert rejected.attributes["scopegate.reason"] == "expired"
    assert rejected.attributes["http.response.status_code"] == 401
    assert rejected.status.status_code is StatusCode.UNSET
    for refused in (rejected, unavailable):
        assert "scopegate.issuer" not in refused.attributes
        assert "scopegate.client_id" not in refused.attributes
    assert unavailable.status.status_code is StatusCode.ERROR
    assert unavailable.status.description == "jwks_unreachable"
    assert unavailable.attributes["http.response.status_code"] == 503

    (fetch,) = telemetry.finished("scopegate.jwks_fetch")
    assert fetch.status.status_code is StatusCode.ERROR
    assert fetch.attributes["scopegate.outcome"] == "failed"
    assert fetch.attributes["scopegate.cause"] == "initial"
    assert began <= fetch.start_time <= fetch.end_time <= unavailable.end_time

    counts = {
        (p.attributes["outcome"], p.attributes["reason"], p.attributes["cached"]): p.value
        for p in telemetry.points("scopegate.decisions")
    }
    assert counts == {
        ("accepted", "none", "false"): 1,
        ("accepted", "none", "true"): 1,
        ("rejected", "expired", "false"): 1,
        ("unavailable", "jwks_unreachable", "false"): 1,
    }
    durations = telemetry.points("scopegate.decision.duration")
    assert sum(p.count for p in durations) == 4
    assert all(p.min >= 0 for p in durations)
    fetches = {
        (p.attributes["kind"], p.attributes["outcome"]): p.count
        for p in telemetry.points("scopegate.fetch.duration")
    }
    assert fetches == {("jwks", "failed"): 1}
    for point in telemetry.points("scopegate.decisions"):
        assert "issuer" not in point.attributes
        assert "client_id" not in point.attributes


def test_a_decision_span_is_a_child_of_the_current_span(telemetry: Telemetry) -> None:
    """Created when the record arrives, the span nests under the request's own span."""
    tracer = telemetry.tracer_provider.get_tracer("test")
    client = Stack(ISS.verifier()).client("wsgi")
    with tracer.start_as_current_span("request") as parent:
        client.get(headers=bearer(ISS.make_token(["a"])))
    client.close()
    (decision,) = telemetry.finished("scopegate.decision")
    assert decision.parent is not None
    assert decision.parent.span_id == parent.get_span_context().span_id


def test_introspection_and_cache_metrics(telemetry: Telemetry) -> None:
    """An introspection span and fetch duration; cache lookups give the hit ratio."""
    with IntrospectionServer() as server:
        server.tokens["live"] = {"active": True, "client_id": "c"}
        verifier = IntrospectionVerifier(
            introspection_uri=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        client = Stack(verifier).client("asgi")
        for _ in range(4):
            assert client.get(headers=bearer("live")).status_code == 200
        client.close(verifier)
    (span,) = telemetry.finished("scopegate.introspection")
    assert span.attributes["scopegate.outcome"] == "active"
    assert span.status.status_code is StatusCode.UNSET
    lookups = {
        (p.attributes["backend"], p.attributes["outcome"]): p.value
        for p in telemetry.points("scopegate.cache.lookups")
    }
    assert lookups == {("memory", "miss"): 1, ("memory", "hit"): 3}
    fetches = {
        (p.attributes["kind"], p.attributes["outcome"]): p.count
        for p in telemetry.points("scopegate.fetch.duration")
    }
    assert fetches == {("introspection", "active"): 1}


def test_discovery_spans(telemetry: Telemetry) -> None:
    """A failed discovery is an ERROR span named scopegate.discovery_fetch."""
    verifier = JWTVerifier(issuer=f"http://127.0.0.1:{free_port()}", audience="api://x")
    client = Stack(verifier).client("wsgi")
    assert client.get(headers=bearer(ISS.make_token(["a"]))).status_code == 503
    client.close(verifier)
    (span,) = telemetry.finished("scopegate.discovery_fetch")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["scopegate.reason"] == "discovery_unreachable"


def test_uninstrument_stops_everything(telemetry: Telemetry) -> None:
    """After uninstrument() no hook is left and no span is made; a second call is harmless."""
    telemetry.instrumentation.uninstrument()
    telemetry.instrumentation.uninstrument()
    assert not _observe.HOOKS
    client = Stack(ISS.verifier()).client("wsgi")
    client.get(headers=bearer(ISS.make_token(["a"])))
    client.close()
    assert telemetry.spans.get_finished_spans() == ()


def test_the_global_providers_are_the_default() -> None:
    """Without providers the API's global (here no-op) ones are used, at no error."""
    instrumentation = scopegate.otel.instrument()
    try:
        client = Stack(ISS.verifier()).client("wsgi")
        assert client.get(headers=bearer(ISS.make_token(["a"]))).status_code == 200
        client.close()
    finally:
        instrumentation.uninstrument()


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """No opentelemetry-api: a ConfigurationError naming scopegate[otel], no hook added."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(ConfigurationError, match=r"scopegate\[otel\]"):
        scopegate.otel.instrument()
    assert not _observe.HOOKS
