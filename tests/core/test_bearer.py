"""RFC 6750 §2 token extraction (scopegate._bearer), without any server."""

from __future__ import annotations

import pytest

from scopegate._bearer import (
    Credentials,
    extract_token,
    is_form_content_type,
    parse_authorization,
)
from scopegate._errors import InvalidRequestError, InvalidTokenError


@pytest.mark.parametrize(
    ("value", "token"),
    [
        pytest.param("Bearer abc", "abc", id="plain"),
        pytest.param("bearer abc", "abc", id="lowercase"),
        pytest.param("BEARER abc", "abc", id="uppercase"),
        pytest.param("Bearer   abc", "abc", id="several-spaces"),
        pytest.param("  Bearer abc \t", "abc", id="surrounding-ows"),
        pytest.param("Bearer a-b.c_d~e+f/g==", "a-b.c_d~e+f/g==", id="all-b64token-chars"),
        pytest.param("Basic dXNlcjpwYXNz", None, id="basic"),
        pytest.param("DPoP abc", None, id="dpop"),
        pytest.param("Token abc", None, id="token"),
        pytest.param("Bearerabc", None, id="bearer-prefix-scheme"),
        pytest.param("", None, id="empty"),
    ],
)
def test_parse_authorization_accepts(value: str, token: str | None) -> None:
    """Valid bearer credentials give the token; other schemes give None."""
    assert parse_authorization(value) == token


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("Bearer", "empty_bearer", id="no-token"),
        pytest.param("Bearer    ", "empty_bearer", id="spaces-only"),
        pytest.param("Bearer\tabc", "malformed_bearer", id="tab"),
        pytest.param("Bearer abc def", "malformed_bearer", id="inner-space"),
        pytest.param("Bearer abc,", "malformed_bearer", id="comma"),
        pytest.param("Bearer a=b", "malformed_bearer", id="padding-in-middle"),
        pytest.param("Bearer =", "malformed_bearer", id="padding-only"),
        pytest.param("Bearer caf\xe9", "malformed_bearer", id="non-ascii"),
        pytest.param("Bearer abc\r\nX: y", "malformed_bearer", id="crlf"),
        pytest.param("Bearer " + "a" * 8193, "token_too_long", id="too-long"),
    ],
)
def test_parse_authorization_rejects(value: str, reason: str) -> None:
    """Bearer values outside the grammar or over the limit are invalid_token."""
    with pytest.raises(InvalidTokenError) as info:
        parse_authorization(value)
    assert info.value.reason == reason


def test_length_limit_is_configurable() -> None:
    """max_length bounds the token itself, inclusive."""
    assert parse_authorization("Bearer " + "a" * 20, 20) == "a" * 20
    with pytest.raises(InvalidTokenError):
        parse_authorization("Bearer " + "a" * 21, 20)


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        pytest.param("application/x-www-form-urlencoded", True, id="plain"),
        pytest.param("Application/X-WWW-Form-Urlencoded; charset=utf-8", True, id="params"),
        pytest.param("multipart/form-data; boundary=x", False, id="multipart"),
        pytest.param("application/json", False, id="json"),
        pytest.param(None, False, id="none"),
        pytest.param("", False, id="empty"),
    ],
)
def test_is_form_content_type(content_type: str | None, expected: bool) -> None:
    """Only application/x-www-form-urlencoded is a form body (RFC 6750 §2.2)."""
    assert is_form_content_type(content_type) is expected


def test_extract_header() -> None:
    """A header token is returned with source 'header'."""
    assert extract_token(authorization=["Bearer abc"], method="GET") == Credentials("abc", "header")


def test_extract_nothing() -> None:
    """No credentials at all give an empty Credentials."""
    assert extract_token(authorization=[], method="GET") == Credentials(None, None)


def test_extract_query_and_form_sources() -> None:
    """Enabled query (GET) and form (POST) transports report their source."""
    query = extract_token(
        authorization=[],
        method="GET",
        query_string="a=1&access_token=x%2By",
        allow_query_token=True,
    )
    assert query == Credentials("x+y", "query")
    form = extract_token(
        authorization=[], method="POST", form_body=b"access_token=abc", allow_form_token=True
    )
    assert form == Credentials("abc", "form")


def test_extract_plus_in_query_decodes_to_space() -> None:
    """A raw '+' in a query value is a space after form decoding, so it is malformed."""
    with pytest.raises(InvalidTokenError):
        extract_token(
            authorization=[], method="GET", query_string="access_token=a+b", allow_query_token=True
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"authorization": ["Bearer a", "Bearer a"]}, id="duplicate-header"),
        pytest.param(
            {"authorization": ["Bearer a"], "query_string": "access_token=a"}, id="header+query"
        ),
        pytest.param(
            {"authorization": ["Bearer a"], "form_body": b"access_token=a"}, id="header+form"
        ),
        pytest.param(
            {"query_string": "access_token=a&access_token=a", "allow_query_token": True},
            id="repeated-query",
        ),
        pytest.param(
            {"query_string": "access_token=", "allow_query_token": True}, id="empty-query"
        ),
    ],
)
def test_extract_invalid_request(kwargs: dict[str, object]) -> None:
    """The 400 cases of RFC 6750 §3.1 raise InvalidRequestError."""
    kwargs.setdefault("authorization", [])
    with pytest.raises(InvalidRequestError):
        extract_token(method="GET", **kwargs)  # type: ignore[arg-type]


def test_disabled_transports_are_ignored_without_header() -> None:
    """With transports disabled, parameters alone are no credentials (attacks.md A-8)."""
    creds = extract_token(
        authorization=[], method="POST", query_string="access_token=a", form_body=b"access_token=b"
    )
    assert creds == Credentials(None, None)


def test_credentials_repr_hides_token() -> None:
    """The raw token never appears in a repr."""
    assert "secret" not in repr(Credentials("secret", "header"))


@pytest.mark.parametrize(
    ("token", "ok"),
    [
        pytest.param("abc", True, id="letters"),
        pytest.param("a-b.c_d~e+f/g", True, id="all-symbols"),
        pytest.param("abc==", True, id="padding"),
        pytest.param("=", False, id="only-padding"),
        pytest.param("", False, id="empty"),
        pytest.param("a=b", False, id="inner-padding"),
        pytest.param("ab\u00e9", False, id="non-ascii"),
        pytest.param("a b", False, id="space"),
        pytest.param("a%b", False, id="percent"),
    ],
)
def test_is_b64token(token: str, ok: bool) -> None:
    """is_b64token implements 1*b64char *"=" exactly."""
    from scopegate._bearer import is_b64token

    assert is_b64token(token) is ok
