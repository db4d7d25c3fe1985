"""Bearer token extraction from an HTTP request (RFC 6750 §2), without any I/O.

Three transports exist. The ``Authorization`` request header (§2.1) is always read; the
``access_token`` query parameter (§2.3, GET only) and form body parameter (§2.2, POST with
``application/x-www-form-urlencoded`` only) are read only when enabled, because tokens in
URLs and bodies leak into logs and histories (RFC 9700 §4.14).

Outcomes (RFC 6750 §3.1):

* no credentials, or another scheme (``Basic``, ``DPoP``, ``Token``...): no token, and the
  caller answers 401 without an ``error`` code;
* a ``Bearer`` header that breaks the ``b64token`` grammar, or a token longer than the
  configured maximum: :class:`~scopegate.InvalidTokenError` (401 ``invalid_token``);
* two ``Authorization`` fields, a token sent by two methods (even by a disabled one), a
  repeated or empty ``access_token`` parameter: :class:`~scopegate.InvalidRequestError`
  (400 ``invalid_request``).

The length limit is applied before the grammar is checked, so an oversized value costs
nothing but its length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple
from urllib.parse import unquote_plus

from scopegate._errors import InvalidRequestError, InvalidTokenError
from scopegate._jose import MAX_TOKEN_LENGTH

__all__ = [
    "DEFAULT_MAX_TOKEN_LENGTH",
    "Credentials",
    "extract_token",
    "is_b64token",
    "is_form_content_type",
    "parse_authorization",
    "parse_credentials",
]

#: Default cap on a token's length (the one defined in :mod:`scopegate._jose`).
DEFAULT_MAX_TOKEN_LENGTH = MAX_TOKEN_LENGTH

# RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_B64CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"


def is_b64token(token: str) -> bool:
    """True when *token* matches the RFC 6750 §2.1 ``b64token`` grammar."""
    # bytes.translate runs in C: about twice as fast as a regex on a typical JWT.
    if not token.isascii():
        return False
    body = token.encode("ascii").rstrip(b"=")
    return bool(body) and not body.translate(None, _B64CHARS)


TokenSource = Literal["header", "query", "form"]


Scheme = Literal["bearer", "dpop"]


class Credentials(NamedTuple):
    """What a request carried: a raw token and where it came from, or nothing.

    Attributes:
        token: The raw token, or ``None`` when the request had no bearer credentials.
        source: ``"header"``, ``"query"`` or ``"form"``; ``None`` without a token.
        scheme: ``"bearer"``, or ``"dpop"`` for ``Authorization: DPoP`` (RFC 9449 §7.1).
    """

    token: str | None
    source: TokenSource | None = None
    scheme: Scheme = "bearer"

    def __repr__(self) -> str:
        # The raw token must never reach a log through a repr.
        return (
            f"Credentials(token={'<hidden>' if self.token else None}, source={self.source!r}, "
            f"scheme={self.scheme!r})"
        )


NO_CREDENTIALS = Credentials(None, None)


def _too_long() -> InvalidTokenError:
    return InvalidTokenError("The access token is too long", reason="token_too_long")


def _malformed() -> InvalidTokenError:
    return InvalidTokenError("The bearer token is malformed", reason="malformed_bearer")


def parse_authorization(value: str, max_length: int = DEFAULT_MAX_TOKEN_LENGTH) -> str | None:
    """Return the token of one ``Authorization: Bearer`` field value, or ``None``.

    See :func:`parse_credentials`; only the ``Bearer`` scheme is read here.
    """
    credentials = parse_credentials(value, max_length)
    return None if credentials is None else credentials.token


def parse_credentials(
    value: str, max_length: int = DEFAULT_MAX_TOKEN_LENGTH, *, dpop: bool = False
) -> Credentials | None:
    """Return the credentials of one ``Authorization`` field value, or ``None`` for another
    scheme.

    The scheme is matched case-insensitively (RFC 9110 §11.1), followed by one or more
    spaces and a ``b64token`` (RFC 6750 §2.1). Whitespace around the whole value is
    ignored (RFC 9110 §5.5).

    Args:
        value: The field value, decoded as latin-1.
        max_length: Longest token accepted, checked before the grammar.
        dpop: Also read the ``DPoP`` scheme (RFC 9449 §7.1, same token grammar).

    Returns:
        The token and its scheme, or ``None`` when the credentials use another scheme.

    Raises:
        InvalidTokenError: The scheme without a token, a tab or junk after the scheme,
            a character outside ``b64token``, or a token over *max_length*.
    """
    value = value.strip(" \t")
    scheme: Scheme
    if value[:6].lower() == "bearer":
        scheme, size = "bearer", 6
    elif dpop and value[:4].lower() == "dpop":
        scheme, size = "dpop", 4
    else:
        return None
    if len(value) == size:
        raise InvalidTokenError("The bearer token is missing", reason="empty_bearer")
    separator = value[size]
    if separator == "\t":
        raise _malformed()
    if separator != " ":
        # "Bearerx ...": a different (unknown) scheme, so no credentials of ours at all.
        return None
    token = value[size + 1 :].lstrip(" ")
    if len(token) > max_length:
        raise _too_long()
    if not is_b64token(token):
        raise _malformed()
    # tuple.__new__: the fields in order, without the NamedTuple's Python-level __new__
    # (0.08 µs less than Credentials(...)).
    return tuple.__new__(Credentials, (token, "header", scheme))


def is_form_content_type(content_type: str | None) -> bool:
    """True for ``application/x-www-form-urlencoded`` (any parameters, any case)."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip(" \t").lower()
    return media_type == "application/x-www-form-urlencoded"


def _access_token_params(data: str) -> list[str]:
    """Raw (still encoded) values of every ``access_token`` parameter in *data*."""
    # Fast path: neither the plain name nor an escape that could spell it.
    if "access" not in data and "%" not in data:
        return []
    values: list[str] = []
    for part in data.split("&"):
        name, _, raw = part.partition("=")
        if "%" in name or "+" in name:
            # Frameworks decode names, so "%61ccess_token" is the same parameter to them.
            name = unquote_plus(name, errors="replace")
        if name == "access_token":
            values.append(raw)
    return values


def _decode_param(raw: str, max_length: int) -> str:
    # Percent-encoding triples the length at most; refuse before decoding anything.
    if len(raw) > 3 * max_length:
        raise _too_long()
    token = unquote_plus(raw, errors="replace")
    if len(token) > max_length:
        raise _too_long()
    if not is_b64token(token):
        raise _malformed()
    return token


def _multiple_methods() -> InvalidRequestError:
    return InvalidRequestError(
        "The access token was sent by more than one method", reason="multiple_methods"
    )


def extract_token(
    *,
    authorization: Sequence[str],
    method: str,
    query_string: str = "",
    form_body: bytes | None = None,
    allow_query_token: bool = False,
    allow_form_token: bool = False,
    max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
    dpop: bool = False,
) -> Credentials:
    """Find the bearer token of a request (RFC 6750 §2) and say where it came from.

    Args:
        authorization: Every ``Authorization`` field value of the request, in order (read
            the raw header list: a repeated field is a 400).
        method: The request method, upper case (``GET`` for a WebSocket handshake).
        query_string: The raw, still percent-encoded query string.
        form_body: The ``application/x-www-form-urlencoded`` body, or ``None`` when the
            request has none or it was not read.
        allow_query_token: Accept ``?access_token=`` on GET requests (§2.3).
        allow_form_token: Accept an ``access_token`` form field on POST requests (§2.2).
        max_token_length: Longest token accepted.
        dpop: Also read ``Authorization: DPoP`` (RFC 9449 §7.1).

    Returns:
        :class:`Credentials`, with ``token=None`` when there are no bearer credentials.

    Raises:
        InvalidRequestError: Repeated header, several methods, repeated or empty parameter.
        InvalidTokenError: A token that is malformed or too long.
    """
    header: Credentials | None = None
    if authorization:
        if len(authorization) > 1:
            raise InvalidRequestError(
                "The request has more than one Authorization header",
                reason="duplicate_authorization",
            )
        header = parse_credentials(authorization[0], max_token_length, dpop=dpop)
    query_values = _access_token_params(query_string) if query_string else []
    form_values = _access_token_params(form_body.decode("latin-1")) if form_body else []
    if header is not None:
        # RFC 6750 §2: one method only; checked even for disabled transports, which also
        # keeps a token that leaked into a URL from being silently accepted.
        if query_values or form_values:
            raise _multiple_methods()
        return header
    if not allow_query_token:
        query_values = []
    if not allow_form_token:
        form_values = []
    if query_values and form_values:
        raise _multiple_methods()
    source: TokenSource
    if query_values and method == "GET":
        source, values = "query", query_values
    elif form_values and method == "POST":
        source, values = "form", form_values
    else:
        return NO_CREDENTIALS
    if len(values) > 1:
        raise InvalidRequestError(
            "The access_token parameter is repeated", reason="repeated_parameter"
        )
    if not values[0]:
        raise InvalidRequestError("The access_token parameter is empty", reason="empty_parameter")
    return Credentials(_decode_param(values[0], max_token_length), source)
