"""scopegate.wsgi.BearerAuthMiddleware: environ, context, hooks, errors, lazy bodies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scopegate._context import current_token
from scopegate._errors import InsufficientScopeError
from scopegate._token import AccessToken
from scopegate.wsgi import BearerAuthMiddleware
from tests.core.test_attacks_support import GOOD, TOKENS, FakeVerifier, call_wsgi, wsgi_app
from tests.servers import run_wsgi

BEARER = ("authorization", f"Bearer {GOOD}")


class Recorder:
    """An inner WSGI app that records what it saw and answers 200."""

    def __init__(self) -> None:
        self.environs: list[dict[str, Any]] = []
        self.tokens: list[AccessToken | None] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.environs.append(environ)
        self.tokens.append(current_token())
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def test_token_in_environ_and_context() -> None:
    """The token is environ['scopegate.token'] and current_token() in the app, reset after."""
    inner = Recorder()
    result = call_wsgi(BearerAuthMiddleware(inner, verifier=FakeVerifier()), headers=[BEARER])
    assert result.status == 200
    assert inner.environs[0]["scopegate.token"] is TOKENS[GOOD]
    assert inner.tokens == [TOKENS[GOOD]]
    assert current_token() is None


def test_lazy_body_sees_the_token() -> None:
    """A generator response body still sees current_token(); the context is reset after."""
    seen: list[AccessToken | None] = []
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            seen.append(current_token())
            yield b"a"
            seen.append(current_token())
            yield b"b"

        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Any) -> Body:
        start_response("200 OK", [])
        return Body()

    result = call_wsgi(BearerAuthMiddleware(app, verifier=FakeVerifier()), headers=[BEARER])
    assert result.body == b"ab"
    assert seen == [TOKENS[GOOD], TOKENS[GOOD]]
    assert closed == [True]
    assert current_token() is None


def test_optional_mode() -> None:
    """optional=True: anonymous requests pass with token None; bad tokens are 401."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), optional=True)
    assert call_wsgi(middleware).status == 200
    assert inner.environs[-1]["scopegate.token"] is None
    assert call_wsgi(middleware, headers=[("authorization", "Bearer nope")]).status == 401


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
    ],
)
def test_preflight(headers: list[tuple[str, str]], allow: bool, status: int) -> None:
    """CORS preflight passes unauthenticated only with allow_preflight."""
    middleware = BearerAuthMiddleware(Recorder(), verifier=FakeVerifier(), allow_preflight=allow)
    assert call_wsgi(middleware, "OPTIONS", "/items", headers).status == status


@pytest.mark.parametrize(
    ("target", "status"),
    [
        pytest.param("/public", 200, id="exact"),
        pytest.param("/public/", 401, id="trailing-slash"),
        pytest.param("//public", 401, id="double-slash"),
        pytest.param("/public/../items", 401, id="dot-dot"),
        pytest.param("/%70ublic", 401, id="percent-encoded"),
    ],
)
def test_excluded_paths_use_the_raw_uri(target: str, status: int) -> None:
    """REQUEST_URI is compared exactly, so decoded or normalised spellings need a token."""
    assert call_wsgi(wsgi_app(), target=target).status == status


def test_excluded_path_without_request_uri() -> None:
    """Without REQUEST_URI/RAW_URI, SCRIPT_NAME + PATH_INFO is compared."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), exclude_paths=["/app/health"])
    statuses: list[str] = []
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "/app", "PATH_INFO": "/health"}
    middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert inner.environs == [environ]
    environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/health"}
    middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK", "401 Unauthorized"]


def test_populate_environ_hook() -> None:
    """Subclasses can publish the token under more environ keys."""

    class WithUser(BearerAuthMiddleware):
        def populate_environ(self, environ: dict[str, Any], token: AccessToken | None) -> None:
            super().populate_environ(environ, token)
            environ["REMOTE_USER"] = token.subject if token else None

    inner = Recorder()
    call_wsgi(WithUser(inner, verifier=FakeVerifier()), headers=[BEARER])
    assert inner.environs[0]["REMOTE_USER"] == "alice"


def test_bearer_error_after_start_response_uses_exc_info() -> None:
    """A BearerError after start_response re-starts the response with exc_info (PEP 3333)."""
    calls: list[tuple[str, Any]] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        raise InsufficientScopeError(("admin",))

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        calls.append((status, exc_info))
        return lambda data: None

    middleware = BearerAuthMiddleware(app, verifier=FakeVerifier())
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "HTTP_AUTHORIZATION": f"Bearer {GOOD}"}
    body = middleware(environ, start_response)
    assert calls[0] == ("200 OK", None)
    assert calls[1][0] == "403 Forbidden"
    assert calls[1][1][0] is InsufficientScopeError
    assert b"insufficient_scope" in b"".join(body)


def test_other_exceptions_propagate() -> None:
    """Exceptions that are not BearerError are never turned into responses."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        call_wsgi(BearerAuthMiddleware(app, verifier=FakeVerifier()), headers=[BEARER])
    assert current_token() is None


def test_form_body_without_length_is_not_read() -> None:
    """PEP 3333: without CONTENT_LENGTH the body is not read (nor searched)."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier(), allow_form_token=True)
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/x",
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "wsgi.input": None,
    }
    statuses: list[str] = []
    middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["401 Unauthorized"]


def test_threads_do_not_share_tokens() -> None:
    """Under multi-threaded waitress each request sees its own token."""
    results: list[tuple[str, int, str]] = []

    def worker(token: str) -> None:
        for _ in range(20):
            response = httpx.get(f"{base}/me", headers={"Authorization": f"Bearer {token}"})
            body = response.json()
            results.append((token, response.status_code, ",".join(body.get("scopes", []))))

    with run_wsgi(wsgi_app()) as base:
        threads = [threading.Thread(target=worker, args=(t,)) for t in (GOOD, "admin-token")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    expected = {GOOD: "items:read", "admin-token": "admin,items:read"}
    assert len(results) == 40
    assert all(status == 200 and scopes == expected[t] for t, status, scopes in results)


def test_app_vary_and_cache_headers_are_respected() -> None:
    """An app's Vary/Cache-Control are kept; Authorization and private added only if missing."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Vary", "Accept"), ("Cache-Control", "max-age=60")])
        return [b""]

    result = call_wsgi(BearerAuthMiddleware(app, verifier=FakeVerifier()), headers=[BEARER])
    assert result.header("vary") == "Accept, Authorization"
    assert result.header("cache-control") == "max-age=60"
    query = BearerAuthMiddleware(app, verifier=FakeVerifier(), allow_query_token=True)
    result = call_wsgi(query, target=f"/x?access_token={GOOD}")
    assert result.header("cache-control") == "max-age=60, private"

    def app2(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Vary", "*"), ("Cache-Control", "private")])
        return [b""]

    query = BearerAuthMiddleware(app2, verifier=FakeVerifier(), allow_query_token=True)
    result = call_wsgi(query, target=f"/x?access_token={GOOD}")
    assert result.headers == [("Vary", "*"), ("Cache-Control", "private")]


def test_bad_content_length_is_not_read() -> None:
    """A malformed or negative CONTENT_LENGTH means the body is not searched."""
    inner = Recorder()
    middleware = BearerAuthMiddleware(inner, verifier=FakeVerifier())
    for length in ("bogus", "-5"):
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/x",
            "CONTENT_LENGTH": length,
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "HTTP_AUTHORIZATION": f"Bearer {GOOD}",
            "wsgi.input": None,
        }
        middleware(environ, lambda status, headers, exc_info=None: None)
    assert len(inner.environs) == 2
