"""Trouble with the authorization server is logged once per incident, never per request:
the first failure at WARNING, the next ones at DEBUG, the recovery at INFO."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from scopegate import IntrospectionVerifier, JWTVerifier, _observe
from scopegate._discovery import ServerMetadata
from scopegate.testing import LocalIssuer
from tests.introspection.introspection_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    IntrospectionServer,
    Reply,
)
from tests.observe.stack import KINDS, Stack
from tests.servers import free_port, run_wsgi

ISS = LocalIssuer()
REQUESTS = 5


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _jwks_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(ISS.jwks()).encode()]


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


@pytest.mark.parametrize("kind", KINDS)
def test_a_stopped_jwks_server_is_one_warning_and_its_return_one_info(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """N requests while the JWKS server is stopped: one WARNING, N-1 DEBUG; then one INFO."""
    caplog.set_level(logging.DEBUG)
    port = free_port()
    verifier = JWTVerifier(
        issuer=ISS.issuer,
        audience=ISS.audience,
        jwks_uri=f"http://127.0.0.1:{port}/jwks",
        jwks_ttl=0,  # every request fetches: the worst case for a log flood
        jwks_cooldown=0,
        stale_if_error=0,
    )
    client = Stack(verifier).client(kind)
    try:
        with run_wsgi(_jwks_app, port=port):
            assert client.get(headers=bearer(ISS.make_token(["a"]))).status_code == 200
        statuses = [
            client.get(headers=bearer(ISS.make_token(["a"]))).status_code for _ in range(REQUESTS)
        ]
        assert statuses == [503] * REQUESTS
        during = lines(caplog, "scopegate.jwks")
        with run_wsgi(_jwks_app, port=port):
            assert client.get(headers=bearer(ISS.make_token(["a"]))).status_code == 200
            assert client.get(headers=bearer(ISS.make_token(["a"]))).status_code == 200
    finally:
        client.close(verifier)
    assert [level for level, _ in during] == [logging.WARNING] + [logging.DEBUG] * (REQUESTS - 1)
    assert all("jwks_unreachable" in text for _, text in during)
    after = lines(caplog, "scopegate.jwks")[len(during) :]
    assert after == [(logging.INFO, f"JWKS fetch from http://127.0.0.1:{port}/jwks works again")]
    # Nothing else complained above INFO, and each refusal was one INFO line.
    loud = [r for r in caplog.records if r.levelno > logging.INFO and r.name != "scopegate.jwks"]
    assert not loud
    refused = [t for lvl, t in lines(caplog, "scopegate.rejections") if lvl == logging.INFO]
    assert refused == ["guard 503 temporarily_unavailable (jwks_unreachable)"] * REQUESTS


@pytest.mark.parametrize("kind", KINDS)
def test_an_introspection_outage_is_one_warning(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Every request of an outage asks again (failures are not cached), yet the log has
    one WARNING; the first good answer logs one INFO."""
    caplog.set_level(logging.DEBUG)
    with IntrospectionServer() as server:
        server.tokens.update({f"t{i}": {"active": True} for i in range(REQUESTS + 2)})
        # The endpoint answers 503 for these tokens: an outage of the AS.
        server.replies.update({f"t{i}": Reply(status=503) for i in range(1, REQUESTS + 1)})
        verifier = IntrospectionVerifier(
            introspection_uri=server.url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        )
        client = Stack(verifier).client(kind)
        try:
            assert client.get(headers=bearer("t0")).status_code == 200
            for i in range(1, REQUESTS + 1):
                assert client.get(headers=bearer(f"t{i}")).status_code == 503
            assert client.get(headers=bearer(f"t{REQUESTS + 1}")).status_code == 200
        finally:
            client.close(verifier)
    logged = lines(caplog, "scopegate.introspection")
    levels = [level for level, _ in logged]
    assert levels == [logging.WARNING] + [logging.DEBUG] * (REQUESTS - 1) + [logging.INFO]
    assert "http_status (HTTP 503)" in logged[0][1]
    assert logged[-1][1].endswith("works again")


def test_a_stale_metadata_document_is_served_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While discovery fails, the last document is served: one WARNING, not one per use."""
    caplog.set_level(logging.DEBUG)
    with IntrospectionServer() as server:
        document = {"issuer": server.base_url, "introspection_endpoint": server.url}
        server.metadata = document
        metadata = ServerMetadata(server.base_url, kind="oauth", ttl=0, retry_interval=0)
        try:
            assert metadata.endpoint("introspection_endpoint") == server.url
            server.metadata = None  # the document is gone: 404
            for _ in range(REQUESTS):
                assert metadata.endpoint("introspection_endpoint") == server.url
            server.metadata = document
            assert metadata.endpoint("introspection_endpoint") == server.url
        finally:
            metadata.runner.close()
    logged = lines(caplog, "scopegate.discovery")
    levels = [level for level, _ in logged]
    assert levels == [logging.WARNING] + [logging.DEBUG] * (REQUESTS - 1) + [logging.INFO]
    assert "discovery_http_status; using the previous document" in logged[0][1]


def test_an_incident_reminds_only_when_asked() -> None:
    """remind= repeats the WARNING at most that often while the incident lasts."""
    log = logging.getLogger("tests.observe.incident")
    seen: list[int] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.levelno)

    handler = Keep(logging.DEBUG)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        quiet = _observe.Incident(log, "thing")
        for _ in range(3):
            quiet.failed("down")
        reminding = _observe.Incident(log, "other", remind=0)
        for _ in range(2):
            reminding.failed("down", level=logging.ERROR)
        reminding.recovered()
        reminding.recovered()
    finally:
        log.removeHandler(handler)
    assert seen == [
        logging.WARNING,
        logging.DEBUG,
        logging.DEBUG,
        logging.ERROR,
        logging.ERROR,
        logging.INFO,
    ]
