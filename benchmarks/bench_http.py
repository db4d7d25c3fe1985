"""Per-request cost under real servers, driven by ``wrk`` (or a bounded Python client).

Three phases, each a separate run (``--phase``; ``run.py`` runs all three):

``headline`` (default): every server is started once, **pinned to CPU 0** with ``taskset``:

* ``uvicorn --workers 1 --http httptools --loop uvloop --no-access-log`` serving Starlette
  bare, Starlette behind scopegate's ASGI middleware (+ ``@require_scope``), and the anchor
  Starlette ``AuthenticationMiddleware`` + PyJWT;
* the same uvicorn with ``--http h11 --loop asyncio`` (pure Python parser, stdlib loop)
  serving Starlette bare and Starlette + scopegate;
* ``gunicorn -w 1 -k gthread --threads 8`` serving Flask bare, Flask + scopegate
  (``ScopeGate`` + ``@require_scope``, and the WSGI middleware) and Flask + Authlib
  ``ResourceProtector`` (RFC 9068 validator);
* ``waitress-serve --threads=8`` (the project's own WSGI server) serving Flask bare,
  Flask + scopegate and Flask + Authlib;
* the Node anchor of the performance spec: express 5 + express-oauth2-jwt-bearer 1.10
  (``benchmarks/node/``, installed with ``npm ci`` on first use; skipped with a note when
  node/npm are missing or the install fails), bare and protected.

``matrix``: the token-size matrix under uvicorn (httptools + uvloop): tokens with 5 / 100 /
500 scopes and tokens padded to about 1 / 4 / 7 KB, each as a repeated token and as unique
tokens (3000 per variant, served by an app whose verified-token cache holds 1000, so the
strided tokens always miss), against bare Starlette in the same rounds; beside them the
in-process cost of one verification of each token (no server).

``profile``: ``py-spy record --nonblocking -f raw`` on the uvicorn process while it serves
bare Starlette, scopegate with a repeated token and scopegate with unique tokens; the
stacks become a breakdown by component (see ``_pyspy.py``), in % and in µs per request
(share x the server CPU per request of the same run). The scopegate server of this phase
also counts CPython GC collections and their CPU time (``gc.callbacks``, read on
``GET /__gc``).

The load generator is pinned to CPU 1: ``wrk -t2 -c64 -d<D>s --latency`` with a Lua script
that sends either the same token on every request or a new one per request (pre-minted
tokens, strided per wrk thread so no token repeats within the cache's window). Each
config gets a warm-up, then all configs of the phase run round-robin for a few rounds,
the order reversed every other round; ratios are computed per round. The server's CPU
time (user+sys of its process tree, from ``/proc``) is sampled around every run. Before
any load, each config is checked: a token-less and a tampered request to a protected
route are refused, a good one is accepted. Only ``127.0.0.1`` is ever targeted and every
run is bounded in time.

Usage::

    .venv/bin/python benchmarks/bench_http.py [--phase headline|matrix|profile]
        [--rounds 5] [--duration 5] [--warmup 2] [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _fixtures
import _harness
import _pyspy
import httpx

TITLES = {
    "headline": "Throughput under real servers (req/s)",
    "matrix": "Token-size matrix under uvicorn (server CPU per request)",
    "profile": "Where the time goes under load (py-spy on uvicorn)",
}
TITLE = TITLES["headline"]
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
NODE_DIR = HERE / "node"
CLK_TCK = os.sysconf("SC_CLK_TCK")
DEFAULT_TOKENS = "default"
GC_PATH = "/__gc"  # _apps.GC_PATH (not imported: _apps pulls in the frameworks)
MATRIX_CACHE_SIZE = 1000

#: key -> (figure, group, goal): "A ÷ B ≥ goal" of req/s per round (and of CPU/request).
GOALS: dict[str, tuple[str, str, float]] = {
    "uvicorn repeated": (
        "uvicorn (httptools + uvloop): protected ÷ bare Starlette, repeated token",
        "issue 18",
        0.85,
    ),
    "uvicorn unique": (
        "uvicorn (httptools + uvloop): protected ÷ bare Starlette, a new token on every request",
        "issue 18",
        0.45,
    ),
    "h11 repeated": (
        "uvicorn (asyncio + h11): protected ÷ bare Starlette, repeated token",
        "issue 18",
        0.92,
    ),
    "h11 unique": (
        "uvicorn (asyncio + h11): protected ÷ bare Starlette, a new token on every request",
        "issue 18",
        0.6,
    ),
    "node repeated": (
        "scopegate (uvicorn + Starlette) ÷ express + express-oauth2-jwt-bearer (Node), "
        "repeated token",
        "issue 18",
        4.0,
    ),
    "node unique": (
        "scopegate (uvicorn + Starlette) ÷ express + express-oauth2-jwt-bearer (Node), "
        "a new token on every request",
        "issue 18",
        2.5,
    ),
    "flask vs authlib": (
        "gunicorn: Flask + scopegate ÷ Flask + Authlib ResourceProtector",
        "issue 6",
        1.5,
    ),
    "flask vs authlib waitress": (
        "waitress: Flask + scopegate ÷ Flask + Authlib ResourceProtector",
        "issue 6",
        1.5,
    ),
}

_REPEATED_LUA = """
function init(args)
  local f = assert(io.open(args[1], "r"))
  wrk.headers["Authorization"] = "Bearer " .. f:read("*l")
  f:close()
end
"""

# Each wrk thread takes every n-th token starting at its own offset, so the two threads
# never send the same token close together (that would be a cache hit, not a miss).
_UNIQUE_LUA = """
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local requests = {}
local i = 0
function init(args)
  -- Pre-format this thread's share of the requests: formatting per request in Lua would
  -- make wrk, not the server, the bottleneck.
  local step = tonumber(args[2])
  local n = 0
  for line in io.lines(args[1]) do
    if #line > 0 then
      if n % step == tid then
        requests[#requests + 1] = wrk.format(nil, nil, {["Authorization"] = "Bearer " .. line})
      end
      n = n + 1
    end
  end
end
function request()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
"""


@dataclass(frozen=True)
class Server:
    """A server process definition.

    ``kind`` is ``uvicorn``, ``gunicorn``, ``waitress`` or ``node``; ``factory`` names the
    app factory in ``_apps`` (for ``node``: ``protected`` or ``bare``); ``http``/``loop``
    are uvicorn's settings; ``env`` is added to the process environment.
    """

    name: str
    kind: str
    factory: str
    http: str = "httptools"
    loop: str = "uvloop"
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Config:
    """One load configuration: a server, a path, the token mode and the token set."""

    name: str
    server: str
    path: str
    mode: str  # "repeated" | "unique"
    protected: bool
    tokens: str = DEFAULT_TOKENS  # or a _fixtures.VARIANTS id


H11 = {"http": "h11", "loop": "asyncio"}
SERVERS = (
    Server("uvicorn starlette bare", "uvicorn", "starlette_bare_app"),
    Server("uvicorn starlette scopegate", "uvicorn", "starlette_scopegate_app"),
    Server("uvicorn starlette AuthMW(PyJWT)", "uvicorn", "starlette_authmw_app"),
    Server("uvicorn h11+asyncio starlette bare", "uvicorn", "starlette_bare_app", **H11),
    Server("uvicorn h11+asyncio starlette scopegate", "uvicorn", "starlette_scopegate_app", **H11),
    Server("node express bare", "node", "bare"),
    Server("node express oauth2-jwt-bearer", "node", "protected"),
    Server("gunicorn flask bare", "gunicorn", "flask_bare_app"),
    Server("gunicorn flask scopegate", "gunicorn", "flask_scopegate_app"),
    Server("gunicorn flask scopegate-mw", "gunicorn", "flask_scopegate_mw_app"),
    Server("gunicorn flask Authlib RP", "gunicorn", "flask_authlib_app"),
    Server("waitress flask bare", "waitress", "flask_bare_app"),
    Server("waitress flask scopegate", "waitress", "flask_scopegate_app"),
    Server("waitress flask Authlib RP", "waitress", "flask_authlib_app"),
    Server(
        "uvicorn starlette scopegate (cache 1000)",
        "uvicorn",
        "starlette_scopegate_sized_app",
        env=(("SCOPEGATE_BENCH_CACHE_SIZE", str(MATRIX_CACHE_SIZE)),),
    ),
    Server("uvicorn starlette scopegate (GC counters)", "uvicorn", "starlette_scopegate_gc_app"),
    # The same app, its start-up heap moved out of the collector's way with gc.freeze():
    # what the GC strategy in docs/scaling.md recommends, measured beside the default.
    Server(
        "uvicorn starlette scopegate (GC counters, gc.freeze)",
        "uvicorn",
        "starlette_scopegate_gc_app",
        env=(("SCOPEGATE_BENCH_GC_FREEZE", "1"),),
    ),
)

UVI_BARE = "uvicorn starlette bare"
UVI_REPEATED = "uvicorn starlette + scopegate, repeated token"
UVI_UNIQUE = "uvicorn starlette + scopegate, unique token"
H11_BARE = "uvicorn h11+asyncio starlette bare"
H11_REPEATED = "uvicorn h11+asyncio starlette + scopegate, repeated token"
H11_UNIQUE = "uvicorn h11+asyncio starlette + scopegate, unique token"
NODE_BARE = "node express bare"
NODE_REPEATED = "node express + oauth2-jwt-bearer, repeated token"
NODE_UNIQUE = "node express + oauth2-jwt-bearer, unique token"

CONFIGS = (
    # Bare servers serve /protected unprotected: same route and handler as the protected
    # twin, so the ratio isolates the authentication layer.
    Config(UVI_BARE, "uvicorn starlette bare", "/protected", "repeated", False),
    Config(UVI_REPEATED, "uvicorn starlette scopegate", "/protected", "repeated", True),
    Config(UVI_UNIQUE, "uvicorn starlette scopegate", "/protected", "unique", True),
    Config(
        "uvicorn starlette + AuthMW(PyJWT) [anchor], repeated token",
        "uvicorn starlette AuthMW(PyJWT)",
        "/protected",
        "repeated",
        True,
    ),
    Config(H11_BARE, "uvicorn h11+asyncio starlette bare", "/protected", "repeated", False),
    Config(H11_REPEATED, "uvicorn h11+asyncio starlette scopegate", "/protected", "repeated", True),
    Config(H11_UNIQUE, "uvicorn h11+asyncio starlette scopegate", "/protected", "unique", True),
    Config(NODE_BARE, "node express bare", "/protected", "repeated", False),
    Config(NODE_REPEATED, "node express oauth2-jwt-bearer", "/protected", "repeated", True),
    Config(NODE_UNIQUE, "node express oauth2-jwt-bearer", "/protected", "unique", True),
    Config("gunicorn flask bare", "gunicorn flask bare", "/protected", "repeated", False),
    Config(
        "gunicorn flask + scopegate, repeated token",
        "gunicorn flask scopegate",
        "/protected",
        "repeated",
        True,
    ),
    Config(
        "gunicorn flask + scopegate, unique token",
        "gunicorn flask scopegate",
        "/protected",
        "unique",
        True,
    ),
    Config(
        "gunicorn flask + scopegate WSGI middleware, repeated token",
        "gunicorn flask scopegate-mw",
        "/protected",
        "repeated",
        True,
    ),
    Config(
        "gunicorn flask + Authlib RP, repeated token",
        "gunicorn flask Authlib RP",
        "/protected",
        "repeated",
        True,
    ),
    # The project's own WSGI server (examples/serve.py, tests/servers.py).
    Config("waitress flask bare", "waitress flask bare", "/protected", "repeated", False),
    Config(
        "waitress flask + scopegate, repeated token",
        "waitress flask scopegate",
        "/protected",
        "repeated",
        True,
    ),
    Config(
        "waitress flask + Authlib RP, repeated token",
        "waitress flask Authlib RP",
        "/protected",
        "repeated",
        True,
    ),
)

#: (A, B, goal key or None): A ÷ B of req/s per round (and B ÷ A of CPU per request).
PAIRS = (
    (UVI_REPEATED, UVI_BARE, "uvicorn repeated"),
    (UVI_UNIQUE, UVI_BARE, "uvicorn unique"),
    ("uvicorn starlette + AuthMW(PyJWT) [anchor], repeated token", UVI_BARE, None),
    (H11_REPEATED, H11_BARE, "h11 repeated"),
    (H11_UNIQUE, H11_BARE, "h11 unique"),
    (H11_BARE, UVI_BARE, None),
    (UVI_REPEATED, NODE_REPEATED, "node repeated"),
    (UVI_UNIQUE, NODE_UNIQUE, "node unique"),
    (NODE_REPEATED, NODE_BARE, None),
    (NODE_BARE, UVI_BARE, None),
    (
        "gunicorn flask + scopegate, repeated token",
        "gunicorn flask + Authlib RP, repeated token",
        "flask vs authlib",
    ),
    (
        "gunicorn flask + scopegate, unique token",
        "gunicorn flask + Authlib RP, repeated token",
        None,
    ),
    (
        "gunicorn flask + scopegate WSGI middleware, repeated token",
        "gunicorn flask + Authlib RP, repeated token",
        None,
    ),
    ("gunicorn flask + scopegate, repeated token", "gunicorn flask bare", None),
    ("gunicorn flask + Authlib RP, repeated token", "gunicorn flask bare", None),
    (
        "waitress flask + scopegate, repeated token",
        "waitress flask + Authlib RP, repeated token",
        "flask vs authlib waitress",
    ),
    ("waitress flask + scopegate, repeated token", "waitress flask bare", None),
    ("waitress flask + Authlib RP, repeated token", "waitress flask bare", None),
)

MATRIX_SERVER = "uvicorn starlette scopegate (cache 1000)"


def matrix_name(variant: _fixtures.Variant, mode: str) -> str:
    return f"uvicorn starlette + scopegate, {variant.label}, {mode} token" + (
        "s" if mode == "unique" else ""
    )


def matrix_configs(variants: Sequence[_fixtures.Variant]) -> list[Config]:
    """Bare Starlette, then each variant with a repeated token and with unique tokens."""
    out = [Config(UVI_BARE, "uvicorn starlette bare", "/protected", "repeated", False)]
    for v in variants:
        for mode in ("repeated", "unique"):
            out.append(Config(matrix_name(v, mode), MATRIX_SERVER, "/protected", mode, True, v.id))
    return out


PROFILE_SERVER = "uvicorn starlette scopegate (GC counters)"
PROFILE_SERVER_FROZEN = "uvicorn starlette scopegate (GC counters, gc.freeze)"
PROFILE_RUNS = {
    # column label -> config
    "bare": Config(UVI_BARE, "uvicorn starlette bare", "/protected", "repeated", False),
    "repeated token": Config(
        "uvicorn starlette + scopegate (GC counters), repeated token",
        PROFILE_SERVER,
        "/protected",
        "repeated",
        True,
    ),
    "unique tokens": Config(
        "uvicorn starlette + scopegate (GC counters), unique token",
        PROFILE_SERVER,
        "/protected",
        "unique",
        True,
    ),
    "unique, gc.freeze()": Config(
        "uvicorn starlette + scopegate (GC counters, gc.freeze), unique token",
        PROFILE_SERVER_FROZEN,
        "/protected",
        "unique",
        True,
    ),
}


@dataclass
class Sample:
    """One load run."""

    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    non2xx: int
    errors: int


@dataclass
class Result:
    config: str
    samples: list[Sample] = field(default_factory=list)


# --- processes ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _taskset(cpu: int | None) -> list[str]:
    if cpu is None or shutil.which("taskset") is None or (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


def _importable(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _uvicorn_settings(server: Server) -> tuple[str, str]:
    """The --http/--loop uvicorn really gets (uvloop/httptools only when installed)."""
    http = server.http if server.http != "httptools" or _importable("httptools") else "h11"
    loop = server.loop if server.loop != "uvloop" or _importable("uvloop") else "asyncio"
    return http, loop


def server_description(servers: Sequence[Server] = SERVERS) -> str:
    """The server settings actually used (they depend on what is installed)."""
    parts: list[str] = []
    for http, loop in sorted({_uvicorn_settings(s) for s in servers if s.kind == "uvicorn"}):
        parts.append(f"uvicorn --workers 1 --http {http} --loop {loop} --no-access-log")
    kinds = {s.kind for s in servers}
    if "gunicorn" in kinds:
        gunicorn = "" if (BIN / "gunicorn").exists() else " (not installed: its configs skipped)"
        parts.append(f"gunicorn -w 1 -k gthread --threads 8{gunicorn}")
    if "waitress" in kinds:
        parts.append("waitress-serve --threads=8")
    if "node" in kinds:
        parts.append(f"node {node_version()} benchmarks/node/server.js (NODE_ENV=production)")
    return "; ".join(parts)


def server_command(server: Server, port: int) -> list[str]:
    if server.kind == "uvicorn":
        http, loop = _uvicorn_settings(server)
        return [
            str(BIN / "uvicorn"),
            "--app-dir",
            str(HERE),
            "--factory",
            f"_apps:{server.factory}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--no-access-log",
            "--http",
            http,
            "--loop",
            loop,
            "--log-level",
            "warning",
        ]
    if server.kind == "waitress":
        # waitress imports the factory from benchmarks/ (PYTHONPATH set by start_server).
        return [
            str(BIN / "waitress-serve"),
            f"--listen=127.0.0.1:{port}",
            "--threads=8",
            "--call",
            f"_apps:{server.factory}",
        ]
    if server.kind == "node":
        node = shutil.which("node") or "node"
        return [node, str(NODE_DIR / "server.js"), str(port)] + (
            ["bare"] if server.factory == "bare" else []
        )
    return [
        str(BIN / "gunicorn"),
        "--chdir",
        str(HERE),
        "-w",
        "1",
        "-k",
        "gthread",
        "--threads",
        "8",
        "-b",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        f"_apps:{server.factory}()",
    ]


@contextmanager
def start_server(
    server: Server, material: _fixtures.Material, cpu: int | None
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start *server* pinned to *cpu*; yields the process and its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "SCOPEGATE_BENCH_DIR": str(material.root),
        "PYTHONWARNINGS": "ignore",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "NODE_ENV": "production",
        **dict(server.env),
    }
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*_taskset(cpu), *server_command(server, port)], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    output = log.read().decode(errors="replace")
                    raise RuntimeError(f"{server.name} exited: {output}")
                try:
                    httpx.get(url + "/bare", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            yield proc, url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _descendants(pid: int) -> list[int]:
    out = [pid]
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            out += _descendants(int(child))
    return out


def cpu_seconds(pid: int) -> float:
    """user+sys CPU time of *pid* (all its threads) and all its descendants."""
    total = 0
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


# --- the Node anchor ------------------------------------------------------------------


def node_version() -> str:
    node = shutil.which("node")
    if not node:
        return "-"
    out = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def _pinned() -> dict[str, str]:
    deps = json.loads((NODE_DIR / "package.json").read_text()).get("dependencies", {})
    return {str(k): str(v) for k, v in deps.items()}


def _installed(name: str) -> str | None:
    try:
        data = json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())
    except (OSError, ValueError):
        return None
    return str(data.get("version"))


def ensure_node(timeout: float = 300) -> tuple[bool, str]:
    """Install the Node anchor's pinned packages when needed; (ready, note).

    ``npm ci`` (the committed lock file) into ``benchmarks/node/node_modules`` (git-ignored),
    skipped when the pinned versions are already there.
    """
    if not shutil.which("node"):
        return False, "node is not installed: the Node anchor was skipped"
    pinned = _pinned()
    if all(_installed(name) == version for name, version in pinned.items()):
        return True, "node_modules already installed"
    npm = shutil.which("npm")
    if not npm:
        return False, "npm is not installed: the Node anchor was skipped"
    lock = (NODE_DIR / "package-lock.json").exists()
    cmd = [npm, "ci" if lock else "install", "--no-audit", "--no-fund", "--omit=dev"]
    try:
        proc = subprocess.run(
            cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return False, f"`{' '.join(cmd[:2])}` timed out after {timeout:.0f}s: Node anchor skipped"
    if proc.returncode != 0 or not all(
        _installed(name) == version for name, version in pinned.items()
    ):
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])[:300]
        return False, f"`npm {cmd[1]}` failed ({tail}): the Node anchor was skipped"
    return True, f"installed with `npm {cmd[1]}`"


def node_versions() -> dict[str, str]:
    out = {"node": node_version()}
    for name in _pinned():
        out[name] = _installed(name) or "-"
    return out


# --- load generation ------------------------------------------------------------------


def _duration_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        return float("nan")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(out: str) -> tuple[float, float, float, int, int, int]:
    """req/s, p50 ms, p99 ms, non-2xx count, socket errors, total requests."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errs = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return (
        rps,
        _duration_ms(p50.group(1)) if p50 else float("nan"),
        _duration_ms(p99.group(1)) if p99 else float("nan"),
        int(non2xx.group(1)) if non2xx else 0,
        sum(int(g) for g in errs.groups()) if errs else 0,
        total,
    )


class Load:
    """Runs bounded load against 127.0.0.1 with wrk, or a Python client without wrk.

    Token sets: ``default`` (the bench token, and the 25 000 unique tokens) and any
    matrix variant added with :meth:`add_tokens` (one file with the repeated token, one
    with the unique tokens).
    """

    def __init__(
        self,
        workdir: Path,
        material: _fixtures.Material,
        *,
        threads: int,
        connections: int,
        cpu: int | None,
        unique: int,
        use_wrk: bool = True,
    ) -> None:
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.threads, self.connections, self.cpu = threads, connections, cpu
        token_file = workdir / "token.txt"
        token_file.write_text(material.tokens["RS256"] + "\n")
        token_file.chmod(0o600)
        self.files: dict[str, tuple[Path, Path]] = {
            DEFAULT_TOKENS: (token_file, material.unique_path)
        }
        self.limits: dict[str, int] = {DEFAULT_TOKENS: unique}
        self._lists: dict[str, list[str]] = {}
        self.repeated_lua = workdir / "repeated.lua"
        self.repeated_lua.write_text(_REPEATED_LUA)
        self.unique_lua = workdir / "unique.lua"
        self.unique_lua.write_text(_UNIQUE_LUA)

    def add_tokens(self, name: str, repeated: Path, unique: Path, count: int) -> None:
        self.files[name] = (repeated, unique)
        self.limits[name] = count

    def token(self, name: str = DEFAULT_TOKENS) -> str:
        """The repeated token of a token set."""
        return self.files[name][0].read_text().split()[0]

    def unique_tokens(self, name: str) -> list[str]:
        if name not in self._lists:
            tokens = self.files[name][1].read_text().split()
            self._lists[name] = tokens[: self.limits[name]] if self.limits[name] else tokens
        return self._lists[name]

    @property
    def description(self) -> str:
        if self.wrk:
            version = subprocess.run(
                [self.wrk, "-v"], capture_output=True, text=True, check=False
            ).stdout.splitlines()
            head = version[0] if version else "wrk"
            return (
                f"{head}; wrk -t{self.threads} -c{self.connections} --latency"
                f"{' pinned to CPU ' + str(self.cpu) if _taskset(self.cpu) else ''}"
            )
        return f"Python threaded client ({self.connections} connections), wrk not installed"

    def run(
        self, url: str, mode: str, duration: float, tokens: str = DEFAULT_TOKENS
    ) -> tuple[float, float, float, int, int, int]:
        if not url.startswith("http://127.0.0.1:"):
            raise ValueError("load is only ever sent to 127.0.0.1")
        if self.wrk:
            repeated, unique = self.files[tokens]
            script, args = (
                (self.repeated_lua, [str(repeated)])
                if mode == "repeated"
                else (self.unique_lua, [str(unique), str(self.threads)])
            )
            cmd = [
                *_taskset(self.cpu),
                self.wrk,
                f"-t{self.threads}",
                f"-c{self.connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "--timeout",
                "5s",
                "-s",
                str(script),
                url,
                "--",
                *args,
            ]
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=duration + 60, check=True
            )
            return parse_wrk(proc.stdout)
        return self._python_load(url, mode, duration, tokens)

    def _python_load(
        self, url: str, mode: str, duration: float, tokens_name: str
    ) -> tuple[float, float, float, int, int, int]:
        """A bounded fallback: N threads with keep-alive clients, fixed duration."""
        workers = min(self.connections, 16)
        latencies: list[float] = []
        counts = {"ok": 0, "bad": 0, "err": 0}
        lock = threading.Lock()
        window = {"start": 0.0, "deadline": 0.0}
        token = self.token(tokens_name)
        tokens = self.unique_tokens(tokens_name) if mode == "unique" else [token]

        def open_window() -> None:
            # Clients are built before the clock starts: creating them is not load.
            window["start"] = time.monotonic()
            window["deadline"] = window["start"] + duration

        barrier = threading.Barrier(workers, action=open_window)

        def worker(offset: int) -> None:
            i = offset
            local: list[float] = []
            ok = bad = err = 0
            with httpx.Client(timeout=5) as client:
                barrier.wait(timeout=60)
                while time.monotonic() < window["deadline"]:
                    tok = tokens[i % len(tokens)]
                    i += workers
                    t0 = time.perf_counter()
                    try:
                        r = client.get(url, headers={"Authorization": f"Bearer {tok}"})
                    except httpx.HTTPError:
                        err += 1
                        continue
                    local.append((time.perf_counter() - t0) * 1e3)
                    if r.status_code < 400:
                        ok += 1
                    else:
                        bad += 1
            with lock:
                latencies.extend(local)
                counts["ok"] += ok
                counts["bad"] += bad
                counts["err"] += err

        pool = [threading.Thread(target=worker, args=(k,)) for k in range(workers)]
        for t in pool:
            t.start()
        for t in pool:
            t.join(duration + 90)
        elapsed = max(time.monotonic() - window["start"], 1e-9)
        total = counts["ok"] + counts["bad"]
        latencies.sort()

        def pct(q: float) -> float:
            if not latencies:
                return float("nan")
            return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

        return total / elapsed, pct(0.5), pct(0.99), counts["bad"], counts["err"], total


# --- the run ------------------------------------------------------------------------


def check_server(config: Config, url: str, token: str) -> None:
    """Protected routes refuse a missing or tampered token and accept the good one."""
    with httpx.Client(timeout=10) as client:
        ok = client.get(url + config.path, headers={"Authorization": f"Bearer {token}"})
        if ok.status_code != 200:
            raise AssertionError(f"{config.name}: valid token got {ok.status_code}")
        if config.protected:
            none = client.get(url + config.path)
            bad = client.get(url + config.path, headers={"Authorization": f"Bearer {token}x"})
            if none.status_code not in (401, 403) or bad.status_code not in (400, 401, 403):
                raise AssertionError(
                    f"{config.name}: no token {none.status_code}, bad token {bad.status_code}"
                )


def available(server: Server, node_ready: bool = False) -> bool:
    """False when the server binary or the scopegate modules an app needs are missing."""
    if server.kind == "node":
        return node_ready
    binary = {"uvicorn": "uvicorn", "gunicorn": "gunicorn", "waitress": "waitress-serve"}
    if not (BIN / binary[server.kind]).exists():
        return False
    needed: tuple[str, ...] = ()
    if server.factory.startswith("starlette_scopegate"):
        needed = ("scopegate._jwt", "scopegate.asgi")
    elif server.factory == "flask_scopegate_app":
        needed = ("scopegate._jwt", "scopegate.integrations.flask")
    elif server.factory == "flask_scopegate_mw_app":
        needed = ("scopegate._jwt", "scopegate.wsgi")
    return all(_importable(module) for module in needed)


def _select(
    configs: Sequence[Config], only: Sequence[str], node_ready: bool
) -> tuple[list[Config], list[Server]]:
    by_name = {s.name: s for s in SERVERS}
    ready = {s.name for s in SERVERS if available(s, node_ready)}
    chosen = [
        c for c in configs if c.server in ready and (not only or any(o in c.name for o in only))
    ]
    needed = {c.server for c in chosen}
    return chosen, [by_name[n] for n in dict.fromkeys(c.server for c in chosen) if n in needed]


def run(
    material: _fixtures.Material,
    *,
    rounds: int,
    duration: float,
    warmup: float,
    only: Sequence[str] = (),
    pin: bool = True,
    threads: int = 2,
    connections: int = 64,
    use_wrk: bool = True,
    unique: int = _fixtures.UNIQUE_TOKENS,
    configs: Sequence[Config] = CONFIGS,
    node_ready: bool = False,
    variants: dict[str, tuple[Path, Path, int]] | None = None,
) -> tuple[dict[str, Result], str, list[Server]]:
    """Start every server, check and warm each config up, then run the interleaved rounds."""
    chosen, servers = _select(configs, only, node_ready)
    cpu_server, cpu_load = (0, 1) if pin else (None, None)
    results = {c.name: Result(c.name) for c in chosen}
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        load = Load(
            Path(tmp),
            material,
            threads=threads,
            connections=connections,
            cpu=cpu_load,
            unique=unique,
            use_wrk=use_wrk,
        )
        for name, (rep, uni, count) in (variants or {}).items():
            load.add_tokens(name, rep, uni, count)
        urls: dict[str, tuple[subprocess.Popen[bytes], str]] = {}
        for server in servers:
            urls[server.name] = stack.enter_context(start_server(server, material, cpu_server))
        for config in chosen:
            check_server(config, urls[config.server][1], load.token(config.tokens))
            if warmup > 0:
                load.run(urls[config.server][1] + config.path, config.mode, warmup, config.tokens)
        for r in range(rounds):
            order = chosen if r % 2 == 0 else list(reversed(chosen))
            for config in order:
                proc, url = urls[config.server]
                cpu0 = cpu_seconds(proc.pid)
                rps, p50, p99, non2xx, errors, total = load.run(
                    url + config.path, config.mode, duration, config.tokens
                )
                cpu = cpu_seconds(proc.pid) - cpu0
                results[config.name].samples.append(
                    Sample(rps, p50, p99, cpu / max(total, 1) * 1e6, non2xx, errors)
                )
                print(
                    f"  round {r + 1}/{rounds} {config.name}: {rps:.0f} req/s",
                    file=sys.stderr,
                    flush=True,
                )
        return results, load.description, servers


# --- reports --------------------------------------------------------------------------


def _per_round(results: dict[str, Result], a: str, b: str) -> tuple[dict[str, float], ...]:
    """(A÷B of req/s, B÷A of CPU per request), per round, summarised."""
    pairs = list(zip(results[a].samples, results[b].samples, strict=True))
    rps = [x.rps / y.rps for x, y in pairs if y.rps > 0] or [float("nan")]
    cpu = [y.cpu_us / x.cpu_us for x, y in pairs if x.cpu_us > 0] or [float("nan")]
    return _harness.summary(rps), _harness.summary(cpu)


def goal_target(key: str, rps: dict[str, float], cpu: dict[str, float]) -> dict[str, Any]:
    """One goal row: the req/s ratio judged against the goal, the CPU ratio beside it."""
    figure, group, goal = GOALS[key]
    return {
        "key": key,
        "group": group,
        "figure": figure,
        "value": rps,
        "shown": _harness.fmt_summary(rps, digits=3),
        "target": f"≥ {goal}",
        "met": rps["median"] >= goal,
        "cpu": {
            "value": cpu,
            "shown": _harness.fmt_summary(cpu, digits=3),
            "met": cpu["median"] >= goal,
        },
    }


def config_table(results: dict[str, Result]) -> str:
    rows = []
    for name, res in results.items():
        rps = [s.rps for s in res.samples]
        rows.append(
            [
                name,
                f"**{statistics.median(rps):.0f}** ({min(rps):.0f}-{max(rps):.0f})",
                f"{statistics.median(s.p50_ms for s in res.samples):.2f}",
                f"{statistics.median(s.p99_ms for s in res.samples):.1f}",
                f"{statistics.median(s.cpu_us for s in res.samples):.0f}",
                f"{statistics.median(s.cpu_us * s.rps / 1e6 for s in res.samples):.2f}",
                f"{sum(s.non2xx for s in res.samples)} / {sum(s.errors for s in res.samples)}",
            ]
        )
    return _harness.markdown_table(
        [
            "config",
            "req/s median (min-max)",
            "p50 ms",
            "p99 ms",
            "server CPU µs/req",
            "server cores busy",
            "non-2xx / socket errors",
        ],
        rows,
    )


def report(results: dict[str, Result]) -> dict[str, Any]:
    """Tables (per config and same-run ratios), rows and goal checks (headline phase)."""
    ratio_rows, targets = [], []
    for a, b, key in PAIRS:
        if a not in results or b not in results:
            continue
        rps, cpu = _per_round(results, a, b)
        cpu_a = statistics.median(x.cpu_us for x in results[a].samples)
        cpu_b = statistics.median(x.cpu_us for x in results[b].samples)
        ratio_rows.append(
            [
                a,
                b,
                _harness.fmt_summary(rps),
                _harness.fmt_summary(cpu),
                f"{cpu_a - cpu_b:+.0f}",
            ]
        )
        if key is not None:
            targets.append(goal_target(key, rps, cpu))
    ratios = _harness.markdown_table(
        [
            "A",
            "B",
            "req/s A÷B per round, median (min-max)",
            "CPU/req B÷A per round",
            "CPU µs/req A-B",
        ],
        ratio_rows,
    )
    raw = {name: [s.__dict__ for s in res.samples] for name, res in results.items()}
    return {
        "rows": raw,
        "markdown": config_table(results) + "\n\nSame-run ratios:\n\n" + ratios,
        "targets": targets,
    }


# --- token-size matrix ------------------------------------------------------------------


def inprocess_costs(
    material: _fixtures.Material,
    tokens: dict[str, str],
    *,
    rounds: int,
    target: float,
    quick: bool,
) -> dict[str, dict[str, float]]:
    """Per variant: µs of a raw RS256 signature check, of one uncached verification and of
    a verified-token cache hit (fresh ``str`` sliced from the header), no server; GC off,
    interleaved rounds (:mod:`_harness`)."""
    import bench_verify

    cases: list[_harness.Case] = []
    for vid, token in tokens.items():
        uncached = bench_verify.scopegate_verifier(material, cached=False)
        cached = bench_verify.scopegate_verifier(material, cached=True)
        if uncached is None or cached is None:
            return {}
        got = uncached.verify(token)
        if got.subject != "user-1234" or "items:read" not in got.scopes:
            raise AssertionError(f"{vid}: scopegate returned an unexpected token")
        header = "Bearer " + token
        cached.verify(token)
        raw = bench_verify.raw_verifier("RS256", material.public_key("RS256"), token)
        raw()
        cases += [
            _harness.call_case(f"{vid} · raw", raw, group=vid),
            _harness.call_case(f"{vid} · uncached", lambda v=uncached, t=token: v.verify(t)),
            _harness.call_case(f"{vid} · hit", lambda v=cached, h=header: v.verify(h[7:])),
        ]
    stats = _harness.run_cases(cases, rounds=rounds, target=target, quick=quick, progress=False)
    out: dict[str, dict[str, float]] = {}
    for vid in tokens:
        out[vid] = {kind: stats[f"{vid} · {kind}"].median_us for kind in ("raw", "uncached", "hit")}
    return out


def matrix_report(
    results: dict[str, Result],
    variants: Sequence[_fixtures.Variant],
    sizes: dict[str, int],
    inproc: dict[str, dict[str, float]],
) -> dict[str, Any]:
    """The matrix table: per variant, in-process costs beside the server figures."""

    def cpu(name: str) -> float:
        return statistics.median(s.cpu_us for s in results[name].samples)

    rows: list[list[str]] = []
    data: list[dict[str, Any]] = []
    bare = cpu(UVI_BARE) if UVI_BARE in results else None
    if bare is not None:
        rps = statistics.median(s.rps for s in results[UVI_BARE].samples)
        rows.append(
            [
                "bare Starlette (no check)",
                "-",
                "-",
                "-",
                f"{bare:.0f} ({rps:.0f} req/s)",
                "x1",
                "-",
                "-",
            ]
        )
    for v in variants:
        entry: dict[str, Any] = {"id": v.id, "label": v.label, "bytes": sizes.get(v.id)}
        cells = [f"{v.label} ({sizes.get(v.id, 0)} B)"]
        costs = inproc.get(v.id, {})
        entry["inprocess_us"] = costs
        cells += [f"{costs[k]:.1f}" if k in costs else "-" for k in ("raw", "uncached", "hit")]
        for mode in ("repeated", "unique"):
            name = matrix_name(v, mode)
            if name not in results or bare is None or UVI_BARE not in results:
                cells += ["-", "-"]
                continue
            c = cpu(name)
            rps_ratio, cpu_ratio = _per_round(results, name, UVI_BARE)
            entry[mode] = {
                "cpu_us": c,
                "over_bare_us": c - bare,
                "rps_ratio": rps_ratio,
                "cpu_ratio": cpu_ratio,
            }
            cells += [
                f"{c:.0f} ({c - bare:+.0f})",
                f"x{rps_ratio['median']:.2f} / x{cpu_ratio['median']:.2f}",
            ]
        rows.append(cells)
        data.append(entry)
    table = _harness.markdown_table(
        [
            "token (length)",
            "in-process: RSA signature µs",
            "in-process: verify, uncached µs",
            "in-process: cache hit µs",
            "repeated token: server CPU µs/req (+ over bare)",
            "repeated: ÷ bare (req/s / CPU)",
            "unique tokens: server CPU µs/req (+ over bare)",
            "unique: ÷ bare (req/s / CPU)",
        ],
        rows,
    )
    return {"matrix": data, "markdown": table}


# --- profile under load -----------------------------------------------------------------


def find_pyspy() -> str | None:
    """py-spy from the bench environment (the ``bench`` extra), else from PATH."""
    local = BIN / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Spy(threading.Thread):
    """``py-spy record --nonblocking -f raw`` on *pid* for *seconds*, after *delay*."""

    def __init__(
        self,
        pyspy: str,
        pid: int,
        seconds: int,
        rate: int,
        out: Path,
        delay: float,
        cpu: int | None,
    ) -> None:
        super().__init__(daemon=True)
        self.cmd = [
            *_taskset(cpu),
            pyspy,
            "record",
            "--nonblocking",
            "-f",
            "raw",
            "-r",
            str(rate),
            "-d",
            str(seconds),
            "-p",
            str(pid),
            "-o",
            str(out),
        ]
        self.seconds, self.delay, self.out = seconds, delay, out
        self.error: str | None = None
        self.stderr = ""

    def run(self) -> None:
        time.sleep(self.delay)
        try:
            proc = subprocess.run(
                self.cmd, capture_output=True, text=True, timeout=self.seconds + 30, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.error = f"py-spy could not run: {exc}"
            return
        self.stderr = proc.stdout + proc.stderr
        if proc.returncode != 0 or not self.out.exists():
            tail = " ".join(self.stderr.strip().splitlines()[-2:])[:300]
            self.error = f"py-spy failed (exit {proc.returncode}): {tail}"


def _read_gc(url: str) -> dict[str, Any] | None:
    try:
        data = httpx.get(url + GC_PATH, timeout=10).json()
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _gc_delta(before: dict[str, Any], after: dict[str, Any], requests: int) -> dict[str, Any]:
    collections = [a - b for a, b in zip(after["collections"], before["collections"], strict=True)]
    seconds = [a - b for a, b in zip(after["seconds"], before["seconds"], strict=True)]
    per10k = [c * 10_000 / max(requests, 1) for c in collections]
    return {
        "requests": requests,
        "collections": collections,
        "per_10k_requests": per10k,
        "seconds": seconds,
        "us_per_request": sum(seconds) / max(requests, 1) * 1e6,
        "gen2_mean_ms": seconds[2] / collections[2] * 1e3 if collections[2] else None,
        "gen2_max_ms": after["max_pause_s"][2] * 1e3 if collections[2] else None,
        "threshold": after.get("threshold"),
    }


def profile_phase(
    material: _fixtures.Material,
    *,
    duration: float,
    warmup: float,
    rate: int,
    pin: bool,
    use_wrk: bool,
    unique: int,
    quick: bool,
) -> dict[str, Any]:
    """Profile the uvicorn process under load (bare, repeated token, unique tokens)."""
    import importlib.util

    spec = importlib.util.find_spec("scopegate")
    root = Path(spec.origin).parent.parent if spec and spec.origin else None
    source = _pyspy.source_reader(root)
    pyspy = find_pyspy()
    chosen, servers = _select(list(PROFILE_RUNS.values()), (), False)
    cpu_server, cpu_load = (0, 1) if pin else (None, None)
    lead = min(1.0, duration * 0.2)
    seconds = max(1, int(duration - 2 * lead))
    runs: dict[str, dict[str, Any]] = {}
    gc_runs: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    if pyspy is None:
        notes.append("py-spy is not installed (`pip install -e '.[bench]'`): no stack breakdown.")
    with ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        load = Load(
            Path(tmp),
            material,
            threads=2,
            connections=64,
            cpu=cpu_load,
            unique=unique,
            use_wrk=use_wrk,
        )
        urls = {s.name: stack.enter_context(start_server(s, material, cpu_server)) for s in servers}
        for label, config in PROFILE_RUNS.items():
            if config not in chosen:
                continue
            proc, url = urls[config.server]
            check_server(config, url, load.token())
            # Unique tokens: long enough for the verified-token cache to be full and
            # churning (its steady state), as in the headline unique runs.
            warm = warmup if config.mode == "repeated" or quick else max(warmup, 3.0)
            if warm > 0:
                load.run(url + config.path, config.mode, warm)
            gc_before = (
                _read_gc(url) if config.server in (PROFILE_SERVER, PROFILE_SERVER_FROZEN) else None
            )
            spy = None
            if pyspy is not None:
                spy = Spy(
                    pyspy, proc.pid, seconds, rate, Path(tmp) / f"{label}.txt", lead, cpu_load
                )
                spy.start()
            cpu0 = cpu_seconds(proc.pid)
            rps, _p50, _p99, non2xx, _errors, total = load.run(
                url + config.path, config.mode, duration
            )
            cpu_us = (cpu_seconds(proc.pid) - cpu0) / max(total, 1) * 1e6
            gc_after = _read_gc(url) if gc_before is not None else None
            entry: dict[str, Any] = {"rps": rps, "cpu_us": cpu_us, "requests": total}
            if non2xx:
                notes.append(f"{label}: {non2xx} non-2xx responses during the profiled run")
            if spy is not None:
                spy.join(seconds + 60)
                if spy.error:
                    notes.append(f"{label}: {spy.error}")
                elif spy.out.exists():
                    prof = _pyspy.breakdown(_pyspy.parse_raw(spy.out.read_text()), source)
                    samples, errors = _pyspy.summary_line(spy.stderr)
                    entry.update(
                        shares=prof.shares(),
                        samples=prof.total,
                        errors=errors,
                        reported_samples=samples,
                        others=dict(prof.others.most_common(5)),
                    )
            runs[label] = entry
            if gc_before is not None and gc_after is not None:
                gc_runs[label] = _gc_delta(gc_before, gc_after, total)
            print(f"  profile {label}: {rps:.0f} req/s, {cpu_us:.0f} µs CPU/req", file=sys.stderr)
    tight = _signature_tight_loop(material, quick)
    markdown = profile_markdown(runs, gc_runs)
    if tight is not None and any("shares" in r for r in runs.values()):
        markdown += (
            f"\n\nFor scale: one RS256 signature check of the same token in a tight loop, in "
            f"the benchmark process right after the runs: {tight:.1f} µs (best of 5)."
        )
    return {
        "profile": runs,
        "gc": gc_runs,
        "signature_tight_loop_us": tight,
        "markdown": markdown,
        "notes_extra": notes,
        "pyspy": f"py-spy record --nonblocking -f raw -r {rate} -d {seconds} "
        f"(starting {lead:.0f} s into a {duration:.0f} s wrk run)"
        if pyspy
        else "py-spy not installed",
    }


def _signature_tight_loop(material: _fixtures.Material, quick: bool) -> float | None:
    """µs of one RS256 signature check in a tight loop (best of 5), for scale."""
    try:
        import bench_verify
    except ImportError:  # pragma: no cover
        return None
    fn = bench_verify.raw_verifier("RS256", material.public_key("RS256"), material.tokens["RS256"])
    n = 20 if quick else 2000
    best = float("inf")
    for _ in range(5):
        start = _harness.clock()
        for _ in range(n):
            fn()
        best = min(best, _harness.clock() - start)
    return best / n * 1e6


def profile_markdown(runs: dict[str, dict[str, Any]], gc_runs: dict[str, dict[str, Any]]) -> str:
    """The breakdown table (share and µs/request per run) and the GC table."""
    parts: list[str] = []
    labels = [label for label in PROFILE_RUNS if "shares" in runs.get(label, {})]
    if labels:
        categories: dict[str, float] = {}
        for label in labels:
            for cat, share in runs[label]["shares"].items():
                us = share * runs[label]["cpu_us"]
                categories[cat] = max(categories.get(cat, 0.0), us)
        # Most expensive first, in the most expensive run (the unique tokens).
        order = sorted(
            categories,
            key=lambda c: -(runs[labels[-1]]["shares"].get(c, 0.0) * runs[labels[-1]]["cpu_us"]),
        )
        rows = []
        for cat in order:
            cells = [cat]
            for label in labels:
                share = runs[label]["shares"].get(cat, 0.0)
                cells += [f"{share * 100:.1f}%", f"{share * runs[label]['cpu_us']:.1f}"]
            rows.append(cells)
        rows.append(
            ["**total = server CPU µs/request**"]
            + [c for label in labels for c in ("100%", f"**{runs[label]['cpu_us']:.1f}**")]
        )
        rows.append(
            ["samples (py-spy errors) · req/s during the profile"]
            + [
                c
                for label in labels
                for c in (
                    f"{runs[label]['samples']} ({runs[label].get('errors') or 0})",
                    f"{runs[label]['rps']:.0f} req/s",
                )
            ]
        )
        header = ["component (self time of the innermost frame)"]
        for label in labels:
            header += [f"{label}: share", f"{label}: µs/req"]
        parts.append(_harness.markdown_table(header, rows))
    else:
        parts.append("_No py-spy profile in this run (see the notes)._")
    if gc_runs:
        rows = []
        for label, g in gc_runs.items():
            per = g["per_10k_requests"]
            mean = g["gen2_mean_ms"]
            rows.append(
                [
                    label,
                    f"{g['requests']}",
                    f"{per[0]:.0f} / {per[1]:.1f} / {per[2]:.2f}",
                    f"{g['us_per_request']:.2f}",
                    f"{g['us_per_request'] / runs[label]['cpu_us'] * 100:.1f}%"
                    if runs.get(label, {}).get("cpu_us")
                    else "-",
                    f"{mean:.1f} / {g['gen2_max_ms']:.1f}" if mean is not None else "-",
                ]
            )
        parts.append(
            "CPython GC in the scopegate server during the same runs (`gc.callbacks`, CPU "
            "time of each collection; the max pause is since the server started):\n\n"
            + _harness.markdown_table(
                [
                    "run",
                    "requests",
                    "collections per 10k requests (gen0 / gen1 / gen2)",
                    "GC CPU µs/request",
                    "share of server CPU",
                    "gen2 pause mean / max ms",
                ],
                rows,
            )
        )
    return "\n\n".join(parts)


# --- main -----------------------------------------------------------------------------

#: Per phase: rounds, seconds per run, warm-up seconds per config.
PHASE_DEFAULTS = {"headline": (5, 5.0, 2.0), "matrix": (3, 4.0, 1.0), "profile": (1, 8.0, 2.0)}


def _headline(args: argparse.Namespace, common: dict[str, Any]) -> dict[str, Any]:
    unique = 200 if args.quick else (args.unique or _fixtures.UNIQUE_TOKENS)
    material = _fixtures.load(unique=unique)
    only = common["only"]
    wants_node = not args.no_node and any(
        c.server.startswith("node") for c in _select(CONFIGS, only, True)[0]
    )
    node_ready, node_note = ensure_node() if wants_node else (False, "not requested in this run")
    results, generator, servers = run(
        material, unique=unique, configs=CONFIGS, node_ready=node_ready, **common
    )
    out = report(results)
    if wants_node and not node_ready:
        out["skipped"] = {"node repeated": node_note, "node unique": node_note}
    out["notes_extra"] = [f"Node anchor: {node_note}."] if wants_node else []
    out["generator"], out["servers"] = generator, server_description(servers)
    if node_ready:
        out["versions_extra"] = node_versions()
    return out


def _matrix(args: argparse.Namespace, common: dict[str, Any]) -> dict[str, Any]:
    ids = [v for v in (args.variants or "").split(",") if v] or [v.id for v in _fixtures.VARIANTS]
    variants = [_fixtures.variant(v) for v in ids]
    count = 200 if args.quick else (args.unique or _fixtures.VARIANT_TOKENS)
    material = _fixtures.load(unique=0)
    files: dict[str, tuple[Path, Path, int]] = {}
    tokens: dict[str, str] = {}
    for v in variants:
        repeated, many = _fixtures.variant_files(material, v.id, count)
        files[v.id] = (repeated, many, count)
        tokens[v.id] = repeated.read_text().split()[0]
    sizes = {vid: len(tok) for vid, tok in tokens.items()}
    inproc = inprocess_costs(
        material, tokens, rounds=3 if args.quick else 9, target=0.01, quick=args.quick
    )
    results, generator, servers = run(
        material, unique=0, configs=matrix_configs(variants), variants=files, **common
    )
    out = matrix_report(results, variants, sizes, inproc)
    out["markdown"] += "\n\nPer config:\n\n" + config_table(results)
    out["rows"] = {name: [s.__dict__ for s in res.samples] for name, res in results.items()}
    out["targets"] = []
    miss = (
        f"so the strided unique tokens always miss: each wrk thread cycles its own "
        f"{count // 2} tokens, so a token comes back only after {count // 2 - 1} others"
        if count // 2 > MATRIX_CACHE_SIZE
        else "(too few tokens in this run for every unique request to miss)"
    )
    out["notes_extra"] = [
        f"Each variant: 1 repeated token and {count} unique tokens (one `jti` each), served "
        f"by `_apps:starlette_scopegate_sized_app` with `cache_size={MATRIX_CACHE_SIZE}` "
        f"(`SCOPEGATE_BENCH_CACHE_SIZE`), {miss}. Bare Starlette runs in the same rounds. "
        "In-process columns: no server; one RSA signature check of the token, one "
        "`JWTVerifier(cache_verified=False).verify`, one verified-token cache hit (fresh "
        f"str); {3 if args.quick else 9} interleaved rounds, GC off. "
        "`÷ bare`: req/s ratio per round / CPU-per-request ratio per round (bare ÷ this)."
    ]
    out["generator"], out["servers"] = generator, server_description(servers)
    return out


def _profile(args: argparse.Namespace, common: dict[str, Any]) -> dict[str, Any]:
    unique = 200 if args.quick else (args.unique or _fixtures.UNIQUE_TOKENS)
    material = _fixtures.load(unique=unique)
    out = profile_phase(
        material,
        duration=common["duration"],
        warmup=common["warmup"],
        rate=args.rate,
        pin=common["pin"],
        use_wrk=common["use_wrk"],
        unique=unique,
        quick=args.quick,
    )
    out["rows"], out["targets"] = {}, []
    out["notes_extra"] = [
        f"{out['pyspy']}; the server's CPU per request is measured over the same wrk run, and "
        "µs/req = share x that figure. Self time is charged to the innermost Python frame: C "
        "code counts in the Python line that called it (so the RSA check is the line of "
        "scopegate that calls `cryptography`'s `verify`), and CPython's GC counts in "
        "whichever line allocated when a collection began; the GC table measures it on its "
        "own. Unique tokens cycle through "
        f"{unique} tokens against the default 10 000-entry verified-token cache (always a "
        "miss, cache full and evicting).",
        *out.get("notes_extra", []),
    ]
    out["generator"] = "wrk" if common["use_wrk"] and shutil.which("wrk") else "python client"
    out["servers"] = server_description(
        [s for s in SERVERS if s.name in {c.server for c in PROFILE_RUNS.values()}]
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=tuple(PHASE_DEFAULTS), default="headline")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (headline 5, matrix 3)")
    parser.add_argument("--duration", type=float, help="seconds per load run (5 / 4 / 8)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per config (2 / 1 / 2)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="run configs whose name contains this (repeatable)",
    )
    parser.add_argument("--variants", help="matrix: comma-separated variant ids (default all)")
    parser.add_argument(
        "--unique", type=int, help="unique tokens (headline/profile 25000, matrix 3000/variant)"
    )
    parser.add_argument("--rate", type=int, default=400, help="profile: py-spy samples/s")
    parser.add_argument("--no-node", action="store_true", help="headline: skip the Node anchor")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--json", help="write results here")
    parser.add_argument(
        "--load",
        choices=("wrk", "python"),
        default="wrk",
        help="load generator (python: bounded threaded client)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 1 s")
    args = parser.parse_args(argv)
    rounds, duration, warmup = PHASE_DEFAULTS[args.phase]
    if args.quick:
        rounds, duration, warmup = 1, (2.0 if args.phase == "profile" else 1.0), 0.0
    rounds = args.rounds if args.rounds is not None else rounds
    duration = args.duration if args.duration is not None else duration
    warmup = args.warmup if args.warmup is not None else warmup
    common: dict[str, Any] = {
        "rounds": rounds,
        "duration": duration,
        "warmup": warmup,
        "only": tuple(o for o in args.only if o),
        "pin": not args.no_pin,
        "use_wrk": args.load == "wrk",
    }
    start, load_before = time.monotonic(), _harness.loadavg()
    phase = {"headline": _headline, "matrix": _matrix, "profile": _profile}[args.phase]
    out = phase(args, common)
    title = TITLES[args.phase]
    out["title"] = title
    schedule = (
        f"{rounds} interleaved rounds of {duration:.0f} s after a {warmup:.0f} s warm-up per config"
        if args.phase != "profile"
        else f"one {duration:.0f} s run per config after a {warmup:.0f} s warm-up (3 s for "
        "unique tokens)"
    )
    out["notes"] = " ".join(
        [
            *out.pop("notes_extra", []),
            f"{out.pop('generator')}; {schedule}; servers "
            f"{'pinned to CPU 0' if not args.no_pin and _taskset(0) else 'unpinned'}; "
            f"{out.pop('servers')}; loadavg {load_before} → {_harness.loadavg()}; "
            f"elapsed {time.monotonic() - start:.0f}s",
        ]
    )
    out["versions"] = {
        **_harness.versions(
            "uvicorn",
            "httptools",
            "uvloop",
            "h11",
            "gunicorn",
            "starlette",
            "Flask",
            "Authlib",
            "PyJWT",
            "scopegate",
        ),
        **out.pop("versions_extra", {}),
    }
    print(f"## {title}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out.get("targets", []):
        print(f"- {t['figure']}: {t['shown']} (goal {t['target']})")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
