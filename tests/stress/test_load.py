"""Bounded load against the ``asgi`` and ``wsgi`` examples run as real processes.

Each example (``python examples/serve.py NAME --port P``) verifies JWTs against a JWKS
and opaque tokens by introspection, both served by a fault-server process, with the
introspection cache in a real Redis. Sixteen client threads send a mix of valid,
expired, forged, wrong-audience, wrong-scope, opaque, junk and malformed requests for a
fixed time on 127.0.0.1 while Redis is stopped and restarted; every response is checked
for its exact status (and challenge). Zero wrong answers are allowed.

The run lasts 8 s per example in CI; set ``SCOPEGATE_SOAK_SECONDS`` for a longer soak.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.fuzz import material
from tests.servers import RedisServer
from tests.stress.figures import note, record
from tests.stress.procs import PYTHON, FaultServer, Proc

DURATION = float(os.environ.get("SCOPEGATE_SOAK_SECONDS", "8"))
THREADS = 16
_junk = itertools.count()


@dataclass(frozen=True)
class Case:
    """One kind of request and the only right answer to it."""

    name: str
    method: str
    path: str
    token: Callable[[], str | None]
    status: int
    error: str | None = None
    query: str = ""


def _static(token: str) -> Callable[[], str]:
    return lambda: token


def cases() -> list[Case]:
    """The request mix; tokens minted here, in the test process (its keys are served)."""
    read = material.mint(scope="items:read")
    write = material.mint(scope="items:write")
    admin = material.mint(scope="items:read admin")
    other = material.mint(scope="other")
    return [
        Case("public", "GET", "/public", _static("junk!!"), 200),
        Case("valid-read", "GET", "/items", _static(read), 200),
        Case("valid-me", "GET", "/me", _static(read), 200),
        Case("valid-admin", "GET", "/admin", _static(admin), 200),
        Case("valid-write", "POST", "/items", _static(write), 201),
        Case("opaque-active", "GET", "/items", _static("active-1"), 200),
        Case("opaque-inactive", "GET", "/items", _static("inactive-2"), 401, "invalid_token"),
        Case("opaque-junk", "GET", "/items", lambda: f"junk{next(_junk)}", 401, "invalid_token"),
        Case("wrong-scope", "GET", "/items", _static(other), 403, "insufficient_scope"),
        Case("missing-admin", "GET", "/admin", _static(read), 403, "insufficient_scope"),
        Case("write-needs-scope", "POST", "/items", _static(read), 403, "insufficient_scope"),
        Case("expired", "GET", "/items", _static(material.expired()), 401, "invalid_token"),
        Case("forged", "GET", "/items", _static(material.forged()), 401, "invalid_token"),
        Case(
            "wrong-audience",
            "GET",
            "/items",
            _static(material.mint(audience="api://x")),
            401,
            "invalid_token",
        ),
        Case("malformed", "GET", "/items", _static('a"b'), 401, "invalid_token"),
        Case(
            "alg-none",
            "GET",
            "/items",
            _static("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.x"),
            401,
            "invalid_token",
        ),
        Case("no-token", "GET", "/items", lambda: None, 401),
        Case(
            "two-methods",
            "GET",
            "/items",
            _static(read),
            400,
            "invalid_request",
            "access_token=" + read,
        ),
    ]


def check(case: Case, response: httpx.Response) -> str | None:
    """Why *response* is wrong for *case*, or ``None`` when it is right."""
    if response.status_code != case.status:
        return f"{case.name}: {response.status_code} {response.text[:120]}"
    if case.status in (401, 403, 400):
        challenge = response.headers.get("www-authenticate", "")
        if not challenge.startswith("Bearer realm="):
            return f"{case.name}: challenge {challenge!r}"
        if case.error is not None and f'error="{case.error}"' not in challenge:
            return f"{case.name}: challenge {challenge!r}"
        if case.error is None and "error=" in challenge:
            return f"{case.name}: challenge {challenge!r}"
    if case.name == "valid-me" and response.json()["sub"] != "user-1":
        return f"{case.name}: body {response.text[:120]}"
    return None


def answers() -> dict[str, Any]:
    """The introspection table served by the fault server."""
    exp = int(time.time()) + 3600
    table: dict[str, Any] = {f"inactive-{i}": {"active": False} for i in range(5)}
    for i in range(5):
        table[f"active-{i}"] = {
            "active": True,
            "scope": "items:read",
            "sub": "opaque-user",
            "client_id": "app",
            "exp": exp,
        }
    return table


@pytest.mark.redis
@pytest.mark.parametrize(
    "example", [pytest.param("asgi", id="asgi"), pytest.param("wsgi", id="wsgi")]
)
def test_mixed_load_every_answer_right(
    example: str, fault_server: FaultServer, redis_server: RedisServer
) -> None:
    """Mixed tokens under load, through a Redis restart: every status is exactly right."""
    fault_server.control(documents={"/jwks": material.jwks()}, tokens=answers())
    env = {
        "SCOPEGATE_ISSUER": material.ISSUER,
        "SCOPEGATE_AUDIENCE": material.AUDIENCE,
        "SCOPEGATE_JWKS_URI": fault_server.url + "/jwks",
        "SCOPEGATE_INTROSPECTION_URI": fault_server.url + "/introspect",
        "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
        "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "rs-load-secret",
        "SCOPEGATE_REDIS_URL": redis_server.url,
    }
    server = Proc(
        [PYTHON, "examples/serve.py", example, "--port", "{port}"], env=env, ready_path="/public"
    )
    mix = cases()
    tally: Counter[str] = Counter()
    wrong: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(offset: int) -> None:
        with httpx.Client(base_url=server.url, timeout=15) as http:
            for i in itertools.count(offset):
                if stop.is_set():
                    return
                case = mix[i % len(mix)]
                token = case.token()
                headers = {"authorization": f"Bearer {token}"} if token is not None else {}
                url = case.path + ("?" + case.query if case.query else "")
                payload = {"name": "x"} if case.method == "POST" else None
                response = http.request(case.method, url, headers=headers, json=payload)
                problem = check(case, response)
                with lock:
                    tally[case.name] += 1
                    if problem is not None:
                        wrong.append(problem)

    with server:
        rss_start = server.rss_kib()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(THREADS)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        try:
            time.sleep(DURATION / 3)
            redis_server.stop()
            record(f"redis stopped under HTTP load ({example})")
            time.sleep(DURATION / 3)
            redis_server.start()
            time.sleep(DURATION / 3)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        elapsed = time.monotonic() - started
        rss_end = server.rss_kib()
        output = server.output()
    # Whatever the example printed (warnings during the Redis outage...) names no token.
    for case in mix:
        token = case.token()
        if token is not None and len(token) > 8:
            assert token not in output, f"{example} output leaks the {case.name} token"
    total = sum(tally.values())
    assert not wrong, wrong[:10]
    assert set(tally) == {case.name for case in mix}
    record(f"requests under load with zero wrong answers ({example})", total)
    note(
        f"load {example}: {total} requests in {elapsed:.1f} s ({total / elapsed:.0f}/s, "
        f"{THREADS} client threads), 0 wrong; server RSS {rss_start} -> {rss_end} KiB"
    )
