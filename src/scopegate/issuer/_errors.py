"""OAuth 2.0 token-endpoint errors that render their own JSON response.

RFC 6749 §5.2 (token endpoint), RFC 7009 §2.2.1 (revocation) and RFC 7662 §2.3
(introspection) share one error shape: a JSON body ``{"error", "error_description"}``
sent with ``Cache-Control: no-store`` and ``Pragma: no-cache``. The hierarchy::

    ScopegateError
    └── OAuthError                      renders an RFC 6749 §5.2 response
        ├── InvalidRequestError         400 ``invalid_request``
        │   └── RequestTooLargeError    413 ``invalid_request`` (body over the cap)
        ├── InvalidClientError          401 ``invalid_client`` + ``WWW-Authenticate: Basic``
        ├── InvalidGrantError           400 ``invalid_grant``
        ├── UnauthorizedClientError     400 ``unauthorized_client``
        ├── UnsupportedGrantTypeError   400 ``unsupported_grant_type``
        ├── InvalidScopeError           400 ``invalid_scope``
        ├── InvalidTargetError          400 ``invalid_target`` (RFC 8707 §2)
        ├── InvalidDPoPProofError       400 ``invalid_dpop_proof`` (RFC 9449 §5)
        │   └── UseDPoPNonceError       400 ``use_dpop_nonce`` + ``DPoP-Nonce`` (§8)
        ├── TooManyRequestsError        429 ``temporarily_unavailable`` + ``Retry-After``
        ├── TemporarilyUnavailableError 503 ``temporarily_unavailable`` + ``Retry-After``
        └── ServerError                 500 ``server_error``
    StoreUnavailableError               the state store cannot be reached (-> 503)
    ConfigurationError
    └── SettingError                    one named setting is wrong (load_config adds the line)

The DPoP errors are the authorization server's form of RFC 9449 §5: the error is in the
JSON body, with no ``WWW-Authenticate`` challenge (that is the resource server's form,
:class:`scopegate.InvalidDPoPProofError`).

The authorization endpoint's errors (RFC 6749 §4.1.2.1) use the same codes but travel
in the redirect (or, when the redirect URI cannot be trusted, on an HTML page); see
:mod:`scopegate.issuer._authorize`.

Descriptions are fixed texts chosen here; request input (grant type, scope, client id,
username) is never echoed back (issuer spec ER-2).
"""

from __future__ import annotations

import json
from typing import ClassVar

from scopegate._errors import (
    ConfigurationError,
    HTTPResponse,
    ScopegateError,
    quote_challenge_value,
    retry_after_seconds,
)

__all__ = [
    "InvalidClientError",
    "InvalidDPoPProofError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "OAuthError",
    "RequestTooLargeError",
    "ServerError",
    "SettingError",
    "StoreUnavailableError",
    "TemporarilyUnavailableError",
    "TooManyRequestsError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UseDPoPNonceError",
    "no_store_headers",
]

# RFC 6749 §5.1: token responses (and, by the same reasoning, error, introspection and
# revocation responses) must never be cached by an intermediary.
_NO_STORE = (
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
)


def no_store_headers() -> tuple[tuple[str, str], ...]:
    """The RFC 6749 §5.1 header set sent on every token-endpoint response."""
    return _NO_STORE


class SettingError(ConfigurationError):
    """One setting is wrong; :func:`~scopegate.issuer.load_config` adds file and line.

    Attributes:
        setting: The setting's name (the TOML key).
    """

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class StoreUnavailableError(ScopegateError):
    """The issuer's state store (memory or Redis) failed; the request answers 503."""


class OAuthError(ScopegateError):
    """An RFC 6749 §5.2 error with its HTTP status and fixed description.

    Args:
        description: A fixed text (RFC 6749 §5.2 charset); never request input.
    """

    status: ClassVar[int] = 400
    error: ClassVar[str] = "invalid_request"
    default_description: ClassVar[str] = "The request is invalid"

    def __init__(self, description: str | None = None) -> None:
        self.description = description or self.default_description
        super().__init__(self.description)

    def extra_headers(self, realm: str) -> tuple[tuple[str, str], ...]:
        """Headers added to the no-store set (challenges, ``Retry-After``)."""
        return ()

    def to_response(self, realm: str) -> HTTPResponse:
        """Render to ``(status, headers, body)``; *realm* is used by ``invalid_client``."""
        body = json.dumps(
            {"error": self.error, "error_description": self.description},
            separators=(",", ":"),
        ).encode()
        return HTTPResponse(self.status, _NO_STORE + self.extra_headers(realm), body)


class InvalidRequestError(OAuthError):
    """400 ``invalid_request``: malformed, duplicated or missing parameters (§5.2)."""


class RequestTooLargeError(InvalidRequestError):
    """413 ``invalid_request``: the body exceeds the configured cap (issuer spec REQ-8)."""

    status = 413
    default_description = "The request body is too large"


class InvalidClientError(OAuthError):
    """401 ``invalid_client`` with a ``Basic`` challenge (RFC 6749 §5.2, RFC 7617 §2).

    One generic description for every cause (unknown client, wrong secret, wrong method)
    so the response does not reveal which check failed (issuer spec CA-7).
    """

    status = 401
    error = "invalid_client"
    default_description = "Client authentication failed"

    def extra_headers(self, realm: str) -> tuple[tuple[str, str], ...]:
        """The ``Basic`` challenge: the only client-authentication scheme offered."""
        challenge = f'Basic realm={quote_challenge_value(realm)}, charset="UTF-8"'
        return (("www-authenticate", challenge),)


class InvalidGrantError(OAuthError):
    """400 ``invalid_grant``: bad user credentials or an unusable refresh token."""

    error = "invalid_grant"
    default_description = "The provided authorization grant is invalid"


class UnauthorizedClientError(OAuthError):
    """400 ``unauthorized_client``: the client may not use this grant type."""

    error = "unauthorized_client"
    default_description = "The client is not authorized to use this grant type"


class UnsupportedGrantTypeError(OAuthError):
    """400 ``unsupported_grant_type``: unknown grant, or one disabled on this server."""

    error = "unsupported_grant_type"
    default_description = "The grant type is not supported"


class InvalidScopeError(OAuthError):
    """400 ``invalid_scope``: malformed, not allowed, or no default scope (RFC 6749 §3.3)."""

    error = "invalid_scope"
    default_description = "The requested scope is invalid or not allowed"


class InvalidTargetError(OAuthError):
    """400 ``invalid_target``: a ``resource`` that is malformed or not allowed (RFC 8707 §2)."""

    error = "invalid_target"
    default_description = "The requested resource is invalid or not allowed"


class InvalidDPoPProofError(OAuthError):
    """400 ``invalid_dpop_proof``: the token request's DPoP proof is invalid (RFC 9449 §5).

    Args:
        reason: A fixed code for logs: the proof check that failed (``dpop_signature``,
            ``dpop_url``, ``dpop_replayed``...; see :mod:`scopegate._dpop`).
    """

    error = "invalid_dpop_proof"
    default_description = "The DPoP proof is invalid"

    def __init__(self, description: str | None = None, *, reason: str = "dpop_invalid") -> None:
        super().__init__(description)
        self.reason = reason


class UseDPoPNonceError(InvalidDPoPProofError):
    """400 ``use_dpop_nonce`` with the nonce to use in ``DPoP-Nonce`` (RFC 9449 §8).

    Args:
        nonce: The server's current nonce.
    """

    error = "use_dpop_nonce"
    default_description = "The DPoP proof must carry the server's nonce"

    def __init__(self, *, nonce: str) -> None:
        super().__init__(reason="dpop_nonce")
        self.nonce = nonce

    def extra_headers(self, realm: str) -> tuple[tuple[str, str], ...]:
        """The nonce the client must put in its next proof."""
        return (("dpop-nonce", self.nonce),)


class _RetryAfterError(OAuthError):
    # RFC 6749 §5.2 has one code for "come back later", whatever the cause: the status
    # says why (429 or 503), Retry-After says when.
    error = "temporarily_unavailable"

    def __init__(self, description: str | None = None, *, retry_after: float = 1) -> None:
        super().__init__(description)
        self.retry_after = retry_after_seconds(retry_after)

    def extra_headers(self, realm: str) -> tuple[tuple[str, str], ...]:
        return (("retry-after", str(self.retry_after)),)


class TooManyRequestsError(_RetryAfterError):
    """429 with ``Retry-After``: too many failed attempts (brute force) or token lookups."""

    status = 429
    default_description = "Too many failed attempts; retry later"


class TemporarilyUnavailableError(_RetryAfterError):
    """503 ``temporarily_unavailable`` with ``Retry-After``: a dependency is down."""

    status = 503
    default_description = "The authorization server is temporarily unavailable"


class ServerError(OAuthError):
    """500 ``server_error``: an unexpected failure; the exception text is never sent."""

    status = 500
    error = "server_error"
    default_description = "The authorization server encountered an unexpected error"
