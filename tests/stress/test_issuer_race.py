"""Concurrent refreshes of one refresh token across two issuer processes sharing Redis.

Forty clients present the same refresh token at once, half to each of two real
``scopegate issuer serve`` processes backed by one ``redis-server``. Rotation is an
atomic compare-and-set (issuer spec RT-7): at most one request may get new tokens, and
there is never more than one live successor; every other request gets
``invalid_grant``. No 5xx, ever.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.servers import RedisServer
from tests.stress.figures import record
from tests.stress.issuer_support import APP_SECRET, PASSWORD, issuer_process, write_config

RACERS = 40
ROUNDS = 5


@pytest.mark.redis
def test_refresh_race_has_at_most_one_winner(tmp_path: Path, redis_server: RedisServer) -> None:
    """At most one of 40 simultaneous refreshes (two processes) wins; never two live successors."""
    config = write_config(tmp_path, redis_server.url)
    issuers = [issuer_process(config) for _ in range(2)]
    with issuers[0], issuers[1]:
        clients = [
            httpx.Client(base_url=p.url, timeout=30, auth=("app", APP_SECRET)) for p in issuers
        ]
        results: list[httpx.Response] = []
        lock = threading.Lock()
        try:
            for _ in range(ROUNDS):
                results.clear()
                login = clients[0].post(
                    "/token",
                    data={"grant_type": "password", "username": "alice", "password": PASSWORD},
                )
                assert login.status_code == 200, login.text
                refresh_token = login.json()["refresh_token"]
                barrier = threading.Barrier(RACERS)

                def race(
                    n: int, token: str = refresh_token, barrier: threading.Barrier = barrier
                ) -> None:
                    barrier.wait()
                    response = clients[n % 2].post(
                        "/token", data={"grant_type": "refresh_token", "refresh_token": token}
                    )
                    with lock:
                        results.append(response)

                threads = [threading.Thread(target=race, args=(n,)) for n in range(RACERS)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join(60)
                statuses = Counter(r.status_code for r in results)
                assert set(statuses) <= {200, 400}, statuses
                assert all(
                    r.json()["error"] == "invalid_grant" for r in results if r.status_code == 400
                )
                winners = [r.json()["refresh_token"] for r in results if r.status_code == 200]
                assert len(winners) <= 1, statuses
                live = [
                    t
                    for t in winners
                    if clients[1]
                    .post("/token", data={"grant_type": "refresh_token", "refresh_token": t})
                    .status_code
                    == 200
                ]
                assert len(live) <= 1
                record("refresh-token races (40 racers, 2 issuer processes)")
                record("racing refresh requests (no double issuance, no 5xx)", len(results))
        finally:
            for client in clients:
                client.close()
