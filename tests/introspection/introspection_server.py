"""A real RFC 7662 introspection endpoint on 127.0.0.1 that counts calls and misbehaves on demand.

Stdlib only (``http.server`` in a thread), so it shares no code with what it tests.
``POST /introspect`` checks the resource server's client authentication (Basic with
form-urlencoded id and secret, RFC 6749 §2.3.1, or form fields), counts the call and
answers from ``tokens`` (unknown tokens are ``{"active": false}``) unless a
:class:`Reply` is registered for the token in ``replies`` (any malformed answer, a
status, a delay, a redirect, a huge body, a dropped connection). The server can be
stopped and restarted on the same port to play an outage. It also serves RFC 8414
metadata for discovery tests.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote_plus

from tests.servers import free_port, wait_for_port

CLIENT_ID = "api:resource server"
# Characters that must be form-urlencoded inside Basic (RFC 6749 §2.3.1).
CLIENT_SECRET = "s3cr&t=+/:é"


@dataclass
class Reply:
    """A scripted answer to one token's introspection."""

    status: int = 200
    body: bytes = b'{"active": true}'
    content_type: str | None = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    delay: float = 0.0
    drop: bool = False
    pad_bytes: int = 0

    @classmethod
    def json(cls, obj: Any, **kwargs: Any) -> Reply:
        """A reply whose body is *obj* as JSON."""
        return cls(body=json.dumps(obj).encode(), **kwargs)


@dataclass
class Recorded:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    form: dict[str, list[str]]


@dataclass
class IntrospectionServer:
    """The server; use as a context manager or call start()/stop()."""

    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[str, Reply] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    delay: float = 0.0
    port: int = field(default_factory=free_port)
    calls: int = 0
    calls_by_token: Counter[str] = field(default_factory=Counter)
    hits: Counter[str] = field(default_factory=Counter)
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + "/introspect"

    def start(self) -> None:
        server = self
        handler = type("Handler", (_Handler,), {"owner": server})
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        httpd.block_on_close = False  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> IntrospectionServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, path: str, headers: dict[str, str], form: dict[str, list[str]]) -> None:
        with self._lock:
            self.hits[path] += 1
            self.requests.append(Recorded(path, headers, form))
            if path == "/introspect":
                self.calls += 1
                self.calls_by_token[form.get("token", [""])[0]] += 1


class _Handler(BaseHTTPRequestHandler):
    owner: IntrospectionServer
    protocol_version = "HTTP/1.1"
    # Headers and body leave in one segment: no Nagle / delayed-ACK stall on keep-alive.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows failures, not access logs."""

    def do_GET(self) -> None:
        server = self.owner
        server.record(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
        if self.path == "/.well-known/oauth-authorization-server" and server.metadata is not None:
            self._send(200, json.dumps(server.metadata).encode(), "application/json")
        else:
            self._send(404, b"{}", "application/json")

    def do_POST(self) -> None:
        server = self.owner
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length).decode()
        form = parse_qs(raw, keep_blank_values=True)
        server.record(self.path, {k.lower(): v for k, v in self.headers.items()}, form)
        if self.path != "/introspect":
            self._send(404, b"{}", "application/json")
            return
        if not self._authenticated(form):
            self._send(401, b'{"error":"invalid_client"}', "application/json")
            return
        token = form.get("token", [""])[0]
        reply = server.replies.get(token)
        if server.delay:
            time.sleep(server.delay)
        if reply is None:
            body = json.dumps(server.tokens.get(token, {"active": False})).encode()
            self._send(200, body, "application/json")
            return
        if reply.delay:
            time.sleep(reply.delay)
        if reply.drop:
            # Close without any answer: a crashed or reset upstream.
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if reply.pad_bytes:
            self._send_padded(reply)
            return
        self._send(reply.status, reply.body, reply.content_type, reply.headers)

    def _authenticated(self, form: dict[str, list[str]]) -> bool:
        server = self.owner
        header = self.headers.get("authorization", "")
        if header.startswith("Basic "):
            decoded = base64.b64decode(header[6:]).decode()
            cid, _, secret = decoded.partition(":")
            return (unquote_plus(cid), unquote_plus(secret)) == (
                server.client_id,
                server.client_secret,
            )
        return form.get("client_id") == [server.client_id] and form.get("client_secret") == [
            server.client_secret
        ]

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str | None,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        try:
            self.send_response(status)
            if content_type is not None:
                self.send_header("Content-Type", content_type)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up first (a timeout test): nothing left to answer.
            self.close_connection = True

    def _send_padded(self, reply: Reply) -> None:
        # A valid-looking JSON object made huge with a padding member.
        head, tail = b'{"active": true, "pad": "', b'"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(head) + reply.pad_bytes + len(tail)))
        self.end_headers()
        try:
            self.wfile.write(head)
            chunk = b"x" * 65536
            left = reply.pad_bytes
            while left > 0:
                self.wfile.write(chunk[: min(left, len(chunk))])
                left -= len(chunk)
            self.wfile.write(tail)
        except OSError:
            # The client hung up once it had read enough to refuse the body.
            self.close_connection = True
