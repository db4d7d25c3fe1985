"""One DPoP proof raced at two issuer processes sharing Redis (RFC 9449 §11.1).

Two real ``scopegate issuer serve`` processes publish one issuer URL (as behind a load
balancer), share a signing key file and a ``redis-server``, and require server nonces.
Forty clients send the same token request with the same proof at once, half to each
process. The replay store is shared (``SET NX`` under the issuer's Redis prefix): exactly
one request gets a token, every other one ``invalid_dpop_proof``. No 5xx, ever. The
nonce one process hands out is accepted by the other (both derive it from the key).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from scopegate.testing import DPoPKey
from tests.servers import RedisServer
from tests.stress.figures import note, record
from tests.stress.issuer_support import APP_SECRET, issuer_process, write_config

RACERS = 40
ROUNDS = 5
#: The address clients use (a load balancer's); each process listens on its own port.
PUBLIC = "http://127.0.0.1:9000"


def race(clients: list[httpx.Client], form: dict[str, str], proof: str) -> list[httpx.Response]:
    """RACERS threads post the same token request with *proof* at once, over *clients*."""
    results: list[httpx.Response] = []
    lock = threading.Lock()
    barrier = threading.Barrier(RACERS)

    def one(n: int) -> None:
        barrier.wait()
        response = clients[n % len(clients)].post("/token", data=form, headers={"DPoP": proof})
        with lock:
            results.append(response)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.redis
def test_one_proof_gets_one_token_across_two_processes(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Of 40 simultaneous requests with one proof, over two processes, exactly one wins."""
    config = write_config(tmp_path, redis_server.url)
    config.write_text(f'issuer = "{PUBLIC}"\ndpop_nonce = true\n' + config.read_text())
    key = DPoPKey.generate()
    token_url = f"{PUBLIC}/token"
    form = {"grant_type": "client_credentials", "scope": "items:read"}
    issuers = [issuer_process(config) for _ in range(2)]
    with issuers[0], issuers[1]:
        clients = [
            httpx.Client(base_url=p.url, timeout=30, auth=("app", APP_SECRET)) for p in issuers
        ]
        try:
            unsigned = {"DPoP": key.proof("POST", token_url)}
            first = clients[0].post("/token", data=form, headers=unsigned)
            assert first.json()["error"] == "use_dpop_nonce"
            nonce = first.headers["dpop-nonce"]  # accepted by both: derived from the key file
            worst = 0.0
            for _ in range(ROUNDS):
                started = time.monotonic()
                results = race(clients, form, key.proof("POST", token_url, nonce=nonce))
                worst = max(worst, time.monotonic() - started)
                statuses = Counter(r.status_code for r in results)
                assert statuses == Counter({200: 1, 400: RACERS - 1}), statuses
                errors = Counter(r.json()["error"] for r in results if r.status_code == 400)
                assert errors == Counter({"invalid_dpop_proof": RACERS - 1}), errors
                winner = next(r for r in results if r.status_code == 200)
                assert winner.json()["token_type"] == "DPoP"
                record("DPoP proof races (40 racers, 2 issuer processes, shared Redis)")
                record("racing DPoP token requests (one token per proof, no 5xx)", len(results))
            note(f"DPoP proof race: {RACERS} requests per round in {worst:.2f} s at worst")
        finally:
            for client in clients:
                client.close()
