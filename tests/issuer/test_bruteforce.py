"""Brute force under concurrency: every guess is counted before it is judged (issue 14).

Real parallel requests (threads) against the sans-io core, with the state in memory and
in a real ``redis-server``. Evaluations are counted by wrapping the hash verification:
only calls against the targeted stored hash count, so the dummy work spent for unknown
or locked accounts is not mistaken for a judged guess. The wrapper also sleeps, so every
request of a burst is in flight at once, as it would be with argon2 and a real attacker.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import argon2
import pytest

from scopegate.issuer import (
    Client,
    HTTPResponse,
    Issuer,
    IssuerConfig,
    MemoryStore,
    RedisStore,
    SigningKeySet,
)
from scopegate.issuer import _clients as clients_module
from scopegate.issuer import _login as login_module
from tests.issuer.conftest import (
    AUDIENCE,
    ISSUER,
    RS_KEY,
    SECRET,
    Caller,
    FakeClock,
    standard_clients,
    standard_users,
)
from tests.servers import RedisServer

CC = {"grant_type": "client_credentials"}
PW = {"grant_type": "password", "username": "alice", "password": "alice-pw"}
WRONG_PW = {**PW, "password": "wrong-guess"}


def build(store: Any = None, clock: Callable[[], float] | None = None, **settings: Any) -> Issuer:
    """An issuer with the standard clients and users on *store* (memory by default)."""
    config = IssuerConfig(issuer=ISSUER, audience=AUDIENCE, allow_password_grant=True, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            config,
            clients=standard_clients(),
            users=standard_users(),
            keys=SigningKeySet(current=RS_KEY),
            store=store,
            clock=clock or FakeClock(),
        )


@pytest.fixture(
    params=[
        pytest.param("memory", id="memory"),
        pytest.param("redis", id="redis", marks=pytest.mark.redis),
    ]
)
def store_kind(request: pytest.FixtureRequest) -> str:
    """Run a test against the memory store and against a real redis-server."""
    return str(request.param)


@pytest.fixture
def make(store_kind: str, request: pytest.FixtureRequest) -> Iterator[Callable[..., Issuer]]:
    """A factory of issuers sharing one store of the requested kind."""
    made: list[Issuer] = []
    server: RedisServer | None = None
    if store_kind == "redis":
        server = request.getfixturevalue("redis_server")

    def factory(**settings: Any) -> Issuer:
        store = (
            RedisStore(server.url) if server is not None else shared.setdefault("s", MemoryStore())
        )
        issuer = build(store, **settings)
        made.append(issuer)
        return issuer

    shared: dict[str, Any] = {}
    yield factory
    for issuer in made:
        issuer.close()


def count_evaluations(
    monkeypatch: pytest.MonkeyPatch, module: Any, stored: Callable[[str], bool], delay: float = 0.05
) -> list[str]:
    """Count (and slow down) hash verifications whose stored value matches *stored*."""
    calls: list[str] = []
    real = module.verify_secret
    lock = threading.Lock()

    def counting(stored_value: str, candidate: str) -> bool:
        if stored(stored_value):
            with lock:
                calls.append(candidate)
            time.sleep(delay)
        return bool(real(stored_value, candidate))

    monkeypatch.setattr(module, "verify_secret", counting)
    return calls


def burst(calls: list[Callable[[], HTTPResponse]]) -> list[HTTPResponse]:
    """Run every call at once from its own thread; answers in call order."""
    barrier = threading.Barrier(len(calls))
    answers: list[HTTPResponse | None] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        answers[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def statuses(answers: list[HTTPResponse]) -> Counter[int]:
    return Counter(answer.status for answer in answers)


def error_of(response: HTTPResponse) -> str:
    return str(json.loads(response.body)["error"])


def alice_hash(issuer: Issuer) -> str:
    user = issuer._users.find_user("alice")  # type: ignore[union-attr]
    assert user is not None
    return user.password_hash


def svc_hashes(issuer: Issuer) -> tuple[str, ...]:
    client = issuer._clients.get_client("svc")
    assert client is not None
    return client.secret_hashes


# -- finding 1: check, hash, then record ----------------------------------------------


def test_concurrent_wrong_passwords_from_one_address(
    make: Callable[..., Issuer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """address_max_failures=3: 12 wrong passwords at once -> 3 judged (400), 9 x 429."""
    issuer = make(address_max_failures=3, user_max_failures=100)
    stored = alice_hash(issuer)
    judged = count_evaluations(monkeypatch, login_module, lambda s: s == stored)
    call = Caller(issuer, address="198.51.100.20")
    answers = burst([lambda: call.token(WRONG_PW) for _ in range(12)])
    assert len(judged) == 3
    assert statuses(answers) == {400: 3, 429: 9}
    assert {error_of(a) for a in answers if a.status == 400} == {"invalid_grant"}
    for answer in answers:
        if answer.status == 429:
            assert int(dict(answer.headers)["retry-after"]) >= 1


def test_concurrent_guesses_then_right_password_for_one_user(
    make: Callable[..., Issuer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """user_max_failures=3: 12 guesses at once, then the right password: 3 judged, refused."""
    issuer = make(user_max_failures=3, address_max_failures=1000)
    stored = alice_hash(issuer)
    judged = count_evaluations(monkeypatch, login_module, lambda s: s == stored)
    callers = [Caller(issuer, address=f"203.0.113.{i}") for i in range(12)]
    answers = burst([lambda c=c: c.token(WRONG_PW) for c in callers])  # type: ignore[misc]
    time.sleep(0.05)
    right = Caller(issuer, address="203.0.113.99").token(PW)
    assert len(judged) == 3
    assert statuses(answers) == {400: 12}
    assert {error_of(a) for a in answers} == {"invalid_grant"}
    assert right.status == 400
    assert error_of(right) == "invalid_grant"
    assert len(judged) == 3  # the right password was not judged either


def test_concurrent_wrong_client_secrets_from_one_address(
    make: Callable[..., Issuer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """address_max_failures=3: 12 wrong client secrets at once -> 3 judged (401), 9 x 429."""
    issuer = make(address_max_failures=3)
    hashes = svc_hashes(issuer)
    judged = count_evaluations(monkeypatch, clients_module, lambda s: s in hashes)
    call = Caller(issuer, address="198.51.100.30")
    answers = burst([lambda: call.token(CC, auth=("svc", "wrong")) for _ in range(12)])
    assert len(judged) == 3
    assert statuses(answers) == {401: 3, 429: 9}


def test_legitimate_concurrency_is_never_refused(
    make: Callable[..., Issuer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 right requests at once from one address, all limits at 3: every one is a 200."""
    issuer = make(address_max_failures=3, client_max_failures=3, user_max_failures=3)
    hashes = svc_hashes(issuer)
    stored = alice_hash(issuer)
    count_evaluations(monkeypatch, clients_module, lambda s: s in hashes, delay=0.02)
    count_evaluations(monkeypatch, login_module, lambda s: s == stored, delay=0.02)
    call = Caller(issuer, address="198.51.100.40")
    answers = burst([lambda: call.token(CC) for _ in range(30)])
    assert statuses(answers) == {200: 30}
    answers = burst([lambda: call.token(PW) for _ in range(10)])
    assert statuses(answers) == {200: 10}


# -- finding 3: no limit on failed secrets per client ---------------------------------


def test_failed_secrets_are_limited_per_client(
    store_kind: str, request: pytest.FixtureRequest
) -> None:
    """40 wrong secrets from 20 addresses (2 each): 5 judged, the rest 429, then a delay."""
    clock = FakeClock()
    store = (
        RedisStore(request.getfixturevalue("redis_server").url) if store_kind == "redis" else None
    )
    issuer = build(store, clock, client_max_failures=5, client_backoff_max=30)
    try:
        answers = [
            Caller(issuer, address=f"192.0.2.{100 + i // 2}").token(CC, auth=("svc", f"guess-{i}"))
            for i in range(40)
        ]
        assert statuses(answers) == {401: 5, 429: 35}
        right = Caller(issuer, address="192.0.2.200").token(CC)
        assert right.status == 429  # the right secret is not judged while the delay runs
        assert int(dict(right.headers)["retry-after"]) == 1
        clock.now += 1.5  # the first delay (1 s) has run: one more guess is judged
        assert Caller(issuer, address="192.0.2.201").token(CC, auth=("svc", "x")).status == 401
        assert Caller(issuer, address="192.0.2.202").token(CC).status == 429
        clock.now += 2.5  # the delay doubles: 2 s
        assert Caller(issuer, address="192.0.2.203").token(CC).status == 200
        # the delay never grows past client_backoff_max
        for _ in range(12):
            clock.now += 31
            Caller(issuer, address="192.0.2.204").token(CC, auth=("svc", "x"))
        capped = Caller(issuer, address="192.0.2.205").token(CC)
        assert capped.status == 429
        assert int(dict(capped.headers)["retry-after"]) <= 30
    finally:
        issuer.close()


def test_per_client_delay_cannot_lock_out_the_client(clock: FakeClock) -> None:
    """An address the client authenticated from keeps working while attackers are delayed."""
    issuer = build(None, clock, client_max_failures=5)
    home = Caller(issuer, address="10.1.1.1")
    assert home.token(CC).status == 200
    for i in range(30):
        Caller(issuer, address=f"192.0.2.{i}").token(CC, auth=("svc", "guess"))
    assert Caller(issuer, address="192.0.2.250").token(CC).status == 429
    for _ in range(5):
        assert home.token(CC).status == 200


def test_unknown_client_ids_are_limited_alike(clock: FakeClock) -> None:
    """A client id that does not exist is delayed exactly like one that does (no oracle)."""
    issuer = build(None, clock, client_max_failures=5)
    for client_id in ("svc", "no-such-client"):
        answers = [
            Caller(issuer, address=f"192.0.2.{i}").token(CC, auth=(client_id, "guess"))
            for i in range(8)
        ]
        assert [a.status for a in answers] == [401] * 5 + [429] * 3, client_id


# -- finding 4: client ids told apart by timing ----------------------------------------


ARGON2_DEFAULT = argon2.PasswordHasher()


def test_unknown_client_costs_a_hash_of_the_same_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong secret for a known argon2 client and any secret for an unknown one cost alike."""
    hashed = ARGON2_DEFAULT.hash("the-real-secret")
    config = IssuerConfig(issuer=ISSUER, audience=AUDIENCE)
    issuer = Issuer(
        config,
        clients=[Client("hashed", (hashed,), scopes=frozenset({"read"}))],
        keys=SigningKeySet(current=RS_KEY),
        clock=FakeClock(),
    )

    def timed(client_id: str) -> float:
        started = time.perf_counter()
        caller = Caller(issuer, address=f"10.9.{len(client_id)}.{int(started * 1e6) % 250}")
        assert caller.token(CC, auth=(client_id, "wrong")).status == 401
        return time.perf_counter() - started

    known = statistics.median(timed("hashed") for _ in range(5))
    unknown = statistics.median(timed("unknown-client") for _ in range(5))
    assert unknown > known * 0.5, (known, unknown)
    assert unknown < known * 2.0, (known, unknown)


def test_unknown_user_costs_a_hash_of_the_same_kind(clock: FakeClock) -> None:
    """An unknown username is checked against a dummy with the users' own argon2 parameters."""
    from scopegate.issuer import _passwords

    issuer = build(None, clock)
    seen: list[str] = []
    assert _passwords._ARGON2 is not None
    original_verify = argon2.PasswordHasher.verify

    def recording(self: argon2.PasswordHasher, stored: str, candidate: Any) -> bool:
        seen.append(stored.rsplit("$", 2)[0])
        return bool(original_verify(self, stored, candidate))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argon2.PasswordHasher, "verify", recording)
        Caller(issuer, address="10.3.3.3").token({**PW, "password": "nope"})
        Caller(issuer, address="10.3.3.4").token({**PW, "username": "mallory"})
    assert len(seen) == 2
    assert seen[0] == seen[1], seen  # same scheme, memory, time and parallelism


# -- finding 6: introspection is not rate-limited -------------------------------------


def test_introspection_misses_are_limited_per_caller(make: Callable[..., Issuer]) -> None:
    """lookup_max_misses=100: 150 random tokens at once -> 100 answered, 50 x 429."""
    issuer = make(lookup_max_misses=100)
    call = Caller(issuer, address="198.51.100.60")
    answers = burst(
        [
            lambda i=i: call.request(  # type: ignore[misc]
                "/introspect", {"token": f"random-{i}"}, auth=("rs", "rs-secret")
            )
            for i in range(150)
        ]
    )
    assert statuses(answers) == {200: 100, 429: 50}
    assert all(json.loads(a.body) == {"active": False} for a in answers if a.status == 200)
    refused = next(a for a in answers if a.status == 429)
    assert int(dict(refused.headers)["retry-after"]) >= 1
    # another caller has its own budget
    other = call.request("/introspect", {"token": "random-x"}, auth=("svc", SECRET))
    assert other.status == 200


def test_active_introspections_are_never_limited(make: Callable[..., Issuer]) -> None:
    """A resource server asking about live tokens is not limited, however often it asks."""
    issuer = make(lookup_max_misses=3)
    call = Caller(issuer, address="198.51.100.61")
    token = json.loads(call.token(CC).body)["access_token"]
    for _ in range(50):
        assert call.introspect(token, auth=("rs", "rs-secret"))["active"] is True


def test_a_slow_judgement_does_not_use_up_the_delay(
    store_kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The delay runs from the failure: a 5 s hash does not eat the 1 s wait after it."""
    clock = FakeClock()
    store = (
        RedisStore(request.getfixturevalue("redis_server").url) if store_kind == "redis" else None
    )
    issuer = build(store, clock, client_max_failures=1)
    real = clients_module.verify_secret

    def slow(stored: str, candidate: str) -> bool:
        clock.now += 5  # the judgement takes 5 s
        return bool(real(stored, candidate))

    monkeypatch.setattr(clients_module, "verify_secret", slow)
    try:
        first = Caller(issuer, address="192.0.2.50").token(CC, auth=("svc", "guess-1"))
        assert first.status == 401
        second = Caller(issuer, address="192.0.2.51").token(CC, auth=("svc", "guess-2"))
        assert second.status == 429
        assert dict(second.headers)["retry-after"] == "1"
    finally:
        issuer.close()
