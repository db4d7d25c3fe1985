"""A real issuer process at ``--log-level debug``: its whole output holds no secret.

The issuer (with its state in a real Redis) serves password, refresh, client-credentials,
introspection and revocation requests, good and bad, including credentials sent where
they must not be (the query string) and a Redis outage; then everything the process
printed is searched for the client secrets, the password and every issued token.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.servers import RedisServer
from tests.stress.issuer_support import (
    APP_SECRET,
    PASSWORD,
    RS_SECRET,
    issuer_process,
    write_config,
)


@pytest.mark.redis
def test_issuer_debug_output_has_no_secrets(tmp_path: Path, redis_server: RedisServer) -> None:
    """Every issuer flow at DEBUG level, then the process output is free of secrets and tokens."""
    config = write_config(tmp_path, redis_server.url)
    proc = issuer_process(config, log_level="debug")
    issued: list[str] = []
    with proc, httpx.Client(base_url=proc.url, timeout=30) as http:
        app = ("app", APP_SECRET)
        login = http.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            auth=app,
        ).json()
        issued += [login["access_token"], login["refresh_token"]]
        rotated = http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]},
            auth=app,
        ).json()
        issued += [rotated["access_token"], rotated["refresh_token"]]
        # Reuse of a rotated token (family revocation), bad secrets and passwords.
        http.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": login["refresh_token"]},
            auth=app,
        )
        http.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD + "x"},
            auth=app,
        )
        http.post(
            "/token", data={"grant_type": "client_credentials"}, auth=("app", APP_SECRET + "x")
        )
        http.post("/token?client_secret=" + APP_SECRET, data={"grant_type": "client_credentials"})
        http.post(
            "/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "app",
                "client_secret": APP_SECRET,
            },
        )
        http.post("/introspect", data={"token": rotated["access_token"]}, auth=("rs", RS_SECRET))
        http.post(
            "/introspect", data={"token": rotated["refresh_token"]}, auth=("rs", RS_SECRET + "x")
        )
        http.post("/revoke", data={"token": rotated["refresh_token"]}, auth=app)
        cc = http.post("/token", data={"grant_type": "client_credentials"}, auth=app).json()
        issued.append(cc["access_token"])
        redis_server.stop()
        outage = http.post(
            "/token",
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            auth=app,
        )
        assert outage.status_code == 503
        redis_server.start()
        output = proc.output()
    assert "scopegate" in output  # debug logging really was on
    for secret in [APP_SECRET, RS_SECRET, PASSWORD, *issued]:
        assert secret not in output, f"issuer output leaks {secret[:10]}..."
        if secret.count(".") == 2:
            assert secret.rsplit(".", 1)[1][:40] not in output
