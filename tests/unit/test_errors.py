"""The error hierarchy renders exact RFC 6750 responses."""

from __future__ import annotations

import json

import pytest

from scopegate._errors import (
    BearerError,
    ConfigurationError,
    InsufficientScopeError,
    IntrospectionUnavailableError,
    InvalidRequestError,
    InvalidTokenError,
    KeySetUnavailableError,
    MissingTokenError,
    ServiceUnavailableError,
    check_realm,
)


def headers_of(err: BearerError, realm: str = "api") -> dict[str, str]:
    return dict(err.to_response(realm).headers)


def test_missing_token_has_no_error_attribute() -> None:
    """RFC 6750 §3.1: a request without credentials gets a bare challenge."""
    response = MissingTokenError().to_response("api")
    assert response.status == 401
    assert dict(response.headers)["www-authenticate"] == 'Bearer realm="api"'


@pytest.mark.parametrize(
    ("err", "status", "code"),
    [
        pytest.param(InvalidRequestError(), 400, "invalid_request", id="invalid-request"),
        pytest.param(InvalidTokenError(), 401, "invalid_token", id="invalid-token"),
        pytest.param(InsufficientScopeError(["a"]), 403, "insufficient_scope", id="scope"),
    ],
)
def test_error_codes_and_statuses(err: BearerError, status: int, code: str) -> None:
    """Each error carries its status and its RFC 6750 error code in header and body."""
    response = err.to_response("api")
    assert response.status == status
    challenge = dict(response.headers)["www-authenticate"]
    assert challenge.startswith('Bearer realm="api", ')
    assert f'error="{code}"' in challenge
    assert json.loads(response.body)["error"] == code
    assert dict(response.headers)["cache-control"] == "no-store"


def test_insufficient_scope_lists_required_scopes() -> None:
    """A 403 names the scopes needed, in the challenge and the body."""
    err = InsufficientScopeError(["items:read", "admin"])
    assert 'scope="items:read admin"' in headers_of(err)["www-authenticate"]
    assert json.loads(err.to_response().body)["scope"] == "items:read admin"


def test_insufficient_scope_drops_out_of_grammar_scopes() -> None:
    """Scope values that could break the challenge syntax are never emitted."""
    err = InsufficientScopeError(['bad"scope', "ok"])
    assert 'scope="ok"' in headers_of(err)["www-authenticate"]


@pytest.mark.parametrize(
    "err",
    [
        pytest.param(ServiceUnavailableError(), id="generic"),
        pytest.param(KeySetUnavailableError(), id="jwks"),
        pytest.param(IntrospectionUnavailableError(retry_after=30), id="introspection"),
    ],
)
def test_unavailable_is_503_with_retry_after_and_no_invalid_token(err: BearerError) -> None:
    """A dependency failure is a 503 with Retry-After, never invalid_token."""
    response = err.to_response("api")
    headers = dict(response.headers)
    assert response.status == 503
    assert int(headers["retry-after"]) >= 1
    assert "invalid_token" not in headers["www-authenticate"]
    assert "invalid_token" not in response.body.decode()


def test_description_with_unsafe_characters_falls_back_to_fixed_text() -> None:
    """A description outside the RFC 6750 character set is replaced, never echoed."""
    err = InvalidTokenError('eyJ"\n injected')
    assert err.description == InvalidTokenError.default_description


def test_check_realm_rejects_quotes() -> None:
    """The realm is echoed in every challenge, so quotes are refused at construction."""
    assert check_realm("api") == "api"
    with pytest.raises(ConfigurationError):
        check_realm('a"b')
    with pytest.raises(ConfigurationError):
        check_realm("")


def test_configuration_error_is_value_error() -> None:
    """ConfigurationError is also a ValueError for callers that catch the builtin."""
    assert issubclass(ConfigurationError, ValueError)
