"""Issue 14 against the real ``scopegate issuer serve`` process (and redis-server):
concurrent guesses, mistyped settings, redirects, introspection scanning, Redis outages
and the command line's ordinary mistakes."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from scopegate._errors import ConfigurationError
from scopegate.issuer import load_config
from tests.servers import RedisServer, free_port, run_process

WELL_KNOWN = "/.well-known/oauth-authorization-server"
PASSWORD = "alice-password-for-cli"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``python -m scopegate ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "scopegate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def serve_args(config: Path, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "scopegate",
        "issuer",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        *extra,
    ]


def write(tmp_path: Path, extra: str = "", clients: str = "") -> Path:
    """A TOML config: password grant on, a client, a resource server and alice."""
    config = tmp_path / "issuer.toml"
    config.write_text(
        f"""
audience = "api://demo"
allow_password_grant = true
{extra}

[[clients]]
id = "app"
secret = "app-secret-value"
grant_types = ["client_credentials", "password", "refresh_token"]
scopes = ["items:read"]

[[clients]]
id = "rs"
secret = "rs-secret-value"
grant_types = []
introspect = true
{clients}

[[users]]
username = "alice"
password = "{PASSWORD}"
scopes = ["items:read"]
"""
    )
    return config


@contextlib.contextmanager
def issuer_process(config: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    with run_process(serve_args(config, port), port, ready_path=WELL_KNOWN) as proc:
        yield f"http://127.0.0.1:{port}", proc


def parallel(n: int, send: Callable[[httpx.Client, int], httpx.Response]) -> list[httpx.Response]:
    """*n* requests at once, each from its own thread and connection."""
    barrier = threading.Barrier(n)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            response = send(http, index)
            with lock:
                answers.append(response)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return answers


# -- finding 1 through the real process --------------------------------------------------


def test_cli_process_concurrent_wrong_passwords_from_one_address(tmp_path: Path) -> None:
    """address_max_failures=3, argon2 hashing: 12 wrong passwords at once -> 3 x 400, 9 x 429."""
    config = write(tmp_path, "address_max_failures = 3\nuser_max_failures = 100")
    with issuer_process(config) as (base, _):
        answers = parallel(
            12,
            lambda http, i: http.post(
                f"{base}/token",
                data={"grant_type": "password", "username": "alice", "password": f"guess-{i}"},
                auth=("app", "app-secret-value"),
            ),
        )
    seen = Counter(a.status_code for a in answers)
    assert seen == {400: 3, 429: 9}, seen
    assert all(a.headers["retry-after"].isdigit() for a in answers if a.status_code == 429)


# -- finding 2 through the real process --------------------------------------------------


def test_cli_refuses_string_insecure_dev_mode(tmp_path: Path) -> None:
    """insecure_dev_mode = "false" with a plain-http issuer: exit 2, the file and line named."""
    config = write(tmp_path, 'issuer = "http://auth.example"\ninsecure_dev_mode = "false"')
    result = cli("issuer", "serve", "--config", str(config), "--port", str(free_port()), timeout=30)
    assert result.returncode == 2
    assert f"{config}:5:" in result.stderr
    assert "insecure_dev_mode" in result.stderr
    assert "Traceback" not in result.stderr


# -- finding 5 through the real process ------------------------------------------------


def test_cli_process_never_redirects(tmp_path: Path) -> None:
    """The served CLI process answers 404 to /token/ (the finding's setting)."""
    with issuer_process(write(tmp_path)) as (base, _):
        response = httpx.post(
            f"{base}/token/",
            data={"grant_type": "client_credentials"},
            auth=("app", "app-secret-value"),
            headers={"host": "evil.example"},
        )
    assert response.status_code == 404
    assert "location" not in response.headers


# -- finding 6 through the real process --------------------------------------------------


def test_cli_process_limits_introspection_misses(tmp_path: Path) -> None:
    """lookup_max_misses = 100: 150 random tokens -> 100 answered, then 429 + Retry-After."""
    with (
        issuer_process(write(tmp_path, "lookup_max_misses = 100")) as (base, _),
        httpx.Client(base_url=base, auth=("rs", "rs-secret-value")) as http,
    ):
        answers = [http.post("/introspect", data={"token": f"t-{i}"}) for i in range(150)]
        token = httpx.post(
            f"{base}/token",
            data={"grant_type": "client_credentials"},
            auth=("app", "app-secret-value"),
        ).json()["access_token"]
        blocked = http.post("/introspect", data={"token": token})
    assert [a.status_code for a in answers] == [200] * 100 + [429] * 50
    assert answers[-1].headers["retry-after"].isdigit()
    assert blocked.status_code == 429  # the budget is per caller, whatever it asks next


# -- finding 7: Redis unreachable ----------------------------------------------------------


def test_cli_fails_fast_when_redis_is_unreachable(tmp_path: Path) -> None:
    """Unreachable redis_url: a non-zero exit and one clear line, never the password."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = write(tmp_path, f'redis_url = "redis://:hunter2-pw@127.0.0.1:{port}/0"')
    started = time.monotonic()
    result = cli("issuer", "serve", "--config", str(config), "--port", str(free_port()), timeout=30)
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    assert "hunter2" not in output
    lines = [line for line in result.stderr.splitlines() if "Redis" in line]
    assert len(lines) == 1, result.stderr
    assert f"127.0.0.1:{port}" in lines[0]
    assert "listening" not in output


@pytest.mark.redis
def test_cli_redis_outage_logs_one_line_per_failure(tmp_path: Path) -> None:
    """Redis stopped at run time: 503 + Retry-After, one log line each, no traceback."""
    redis_server = RedisServer()
    redis_server.start()
    try:
        config = write(tmp_path, f'redis_url = "{redis_server.url}"')
        with issuer_process(config) as (base, proc):
            assert (
                httpx.post(
                    f"{base}/token",
                    data={"grant_type": "client_credentials"},
                    auth=("app", "app-secret-value"),
                ).status_code
                == 200
            )
            redis_server.stop()
            for _ in range(3):
                response = httpx.post(
                    f"{base}/token",
                    data={"grant_type": "client_credentials"},
                    auth=("app", "app-secret-value"),
                )
                assert response.status_code == 503
                assert response.json()["error"] == "temporarily_unavailable"
                assert response.headers["retry-after"].isdigit()
            proc.terminate()
            proc.wait(15)
            output = proc.stdout.read().decode() if proc.stdout else ""
    finally:
        redis_server.stop()
    assert "Traceback" not in output
    failures = [line for line in output.splitlines() if "unavailable" in line]
    assert len(failures) == 3, output


# -- finding 8: the CLI's ordinary mistakes ------------------------------------------------


def test_keys_generate_creates_missing_directories(tmp_path: Path) -> None:
    """keys generate --out into a missing directory creates it (0700) and writes the key (0600)."""
    out = tmp_path / "new" / "keys" / "issuer.pem"
    result = cli("keys", "generate", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o600
    assert out.parent.stat().st_mode & 0o777 == 0o700
    assert "Traceback" not in result.stderr


def test_keys_generate_unwritable_target_is_a_clear_error(tmp_path: Path) -> None:
    """--out naming a directory (or below a file): exit 2 and one line, no traceback."""
    (tmp_path / "file").write_text("x")
    for target in (tmp_path, tmp_path / "file" / "k.pem"):
        result = cli("keys", "generate", "--out", str(target))
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "scopegate keys generate:" in result.stderr


@pytest.mark.parametrize("port", ["99999", "-1", "http"])
def test_serve_port_is_validated(tmp_path: Path, port: str) -> None:
    """--port outside 0..65535 is a usage error (exit 2), not an OverflowError."""
    result = cli("issuer", "serve", "--config", str(write(tmp_path)), "--port", port)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "port" in result.stderr


def test_serve_port_in_use(tmp_path: Path) -> None:
    """A port already in use: a clear message and a non-zero exit, before 'listening'."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("issuer", "serve", "--config", str(write(tmp_path)), "--port", str(port))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output
    assert "listening" not in output
    assert "in use" in result.stderr
    assert str(port) in result.stderr


def test_missing_config_file_says_so(tmp_path: Path) -> None:
    """A missing configuration file is named as not found."""
    result = cli("issuer", "serve", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "not found" in result.stderr
    assert "nope.toml" in result.stderr


def test_bad_toml_says_where(tmp_path: Path) -> None:
    """A TOML syntax error gives tomllib's line and column."""
    config = tmp_path / "issuer.toml"
    config.write_text('audience = "api://demo"\n\n[[clients]\nid = "x"\n')
    result = cli("issuer", "serve", "--config", str(config))
    assert result.returncode == 2
    assert "TOML" in result.stderr
    assert "line 3" in result.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_config_says_permission(tmp_path: Path) -> None:
    """An unreadable configuration file is named as a permission problem."""
    config = write(tmp_path)
    config.chmod(0)
    result = cli("issuer", "serve", "--config", str(config))
    assert result.returncode == 2
    assert "permission" in result.stderr.lower()


def test_password_grant_warning_printed_once(tmp_path: Path) -> None:
    """The RFC 9700 warning appears once in the CLI output, not twice."""
    with issuer_process(write(tmp_path)) as (_, proc):
        proc.terminate()
        proc.wait(15)
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert output.count("RFC 9700") == 1, output


def test_unreadable_config_message_names_permission(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A permission error reading the file says so (checked in process: root reads anything)."""
    config = write(tmp_path)

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigurationError, match="permission denied"):
        load_config(config)
