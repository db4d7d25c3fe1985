"""Repeated-request fast paths (header memo, cache probe) keep every slow-path outcome."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scopegate import _guard
from scopegate._bearer import NO_CREDENTIALS, Credentials, extract_token
from scopegate._errors import InvalidRequestError, InvalidTokenError
from scopegate._guard import BearerGuard
from scopegate._token import AccessToken
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware
from tests.core.test_attacks_support import (
    GOOD,
    TOKENS,
    FakeVerifier,
    asgi_app,
    call_asgi,
    call_wsgi,
    wsgi_app,
)
from tests.core.tokens import mint, static_verifier
from tests.servers import run_asgi, run_wsgi


class ProbingVerifier(FakeVerifier):
    """A FakeVerifier with a cache probe that knows every token it verified once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, AccessToken] = {}
        self.probed: list[str] = []

    def verify(self, token: str) -> AccessToken:
        result = super().verify(token)
        self.seen[token] = result
        return result

    def cached(self, token: str) -> AccessToken | None:
        self.probed.append(token)
        return self.seen.get(token)


class CountingParse:
    """Counts calls of the guard's parse_authorization."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = _guard.parse_authorization

        def counted(value: str, max_length: int = 8192) -> str | None:
            self.calls += 1
            return original(value, max_length)

        monkeypatch.setattr(_guard, "parse_authorization", counted)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(f"Bearer {GOOD}", id="bearer"),
        pytest.param(f"bearer   {GOOD}  ", id="case-and-spaces"),
        pytest.param("Basic dXNlcjpwYXNz", id="other-scheme"),
        pytest.param("Bearerx abc", id="longer-scheme"),
        pytest.param("", id="empty"),
    ],
)
def test_header_credentials_match_extract(value: str) -> None:
    """header_credentials gives what extract_token gives for a lone header."""
    guard = BearerGuard(FakeVerifier())
    expected = extract_token(authorization=[value], method="GET")
    assert guard.header_credentials(value) == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("Bearer", "empty_bearer", id="no-token"),
        pytest.param("Bearer a b", "malformed_bearer", id="space-inside"),
        pytest.param("Bearer\tabc", "malformed_bearer", id="tab"),
        pytest.param("Bearer " + "a" * 40, "token_too_long", id="too-long"),
    ],
)
def test_header_credentials_refuse_bad_values(value: str, reason: str) -> None:
    """Malformed and oversized values raise exactly as extraction does."""
    guard = BearerGuard(FakeVerifier(), max_token_length=32)
    with pytest.raises(InvalidTokenError) as info:
        guard.header_credentials(value)
    assert info.value.reason == reason


def test_remembered_value_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """After remember(), the same value is answered from the memo with the same token str."""
    counter = CountingParse(monkeypatch)
    guard = BearerGuard(FakeVerifier())
    value = f"Bearer {GOOD}"
    first = guard.header_credentials(value)
    guard.remember(value, first)
    parsed = counter.calls  # header_credentials, and remember's consistency check
    second = guard.header_credentials("".join(["Bearer ", GOOD]))
    assert counter.calls == parsed
    assert second == Credentials(GOOD, "header")
    assert second.token is first.token


def test_remember_ignores_missing_credentials() -> None:
    """A value without a bearer token is never memoised."""
    guard = BearerGuard(FakeVerifier())
    guard.remember("Basic abc", NO_CREDENTIALS)
    assert guard.cached_header("Basic abc") is None
    assert guard.header_credentials("Basic abc") == NO_CREDENTIALS


def test_memo_is_bounded() -> None:
    """The memo never grows past its bound; the oldest values go first."""
    guard = BearerGuard(ProbingVerifier())
    for i in range(_guard._KNOWN_HEADERS + 10):
        guard.remember(f"Bearer t{i}", Credentials(f"t{i}", "header"))
    memo = guard._known
    assert len(memo) <= _guard._KNOWN_HEADERS
    assert "Bearer t0" not in memo
    assert f"Bearer t{_guard._KNOWN_HEADERS + 9}" in memo


def test_cached_header_needs_memo_and_probe() -> None:
    """cached_header answers only for a remembered value whose token the verifier cached."""
    verifier = ProbingVerifier()
    guard = BearerGuard(verifier)
    value = f"Bearer {GOOD}"
    assert guard.cached_header(value) is None  # not remembered
    credentials = guard.header_credentials(value)
    guard.remember(value, credentials)
    assert guard.cached_header(value) is None  # remembered, not verified yet
    token = guard.verify(credentials)
    assert guard.cached_header(value) is token
    assert BearerGuard(FakeVerifier()).cached_header(value) is None  # no probe at all


def test_cached_header_swallows_probe_errors() -> None:
    """A probe that raises is a miss, not a failed request."""

    class Broken(FakeVerifier):
        def cached(self, token: str) -> AccessToken | None:
            raise RuntimeError("probe bug")

    guard = BearerGuard(Broken())
    credentials = guard.header_credentials(f"Bearer {GOOD}")
    guard.remember(f"Bearer {GOOD}", credentials)
    assert guard.cached_header(f"Bearer {GOOD}") is None


@pytest.mark.anyio
async def test_aauthenticate_uses_probe_and_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """aauthenticate remembers verified values and answers repeats from the probe."""
    counter = CountingParse(monkeypatch)
    verifier = ProbingVerifier()
    guard = BearerGuard(verifier)
    token = await guard.aauthenticate(authorization=[f"Bearer {GOOD}"], method="GET")
    parsed = counter.calls
    for _ in range(3):
        token = await guard.aauthenticate(authorization=[f"Bearer {GOOD}"], method="GET")
        assert token is TOKENS[GOOD]
    assert counter.calls == parsed
    assert verifier.calls == [GOOD]


def test_authenticate_remembers_only_verified_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token that fails verification leaves no memo entry: it is parsed every time."""
    counter = CountingParse(monkeypatch)
    guard = BearerGuard(FakeVerifier())
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            guard.authenticate(authorization=["Bearer unknown-token"], method="GET")
    assert counter.calls == 2
    assert guard.authenticate(authorization=[f"Bearer {GOOD}"], method="GET")
    parsed = counter.calls
    assert guard.authenticate(authorization=[f"Bearer {GOOD}"], method="GET")
    assert counter.calls == parsed


@pytest.mark.parametrize(
    ("call", "make"),
    [
        pytest.param(call_asgi, asgi_app, id="asgi"),
        pytest.param(call_wsgi, wsgi_app, id="wsgi"),
    ],
)
def test_memoised_header_still_cross_checked(call: Any, make: Any) -> None:
    """A memoised header value still conflicts with a query token (400) and an excluded
    path still skips; the memo changes no outcome."""
    app = make(ProbingVerifier(), allow_query_token=True)
    bearer = ("authorization", f"Bearer {GOOD}")
    assert call(app, headers=[bearer]).status == 200
    assert call(app, headers=[bearer]).status == 200
    both = call(app, target=f"/me?access_token={GOOD}", headers=[bearer])
    assert (both.status, both.error) == (400, "invalid_request")
    assert call(app, target=f"/me?access_token={GOOD}").status == 200
    assert call(app, target="/public").status == 200


def test_memoised_header_repeated_field_is_400() -> None:
    """Under ASGI a repeated Authorization field is a 400 even when its value is memoised."""
    app = asgi_app(ProbingVerifier())
    bearer = ("authorization", f"Bearer {GOOD}")
    assert call_asgi(app, headers=[bearer]).status == 200
    result = call_asgi(app, headers=[bearer, bearer])
    assert (result.status, result.error) == (400, "invalid_request")


def test_memoised_header_query_copy_on_wsgi_is_400() -> None:
    """WSGI: a memoised header plus a query copy of the token is refused, transport off too."""
    app = wsgi_app(ProbingVerifier())
    bearer = ("authorization", f"Bearer {GOOD}")
    assert call_wsgi(app, headers=[bearer]).status == 200
    result = call_wsgi(app, target=f"/me?access_token={GOOD}", headers=[bearer])
    assert (result.status, result.error) == (400, "invalid_request")


def test_asgi_reads_bytearray_header_names() -> None:
    """Header names a lax server sends as bytearray are still read (no 500, no bypass)."""
    from tests.core.test_attacks_support import _asgi_app

    app = ASGIMiddleware(_asgi_app, verifier=FakeVerifier())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope(*headers: tuple[Any, bytes]) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "GET",
            "path": "/me",
            "raw_path": b"/me",
            "query_string": b"",
            "headers": list(headers),
        }

    import asyncio

    value = f"Bearer {GOOD}".encode()
    asyncio.run(app(scope((bytearray(b"authorization"), value)), receive, send))
    assert sent[0]["status"] == 200
    sent.clear()
    auth = (bytearray(b"authorization"), value)
    asyncio.run(app(scope(auth, auth), receive, send))
    assert sent[0]["status"] == 400


@pytest.mark.anyio
async def test_asgi_raw_path_with_query_matches_excluded_path() -> None:
    """A raw_path carrying the query string still matches an excluded path exactly."""
    seen: list[Any] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["scopegate.token"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = ASGIMiddleware(inner, verifier=FakeVerifier(), exclude_paths=["/health"])
    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    for raw in (b"/health?x=1", b"/health", b"/health/", b"/healthz?x"):
        scope = {"type": "http", "method": "GET", "path": "/x", "raw_path": raw, "headers": []}
        await app(scope, receive, send)
    assert statuses == [204, 204, 401, 401]
    assert seen == [None, None]


def test_real_jwt_repeated_requests_under_uvicorn_and_waitress() -> None:
    """Real servers, real JWTs: repeats hit the fast path, expiry and conflicts still hold."""
    verifier = static_verifier()
    token = mint()
    expired = mint(exp=1000, iat=900)

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send(
            {"type": "http.response.body", "body": scope["scopegate.token"].subject.encode()}
        )

    def wsgi_inner(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["scopegate.token"].subject.encode()]

    asgi = ASGIMiddleware(inner, verifier=verifier)
    wsgi = WSGIMiddleware(wsgi_inner, verifier=verifier)
    with run_asgi(asgi) as asgi_url, run_wsgi(wsgi) as wsgi_url:
        for url in (asgi_url, wsgi_url):
            auth = {"Authorization": f"Bearer {token}"}
            for _ in range(3):
                response = httpx.get(url + "/items", headers=auth)
                assert (response.status_code, response.text) == (200, "alice")
                assert "Authorization" in response.headers["vary"]
            conflict = httpx.get(url + f"/items?access_token={token}", headers=auth)
            assert conflict.status_code == 400
            stale = httpx.get(url + "/items", headers={"Authorization": f"Bearer {expired}"})
            assert stale.status_code == 401
    assert asgi.guard.cached_header(f"Bearer {token}") is not None
    assert wsgi.guard.cached_header(f"Bearer {token}") is not None


def test_unknown_value_raises_before_memo() -> None:
    """extract() with a repeated header is a 400 whatever the memo holds."""
    guard = BearerGuard(FakeVerifier())
    value = f"Bearer {GOOD}"
    guard.remember(value, guard.header_credentials(value))
    with pytest.raises(InvalidRequestError):
        guard.extract(authorization=[value, value], method="GET")


@pytest.mark.parametrize(
    ("value", "credentials"),
    [
        pytest.param(f"Bearer {GOOD}", Credentials("admin-token", "header"), id="other-token"),
        pytest.param(f"Bearer {GOOD}", Credentials(GOOD, "query"), id="other-source"),
        pytest.param("Bearer a b", Credentials("a", "header"), id="malformed-value"),
        pytest.param("Basic abc", Credentials("abc", "header"), id="other-scheme"),
        pytest.param("Bearer a b", Credentials("b", "header"), id="space-in-token"),
        pytest.param("Bearer\tabc", Credentials("abc", "header"), id="tab-separator"),
        pytest.param("Bearerabc", Credentials("abc", "header"), id="no-separator"),
        pytest.param("xBearer abc", Credentials("abc", "header"), id="prefixed-scheme"),
        pytest.param("Bearer " + "a" * 9000, Credentials("a" * 9000, "header"), id="too-long"),
    ],
)
def test_remember_ignores_mismatched_pairs(value: str, credentials: Credentials) -> None:
    """remember() stores only the pair extraction itself would produce."""
    guard = BearerGuard(FakeVerifier())
    guard.remember(value, credentials)
    assert value not in guard._known
