"""Every example answers a 100 KB request header with an HTTP status, never a reset.

Each example runs as ``examples/serve.py NAME`` (uvicorn for the ASGI ones, waitress for
the WSGI ones); the head is sent over a raw socket, in one write and in 4 KiB pieces
(the way a slow client or a real network delivers it).
"""

from __future__ import annotations

import contextlib
import re
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from tests.servers import free_port, run_process

ASGI = ["asgi", "starlette", "fastapi"]
EXAMPLES = [*ASGI, "wsgi", "flask", "django"]
STATUS_LINE = re.compile(rb"HTTP/1\.[01] (431|400) ")
HEADER = b"X-Padding: " + b"a" * 100_000 + b"\r\n"


@pytest.fixture(scope="module", params=EXAMPLES)
def example(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """The example (name, port) served by examples/serve.py on a free port."""
    port = free_port()
    env = {
        "SCOPEGATE_ISSUER": "https://issuer.example",
        "SCOPEGATE_AUDIENCE": "api://items",
        # Never fetched: no request here reaches token verification.
        "SCOPEGATE_JWKS_URI": "https://issuer.example/jwks.json",
    }
    args = [sys.executable, "examples/serve.py", request.param, "--port", str(port)]
    with run_process(args, port, env=env, ready_path="/public"):
        yield request.param, port


def send_head(port: int, piece: int) -> tuple[bytes, str | None]:
    """Send a GET /public with the 100 KB header in writes of *piece* bytes; return the
    start of the answer and the error the writes met, if any."""
    head = b"GET /public HTTP/1.1\r\nHost: 127.0.0.1\r\n" + HEADER + b"\r\n"
    answer, error = b"", None
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            for start in range(0, len(head), piece):
                sock.sendall(head[start : start + piece])
                if piece < len(head):
                    time.sleep(0.001)
        except OSError as exc:  # the server stopped reading: its answer may still be there
            error = type(exc).__name__
        with contextlib.suppress(OSError):
            while b"\r\n" not in answer:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
    return answer, error


@pytest.mark.parametrize(
    "piece", [pytest.param(1 << 20, id="one-write"), pytest.param(4096, id="4kib-pieces")]
)
def test_oversized_header_gets_a_status(example: tuple[str, int], piece: int) -> None:
    """A 100 KB header is refused with 431 (or 400), and the client reads the answer.

    uvicorn (ASGI examples) drains what the client still sends after refusing, so even a
    client still writing its head meets no error. waitress closes at once: such a client
    may see its write fail, but the answer is delivered first."""
    name, port = example
    for _ in range(3):  # the reset this guards against depended on timing
        answer, error = send_head(port, piece)
        # waitress answers before it knows the request's version: HTTP/1.0.
        assert STATUS_LINE.match(answer), (error, answer[:200])
        if name in ASGI:
            assert error is None, error
