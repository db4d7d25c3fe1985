"""Restartable server processes for fault injection (same port across restarts)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from tests.servers import ROOT, free_port

PYTHON = sys.executable


class Proc:
    """A server process on a fixed 127.0.0.1 port that can be stopped and started again.

    Args:
        args: The command line; ``{port}`` in an argument is replaced by the port.
        env: Extra environment variables.
        ready_path: A path that answers once the server is up.
    """

    def __init__(
        self, args: list[str], *, env: dict[str, str] | None = None, ready_path: str = "/"
    ) -> None:
        self.port = free_port()
        self.args = [a.replace("{port}", str(self.port)) for a in args]
        self.env = {**os.environ, **(env or {})}
        self.ready_path = ready_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(f"/tmp/scopegate-stress-{self.port}.log")

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and wait until ``ready_path`` answers."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.args} exited with {self.proc.returncode}:\n{self.output()}"
                )
            try:
                httpx.get(self.url + self.ready_path, timeout=0.5)
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s)."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port."""
        self.stop()
        self.start()

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_kib(self) -> int:
        """Resident set size of the process, in KiB (Linux /proc)."""
        assert self.proc is not None
        return rss_kib(self.proc.pid)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class FaultServer(Proc):
    """The misbehaving authorization server of :mod:`tests.stress.faultserver`."""

    def __init__(self) -> None:
        super().__init__(
            [PYTHON, "-m", "tests.stress.faultserver", "--port", "{port}"], ready_path="/_health"
        )

    def control(self, **update: Any) -> None:
        """Change mode / delay / documents / tokens (see the module docstring)."""
        httpx.post(self.url + "/_control", json=update, timeout=5).raise_for_status()

    def hits(self, path: str) -> int:
        """How many times *path* was requested."""
        stats = httpx.get(self.url + "/_stats", timeout=5).json()
        return int(stats["hits"].get(path, 0))


#: Failure modes of the fault server, as test parameters (``down`` stops the process).
ASYNC_FAULTS = ("down", "slow", "garbage", "redirect")
FAULTS = [
    pytest.param("down", id="down"),
    pytest.param("slow", id="slow"),
    pytest.param("drip", id="drip"),
    pytest.param("error", id="http-500"),
    pytest.param("garbage", id="garbage"),
    pytest.param("redirect", id="redirect"),
    pytest.param("huge", id="huge-body"),
    pytest.param("reset", id="connection-reset"),
]


def inject(server: FaultServer, fault: str) -> None:
    """Put the server into *fault* (stopping the process for ``down``)."""
    if fault == "down":
        server.stop()
    else:
        server.control(mode=fault, delay=3.0 if fault == "slow" else 4.0)
