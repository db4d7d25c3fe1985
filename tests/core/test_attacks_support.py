"""Shared helpers for the transport-attack tests: a fake verifier, the two protected
test apps (plain ASGI and plain WSGI) and in-process / raw-socket request helpers."""

from __future__ import annotations

import asyncio
import io
import json
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pytest

from scopegate._context import current_token
from scopegate._errors import BearerError, InvalidTokenError
from scopegate._scopes import require_any_scope, require_scope
from scopegate._token import AccessToken
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware


def make_token(raw: str, *scopes: str, sub: str = "alice") -> AccessToken:
    """An AccessToken as a verifier would return it."""
    return AccessToken(
        subject=sub,
        client_id="svc-a",
        scopes=frozenset(scopes),
        expires_at=None,
        claims={"sub": sub, "scope": " ".join(scopes)},
        issuer="https://issuer.test",
        token=raw,
    )


GOOD = "read-token"
TOKENS: dict[str, AccessToken] = {
    t.token: t
    for t in (
        make_token(GOOD, "items:read"),
        make_token("admin-token", "items:read", "admin"),
        make_token("write-token", "items:write"),
        make_token("readonly-token", "readonly", "read:all", "items:readonly"),
        make_token("upper-token", "ITEMS:READ"),
        make_token("noscope-token"),
        make_token("a-token", "a"),
        make_token("b64+/~chars==", "items:read"),
        make_token("long-scoped-token-xyz", "items:read"),
    )
}


class FakeVerifier:
    """Accepts the tokens in TOKENS; raises *error* (or InvalidTokenError) otherwise."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls: list[str] = []

    def verify(self, token: str) -> AccessToken:
        self.calls.append(token)
        if self.error is not None:
            raise self.error
        try:
            return TOKENS[token]
        except KeyError:
            raise InvalidTokenError(reason="unknown") from None

    async def averify(self, token: str) -> AccessToken:
        return self.verify(token)


# --------------------------------------------------------------------------- the apps


def _me_body() -> dict[str, Any]:
    token = current_token()
    if token is None:
        return {"anonymous": True}
    return {"sub": token.subject, "client_id": token.client_id, "scopes": sorted(token.scopes)}


@require_scope("items:read")
def _items() -> list[dict[str, Any]]:
    return [{"id": 1}]


@require_scope("items:read", "admin")
def _admin() -> dict[str, Any]:
    return {"admin": True}


@require_any_scope("a", "items:read")
def _any() -> dict[str, Any]:
    return {"any": True}


def _route(method: str, path: str, body: bytes) -> tuple[int, Any]:
    if path == "/public":
        return 200, {"ok": True}
    if path == "/me":
        return 200, _me_body()
    if path == "/items":
        return 200, _items()
    if path == "/admin":
        return 200, _admin()
    if path == "/any":
        return 200, _any()
    if path == "/echo":
        return 200, {"body": body.decode("latin-1"), "method": method}
    return 404, {"error": "not_found"}


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await _ws_app(scope, receive, send)
        return
    body = b""
    if scope["method"] in ("POST", "PUT"):
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
    status, data = _route(scope["method"], scope["path"], body)
    payload = json.dumps(data).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": payload})


@require_scope("items:read")
async def _ws_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    message = await receive()
    assert message["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", "text": message.get("text") or ""})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    status, data = _route(environ["REQUEST_METHOD"], environ["PATH_INFO"], body)
    payload = json.dumps(data).encode()
    start_response(f"{status} X", [("Content-Type", "application/json")])
    return [payload]


def asgi_app(verifier: Any = None, **options: Any) -> ASGIMiddleware:
    """The ASGI test app behind the middleware; /public is excluded."""
    options.setdefault("exclude_paths", ["/public"])
    return ASGIMiddleware(_asgi_app, verifier=verifier or FakeVerifier(), **options)


def wsgi_app(verifier: Any = None, **options: Any) -> WSGIMiddleware:
    """The WSGI test app behind the middleware; /public is excluded."""
    options.setdefault("exclude_paths", ["/public"])
    return WSGIMiddleware(_wsgi_app, verifier=verifier or FakeVerifier(), **options)


# ---------------------------------------------------------------- in-process calling


@dataclass
class Result:
    """A response seen by a client."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        """The header values joined by ', ' (None when absent)."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def error(self) -> str | None:
        """The error code of the challenge, or None."""
        challenge = self.header("www-authenticate") or ""
        marker = 'error="'
        if marker not in challenge:
            return None
        return challenge.split(marker, 1)[1].split('"', 1)[0]


Header = tuple[str, str | bytes]


def _raw(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("latin-1")


def call_asgi(
    app: Callable[..., Any],
    method: str = "GET",
    target: str = "/me",
    headers: Iterable[Header] = (),
    body: bytes = b"",
    chunk: int | None = None,
) -> Result:
    """Send one HTTP request straight to an ASGI app (raw path and raw headers kept)."""
    path_part, _, query = target.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(path_part),
        "raw_path": path_part.encode("latin-1"),
        "query_string": query.encode("latin-1"),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), _raw(v)) for k, v in headers],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
        for i, p in enumerate(pieces)
    ]
    result = Result(0)

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            result.status = message["status"]
            result.headers = [
                (bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                for k, v in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body":
            result.body += message.get("body", b"")

    asyncio.run(app(scope, receive, send))
    return result


def call_wsgi(
    app: Callable[..., Any],
    method: str = "GET",
    target: str = "/me",
    headers: Iterable[Header] = (),
    body: bytes = b"",
) -> Result:
    """Send one request straight to a WSGI app; repeated headers are merged with ', '
    the way WSGI servers do (CGI variables hold one value)."""
    path_part, _, query = target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path_part, encoding="latin-1"),
        "QUERY_STRING": query,
        "REQUEST_URI": target,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if body or method in ("POST", "PUT"):
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers:
        text = _raw(value).decode("latin-1")
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        environ[key] = f"{environ[key]}, {text}" if key in environ else text
    result = Result(0)

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        result.status = int(status.split(" ", 1)[0])
        result.headers = list(response_headers)
        return lambda data: None

    iterable = app(environ, start_response)
    try:
        for piece in iterable:
            result.body += piece
    finally:
        close = getattr(iterable, "close", None)
        if close:
            close()
    return result


def raw_request(base_url: str, request: bytes, timeout: float = 10.0) -> Result:
    """Send raw bytes to a real server (duplicate headers, odd paths) and parse the reply."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = [tuple(line.split(": ", 1)) for line in lines[1:] if ": " in line]
    return Result(status, [(k, v) for k, v in headers], body)


def raw_get(base_url: str, target: str, headers: Iterable[tuple[str, str]] = ()) -> Result:
    """A raw GET with Connection: close."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers]
    return raw_request(base_url, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))


def test_fake_verifier_rejects_unknown_tokens() -> None:
    """The fake verifier used by these tests refuses tokens it does not know."""
    with pytest.raises(BearerError) as info:
        FakeVerifier().verify("nope")
    assert info.value.status == 401
