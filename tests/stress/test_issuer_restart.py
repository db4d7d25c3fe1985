"""The issuer restarted (and its Redis stopped) while it holds refresh-token state.

A real ``scopegate issuer serve`` process keeps its state in a real ``redis-server``
and signs with a key file. Refresh-token families, rotation state, family revocations
and access-token (jti) revocations are created, the issuer process is restarted under
load, and every one of them must still hold afterwards. Then Redis itself is stopped:
the token endpoint answers 503 with ``Retry-After`` (never 500) and recovers by itself
once Redis is back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from scopegate._jwt import JWTVerifier
from tests.servers import RedisServer
from tests.stress.figures import record
from tests.stress.issuer_support import (
    APP_SECRET,
    PASSWORD,
    RS_SECRET,
    issuer_process,
    write_config,
)
from tests.stress.procs import Proc


class IssuerClient:
    """Calls the issuer's endpoints like the OAuth clients do."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.Client(timeout=10)

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def token(self, **form: str) -> httpx.Response:
        """POST /token as client ``app`` (client_secret_basic)."""
        return self.http.post(self.base + "/token", data=form, auth=("app", APP_SECRET))

    def tokens(self, **form: str) -> dict[str, Any]:
        """POST /token and require a 200."""
        response = self.token(**form)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def login(self) -> dict[str, Any]:
        """A password grant for alice: an access and a refresh token."""
        return self.tokens(grant_type="password", username="alice", password=PASSWORD)

    def refresh(self, refresh_token: str) -> httpx.Response:
        """A refresh_token grant."""
        return self.token(grant_type="refresh_token", refresh_token=refresh_token)

    def revoke(self, token: str) -> None:
        """RFC 7009 revocation by the owning client."""
        response = self.http.post(
            self.base + "/revoke", data={"token": token}, auth=("app", APP_SECRET)
        )
        assert response.status_code == 200, response.text

    def active(self, token: str) -> bool:
        """RFC 7662 introspection by the resource server."""
        response = self.http.post(
            self.base + "/introspect", data={"token": token}, auth=("rs", RS_SECRET)
        )
        assert response.status_code == 200, response.text
        return response.json()["active"] is True


@pytest.fixture
def issuer(tmp_path: Path, redis_server: RedisServer) -> Any:
    """A real issuer process using Redis for its state."""
    config = write_config(tmp_path, redis_server.url)
    proc = issuer_process(config)
    with proc:
        yield proc


def _invalid_grant(response: httpx.Response) -> bool:
    return response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.redis
def test_state_survives_issuer_restart_under_load(issuer: Proc, redis_server: RedisServer) -> None:
    """Refresh families, rotation, family and jti revocations all survive a restart under load."""
    client = IssuerClient(issuer.url)
    first = client.login()
    second = client.tokens(grant_type="refresh_token", refresh_token=first["refresh_token"])
    revoked_family = client.login()
    client.revoke(revoked_family["refresh_token"])
    surviving = client.login()
    revoked_at = client.tokens(grant_type="client_credentials", scope="items:read")
    client.revoke(revoked_at["access_token"])
    assert not client.active(revoked_at["access_token"])

    statuses: Counter[str] = Counter()
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                try:
                    response = http.post(
                        issuer.url + "/token",
                        data={"grant_type": "client_credentials"},
                        auth=("app", APP_SECRET),
                    )
                    statuses[str(response.status_code)] += 1
                except httpx.TransportError:
                    statuses["down"] += 1  # the process is restarting
                    time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        issuer.restart()
        record("issuer restarted under load (redis state)")
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert set(statuses) <= {"200", "down"}, statuses
    record("token requests across issuer restart (no 5xx)", statuses["200"])

    client.close()
    client = IssuerClient(issuer.url)
    # A live family continues: its current refresh token rotates.
    third = client.tokens(grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert client.active(third["access_token"])
    # The rotated token is still known as rotated: reuse revokes the family.
    assert _invalid_grant(client.refresh(first["refresh_token"]))
    assert _invalid_grant(client.refresh(third["refresh_token"]))
    assert not client.active(third["access_token"])
    # Revocations made before the restart hold.
    assert _invalid_grant(client.refresh(revoked_family["refresh_token"]))
    assert not client.active(revoked_family["access_token"])
    assert not client.active(revoked_at["access_token"])
    # The untouched family still works, and its tokens verify at a resource server.
    assert client.active(surviving["access_token"])
    fresh = client.tokens(grant_type="refresh_token", refresh_token=surviving["refresh_token"])
    verifier = JWTVerifier(issuer=issuer.url, audience="api://restart")
    assert verifier.verify(fresh["access_token"]).subject
    assert verifier.verify(surviving["access_token"]).subject  # signed before the restart
    verifier.close()
    client.close()
    record("refresh families / revocations checked after restart", 5)


@pytest.mark.redis
def test_redis_outage_is_503_then_recovers(issuer: Proc, redis_server: RedisServer) -> None:
    """With Redis down the token endpoint says 503 + Retry-After (never 500), then recovers."""
    client = IssuerClient(issuer.url)
    client.login()
    redis_server.stop()
    record("issuer redis stopped")
    seen: Counter[int] = Counter()
    for _ in range(10):
        response = client.token(grant_type="password", username="alice", password=PASSWORD)
        seen[response.status_code] += 1
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.headers["retry-after"].isdigit()
            assert response.json()["error"] == "temporarily_unavailable"
            assert PASSWORD not in response.text
    assert seen[503] > 0
    redis_server.start()
    deadline = time.monotonic() + 15
    while True:
        response = client.token(grant_type="password", username="alice", password=PASSWORD)
        if response.status_code == 200:
            break
        assert response.status_code == 503, response.text
        assert time.monotonic() < deadline, "issuer did not recover after Redis came back"
        time.sleep(0.2)
    login = response.json()
    assert client.refresh(login["refresh_token"]).status_code == 200
    assert issuer.proc is not None
    assert issuer.proc.poll() is None
    client.close()
