"""The sans-io BearerGuard: configuration checks and the decisions adapters delegate."""

from __future__ import annotations

import pytest

from scopegate._bearer import Credentials
from scopegate._errors import (
    ConfigurationError,
    InvalidTokenError,
    MissingTokenError,
)
from scopegate._guard import BearerGuard, add_vary, raw_path_from_uri
from tests.core.test_attacks_support import GOOD, TOKENS, FakeVerifier


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("public", id="relative"),
        pytest.param("/public/../items", id="dot-dot"),
        pytest.param("/./public", id="dot"),
        pytest.param("//public", id="double-slash"),
        pytest.param("/public?x=1", id="query"),
        pytest.param("/public#frag", id="fragment"),
        pytest.param("/pub lic", id="space"),
        pytest.param("/caf\xe9", id="non-ascii"),
        pytest.param("", id="empty"),
    ],
)
def test_bad_exclude_paths_are_refused(path: str) -> None:
    """Exclude paths must be plain absolute paths; anything ambiguous is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        BearerGuard(FakeVerifier(), exclude_paths=[path])


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"realm": 'a"b'}, id="realm-quote"),
        pytest.param({"realm": ""}, id="realm-empty"),
        pytest.param({"exclude_paths": "/public"}, id="exclude-str"),
        pytest.param({"max_token_length": 8}, id="tiny-token-limit"),
        pytest.param({"max_token_length": True}, id="bool-token-limit"),
        pytest.param({"max_form_body": -1}, id="negative-body-limit"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Unusable settings fail at construction, not per request."""
    with pytest.raises(ConfigurationError):
        BearerGuard(FakeVerifier(), **kwargs)  # type: ignore[arg-type]


def test_verifier_must_look_like_a_verifier() -> None:
    """An object without verify/averify is refused."""
    with pytest.raises(ConfigurationError):
        BearerGuard(object())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw_path", "skipped"),
    [
        pytest.param("/public", True, id="exact"),
        pytest.param("/public/", False, id="trailing-slash"),
        pytest.param("//public", False, id="double-slash"),
        pytest.param("/public/../items", False, id="dot-dot"),
        pytest.param("/%70ublic", False, id="percent-encoded"),
        pytest.param("/PUBLIC", False, id="uppercase"),
        pytest.param("/public;x", False, id="path-param"),
        pytest.param("/publicity", False, id="prefix"),
    ],
)
def test_exclude_paths_match_exactly(raw_path: str, skipped: bool) -> None:
    """Only the exact raw path skips authentication; no prefix or normalisation tricks."""
    guard = BearerGuard(FakeVerifier(), exclude_paths=["/public"])
    assert guard.skips("GET", raw_path) is skipped


def test_preflight_only_when_allowed() -> None:
    """OPTIONS with Origin and Access-Control-Request-Method skips only with allow_preflight."""
    on = BearerGuard(FakeVerifier(), allow_preflight=True)
    off = BearerGuard(FakeVerifier())
    assert on.skips("OPTIONS", "/x", origin=True, request_method=True)
    assert not on.skips("OPTIONS", "/x", origin=True, request_method=False)
    assert not on.skips("OPTIONS", "/x", origin=False, request_method=True)
    assert not on.skips("GET", "/x", origin=True, request_method=True)
    assert not off.skips("OPTIONS", "/x", origin=True, request_method=True)


@pytest.mark.parametrize(
    ("method", "content_type", "has_header", "form", "expected"),
    [
        pytest.param("POST", "application/x-www-form-urlencoded", False, True, True, id="form-on"),
        pytest.param(
            "POST", "application/x-www-form-urlencoded", False, False, False, id="form-off"
        ),
        pytest.param(
            "POST", "application/x-www-form-urlencoded", True, False, True, id="header-check"
        ),
        pytest.param(
            "PUT", "application/x-www-form-urlencoded", False, True, False, id="put-no-header"
        ),
        pytest.param(
            "PUT", "application/x-www-form-urlencoded", True, False, True, id="put-header"
        ),
        pytest.param("GET", "application/x-www-form-urlencoded", True, True, False, id="get"),
        pytest.param("POST", "application/json", True, True, False, id="json"),
    ],
)
def test_wants_form_body(
    method: str, content_type: str, has_header: bool, form: bool, expected: bool
) -> None:
    """The body is buffered only when it may carry a token or a second copy of one."""
    guard = BearerGuard(FakeVerifier(), allow_form_token=form)
    assert guard.wants_form_body(method, content_type, has_header=has_header) is expected


def test_authenticate_returns_the_token() -> None:
    """authenticate() extracts and verifies."""
    guard = BearerGuard(FakeVerifier())
    assert guard.authenticate(authorization=[f"Bearer {GOOD}"], method="GET") is TOKENS[GOOD]


@pytest.mark.anyio
async def test_aauthenticate_returns_the_token() -> None:
    """aauthenticate() uses the verifier's averify."""
    guard = BearerGuard(FakeVerifier())
    token = await guard.aauthenticate(authorization=[f"Bearer {GOOD}"], method="GET")
    assert token is TOKENS[GOOD]


def test_missing_token_raises_unless_optional() -> None:
    """No credentials: MissingTokenError, or None in optional mode."""
    with pytest.raises(MissingTokenError):
        BearerGuard(FakeVerifier()).authenticate(authorization=[], method="GET")
    optional = BearerGuard(FakeVerifier(), optional=True)
    assert optional.authenticate(authorization=["Basic eDp5"], method="GET") is None


@pytest.mark.anyio
async def test_optional_still_rejects_bad_tokens() -> None:
    """Optional mode tolerates a missing token, never an invalid one."""
    guard = BearerGuard(FakeVerifier(), optional=True)
    assert await guard.aauthenticate(authorization=[], method="GET") is None
    with pytest.raises(InvalidTokenError):
        await guard.aauthenticate(authorization=["Bearer nope"], method="GET")
    with pytest.raises(InvalidTokenError):
        await guard.aauthenticate(authorization=["Bearer"], method="GET")


def test_unexpected_verifier_error_logs_type_only(caplog: pytest.LogCaptureFixture) -> None:
    """A verifier bug becomes invalid_token; the log names the type, not the message."""
    guard = BearerGuard(FakeVerifier(ValueError("secret-token-text")))
    with pytest.raises(InvalidTokenError) as info:
        guard.authenticate(authorization=[f"Bearer {GOOD}"], method="GET")
    assert info.value.reason == "verifier_error"
    assert "ValueError" in caplog.text
    assert "secret-token-text" not in caplog.text
    assert GOOD not in caplog.text


def test_error_response_adds_vary() -> None:
    """Rendered errors carry Vary: Authorization and the configured realm."""
    guard = BearerGuard(FakeVerifier(), realm="items")
    response = guard.error_response(MissingTokenError())
    headers = dict(response.headers)
    assert headers["vary"] == "Authorization"
    assert headers["www-authenticate"] == 'Bearer realm="items"'
    status, _wsgi_headers, body = guard.wsgi_error(MissingTokenError())
    assert status == "401 Unauthorized"
    assert body == response.body
    start, message = guard.asgi_error_messages(MissingTokenError())
    assert start["status"] == 401
    assert (b"vary", b"Authorization") in start["headers"]
    assert message["body"] == response.body


def test_repr_shows_no_secrets() -> None:
    """The guard's repr shows configuration only."""
    assert "realm='api'" in repr(BearerGuard(FakeVerifier()))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "Authorization", id="none"),
        pytest.param("Accept", "Accept, Authorization", id="other"),
        pytest.param("accept, authorization", "accept, authorization", id="present"),
        pytest.param("*", "*", id="star"),
    ],
)
def test_add_vary(value: str | None, expected: str) -> None:
    """add_vary() appends Authorization once."""
    assert add_vary(value) == expected


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        pytest.param("/a/b?x=1", "/a/b", id="origin-form"),
        pytest.param("http://host:8080/a?x", "/a", id="absolute-form"),
        pytest.param("http://host", "/", id="absolute-no-path"),
        pytest.param("*", "*", id="asterisk"),
    ],
)
def test_raw_path_from_uri(uri: str, path: str) -> None:
    """The path part of a raw request target."""
    assert raw_path_from_uri(uri) == path


class ProbingVerifier(FakeVerifier):
    """A fake verifier with the optional sync cache probe."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.fail = fail
        self.averify_calls = 0

    def cached(self, token: str) -> object:
        if self.fail:
            raise RuntimeError("probe bug")
        return TOKENS.get(token)

    async def averify(self, token: str) -> object:
        self.averify_calls += 1
        return await super().averify(token)


def test_cache_probe_skips_averify_on_hit() -> None:
    """The ASGI middleware answers a cache hit without awaiting averify."""
    from tests.core.test_attacks_support import asgi_app, call_asgi

    verifier = ProbingVerifier()
    app = asgi_app(verifier)
    assert call_asgi(app, headers=[("authorization", f"Bearer {GOOD}")]).status == 200
    assert verifier.averify_calls == 0
    assert call_asgi(app, headers=[("authorization", "Bearer nope")]).status == 401
    assert verifier.averify_calls == 1


def test_failing_cache_probe_falls_back_to_averify() -> None:
    """A probe that raises is ignored; averify decides."""
    from tests.core.test_attacks_support import asgi_app, call_asgi

    verifier = ProbingVerifier(fail=True)
    assert (
        call_asgi(asgi_app(verifier), headers=[("authorization", f"Bearer {GOOD}")]).status == 200
    )
    assert verifier.averify_calls == 1
    assert BearerGuard(FakeVerifier()).cached(Credentials(GOOD, "header")) is None
