"""No token, proof, secret or password in anything observability produces.

Real tokens, DPoP proofs, introspection client credentials, issuer client secrets, a
password-grant password, a password in a JWKS URL and Redis passwords go through every
path (accepted, cached, rejected, 503, decorator refusals, issuer grants and failures,
Redis down or refusing the password) with everything switched on at once: the root
logger captured at DEBUG, a hook keeping every record, OpenTelemetry (SDK, in-memory
span exporter and metric reader) and Prometheus. Then none of the secrets, and no 16
characters in a row of any token or proof, may appear in the log output, the records,
the span names, attributes and statuses, the metric attributes, or the Prometheus text.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

import scopegate.otel
import scopegate.prometheus
from scopegate import (
    DPoPPolicy,
    HybridVerifier,
    IntrospectionVerifier,
    RedisCache,
    RedisReplayStore,
)
from scopegate.issuer import Client, Issuer, IssuerConfig, User, create_wsgi_app
from scopegate.testing import DPoPKey, LocalIssuer
from tests.introspection.introspection_server import IntrospectionServer, Reply
from tests.observe.stack import BASE, KINDS, Records, Stack
from tests.servers import RedisServer, free_port

ISS = LocalIssuer()
KEY = DPoPKey.generate()
RS_SECRET = "ObsCanaryResourceServerSecret-4d1f"
CLIENT_SECRET = "ObsCanaryIssuerClientSecret-9a7e"
PASSWORD = "ObsCanaryPassword-31c5"
WRONG_PASSWORD = "ObsCanaryWrongPassword-77b0"
REDIS_PASSWORD = "ObsCanaryRedisPassword-e2a9"
URL_PASSWORD = "ObsCanaryUrlPassword-5b88"
OPAQUE = "ObsCanaryOpaqueToken-c0ffee-0123456789"
DEAD_OPAQUE = "ObsCanaryDeadOpaque-ba5e-0123456789"
WINDOW = 16


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Haystack:
    """Everything produced, and the secrets and tokens that must not be in it."""

    def __init__(self) -> None:
        self.secrets = [RS_SECRET, CLIENT_SECRET, PASSWORD, WRONG_PASSWORD]
        self.secrets += [REDIS_PASSWORD, URL_PASSWORD, OPAQUE, DEAD_OPAQUE]
        # Every secret is also searched for by its 16-character windows.
        self.tokens: list[str] = list(self.secrets)

    def token(self, value: str) -> str:
        self.tokens.append(value)
        return value

    def check(self, texts: Iterable[str], where: str) -> None:
        blob = "\n".join(texts)
        assert blob, f"nothing was collected from {where}"
        for secret in self.secrets:
            assert secret not in blob, f"{where} shows a secret ({secret[:12]}...)"
        windows = {t[i : i + WINDOW] for t in self.tokens for i in range(len(t) - WINDOW + 1)}
        for i in range(len(blob) - WINDOW + 1):
            chunk = blob[i : i + WINDOW]
            assert chunk not in windows, f"{where} shows part of a token: {chunk!r}"


@pytest.fixture
def everything(caplog: pytest.LogCaptureFixture) -> Iterator[dict[str, Any]]:
    """DEBUG logs from the root logger, a record keeper, OTel and Prometheus, all on."""
    caplog.set_level(logging.DEBUG)
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    registry = CollectorRegistry()
    otel = scopegate.otel.instrument(tracer_provider, meter_provider)
    prometheus = scopegate.prometheus.instrument(registry)
    records = Records()
    try:
        with records:
            yield {
                "caplog": caplog,
                "spans": exporter,
                "metrics": reader,
                "registry": registry,
                "records": records,
            }
    finally:
        otel.uninstrument()
        prometheus.uninstrument()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def log_texts(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    """What any handler could print: messages, arguments, tracebacks."""
    formatter = logging.Formatter()
    for record in caplog.records:
        yield record.getMessage()
        yield repr(record.args)
        if record.exc_info:
            yield formatter.formatException(record.exc_info)
    yield caplog.text


def span_texts(exporter: InMemorySpanExporter) -> Iterator[str]:
    for span in exporter.get_finished_spans():
        yield span.name
        yield repr(dict(span.attributes or {}))
        yield str(span.status.description)


def metric_texts(reader: InMemoryMetricReader) -> Iterator[str]:
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                yield metric.name
                for point in metric.data.data_points:
                    yield repr(dict(point.attributes or {}))


def resource_server_traffic(hay: Haystack, redis_url: str) -> None:
    """JWTs, opaque tokens and DPoP through both middlewares, on every outcome."""
    with IntrospectionServer(client_id="rs", client_secret=RS_SECRET) as server:
        server.tokens[OPAQUE] = {"active": True, "scope": "items:read", "client_id": "c"}
        server.replies[DEAD_OPAQUE] = Reply(status=503)
        for kind in KINDS:
            cache = RedisCache(redis_url, socket_timeout=0.2)
            introspection = IntrospectionVerifier(
                introspection_uri=server.url,
                client_id="rs",
                client_secret=RS_SECRET,
                cache=cache,
            )
            jwt = ISS.verifier()
            verifier = HybridVerifier(jwt=jwt, introspection=introspection)
            store = RedisReplayStore(redis_url)
            stack = Stack(verifier, dpop=DPoPPolicy(replay=store))
            client = stack.client(kind)
            good = hay.token(ISS.make_token(["items:read"]))
            expired = hay.token(ISS.make_token(["items:read"], expires_in=-600))
            for headers in (
                bearer(good),
                bearer(good),
                bearer(expired),
                bearer(good[:-3] + "AAA"),
                bearer(OPAQUE),
                bearer(OPAQUE),
                bearer(DEAD_OPAQUE),
                {},
            ):
                client.get(headers=headers)
            assert client.get("/scoped", headers=bearer(good)).status_code == 403
            bound = hay.token(ISS.make_token(["items:read"], cnf={"jkt": KEY.jkt}))
            proof = hay.token(KEY.proof("GET", BASE + "/ok", token=bound))
            dpop = {"Authorization": f"DPoP {bound}", "DPoP": proof}
            assert client.get(headers=dpop).status_code == 503  # the replay store is down
            client.close(jwt, introspection, cache, store)
            # Bad introspection credentials, and a JWKS URL with a password in it.
            wrong = IntrospectionVerifier(
                introspection_uri=server.url, client_id="rs", client_secret=PASSWORD
            )
            client = Stack(wrong).client(kind)
            assert client.get(headers=bearer(OPAQUE)).status_code == 503
            client.close(wrong)
            down = ISS.verifier(
                jwks_uri=f"http://jwks:{URL_PASSWORD}@127.0.0.1:{free_port()}/jwks?k={URL_PASSWORD}",
                keys=None,
            )
            client = Stack(down).client(kind)
            assert client.get(headers=bearer(good)).status_code == 503
            client.close(down)


def issuer_traffic(hay: Haystack) -> None:
    """Grants, failures, refresh rotation and reuse, throttling, introspection."""
    config = IssuerConfig(
        issuer="https://issuer.test",
        audience="api://test",
        allow_password_grant=True,
        address_max_failures=3,
    )
    clients = [
        Client(
            "app",
            (CLIENT_SECRET,),
            grant_types=frozenset({"password", "refresh_token", "client_credentials"}),
            scopes=frozenset({"items:read"}),
            introspect=True,
        )
    ]
    users = [User("u-1", "alice", PASSWORD, scopes=frozenset({"items:read"}))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issuer = Issuer(config, clients=clients, users=users)
    transport = httpx.WSGITransport(create_wsgi_app(issuer))
    auth = ("app", CLIENT_SECRET)
    with httpx.Client(transport=transport, base_url="https://issuer.test") as http:
        granted = http.post("/token", data={"grant_type": "client_credentials"}, auth=auth)
        hay.token(granted.json()["access_token"])
        form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        body = http.post("/token", data=form, auth=auth).json()
        hay.token(body["access_token"])
        refresh = hay.token(body["refresh_token"])
        rotated = http.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": refresh}, auth=auth
        ).json()
        hay.token(rotated["access_token"])
        hay.token(rotated["refresh_token"])
        reuse = {"grant_type": "refresh_token", "refresh_token": refresh}
        assert http.post("/token", data=reuse, auth=auth).status_code == 400
        http.post("/introspect", data={"token": body["access_token"]}, auth=auth)
        wrong = {"grant_type": "password", "username": "alice", "password": WRONG_PASSWORD}
        assert http.post("/token", data=wrong, auth=auth).status_code == 400
        for _ in range(4):
            http.post("/token", data={"grant_type": "client_credentials"}, auth=("app", PASSWORD))


@pytest.mark.redis
def test_nothing_observable_shows_a_secret(
    everything: dict[str, Any], redis_server: RedisServer
) -> None:
    """Logs, records, spans, metric attributes and the Prometheus text are all clean."""
    hay = Haystack()
    # A reachable Redis that refuses the password, and one that cannot be reached.
    import redis

    admin = redis.Redis(port=redis_server.port)
    admin.config_set("requirepass", "another-password")
    admin.close()
    refused = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/0"
    unreachable = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"
    resource_server_traffic(hay, refused)
    resource_server_traffic(hay, unreachable)
    issuer_traffic(hay)
    records = everything["records"].all
    names = {r.name for r in records}
    assert {"decision", "introspection", "cache", "redis_fallback", "jwks_fetch"} <= names
    assert {"issuer_grant", "issuer_failure", "issuer_throttled", "issuer_refresh_reuse"} <= names
    outcomes = {r.outcome for r in records if r.name == "decision"}
    assert {"accepted", "rejected", "unavailable"} <= outcomes
    hay.check(log_texts(everything["caplog"]), "the logs")
    hay.check([repr(records)], "the records")
    hay.check(span_texts(everything["spans"]), "the spans")
    hay.check(metric_texts(everything["metrics"]), "the OTel metrics")
    hay.check([generate_latest(everything["registry"]).decode()], "the Prometheus text")
