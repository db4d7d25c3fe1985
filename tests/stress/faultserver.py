"""A misbehaving authorization server, run as a real process for fault injection.

``python -m tests.stress.faultserver --port P`` serves JSON documents (discovery,
JWKS) by path and answers RFC 7662 introspection at ``POST /introspect`` from a token
table. ``POST /_control`` switches the failure mode at run time; ``GET /_stats`` counts
hits per path; ``GET /_health`` always answers (readiness). Stdlib only, so it starts
in a blink and shares no code with what it tests.

Modes: ``ok``; ``slow`` (sleep ``delay`` s, then answer); ``error`` (500); ``garbage``
(200 with non-JSON, wrong types or a wrong content type, rotating); ``redirect`` (302
to another host); ``huge`` (a 4 MiB JSON body); ``drip`` (headers, then one byte every
0.2 s for ``delay`` s); ``flap`` (alternately ok and 500); ``reset`` (close the
connection without answering).
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

GARBAGE: list[tuple[str, bytes]] = [
    ("application/json", b"<html><body>captive portal</body></html>"),
    ("application/json", b"[1, 2, 3]"),
    ("application/json", b'"just a string"'),
    ("text/html", b'{"keys": [], "active": true}'),
    ("application/json", b'{"keys": "nope", "active": "true"}'),
    ("application/json", b"\xff\xfe\x00garbage"),
    ("application/json", b'{"active": true, "scope": ["admin"]}'),
    ("application/json", b"[" * 5000),
    ("application/json", b""),
]


class State:
    """Shared, lock-protected server state."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay = 0.0
        self.documents: dict[str, Any] = {}
        self.tokens: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        self.flap = itertools.count()
        self.garbage = itertools.count()


STATE = State()


class Handler(BaseHTTPRequestHandler):
    """Serves documents and introspection according to the current mode."""

    server_version = "faultserver"

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the test output is what matters."""

    def _json(self, status: int, payload: Any, content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        """Serve a control read or a document."""
        if self.path == "/_health":
            self._json(200, {"ok": True})
        elif self.path == "/_stats":
            with STATE.lock:
                self._json(200, {"hits": dict(STATE.hits), "mode": STATE.mode})
        else:
            self._serve(None)

    def do_POST(self) -> None:
        """Serve a control write or introspection."""
        body = self._body()
        if self.path == "/_control":
            update = json.loads(body)
            with STATE.lock:
                STATE.mode = update.get("mode", STATE.mode)
                STATE.delay = float(update.get("delay", STATE.delay))
                STATE.documents.update(update.get("documents", {}))
                STATE.tokens.update(update.get("tokens", {}))
                if update.get("reset_stats"):
                    STATE.hits.clear()
            self._json(200, {"ok": True})
        else:
            self._serve(body)

    def _serve(self, body: bytes | None) -> None:
        path = self.path.split("?", 1)[0]
        with STATE.lock:
            STATE.hits[path] = STATE.hits.get(path, 0) + 1
            mode, delay = STATE.mode, STATE.delay
            flap_ok = next(STATE.flap) % 2 == 0
            garbage = GARBAGE[next(STATE.garbage) % len(GARBAGE)]
        if mode == "slow":
            time.sleep(delay)
        if mode == "error" or (mode == "flap" and not flap_ok):
            self._json(500, b"internal error", "text/plain")
        elif mode == "garbage":
            self._json(200, garbage[1], garbage[0])
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("location", "http://127.0.0.1:9/stolen" + path)
            self.send_header("content-length", "0")
            self.end_headers()
        elif mode == "huge":
            pad = b"x" * (4 << 20)
            self._json(200, b'{"keys": [], "active": true, "pad": "' + pad + b'"}')
        elif mode == "drip":
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", "100000")
            self.end_headers()
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
        elif mode == "reset":
            self.close_connection = True
            self.connection.close()
        else:
            self._ok(path, body)

    def _ok(self, path: str, body: bytes | None) -> None:
        if body is not None and path == "/introspect":
            form = parse_qs(body.decode("utf-8", "replace"))
            token = (form.get("token") or [""])[0]
            with STATE.lock:
                answer = STATE.tokens.get(token, {"active": False})
            self._json(200, answer)
            return
        with STATE.lock:
            document = STATE.documents.get(path)
        if document is None:
            self._json(404, {"error": "not_found"})
        else:
            self._json(200, document)


class Server(ThreadingHTTPServer):
    """Threaded server with a real listen backlog (the stdlib default of 5 drops SYNs
    under concurrent load, which would look like a 1 s network stall)."""

    request_queue_size = 256
    daemon_threads = True


def main() -> None:
    """Parse ``--port`` and serve until terminated."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = Server(("127.0.0.1", args.port), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
