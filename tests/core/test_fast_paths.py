"""Repeated-request fast paths (header memo, cache probe) keep every slow-path outcome."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scopegate import _guard
from scopegate._errors import InvalidTokenError
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
from tests.core.views import FakeRequest, bearer
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
    """Counts calls of the guard's parse_credentials."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        original = _guard.parse_credentials

        def counted(value: str, max_length: int = 8192, *, dpop: bool = False) -> Any:
            self.calls += 1
            return original(value, max_length, dpop=dpop)

        monkeypatch.setattr(_guard, "parse_credentials", counted)


def test_remembered_value_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Authorization value verified and seen again is answered from the memo and the
    verifier's cache, without parsing it again and without calling the verifier."""
    counter = CountingParse(monkeypatch)
    verifier = ProbingVerifier()
    guard = BearerGuard(verifier)
    assert guard.decide(bearer(GOOD)) is TOKENS[GOOD]
    assert f"Bearer {GOOD}" not in guard._known  # one use: not worth a memo entry
    assert guard.decide(bearer(GOOD)) is TOKENS[GOOD]
    assert f"Bearer {GOOD}" in guard._known
    parsed = counter.calls
    for _ in range(3):
        assert guard.decide(bearer("".join([GOOD]))) is TOKENS[GOOD]
    assert counter.calls == parsed
    assert verifier.calls == [GOOD]


@pytest.mark.anyio
async def test_adecide_uses_probe_and_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    """adecide remembers verified values and answers repeats from the probe."""
    counter = CountingParse(monkeypatch)
    verifier = ProbingVerifier()
    guard = BearerGuard(verifier)
    for _ in range(2):
        assert await guard.adecide(bearer(GOOD)) is TOKENS[GOOD]
    parsed = counter.calls
    for _ in range(3):
        assert await guard.adecide(bearer(GOOD)) is TOKENS[GOOD]
    assert counter.calls == parsed
    assert verifier.calls == [GOOD]


def test_only_verified_values_are_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token that fails verification leaves no memo entry: it is parsed every time."""
    counter = CountingParse(monkeypatch)
    guard = BearerGuard(FakeVerifier())
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            guard.authenticate(bearer("unknown-token"))
    assert counter.calls == 2
    assert "Bearer unknown-token" not in guard._known
    assert guard.authenticate(bearer(GOOD))
    assert f"Bearer {GOOD}" not in guard._known  # verified once (FakeVerifier: no cache)
    guard = BearerGuard(ProbingVerifier())
    for _ in range(2):
        assert guard.authenticate(bearer(GOOD))
    assert f"Bearer {GOOD}" in guard._known
    assert "Basic abc" not in guard._known


def test_memo_is_bounded() -> None:
    """The memo never grows past its bound; the oldest values go first."""
    guard = BearerGuard(ProbingVerifier())
    for i in range(_guard._KNOWN_HEADERS + 10):
        guard._remember(f"Bearer t{i}", f"t{i}", TOKENS[GOOD], "bearer")
    memo = guard._known
    assert len(memo) <= _guard._KNOWN_HEADERS
    assert "Bearer t0" not in memo
    assert f"Bearer t{_guard._KNOWN_HEADERS + 9}" in memo


def test_memo_needs_a_probe_hit() -> None:
    """A remembered value whose token left the verifier's cache is verified again."""
    verifier = ProbingVerifier()
    guard = BearerGuard(verifier)
    guard.decide(bearer(GOOD))
    verifier.seen.clear()
    assert guard.decide(bearer(GOOD)) is TOKENS[GOOD]
    assert verifier.calls == [GOOD, GOOD]


def test_probe_errors_are_misses() -> None:
    """A probe that raises is a miss, not a failed request."""

    class Broken(FakeVerifier):
        def cached(self, token: str) -> AccessToken | None:
            raise RuntimeError("probe bug")

    guard = BearerGuard(Broken())
    for _ in range(2):
        assert guard.decide(bearer(GOOD)) is TOKENS[GOOD]


@pytest.mark.parametrize(
    ("request_fields", "status"),
    [
        pytest.param({"query": f"access_token={GOOD}"}, 400, id="query-copy"),
        pytest.param({"authorization": [f"Bearer {GOOD}", f"Bearer {GOOD}"]}, 400, id="repeated"),
        pytest.param(
            {
                "method": "POST",
                "content_type": "application/x-www-form-urlencoded",
                "body": f"access_token={GOOD}".encode(),
            },
            400,
            id="form-copy",
        ),
    ],
)
def test_memo_never_skips_a_cross_check(request_fields: dict[str, Any], status: int) -> None:
    """A remembered value is still judged with the rest of its request (RFC 6750 §2)."""
    guard = BearerGuard(ProbingVerifier())
    guard.decide(bearer(GOOD))
    fields = {"authorization": [f"Bearer {GOOD}"], **request_fields}
    outcome = guard.decide(FakeRequest(**fields))
    assert getattr(outcome, "status", None) == status


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
    assert f"Bearer {token}" in asgi.guard._known
    assert f"Bearer {token}" in wsgi.guard._known
