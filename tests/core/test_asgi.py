"""scopegate.asgi.BearerAuthMiddleware: scope types, context, hooks, errors, WebSockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scopegate._context import current_token
from scopegate._errors import InsufficientScopeError
from scopegate._scopes import require_scope
from scopegate._token import AccessToken
from scopegate.asgi import BearerAuthMiddleware
from tests.core.test_attacks_support import (
    GOOD,
    TOKENS,
    FakeVerifier,
    asgi_app,
    call_asgi,
)
from tests.servers import run_asgi

BEARER = ("authorization", f"Bearer {GOOD}")


class Recorder:
    """An inner ASGI app that records what it saw and answers 200."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.tokens: list[AccessToken | None] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        self.tokens.append(current_token())
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.anyio
async def test_lifespan_passes_through_untouched() -> None:
    """lifespan scopes reach the app unchanged and never touch the verifier."""
    verifier = FakeVerifier()
    seen: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append((scope, receive, send))

    middleware = BearerAuthMiddleware(app, verifier=verifier)
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}}

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        return None

    await middleware(scope, receive, send)
    assert seen == [(scope, receive, send)]
    assert "scopegate.token" not in scope
    assert verifier.calls == []


@pytest.mark.anyio
async def test_unknown_scope_type_passes_through() -> None:
    """Scope types other than http/websocket/lifespan are passed on as is."""
    inner = Recorder()
    scope = {"type": "custom.protocol"}
    await BearerAuthMiddleware(inner, verifier=FakeVerifier())(scope, None, None)  # type: ignore[arg-type]
    assert inner.scopes == [scope]


def test_token_in_scope_and_context() -> None:
    """The verified token is scope['scopegate.token'] and current_token() inside the app."""
    inner = Recorder()
    result = call_asgi(BearerAuthMiddleware(inner, verifier=FakeVerifier()), headers=[BEARER])
    assert result.status == 200
    assert inner.scopes[0]["scopegate.token"] is TOKENS[GOOD]
    assert inner.tokens == [TOKENS[GOOD]]


@pytest.mark.anyio
async def test_context_is_reset_after_the_request() -> None:
    """current_token() is None again once the middleware returns, even after an error."""
    app = asgi_app()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/items",
        "raw_path": b"/items",
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer write-token")],
    }
    await app(scope, receive, send)  # 403 raised inside the app and rendered
    assert current_token() is None
    scope = {**scope, "headers": [(b"authorization", f"Bearer {GOOD}".encode())]}
    await app(scope, receive, send)
    assert current_token() is None


def test_optional_mode() -> None:
    """optional=True: no token is anonymous (token None), a bad token is still 401."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), optional=True)
    assert call_asgi(middleware).status == 200
    assert inner.scopes[-1]["scopegate.token"] is None
    assert call_asgi(middleware, headers=[("authorization", "Basic eDp5")]).status == 200
    assert call_asgi(middleware, headers=[("authorization", "Bearer nope")]).status == 401
    assert call_asgi(middleware, headers=[("authorization", "Bearer")]).status == 401
    assert call_asgi(middleware, headers=[BEARER]).status == 200
    assert inner.tokens[-1] is TOKENS[GOOD]


def test_optional_mode_scope_decorator_gives_401() -> None:
    """In optional mode a scope-protected handler still answers 401 to anonymous callers."""
    result = call_asgi(asgi_app(optional=True), target="/items")
    assert result.status == 401
    assert result.error is None


@pytest.mark.parametrize(
    ("headers", "allow", "status"),
    [
        pytest.param(
            [("origin", "https://a.example"), ("access-control-request-method", "GET")],
            True,
            200,
            id="preflight-allowed",
        ),
        pytest.param(
            [("origin", "https://a.example"), ("access-control-request-method", "GET")],
            False,
            401,
            id="preflight-not-allowed",
        ),
        pytest.param([("origin", "https://a.example")], True, 401, id="options-without-acrm"),
    ],
)
def test_preflight(headers: list[tuple[str, str]], allow: bool, status: int) -> None:
    """CORS preflight passes unauthenticated only with allow_preflight and the full signature."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), allow_preflight=allow)
    assert call_asgi(middleware, "OPTIONS", "/items", headers).status == status


def test_populate_scope_hook() -> None:
    """Subclasses can publish the token under more scope keys."""

    class WithUser(BearerAuthMiddleware):
        def populate_scope(self, scope: Any, token: AccessToken | None) -> None:
            super().populate_scope(scope, token)
            scope["user"] = token.subject if token else None

    inner = Recorder()
    call_asgi(WithUser(inner, verifier=FakeVerifier()), headers=[BEARER])
    assert inner.scopes[0]["user"] == "alice"
    assert inner.scopes[0]["scopegate.token"] is TOKENS[GOOD]


def test_bearer_error_after_response_start_propagates() -> None:
    """A BearerError raised once the response started cannot be rendered: it propagates."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise InsufficientScopeError(("x",))

    with pytest.raises(InsufficientScopeError):
        call_asgi(BearerAuthMiddleware(app, verifier=FakeVerifier()), headers=[BEARER])


def test_other_exceptions_propagate() -> None:
    """Exceptions that are not BearerError are never turned into responses."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        call_asgi(BearerAuthMiddleware(app, verifier=FakeVerifier()), headers=[BEARER])


def test_existing_vary_is_kept() -> None:
    """An app's own Vary header is kept and Authorization added once."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"Vary", b"Accept-Encoding")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    result = call_asgi(BearerAuthMiddleware(app, verifier=FakeVerifier()), headers=[BEARER])
    assert result.header("vary") == "Accept-Encoding, Authorization"

    async def app2(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"vary", b"authorization"), (b"cache-control", b"no-store")],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    middleware = BearerAuthMiddleware(app2, verifier=FakeVerifier(), allow_query_token=True)
    result = call_asgi(middleware, target=f"/x?access_token={GOOD}")
    assert result.header("vary") == "authorization"
    assert result.header("cache-control") == "no-store"


def test_sync_handler_in_threadpool_sees_the_token() -> None:
    """The contextvar propagates into starlette's run_in_threadpool (anyio.to_thread)."""
    from starlette.concurrency import run_in_threadpool

    @require_scope("items:read")
    def sync_handler() -> str:
        token = current_token()
        assert token is not None
        return str(token.subject)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        subject = await run_in_threadpool(sync_handler)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": subject.encode()})

    middleware = BearerAuthMiddleware(app, verifier=FakeVerifier())
    result = call_asgi(middleware, headers=[BEARER])
    assert (result.status, result.body) == (200, b"alice")
    denied = call_asgi(middleware, headers=[("authorization", "Bearer write-token")])
    assert denied.status == 403
    assert denied.error == "insufficient_scope"


def test_client_disconnect_while_buffering_form() -> None:
    """A disconnect while the form body is buffered is replayed to the app, no crash."""
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append(await receive())
        received.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    messages = [
        {"type": "http.request", "body": b"a=1", "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        return None

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/x",
        "raw_path": b"/x",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"authorization", f"Bearer {GOOD}".encode()),
        ],
    }
    asyncio.run(BearerAuthMiddleware(app, verifier=FakeVerifier())(scope, receive, send))
    assert [m["type"] for m in received] == ["http.request", "http.disconnect"]


# ----------------------------------------------------------------------- WebSockets


async def _ws_call(
    middleware: Any, headers: list[tuple[bytes, bytes]], extensions: dict[str, Any] | None
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000},
    ]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": headers,
    }
    if extensions is not None:
        scope["extensions"] = extensions
    await middleware(scope, receive, send)
    return sent


@pytest.mark.anyio
async def test_websocket_refused_with_close_1008_without_extension() -> None:
    """Without the denial-response extension the handshake is closed with 1008."""
    sent = await _ws_call(asgi_app(), [], None)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.anyio
async def test_websocket_refused_with_http_401_with_extension() -> None:
    """With websocket.http.response the refusal is an HTTP 401 with the challenge."""
    sent = await _ws_call(asgi_app(), [], {"websocket.http.response": {}})
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 401
    assert (b"www-authenticate", b'Bearer realm="api"') in sent[0]["headers"]
    assert sent[1]["type"] == "websocket.http.response.body"


@pytest.mark.anyio
async def test_websocket_scope_error_before_accept_is_403() -> None:
    """A scope decorator failing before accept yields a 403 denial."""
    headers = [(b"authorization", b"Bearer write-token")]
    sent = await _ws_call(asgi_app(), headers, {"websocket.http.response": {}})
    assert sent[0]["status"] == 403
    sent = await _ws_call(asgi_app(), headers, None)
    assert sent == [{"type": "websocket.close", "code": 1008}]


@pytest.mark.anyio
async def test_websocket_accepted_with_token() -> None:
    """A valid token reaches the app, which accepts and echoes."""
    sent = await _ws_call(asgi_app(), [(b"authorization", f"Bearer {GOOD}".encode())], None)
    assert sent[0] == {"type": "websocket.accept"}
    assert sent[1] == {"type": "websocket.send", "text": "hi"}


@pytest.mark.anyio
async def test_websocket_error_after_accept_closes_1008() -> None:
    """A BearerError after accept closes the socket with 1008."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        raise InsufficientScopeError(("admin",))

    middleware = BearerAuthMiddleware(app, verifier=FakeVerifier())
    sent = await _ws_call(middleware, [(b"authorization", f"Bearer {GOOD}".encode())], None)
    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1008}]


@pytest.mark.anyio
async def test_websocket_error_after_close_propagates() -> None:
    """A BearerError after the app itself closed cannot be answered: it propagates."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "websocket.close", "code": 1000})
        raise InsufficientScopeError(("admin",))

    middleware = BearerAuthMiddleware(app, verifier=FakeVerifier())
    with pytest.raises(InsufficientScopeError):
        await _ws_call(middleware, [(b"authorization", f"Bearer {GOOD}".encode())], None)


def test_websocket_under_real_uvicorn() -> None:
    """Under uvicorn: accepted and echoed with a token, refused with 401/403/400 otherwise."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with run_asgi(asgi_app()) as base:
        url = base.replace("http://", "ws://") + "/ws"
        with connect(url, additional_headers={"Authorization": f"Bearer {GOOD}"}) as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
        cases = [
            ({}, 401),
            ({"Authorization": "Bearer nope"}, 401),
            ({"Authorization": "Bearer write-token"}, 403),
        ]
        for headers, status in cases:
            with pytest.raises(InvalidStatus) as info:
                connect(url, additional_headers=headers)
            assert info.value.response.status_code == status
            assert info.value.response.headers["WWW-Authenticate"].startswith("Bearer")
        with pytest.raises(InvalidStatus) as info:
            connect(
                url + f"?access_token={GOOD}",
                additional_headers={"Authorization": f"Bearer {GOOD}"},
            )
        assert info.value.response.status_code == 400


def test_websocket_query_token_under_real_uvicorn() -> None:
    """With allow_query_token a browser-style ?access_token= handshake is accepted."""
    from websockets.sync.client import connect

    with run_asgi(asgi_app(allow_query_token=True)) as base:
        url = base.replace("http://", "ws://") + f"/ws?access_token={GOOD}"
        with connect(url) as ws:
            ws.send("q")
            assert ws.recv(timeout=5) == "q"


@pytest.mark.anyio
async def test_websocket_excluded_path_passes_through() -> None:
    """An excluded WebSocket path reaches the app without a token."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), exclude_paths=["/ws"])
    await _ws_call(middleware, [], None)
    assert len(inner.scopes) == 1
    assert inner.scopes[0]["scopegate.token"] is None


@pytest.mark.anyio
async def test_websocket_refusal_after_client_left_sends_nothing() -> None:
    """If the client disconnects before the handshake completes, nothing is sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.disconnect", "code": 1006}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "query_string": b"", "headers": []}
    await asgi_app()(scope, receive, send)
    assert sent == []


@pytest.mark.anyio
async def test_scope_without_raw_path_uses_path() -> None:
    """Servers that omit raw_path are matched on scope['path'] (and no query string)."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), exclude_paths=["/health"])
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware({"type": "http", "method": "GET", "path": "/health"}, None, send)  # type: ignore[arg-type]
    await middleware({"type": "http", "method": "GET", "path": "/other"}, None, send)  # type: ignore[arg-type]
    assert [m["status"] for m in sent if "status" in m] == [200, 401]


@pytest.mark.parametrize(
    ("content_length", "status"),
    [
        pytest.param("100000", 200, id="declared-over-limit-not-read"),
        pytest.param("bogus", 400, id="bogus-length-buffered"),
    ],
)
def test_declared_content_length(content_length: str, status: int) -> None:
    """A declared length over the cap skips buffering; a bogus one is buffered and checked."""
    headers = [
        BEARER,
        ("content-type", "application/x-www-form-urlencoded"),
        ("content-length", content_length),
    ]
    result = call_asgi(asgi_app(), "POST", "/echo", headers, b"access_token=x")
    assert result.status == status
