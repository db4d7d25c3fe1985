"""Concurrent brute force against real issuer processes: never more guesses judged than allowed.

Forty guessers fire at once (threads, one connection each) at one ``scopegate issuer
serve`` process with its state in memory, and at two processes sharing a real
``redis-server``, half of the guessers on each. The processes run through
:mod:`tests.stress.counting_issuer`, which counts every guess whose hash is really
verified. For each counter (a username, a client id, the client address) the number of
judged guesses must equal the configured limit exactly, however the requests interleave,
and the answers must match (``invalid_grant`` for a user, 401 then 429 for a client or an
address). Argon2id hashes make each judgement slow (tens of milliseconds), so the
guesses really are in flight together.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from scopegate.issuer import hash_secret
from tests.stress.figures import note, record
from tests.stress.procs import PYTHON, Proc

GUESSERS = 40
LIMIT = 5
ROUNDS = 3
APP = ("app", "app-secret-for-bruteforce")
PASSWORD = "the-right-password"
VICTIM_SECRET = "the-right-client-secret"

PROCESSES = [
    pytest.param(1, id="one-process-memory"),
    pytest.param(2, id="two-processes-redis", marks=pytest.mark.redis),
]


def write_config(directory: Path, redis_url: str | None, **limits: int) -> Path:
    """An issuer config: app, victim clients (argon2id secrets), users, the given limits."""
    settings = "\n".join(f"{name} = {value}" for name, value in limits.items())
    victim_hash = hash_secret(VICTIM_SECRET)
    victims = "\n".join(
        f'[[clients]]\nid = "victim-{n}"\nsecret = "{victim_hash}"\nscopes = ["items:read"]\n'
        for n in range(ROUNDS)
    )
    users = "\n".join(
        f'[[users]]\nusername = "user-{n}"\npassword = "{PASSWORD}"\nscopes = ["items:read"]\n'
        for n in range(ROUNDS)
    )
    key = directory / "issuer.pem"
    if not key.exists():
        from scopegate.issuer import SigningKey

        key.write_bytes(SigningKey.generate("ES256").private_pem())
    config = directory / "issuer.toml"
    config.write_text(
        f"""
audience = "api://bruteforce"
allow_password_grant = true
signing_key = "issuer.pem"
{f'redis_url = "{redis_url}"' if redis_url else ""}
{settings}

[[clients]]
id = "{APP[0]}"
secret = "{APP[1]}"
grant_types = ["password", "client_credentials"]
scopes = ["items:read"]

{victims}
{users}
"""
    )
    return config


@contextmanager
def issuers(config: Path, count_file: Path, processes: int) -> Iterator[list[str]]:
    """*processes* counting issuer processes on *config*; yields their base URLs."""
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                Proc(
                    [
                        PYTHON,
                        "-m",
                        "tests.stress.counting_issuer",
                        "issuer",
                        "serve",
                        "--config",
                        str(config),
                        "--port",
                        "{port}",
                        "--log-level",
                        "error",
                    ],
                    env={"SCOPEGATE_COUNT_FILE": str(count_file)},
                    ready_path="/.well-known/oauth-authorization-server",
                )
            )
            for _ in range(processes)
        ]
        yield [proc.url for proc in procs]


def storm(
    urls: list[str], send: Callable[[httpx.Client, str, int], httpx.Response]
) -> list[httpx.Response]:
    """GUESSERS requests released at once, spread over *urls*."""
    barrier = threading.Barrier(GUESSERS)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def guesser(n: int) -> None:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            response = send(http, urls[n % len(urls)], n)
            with lock:
                answers.append(response)

    threads = [threading.Thread(target=guesser, args=(n,)) for n in range(GUESSERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == GUESSERS
    return answers


def judged(count_file: Path, label: str, marker: str) -> int:
    """Guesses really verified for *label* ("user"/"client") in the round *marker*."""
    if not count_file.exists():
        return 0
    lines = count_file.read_text().splitlines()
    return sum(1 for line in lines if line.startswith(f"{label} guess-{marker}-"))


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, processes: int) -> str | None:
    """A real redis-server for the two-process runs; none for one process."""
    if processes == 1:
        return None
    return str(request.getfixturevalue("redis_server").url)


@pytest.mark.parametrize("processes", PROCESSES)
def test_user_and_client_guesses_never_outrun_their_limits(
    tmp_path: Path, processes: int, redis_url: str | None
) -> None:
    """40 guesses at once per user and per client id: exactly 5 judged, every time."""
    config = write_config(
        tmp_path,
        redis_url,
        user_max_failures=LIMIT,
        client_max_failures=LIMIT,
        address_max_failures=1000,
    )
    count_file = tmp_path / "judged.log"
    with issuers(config, count_file, processes) as urls:
        for n in range(ROUNDS):
            username, marker = f"user-{n}", f"u{n}"
            answers = storm(
                urls,
                lambda http, url, i, u=username, m=marker: http.post(  # type: ignore[misc]
                    f"{url}/token",
                    data={"grant_type": "password", "username": u, "password": f"guess-{m}-{i}"},
                    auth=APP,
                ),
            )
            assert Counter(a.status_code for a in answers) == {400: GUESSERS}
            assert {a.json()["error"] for a in answers} == {"invalid_grant"}
            assert judged(count_file, "user", marker) == LIMIT
            right = httpx.post(
                f"{urls[-1]}/token",
                data={"grant_type": "password", "username": username, "password": PASSWORD},
                auth=APP,
            )
            assert right.status_code == 400  # locked: even the right password waits
            record(f"user guesses at once, {LIMIT} judged ({processes} process(es))", GUESSERS)

        for n in range(ROUNDS):
            victim, marker = f"victim-{n}", f"c{n}"
            answers = storm(
                urls,
                lambda http, url, i, v=victim, m=marker: http.post(  # type: ignore[misc]
                    f"{url}/token",
                    data={"grant_type": "client_credentials"},
                    auth=(v, f"guess-{m}-{i}"),
                ),
            )
            seen = Counter(a.status_code for a in answers)
            assert seen == {401: LIMIT, 429: GUESSERS - LIMIT}, seen
            assert judged(count_file, "client", marker) == LIMIT
            assert all(a.headers["retry-after"].isdigit() for a in answers if a.status_code == 429)
            right = httpx.post(
                f"{urls[0]}/token",
                data={"grant_type": "client_credentials"},
                auth=(victim, VICTIM_SECRET),
            )
            assert right.status_code == 429  # the right secret waits out the delay too
            record(
                f"client-secret guesses at once, {LIMIT} judged ({processes} process(es))", GUESSERS
            )
    note(
        f"brute force ({processes} process(es)): {ROUNDS}x{GUESSERS} password and "
        f"{ROUNDS}x{GUESSERS} client-secret guesses at once, {LIMIT} judged per round"
    )


@pytest.mark.parametrize("processes", PROCESSES)
def test_address_guesses_never_outrun_the_limit(
    tmp_path: Path, processes: int, redis_url: str | None
) -> None:
    """40 wrong passwords at once from one address: exactly 5 judged (400), 35 x 429."""
    config = write_config(
        tmp_path,
        redis_url,
        address_max_failures=LIMIT,
        user_max_failures=1000,
        client_max_failures=1000,
    )
    count_file = tmp_path / "judged.log"
    with issuers(config, count_file, processes) as urls:
        answers = storm(
            urls,
            lambda http, url, i: http.post(
                f"{url}/token",
                data={"grant_type": "password", "username": "user-0", "password": f"guess-a-{i}"},
                auth=APP,
            ),
        )
        seen = Counter(a.status_code for a in answers)
        assert seen == {400: LIMIT, 429: GUESSERS - LIMIT}, seen
        assert judged(count_file, "user", "a") == LIMIT
    record(f"address guesses at once, {LIMIT} judged ({processes} process(es))", GUESSERS)
