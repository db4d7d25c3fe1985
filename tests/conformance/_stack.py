"""The real stack the conformance suite runs: the companion issuer and example processes.

Everything here starts real processes on 127.0.0.1: ``python -m scopegate issuer serve``
and ``python examples/serve.py NAME``, exactly as a user would.
"""

from __future__ import annotations

import contextlib
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.servers import ROOT, free_port, run_process

AUDIENCE = "api://conformance"
#: The resource server's own credentials, used only for introspection (RFC 7662 §2.1).
RS_CLIENT = ("rs-conformance", "rs-secret-9f2c1d7e5b3a")
#: A service client allowed every scope of the examples.
SERVICE_CLIENT = ("svc-conformance", "svc-secret-4b8e2a6c1f0d")

#: Examples served over ASGI (they also answer the ``/ws`` websocket route).
ASGI_EXAMPLES = ("asgi", "starlette", "fastapi")
WSGI_EXAMPLES = ("wsgi", "flask", "django")
EXAMPLES = ASGI_EXAMPLES + WSGI_EXAMPLES

#: The companion issuer's token formats: RFC 9068 JWTs, and opaque tokens (RFC 7662).
MODES = ("jwt", "opaque")

#: Token sets fetched once per issuer: name -> requested scope.
TOKEN_SCOPES = {
    "read": "items:read",
    "write": "items:write",
    "admin": "admin",
    "read_admin": "items:read admin",
    "all": "items:read items:write admin",
}


def issuer_config(token_format: str) -> str:
    """The TOML configuration of the companion issuer for one token format."""
    rs_id, rs_secret = RS_CLIENT
    svc_id, svc_secret = SERVICE_CLIENT
    return f"""
audience = "{AUDIENCE}"
token_format = "{token_format}"
access_token_ttl = 600

[[clients]]
id = "{svc_id}"
secret = "{svc_secret}"
grant_types = ["client_credentials"]
scopes = ["items:read", "items:write", "admin"]

[[clients]]
id = "{rs_id}"
secret = "{rs_secret}"
grant_types = ["client_credentials"]
scopes = []
introspect = true
"""


@dataclass
class Issuer:
    """A running companion issuer and the tokens it issued for the suite."""

    url: str
    token_format: str
    metadata: dict[str, object]
    tokens: dict[str, str] = field(default_factory=dict)

    def resource_server_env(self) -> dict[str, str]:
        """The SCOPEGATE_* environment an example needs to trust this issuer."""
        env = {"SCOPEGATE_ISSUER": self.url, "SCOPEGATE_AUDIENCE": AUDIENCE}
        if self.token_format == "opaque":
            env["SCOPEGATE_INTROSPECTION_URI"] = str(self.metadata["introspection_endpoint"])
            env["SCOPEGATE_INTROSPECTION_CLIENT_ID"] = RS_CLIENT[0]
            env["SCOPEGATE_INTROSPECTION_CLIENT_SECRET"] = RS_CLIENT[1]
        return env


def fetch_token(issuer: Issuer, scope: str) -> str:
    """A client_credentials access token for *scope* from the service client."""
    response = httpx.post(
        str(issuer.metadata["token_endpoint"]),
        data={"grant_type": "client_credentials", "scope": scope},
        auth=SERVICE_CLIENT,
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


@contextlib.contextmanager
def run_issuer(token_format: str, workdir: Path) -> Iterator[Issuer]:
    """Start ``scopegate issuer serve`` in *token_format* and fetch the suite's tokens."""
    config = workdir / f"issuer-{token_format}.toml"
    config.write_text(issuer_config(token_format))
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "scopegate",
        "issuer",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with run_process(args, port, ready_path="/.well-known/oauth-authorization-server"):
        url = f"http://127.0.0.1:{port}"
        metadata = httpx.get(f"{url}/.well-known/oauth-authorization-server", timeout=10).json()
        issuer = Issuer(url=str(metadata["issuer"]), token_format=token_format, metadata=metadata)
        for name, scope in TOKEN_SCOPES.items():
            issuer.tokens[name] = fetch_token(issuer, scope)
        yield issuer


@contextlib.contextmanager
def run_example(
    name: str,
    issuer: Issuer | None,
    *,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[str]:
    """Start ``examples/serve.py NAME`` against *issuer*, with *env* on top (or instead,
    without an issuer); yields its base URL. Give *port* when the environment must name
    the example's own URL (``SCOPEGATE_RESOURCE``)."""
    port = port or free_port()
    args = [sys.executable, str(ROOT / "examples" / "serve.py"), name, "--port", str(port)]
    full_env = {**(issuer.resource_server_env() if issuer else {}), **(env or {})}
    with run_process(args, port, env=full_env, ready_path="/public"):
        yield f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class RawResponse:
    """Status line, headers and body of a response read off a raw socket."""

    status: int
    headers: dict[str, str]
    body: bytes


def raw_request(
    base_url: str, method: str, target: str, headers: dict[str, str] | None = None
) -> RawResponse:
    """Send *target* byte for byte (no client-side path normalisation) and read the answer.

    httpx resolves ``..`` segments before sending, which would hide exactly the path
    tricks the suite must check; a raw HTTP/1.1 request keeps them.
    """
    url = httpx.URL(base_url)
    host, port = str(url.host), int(url.port or 80)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    chunks: list[bytes] = []
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    if parsed.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return RawResponse(int(status_line.split()[1]), parsed, body)


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return bytes(out)


class Issuers:
    """Starts each issuer mode on first use and stops them all at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.stack = contextlib.ExitStack()
        self.running: dict[str, Issuer] = {}

    def get(self, mode: str) -> Issuer:
        if mode not in self.running:
            self.running[mode] = self.stack.enter_context(run_issuer(mode, self.workdir))
        return self.running[mode]
