"""attacks.md section A (credential transport), F (scope enforcement) and I (fail closed),
case by case, against both the ASGI and the WSGI middleware, in process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from scopegate._errors import (
    IntrospectionUnavailableError,
    KeySetUnavailableError,
)
from tests.core.test_attacks_support import (
    GOOD,
    FakeVerifier,
    Result,
    asgi_app,
    call_asgi,
    call_wsgi,
    wsgi_app,
)

FORM = ("content-type", "application/x-www-form-urlencoded")
BEARER = ("authorization", f"Bearer {GOOD}")

Case = Any


def case(
    id: str,
    status: int,
    error: str | None = None,
    *,
    method: str = "GET",
    target: str = "/me",
    headers: tuple[tuple[str, Any], ...] = (),
    body: bytes = b"",
    options: dict[str, Any] | None = None,
) -> Any:
    """One row of the matrix."""
    return pytest.param(method, target, headers, body, options or {}, status, error, id=id)


QUERY = {"allow_query_token": True}
FORM_ON = {"allow_form_token": True}

# Every case of attacks.md A (transport), with expected status and RFC 6750 error code.
TRANSPORT = [
    case("A1-no-authorization", 401),
    case("A2-basic-scheme", 401, headers=(("authorization", "Basic dXNlcjpwYXNz"),)),
    case("A2-token-scheme", 401, headers=(("authorization", "Token abc"),)),
    case("A2-dpop-scheme", 401, headers=(("authorization", "DPoP abc"),)),
    case("A2-bearerx-scheme", 401, headers=(("authorization", "Bearerx abc"),)),
    case("A3-bearer-no-token", 401, "invalid_token", headers=(("authorization", "Bearer"),)),
    case("A3-bearer-space-only", 401, "invalid_token", headers=(("authorization", "Bearer "),)),
    case("A4-lowercase-scheme", 200, headers=(("authorization", f"bearer {GOOD}"),)),
    case("A4-uppercase-scheme", 200, headers=(("authorization", f"BEARER {GOOD}"),)),
    case("A4-mixedcase-scheme", 200, headers=(("authorization", f"BeArEr {GOOD}"),)),
    case("A4-uppercase-header-name", 200, headers=(("AUTHORIZATION", f"Bearer {GOOD}"),)),
    case(
        "A6-header-and-query-disabled",
        400,
        "invalid_request",
        target="/me?access_token=x",
        headers=(BEARER,),
    ),
    case(
        "A6-header-and-query-enabled",
        400,
        "invalid_request",
        target=f"/me?access_token={GOOD}",
        headers=(BEARER,),
        options=QUERY,
    ),
    case(
        "A6-header-and-empty-query",
        400,
        "invalid_request",
        target="/me?access_token=",
        headers=(BEARER,),
    ),
    case(
        "A6-header-and-encoded-query-name",
        400,
        "invalid_request",
        target="/me?%61ccess_token=x",
        headers=(BEARER,),
    ),
    case(
        "A7-header-and-form-disabled",
        400,
        "invalid_request",
        method="POST",
        target="/echo",
        headers=(BEARER, FORM),
        body=b"a=1&access_token=x",
    ),
    case(
        "A7-header-and-form-enabled",
        400,
        "invalid_request",
        method="POST",
        target="/echo",
        headers=(BEARER, FORM),
        body=f"access_token={GOOD}".encode(),
        options=FORM_ON,
    ),
    case(
        "A7-header-and-form-put",
        400,
        "invalid_request",
        method="PUT",
        target="/echo",
        headers=(BEARER, FORM),
        body=b"access_token=x",
    ),
    case("A8-query-only-disabled", 401, target=f"/me?access_token={GOOD}"),
    case("A8-query-enabled-get", 200, target=f"/me?access_token={GOOD}", options=QUERY),
    case(
        "A8-query-enabled-post-ignored",
        401,
        method="POST",
        target=f"/echo?access_token={GOOD}",
        options=QUERY,
    ),
    case(
        "A8-query-enabled-bad-token",
        401,
        "invalid_token",
        target="/me?access_token=nope",
        options=QUERY,
    ),
    case(
        "A8-query-enabled-non-b64token",
        401,
        "invalid_token",
        target="/me?access_token=a%20b",
        options=QUERY,
    ),
    case(
        "A9-query-repeated",
        400,
        "invalid_request",
        target=f"/me?access_token={GOOD}&access_token={GOOD}",
        options=QUERY,
    ),
    case("A9-query-empty", 400, "invalid_request", target="/me?access_token=", options=QUERY),
    case("A9-query-no-equals", 400, "invalid_request", target="/me?access_token", options=QUERY),
    case(
        "A9-form-repeated",
        400,
        "invalid_request",
        method="POST",
        target="/echo",
        headers=(FORM,),
        body=f"access_token={GOOD}&access_token=x".encode(),
        options=FORM_ON,
    ),
    case(
        "A9-form-empty",
        400,
        "invalid_request",
        method="POST",
        target="/echo",
        headers=(FORM,),
        body=b"access_token=",
        options=FORM_ON,
    ),
    case(
        "A9-query-and-form",
        400,
        "invalid_request",
        method="POST",
        target=f"/echo?access_token={GOOD}",
        headers=(FORM,),
        body=f"access_token={GOOD}".encode(),
        options={**QUERY, **FORM_ON},
    ),
    case("A10-two-spaces", 200, headers=(("authorization", f"Bearer  {GOOD}"),)),
    case(
        "A11-tab-separator", 401, "invalid_token", headers=(("authorization", f"Bearer\t{GOOD}"),)
    ),
    case(
        "A11-trailing-junk",
        401,
        "invalid_token",
        headers=(("authorization", f"Bearer {GOOD} extra"),),
    ),
    case(
        "A11-inner-space", 401, "invalid_token", headers=(("authorization", "Bearer read token"),)
    ),
    case("A11-inner-tab", 401, "invalid_token", headers=(("authorization", "Bearer read\ttoken"),)),
    case("A12-surrounding-whitespace", 200, headers=(("authorization", f"  Bearer {GOOD} \t"),)),
    case("A13-comma", 401, "invalid_token", headers=(("authorization", "Bearer a,b"),)),
    case("A13-semicolon", 401, "invalid_token", headers=(("authorization", "Bearer a;b"),)),
    case("A13-quote", 401, "invalid_token", headers=(("authorization", 'Bearer a"b'),)),
    case("A13-bang", 401, "invalid_token", headers=(("authorization", "Bearer a!b"),)),
    case("A13-dollar", 401, "invalid_token", headers=(("authorization", "Bearer a$b"),)),
    case(
        "A13-non-ascii",
        401,
        "invalid_token",
        headers=(("authorization", "Bearer caf\xe9".encode("latin-1")),),
    ),
    case(
        "A13-utf8-bytes", 401, "invalid_token", headers=(("authorization", "Bearer tök".encode()),)
    ),
    case("A13-padding-inside", 401, "invalid_token", headers=(("authorization", "Bearer ab=c"),)),
    case("A13-b64token-chars-accepted", 200, headers=(("authorization", "Bearer b64+/~chars=="),)),
    case(
        "A15-oversized-token",
        401,
        "invalid_token",
        headers=(("authorization", "Bearer " + "a" * 100_000),),
    ),
    case(
        "A15-oversized-query-token",
        401,
        "invalid_token",
        target="/me?access_token=" + "a" * 100_000,
        options=QUERY,
    ),
    case(
        "A15-oversized-form-token",
        401,
        "invalid_token",
        method="POST",
        target="/echo",
        headers=(FORM,),
        body=b"access_token=" + b"a" * 20_000,
        options=FORM_ON,
    ),
    case(
        "A15-custom-limit",
        401,
        "invalid_token",
        headers=(("authorization", "Bearer long-scoped-token-xyz"),),
        options={"max_token_length": 20},
    ),
    case(
        "A15-custom-limit-exact",
        200,
        headers=(("authorization", "Bearer long-scoped-token-xyz"),),
        options={"max_token_length": 21},
    ),
    case("A16-cookie-ignored", 401, headers=(("cookie", f"access_token={GOOD}"),)),
    case("A16-x-access-token-ignored", 401, headers=(("x-access-token", GOOD),)),
    case(
        "A16-proxy-authorization-ignored", 401, headers=(("proxy-authorization", f"Bearer {GOOD}"),)
    ),
    case(
        "form-enabled-post",
        200,
        method="POST",
        target="/echo",
        headers=(FORM,),
        body=f"access_token={GOOD}".encode(),
        options=FORM_ON,
    ),
    case(
        "form-disabled-post",
        401,
        method="POST",
        target="/echo",
        headers=(FORM,),
        body=f"access_token={GOOD}".encode(),
    ),
    case(
        "form-enabled-put-ignored",
        401,
        method="PUT",
        target="/echo",
        headers=(FORM,),
        body=f"access_token={GOOD}".encode(),
        options=FORM_ON,
    ),
    case(
        "form-enabled-json-ignored",
        401,
        method="POST",
        target="/echo",
        headers=(("content-type", "application/json"),),
        body=f'{{"access_token": "{GOOD}"}}'.encode(),
        options=FORM_ON,
    ),
    case(
        "form-enabled-oversized-body-not-searched",
        401,
        method="POST",
        target="/echo",
        headers=(FORM,),
        body=f"access_token={GOOD}&pad=".encode() + b"x" * 70_000,
        options=FORM_ON,
    ),
    case("unknown-token", 401, "invalid_token", headers=(("authorization", "Bearer nope"),)),
]

# attacks.md F: scope enforcement with exact, case-sensitive matching.
SCOPES = [
    case("F1-missing-scope", 403, "insufficient_scope", target="/admin", headers=(BEARER,)),
    case(
        "F2-prefix-scopes",
        403,
        "insufficient_scope",
        target="/items",
        headers=(("authorization", "Bearer readonly-token"),),
    ),
    case(
        "F3-uppercase-scope",
        403,
        "insufficient_scope",
        target="/items",
        headers=(("authorization", "Bearer upper-token"),),
    ),
    case(
        "F4-all-of-one-missing",
        403,
        "insufficient_scope",
        target="/admin",
        headers=(("authorization", "Bearer a-token"),),
    ),
    case(
        "F4-all-of-granted",
        200,
        target="/admin",
        headers=(("authorization", "Bearer admin-token"),),
    ),
    case("F4-any-of-granted", 200, target="/any", headers=(("authorization", "Bearer a-token"),)),
    case(
        "F4-any-of-none",
        403,
        "insufficient_scope",
        target="/any",
        headers=(("authorization", "Bearer write-token"),),
    ),
    case(
        "F5-no-scope-route-needs-one",
        403,
        "insufficient_scope",
        target="/items",
        headers=(("authorization", "Bearer noscope-token"),),
    ),
    case(
        "F5-no-scope-route-needs-none",
        200,
        target="/me",
        headers=(("authorization", "Bearer noscope-token"),),
    ),
    case("F-scope-granted", 200, target="/items", headers=(BEARER,)),
]

Caller = Callable[..., Result]
ADAPTERS = [
    pytest.param(asgi_app, call_asgi, id="asgi"),
    pytest.param(wsgi_app, call_wsgi, id="wsgi"),
]


def check_rfc6750(result: Result, status: int, error: str | None) -> None:
    """Assert the status, the challenge and the JSON error body."""
    assert result.status == status, result.body
    assert result.status != 500
    if status >= 400:
        challenge = result.header("www-authenticate")
        assert challenge is not None
        assert challenge.startswith('Bearer realm="api"')
        assert result.error == error
        body = result.json()
        assert set(body) >= {"error", "error_description"}
        if error is not None:
            assert body["error"] == error
        assert "Authorization" in (result.header("vary") or "")
    else:
        assert result.header("www-authenticate") is None


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "options", "status", "error"), TRANSPORT + SCOPES
)
def test_transport_and_scope_matrix(
    make_app: Callable[..., Any],
    call: Caller,
    method: str,
    target: str,
    headers: tuple[tuple[str, Any], ...],
    body: bytes,
    options: dict[str, Any],
    status: int,
    error: str | None,
) -> None:
    """Each attacks.md A/F case gets its RFC 6750 status and error code, never a 500."""
    result = call(make_app(**options), method, target, headers, body)
    check_rfc6750(result, status, error)


def test_duplicate_authorization_asgi_is_400() -> None:
    """A-5: two Authorization fields in the raw ASGI header list are a 400 invalid_request."""
    result = call_asgi(asgi_app(), headers=[BEARER, BEARER])
    check_rfc6750(result, 400, "invalid_request")


def test_duplicate_authorization_other_scheme_asgi_is_400() -> None:
    """A-5: Bearer plus a Basic field is still a repeated field: 400."""
    result = call_asgi(asgi_app(), headers=[BEARER, ("authorization", "Basic dXNlcjpwYXNz")])
    check_rfc6750(result, 400, "invalid_request")


def test_duplicate_authorization_wsgi_merged_is_401() -> None:
    """A-5 under WSGI: the server-merged "a, b" value fails the grammar: 401 invalid_token."""
    result = call_wsgi(wsgi_app(), headers=[BEARER, BEARER])
    check_rfc6750(result, 401, "invalid_token")


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
def test_query_token_response_is_private(make_app: Callable[..., Any], call: Caller) -> None:
    """RFC 6750 §2.3: a response to a query-string token carries Cache-Control: private."""
    result = call(make_app(allow_query_token=True), "GET", f"/me?access_token={GOOD}")
    assert result.status == 200
    assert "private" in (result.header("cache-control") or "")
    assert result.json()["sub"] == "alice"


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
def test_header_token_response_not_marked_private(
    make_app: Callable[..., Any], call: Caller
) -> None:
    """Header tokens leave Cache-Control alone but add Vary: Authorization."""
    result = call(make_app(allow_query_token=True), "GET", "/me", [BEARER])
    assert result.status == 200
    assert result.header("cache-control") is None
    assert result.header("vary") == "Authorization"


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
@pytest.mark.parametrize(
    "chunk", [pytest.param(None, id="one-chunk"), pytest.param(7, id="chunks")]
)
def test_form_body_is_replayed_to_the_app(
    make_app: Callable[..., Any], call: Caller, chunk: int | None
) -> None:
    """A form body read to find the token is handed to the app unchanged."""
    body = f"x=1&access_token={GOOD}&y=%C3%A9".encode()
    kwargs = {"chunk": chunk} if call is call_asgi else {}
    result = call(make_app(allow_form_token=True), "POST", "/echo", [FORM], body, **kwargs)
    assert result.status == 200
    assert result.json()["body"] == body.decode()


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
def test_large_form_body_with_header_passes_unread(
    make_app: Callable[..., Any], call: Caller
) -> None:
    """A header-authenticated form body over the buffer cap reaches the app intact."""
    body = b"access_token=x&pad=" + b"y" * 100_000
    result = call(make_app(), "POST", "/echo", [BEARER, FORM], body)
    assert result.status == 200
    assert result.json()["body"] == body.decode()


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(TypeError("boom"), id="type-error"),
        pytest.param(RecursionError(), id="recursion-error"),
        pytest.param(KeyError("kid"), id="key-error"),
        pytest.param(ValueError('a"\r\nSet-Cookie: x=y'), id="value-error-crlf"),
    ],
)
def test_unexpected_verifier_exception_is_401(
    make_app: Callable[..., Any], call: Caller, exc: Exception
) -> None:
    """I-1: a verifier bug fails closed as 401 invalid_token with fixed text, never 500."""
    result = call(make_app(FakeVerifier(exc)), "GET", "/me", [BEARER])
    check_rfc6750(result, 401, "invalid_token")
    assert result.json()["error_description"] == "The access token is invalid"
    assert "Set-Cookie" not in str(result.headers)


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
@pytest.mark.parametrize(
    "exc",
    [
        pytest.param(KeySetUnavailableError(reason="jwks_down"), id="jwks-down"),
        pytest.param(IntrospectionUnavailableError(reason="as_down"), id="introspection-down"),
    ],
)
def test_dependency_failure_is_503(
    make_app: Callable[..., Any], call: Caller, exc: Exception
) -> None:
    """I-1 / section 0: infrastructure failures are 503 + Retry-After, never invalid_token."""
    result = call(make_app(FakeVerifier(exc)), "GET", "/me", [BEARER])
    assert result.status == 503
    assert result.header("retry-after") == "5"
    assert "invalid_token" not in (result.header("www-authenticate") or "")


FIXED_DESCRIPTIONS = {
    "Bearer token required",
    "The request is malformed",
    "The access token is invalid",
    "The access token lacks the required scope",
    "The bearer token is malformed",
    "The bearer token is missing",
    "The access token is too long",
    "The access token was sent by more than one method",
    "The request has more than one Authorization header",
    "The access_token parameter is repeated",
    "The access_token parameter is empty",
}


@pytest.mark.parametrize(("make_app", "call"), ADAPTERS)
@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "options", "status", "error"),
    [p for p in TRANSPORT + SCOPES if p.values[5] >= 400],
)
def test_error_descriptions_are_fixed_text(
    make_app: Callable[..., Any],
    call: Caller,
    method: str,
    target: str,
    headers: tuple[tuple[str, Any], ...],
    body: bytes,
    options: dict[str, Any],
    status: int,
    error: str | None,
) -> None:
    """I-2/I-3: error_description is one of a few fixed texts and never echoes input."""
    result = call(make_app(**options), method, target, headers, body)
    description = result.json()["error_description"]
    assert description in FIXED_DESCRIPTIONS
    assert GOOD not in (result.header("www-authenticate") or "")
