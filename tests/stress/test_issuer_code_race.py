"""Concurrent redemptions of one authorization code across two issuer processes and Redis.

A user signs in at one real ``scopegate issuer serve`` process (GET /authorize, POST the
login form); forty clients then redeem the code at once, half at each of two processes
sharing one ``redis-server``. Consuming a code is one atomic step in Redis (RFC 6749
§4.1.2): exactly one redemption gets tokens, every other one ``invalid_grant``. No 5xx.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.issuer.authz_support import auth_params, form_token, pkce, query_of
from tests.servers import RedisServer
from tests.stress.figures import record
from tests.stress.issuer_support import PASSWORD, issuer_process, write_config

RACERS = 40
ROUNDS = 5
CALLBACK = "https://app.example/cb"
WEB = """
[[clients]]
id = "web"
secret = "web-secret"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["https://app.example/cb"]
scopes = ["items:read"]
"""


@pytest.mark.redis
def test_code_race_has_exactly_one_winner(tmp_path: Path, redis_server: RedisServer) -> None:
    """Exactly one of 40 simultaneous redemptions (two processes) of one code wins."""
    config = write_config(tmp_path, redis_server.url)
    text = config.read_text()
    head, sep, rest = text.partition("[[clients]]")
    # One issuer identifier for both processes, as behind a load balancer (user ids are
    # derived from it, so the code's user is the same user in both).
    config.write_text('issuer = "http://localhost"\n' + head + WEB.strip() + "\n\n" + sep + rest)
    issuers = [issuer_process(config) for _ in range(2)]
    with issuers[0], issuers[1]:
        results: list[httpx.Response] = []
        lock = threading.Lock()
        for _ in range(ROUNDS):
            results.clear()
            verifier, challenge = pkce()
            with httpx.Client(base_url=issuers[0].url, timeout=30) as browser:
                page = browser.get(
                    "/authorize",
                    params=auth_params("web", CALLBACK, challenge=challenge, scope="items:read"),
                )
                assert page.status_code == 200, page.text
                redirect = browser.post(
                    "/authorize",
                    data={
                        "request_token": form_token(page.text),
                        "username": "alice",
                        "password": PASSWORD,
                    },
                )
            assert redirect.status_code == 303, redirect.text
            code = query_of(redirect.headers["location"])["code"]
            barrier = threading.Barrier(RACERS)

            def redeem(
                n: int,
                code: str = code,
                verifier: str = verifier,
                barrier: threading.Barrier = barrier,
            ) -> None:
                with httpx.Client(
                    base_url=issuers[n % 2].url, timeout=30, auth=("web", "web-secret")
                ) as http:
                    barrier.wait()
                    response = http.post(
                        "/token",
                        data={
                            "grant_type": "authorization_code",
                            "code": code,
                            "redirect_uri": CALLBACK,
                            "code_verifier": verifier,
                        },
                    )
                with lock:
                    results.append(response)

            threads = [threading.Thread(target=redeem, args=(n,)) for n in range(RACERS)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            statuses = Counter(r.status_code for r in results)
            assert statuses == {200: 1, 400: RACERS - 1}, statuses
            assert {r.json()["error"] for r in results if r.status_code == 400} == {"invalid_grant"}
            record("racing authorization-code redemptions (exactly one winner)", len(results))
        record("authorization-code races (40 racers, 2 issuer processes)")
