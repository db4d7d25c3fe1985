"""The sans-io BearerGuard: options, the decision for a request view, and rendering."""

from __future__ import annotations

import pytest

from scopegate import GuardOptions, HTTPResponse
from scopegate._errors import ConfigurationError, InvalidTokenError, MissingTokenError
from scopegate._guard import BearerGuard, add_vary, check_binding, raw_path_from_uri
from scopegate._token import AccessToken
from tests.core.test_attacks_support import GOOD, TOKENS, FakeVerifier, make_token
from tests.core.views import FakeRequest, bearer

JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"


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
        pytest.param({"optional": "false"}, id="string-for-bool"),
        pytest.param({"allow_query_token": 1}, id="int-for-bool"),
        pytest.param({"allow_form_token": "yes"}, id="string-for-form"),
        pytest.param({"allow_preflight": None}, id="none-for-bool"),
        pytest.param({"max_form_body": "65536"}, id="string-for-int"),
        pytest.param({"no_such_option": True}, id="unknown-option"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    """Unusable or mistyped settings fail at construction; a string is never truthy."""
    with pytest.raises(ConfigurationError):
        BearerGuard(FakeVerifier(), **kwargs)  # type: ignore[arg-type]


def test_options_object_and_keywords_combine() -> None:
    """An options object is taken whole; keywords override its fields."""
    base = GuardOptions(realm="shop", optional=True)
    guard = BearerGuard(FakeVerifier(), base, allow_query_token=True)
    assert guard.options == GuardOptions(realm="shop", optional=True, allow_query_token=True)
    assert guard.realm == "shop"


def test_verifier_must_look_like_a_verifier() -> None:
    """An object without verify/averify is refused."""
    with pytest.raises(ConfigurationError):
        BearerGuard(object())  # type: ignore[arg-type]


def test_token_length_limit_follows_the_verifier() -> None:
    """Without max_token_length the guard uses the verifier's own limit."""

    class Small(FakeVerifier):
        max_token_length = 64

    assert BearerGuard(Small()).max_token_length == 64
    assert BearerGuard(Small(), max_token_length=32).max_token_length == 32
    assert BearerGuard(FakeVerifier()).max_token_length == 8192


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
    outcome = guard.decide(FakeRequest(path=raw_path))
    if skipped:
        assert outcome is None
    else:
        assert isinstance(outcome, HTTPResponse)
        assert outcome.status == 401


def test_preflight_only_when_allowed() -> None:
    """OPTIONS with Origin and Access-Control-Request-Method skips only with allow_preflight."""
    both = {"origin": ["https://a"], "access-control-request-method": ["GET"]}
    on = BearerGuard(FakeVerifier(), allow_preflight=True)
    off = BearerGuard(FakeVerifier())
    assert on.decide(FakeRequest(method="OPTIONS", headers=both)) is None
    for headers in ({"origin": ["x"]}, {"access-control-request-method": ["GET"]}):
        assert isinstance(on.decide(FakeRequest(method="OPTIONS", headers=headers)), HTTPResponse)
    assert isinstance(on.decide(FakeRequest(method="GET", headers=both)), HTTPResponse)
    assert isinstance(off.decide(FakeRequest(method="OPTIONS", headers=both)), HTTPResponse)


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("method", "content_type", "header", "form", "reads"),
    [
        pytest.param("POST", FORM, False, True, 1, id="form-on"),
        pytest.param("POST", FORM, False, False, 0, id="form-off"),
        pytest.param("POST", FORM, True, False, 1, id="header-check"),
        pytest.param("PUT", FORM, False, True, 0, id="put-no-header"),
        pytest.param("PUT", FORM, True, False, 1, id="put-header"),
        pytest.param("GET", FORM, True, True, 0, id="get"),
        pytest.param("POST", "application/json", True, True, 0, id="json"),
    ],
)
def test_body_is_read_only_when_it_may_carry_a_token(
    method: str, content_type: str, header: bool, form: bool, reads: int
) -> None:
    """The body is read only when it may carry a token or a second copy of one."""
    guard = BearerGuard(FakeVerifier(), allow_form_token=form, optional=True)
    request = FakeRequest(
        method=method,
        content_type=content_type,
        authorization=[f"Bearer {GOOD}"] if header else [],
        body=b"a=1",
    )
    guard.decide(request)
    assert request.reads == reads


def test_form_token_is_found_and_header_copy_refused() -> None:
    """A form token is used when enabled; a header plus a body copy is a 400."""
    guard = BearerGuard(FakeVerifier(), allow_form_token=True)
    form = FakeRequest(method="POST", content_type=FORM, body=f"access_token={GOOD}".encode())
    assert guard.decide(form) is TOKENS[GOOD]
    assert form.token_source == "form"
    both = FakeRequest(
        method="POST",
        content_type=FORM,
        authorization=[f"Bearer {GOOD}"],
        body=f"access_token={GOOD}".encode(),
    )
    outcome = guard.decide(both)
    assert isinstance(outcome, HTTPResponse)
    assert outcome.status == 400


def test_decide_returns_the_token() -> None:
    """decide() extracts and verifies, and says where the token was."""
    request = bearer(GOOD)
    assert BearerGuard(FakeVerifier()).decide(request) is TOKENS[GOOD]
    assert request.token_source == "header"


@pytest.mark.anyio
async def test_adecide_returns_the_token() -> None:
    """adecide() uses averify."""
    assert await BearerGuard(FakeVerifier()).adecide(bearer(GOOD)) is TOKENS[GOOD]


def test_missing_token_is_401_unless_optional() -> None:
    """No credentials: 401 without error code, or anonymous (None) in optional mode."""
    outcome = BearerGuard(FakeVerifier()).decide(FakeRequest())
    assert isinstance(outcome, HTTPResponse)
    assert outcome.status == 401
    assert "error=" not in dict(outcome.headers)["www-authenticate"]
    with pytest.raises(MissingTokenError):
        BearerGuard(FakeVerifier()).authenticate(FakeRequest())
    assert BearerGuard(FakeVerifier(), optional=True).decide(FakeRequest()) is None


@pytest.mark.anyio
async def test_optional_still_rejects_bad_tokens() -> None:
    """optional lets anonymous requests in, never bad tokens."""
    guard = BearerGuard(FakeVerifier(), optional=True)
    with pytest.raises(InvalidTokenError):
        await guard.aauthenticate(bearer("nope"))


def test_unexpected_verifier_error_logs_type_only(caplog: pytest.LogCaptureFixture) -> None:
    """A verifier bug is a 401 and the log names only the exception type."""

    class Buggy(FakeVerifier):
        def verify(self, token: str) -> AccessToken:
            raise KeyError(token)

    with pytest.raises(InvalidTokenError) as info:
        BearerGuard(Buggy()).authenticate(bearer(GOOD))
    assert info.value.reason == "verifier_error"
    assert GOOD not in caplog.text
    assert "KeyError" in caplog.text


def test_render_adds_vary() -> None:
    """Every rendered error varies on Authorization and carries the guard's realm."""
    response = BearerGuard(FakeVerifier(), realm="shop").render(InvalidTokenError())
    headers = dict(response.headers)
    assert headers["vary"] == "Authorization"
    assert headers["www-authenticate"].startswith('Bearer realm="shop"')
    assert response.status_line == "401 Unauthorized"


def test_repr_shows_no_secrets() -> None:
    """repr shows the configuration only."""
    text = repr(BearerGuard(FakeVerifier(), exclude_paths=["/health"]))
    assert "/health" in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, "Authorization", id="absent"),
        pytest.param("", "Authorization", id="empty"),
        pytest.param("Accept", "Accept, Authorization", id="other"),
        pytest.param("accept, authorization", "accept, authorization", id="present"),
        pytest.param("*", "*", id="star"),
    ],
)
def test_add_vary(value: str | None, expected: str) -> None:
    """add_vary appends Authorization once."""
    assert add_vary(value) == expected


@pytest.mark.parametrize(
    ("uri", "path"),
    [
        pytest.param("/a/b?x=1", "/a/b", id="query"),
        pytest.param("/a#f", "/a", id="fragment"),
        pytest.param("http://h/a/b?x", "/a/b", id="absolute"),
        pytest.param("http://h", "/", id="absolute-no-path"),
    ],
)
def test_raw_path_from_uri(uri: str, path: str) -> None:
    """The path of a raw request-target."""
    assert raw_path_from_uri(uri) == path


def test_bound_token_presented_as_bearer_is_refused() -> None:
    """A DPoP-bound token (cnf.jkt) sent as a plain Bearer token is a 401, cached or not."""
    bound = make_token("bound-token", "items:read")
    bound = AccessToken(
        bound.subject,
        bound.client_id,
        bound.scopes,
        bound.expires_at,
        {"cnf": {"jkt": JKT}},
        None,
        "bound-token",
    )

    class Binding(FakeVerifier):
        def verify(self, token: str) -> AccessToken:
            return bound if token == "bound-token" else super().verify(token)

        def cached(self, token: str) -> AccessToken | None:
            return bound if token == "bound-token" else None

    guard = BearerGuard(Binding())
    for _ in range(2):  # first sighting, then the remembered fast path
        with pytest.raises(InvalidTokenError) as info:
            guard.authenticate(bearer("bound-token"))
        assert info.value.reason == "sender_constrained"


def test_check_binding() -> None:
    """A bound token needs the matching proof key; an unbound one needs none."""
    plain = TOKENS[GOOD]
    assert check_binding(plain) is plain
    with pytest.raises(InvalidTokenError):
        check_binding(plain, JKT)
    bound = AccessToken("a", None, frozenset(), None, {"cnf": {"jkt": JKT}}, None, "t")
    assert check_binding(bound, JKT) is bound
    for proof in (None, "x" * 43):
        with pytest.raises(InvalidTokenError):
            check_binding(bound, proof)


class ProbingVerifier(FakeVerifier):
    """A verifier with a cache probe; counts averify calls."""

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
