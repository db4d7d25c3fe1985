"""Errors that know their RFC 6750 response.

Every error a request can end in is a :class:`BearerError`; it carries its HTTP status,
its RFC 6750 ``error`` code and renders itself to a framework-neutral :class:`HTTPResponse`
that every adapter (ASGI, WSGI, Starlette, Flask, Django, ...) sends as is. The
hierarchy::

    ScopegateError
    ├── BearerError                          renders an RFC 6750 §3 response
    │   ├── MissingTokenError                401, challenge without ``error`` (§3.1)
    │   ├── InvalidRequestError              400 ``invalid_request``
    │   ├── InvalidTokenError                401 ``invalid_token``
    │   ├── InvalidDPoPProofError            401 ``invalid_dpop_proof`` (RFC 9449 §7.1)
    │   │   └── UseDPoPNonceError            401 ``use_dpop_nonce`` + ``DPoP-Nonce`` (§9)
    │   ├── InsufficientUserAuthenticationError  401, ``acr_values``/``max_age`` (RFC 9470)
    │   ├── InsufficientScopeError           403 ``insufficient_scope`` with ``scope``
    │   └── ServiceUnavailableError          503 with ``Retry-After``; never ``invalid_token``
    │       ├── KeySetUnavailableError       JWKS or discovery unreachable / malformed
    │       └── IntrospectionUnavailableError  RFC 7662 endpoint unreachable / malformed
    └── ConfigurationError (also ValueError) raised at start-up, never per request

When the guard accepts DPoP as well as Bearer, a response carries both challenges in one
``WWW-Authenticate`` field (``Bearer realm=..., DPoP algs=...``); the error goes in the
challenge of the scheme the request used (:attr:`BearerError.scheme`).

``error_description`` is always a fixed text chosen by the library (RFC 6750 §3 limits it
to ``%x20-21 / %x23-5B / %x5D-7E``); it never contains token or exception text. The
``reason`` attribute is a short fixed code (``"expired"``, ``"bad_signature"``...) for
logs and diagnostics, equally free of attacker input.
"""

from __future__ import annotations

import http
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from scopegate._jose import is_scope_token

__all__ = [
    "REASONS",
    "BearerError",
    "ConfigurationError",
    "HTTPResponse",
    "InsufficientScopeError",
    "InsufficientUserAuthenticationError",
    "IntrospectionUnavailableError",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "KeySetUnavailableError",
    "MissingTokenError",
    "ScopegateError",
    "ServiceUnavailableError",
    "UseDPoPNonceError",
]

#: Reason codes of every error a request can end in, except the JWT rule table's
#: (:data:`scopegate._checks.REASONS`), and what each means. Together the two tables are
#: the complete, stable vocabulary of ``BearerError.reason`` that logs, records and
#: metrics use (a metric label takes only these values); a code is defined once.
REASONS: Mapping[str, str] = MappingProxyType(
    {
        # The defaults of the error classes (an error raised without a reason).
        "missing_token": "no bearer credentials (none sent, or another scheme)",
        "invalid_request": "a malformed request (InvalidRequestError without a reason)",
        "invalid_token": "an invalid token (InvalidTokenError without a reason)",
        "invalid_dpop_proof": "an invalid DPoP proof (InvalidDPoPProofError without a reason)",
        "temporarily_unavailable": "a dependency is down (ServiceUnavailableError without "
        "a reason)",
        # Token transport (RFC 6750 §2, scopegate._bearer).
        "token_too_long": "the presented token is longer than the guard's cap",
        "malformed_bearer": "the Authorization value breaks the b64token grammar",
        "empty_bearer": "'Bearer' without a token",
        "multiple_methods": "the token was sent by more than one method (400)",
        "duplicate_authorization": "more than one Authorization field (400)",
        "repeated_parameter": "the access_token parameter is repeated (400)",
        "empty_parameter": "the access_token parameter is empty (400)",
        # The guard and the endpoint requirements.
        "method_not_allowed": "an RFC 9728 metadata document asked for with a method "
        "other than GET or HEAD (400)",
        "verifier_error": "a custom verifier raised a non-scopegate exception (fail closed)",
        "unsupported_token_format": "a JWT or opaque token with no verifier for its kind",
        "insufficient_scope": "the token lacks a required scope (403)",
        "insufficient_user_authentication": "acr or auth_time falls short of a step-up "
        "requirement (RFC 9470)",
        "dpop_required": "DPoP is required and the token came as a Bearer token",
        "dpop_binding": "the proof's key is not the key the token is bound to (cnf.jkt)",
        # DPoP proofs (RFC 9449, scopegate._dpop).
        "dpop_missing": "no DPoP header with an Authorization: DPoP token",
        "dpop_multiple": "more than one DPoP header",
        "dpop_too_long": "the proof is over max_proof_length",
        "dpop_malformed": "the proof is not a compact JWS of strict JSON objects",
        "dpop_type": "the proof's typ is not dpop+jwt",
        "dpop_alg": "the proof's alg is missing, symmetric, none, or not allowed",
        "dpop_key": "the proof's jwk is missing, private, or not usable for its alg",
        "dpop_signature": "the proof's signature does not verify",
        "dpop_claims": "the proof's jti, htm, htu or iat is missing or mistyped",
        "dpop_method": "htm is not the request method",
        "dpop_url": "htu is not the request URL",
        "dpop_iat": "the proof's iat is outside the accepted window",
        "dpop_ath": "ath is missing or not the token's hash",
        "dpop_replayed": "this proof was already used with this key",
        "dpop_nonce": "the proof lacks the server's current nonce (use_dpop_nonce)",
        "dpop_replay_store_full": "the memory replay store is full (503)",
        "dpop_replay_unavailable": "the Redis replay store cannot be reached (503)",
        # Signing keys (503, scopegate._jwks).
        "jwks_unreachable": "the JWKS could not be fetched (connection, DNS, timeout)",
        "jwks_too_large": "the JWKS body is over the size cap",
        "jwks_http_status": "the JWKS answered with a status other than 200",
        "jwks_malformed": "the JWKS is not a usable JSON key set",
        "jwks_unavailable": "an unexpected failure while getting the keys",
        # Metadata discovery (503, scopegate._discovery).
        "discovery_unreachable": "the metadata could not be fetched",
        "discovery_http_status": "the metadata answered with a status other than 200",
        "discovery_malformed": "the metadata is not a strict JSON object",
        "discovery_issuer_mismatch": "the metadata names another issuer",
        "discovery_bad_endpoint": "the needed endpoint is missing or not an allowed URL",
        "discovery_unavailable": "a recent metadata failure is not retried yet",
        # Introspection (RFC 7662, scopegate._introspection): 401 ...
        "inactive": "the authorization server says the token is not active",
        "wrong_token_type": "not an access token (a refresh token; Keycloak: not Bearer)",
        # ... and 503.
        "unreachable": "the introspection endpoint could not be reached",
        "timeout": "the introspection call timed out",
        "response_too_large": "the introspection answer is over the size cap",
        "redirect": "the introspection endpoint answered with a redirect",
        "http_status": "the introspection endpoint answered with another error status",
        "content_type": "the introspection answer is not application/json",
        "not_json": "the introspection answer is not a strict JSON object",
        "bad_active": "the introspection answer's active member is not a boolean",
        "rejected_credentials": "the introspection endpoint refused our client credentials",
        "malformed_response": "an active answer with a malformed member",
        # Several issuers (scopegate._issuers).
        "issuer_resolver": "the issuer resolver failed or timed out (503)",
        # MCP servers (scopegate.integrations.mcp).
        "body_too_large": "an MCP request body over the gate's cap (413)",
        "tool_scope": "the token lacks a called tool's scopes (403, the client steps up)",
        # Presets (scopegate.presets).
        "wrong_token_version": "Entra ID: the token's ver is not the expected one",
        "wrong_token_use": "Cognito: token_use is not access",
        "wrong_client": "Cognito: the client_id is not one of the allowed app clients",
    }
)

# RFC 6750 §3: error_description and scope values are limited to these characters.
_SAFE_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


_REASON_PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


@dataclass(frozen=True, slots=True)
class HTTPResponse:
    """A rendered response: what every adapter sends, whatever the framework.

    Attributes:
        status: The HTTP status code.
        headers: Header pairs, names lower-case, values ``str`` (latin-1 safe).
        body: The body as bytes (JSON).
    """

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def status_line(self) -> str:
        """``"401 Unauthorized"``: the status as WSGI's ``start_response`` wants it."""
        return f"{self.status} {_REASON_PHRASES.get(self.status, 'Error')}"

    def json(self) -> Any:
        """The body parsed as JSON (for tests and embedding)."""
        return json.loads(self.body)


class ScopegateError(Exception):
    """Base class of every exception scopegate raises."""


class ConfigurationError(ScopegateError, ValueError):
    """A setting is missing or unsafe; raised when the object is built, not per request."""


def quote_challenge_value(value: str) -> str:
    """Return *value* as an RFC 9110 quoted-string for a challenge parameter."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _params(params: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"{k}={quote_challenge_value(v)}" for k, v in params)


def retry_after_seconds(seconds: float) -> int:
    """The ``Retry-After`` delay for a wait of *seconds* (RFC 9110 §10.2.3): whole
    seconds, rounded up so that a client never comes back before the wait is over, and
    at least 1."""
    return max(1, math.ceil(seconds))


def check_realm(realm: str) -> str:
    """Validate a configured realm: it is echoed in every challenge."""
    if not realm or not _SAFE_TEXT.fullmatch(realm):
        raise ConfigurationError("realm must be non-empty printable ASCII without '\"' or '\\'")
    return realm


class BearerError(ScopegateError):
    """An error that ends the request with an RFC 6750 response.

    Args:
        description: Fixed ``error_description`` text; defaults to the class's own. It
            must be a constant of the library, never request data.
        reason: A short fixed code for logs and ``scopegate token inspect``.
        scopes: Scopes the resource needs, announced in the challenge's ``scope``
            attribute (RFC 6750 §3) so a client knows what to ask for.
    """

    status: ClassVar[int] = 401
    error: ClassVar[str | None] = None
    default_description: ClassVar[str] = "Bearer token required"
    #: The scheme whose challenge carries the error: ``"Bearer"``, or ``"DPoP"`` for a
    #: request that used ``Authorization: DPoP`` (the guard sets it) and for proof errors.
    scheme: str = "Bearer"

    def __init__(
        self,
        description: str | None = None,
        *,
        reason: str | None = None,
        scopes: Sequence[str] = (),
    ) -> None:
        text = description if description is not None else self.default_description
        if not _SAFE_TEXT.fullmatch(text):
            # Defence in depth: a description that could carry request data is dropped.
            text = self.default_description
        self.description = text
        self.reason = reason or self.error or "missing_token"
        # Scope names come from the application, not the request, but stay in grammar.
        self.scopes: tuple[str, ...] = tuple(s for s in scopes if is_scope_token(s))
        super().__init__(text)

    def challenge_params(self) -> list[tuple[str, str]]:
        """Extra challenge parameters after ``realm`` (RFC 6750 §3)."""
        params = []
        if self.error is not None:
            params += [("error", self.error), ("error_description", self.description)]
        if self.scopes:
            params.append(("scope", " ".join(self.scopes)))
        return params

    def challenge(
        self,
        realm: str,
        extra: Sequence[tuple[str, str]] = (),
        *,
        dpop_algs: str | None = None,
        bearer: bool = True,
    ) -> str:
        """The ``WWW-Authenticate`` value: the ``Bearer`` challenge for *realm*, with
        *extra* parameters last (``resource_metadata``, RFC 9728 §5.1), and a ``DPoP``
        challenge with ``algs`` when DPoP is accepted (RFC 9449 §7.1). The error
        parameters go in the challenge of :attr:`scheme`; with ``bearer=False`` (DPoP
        required) only the DPoP challenge is sent."""
        challenges = []
        own = self.challenge_params()
        if bearer:
            params = [("realm", realm), *(own if self.scheme == "Bearer" else ()), *extra]
            challenges.append("Bearer " + _params(params))
        if dpop_algs is not None:
            params = [("realm", realm), *(own if self.scheme == "DPoP" or not bearer else ())]
            params += [("algs", dpop_algs), *extra]
            challenges.append("DPoP " + _params(params))
        return ", ".join(challenges)

    def body(self) -> dict[str, str]:
        """The JSON error object."""
        return {
            "error": self.error or "unauthorized",
            "error_description": self.description,
        }

    def extra_headers(self) -> list[tuple[str, str]]:
        """Headers besides the challenge (``Retry-After`` on 503)."""
        return []

    def to_response(
        self,
        realm: str = "api",
        extra: Sequence[tuple[str, str]] = (),
        *,
        dpop_algs: str | None = None,
        bearer: bool = True,
    ) -> HTTPResponse:
        """Render the framework-neutral response for this error (the other arguments:
        what the guard accepts, see :meth:`challenge`)."""
        body = json.dumps(self.body(), separators=(",", ":")).encode()
        challenge = self.challenge(realm, extra, dpop_algs=dpop_algs, bearer=bearer)
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body))),
            ("www-authenticate", challenge),
            ("cache-control", "no-store"),
            *self.extra_headers(),
        ]
        return HTTPResponse(self.status, tuple(headers), body)


class MissingTokenError(BearerError):
    """No bearer credentials (none sent, or another scheme): 401 without ``error``."""

    status = 401
    error = None
    default_description = "Bearer token required"


class InvalidRequestError(BearerError):
    """Malformed request, e.g. a token sent by two methods (RFC 6750 §3.1): 400."""

    status = 400
    error = "invalid_request"
    default_description = "The request is malformed"


class InvalidTokenError(BearerError):
    """The token is malformed, forged, expired, revoked or not for us: 401."""

    status = 401
    error = "invalid_token"
    default_description = "The access token is invalid"


class InvalidDPoPProofError(BearerError):
    """The DPoP proof is missing, malformed, replayed or for another request: 401
    ``invalid_dpop_proof`` in the DPoP challenge (RFC 9449 §7.1)."""

    status = 401
    error = "invalid_dpop_proof"
    default_description = "The DPoP proof is invalid"
    scheme = "DPoP"


class UseDPoPNonceError(InvalidDPoPProofError):
    """The server requires a nonce in the proof (RFC 9449 §9): 401 ``use_dpop_nonce``
    with the nonce to use in ``DPoP-Nonce``.

    Args:
        nonce: The current nonce.
    """

    error = "use_dpop_nonce"
    default_description = "The DPoP proof must carry the server's nonce"

    def __init__(self, *, nonce: str) -> None:
        self.nonce = nonce
        super().__init__(reason="dpop_nonce")

    def extra_headers(self) -> list[tuple[str, str]]:
        return [("dpop-nonce", self.nonce)]


class InsufficientUserAuthenticationError(BearerError):
    """The user's authentication is too weak or too old for the resource: 401
    ``insufficient_user_authentication`` naming what is needed (RFC 9470 §3).

    Args:
        acr_values: The authentication context classes that would do.
        max_age: The largest acceptable age of the authentication, in seconds.
    """

    status = 401
    error = "insufficient_user_authentication"
    default_description = "A stronger or more recent authentication is required"

    def __init__(self, *, acr_values: Sequence[str] = (), max_age: int | None = None) -> None:
        # Values come from the application's own requirements, never from the request.
        # acr values share the scope-token grammar: printable, no space, quote or "\\".
        self.acr_values = tuple(a for a in acr_values if is_scope_token(a))
        self.max_age = max_age
        super().__init__(reason="insufficient_user_authentication")

    def challenge_params(self) -> list[tuple[str, str]]:
        params = super().challenge_params()
        if self.acr_values:
            params.append(("acr_values", " ".join(self.acr_values)))
        if self.max_age is not None:
            params.append(("max_age", str(self.max_age)))
        return params


class InsufficientScopeError(BearerError):
    """A valid token lacks the scope the resource needs: 403 (RFC 6750 §3.1).

    Args:
        required: The scopes to advertise in the challenge's ``scope`` attribute.
    """

    status = 403
    error = "insufficient_scope"
    default_description = "The access token lacks the required scope"

    def __init__(
        self,
        required: Sequence[str] = (),
        description: str | None = None,
        *,
        reason: str | None = None,
    ) -> None:
        super().__init__(description, reason=reason, scopes=required)

    @property
    def required(self) -> tuple[str, ...]:
        """The scopes the resource needs (the challenge's ``scope``)."""
        return self.scopes

    def body(self) -> dict[str, str]:
        data = super().body()
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        return data


class ServiceUnavailableError(BearerError):
    """The authorization server (keys, metadata, introspection) cannot be used: 503.

    Never ``invalid_token``: a client must not throw away a good token because our
    dependency failed.

    Args:
        retry_after: Seconds until a retry may succeed; ``Retry-After`` says it in
            whole seconds, rounded up.
    """

    status = 503
    error = "temporarily_unavailable"
    default_description = "The authorization server is unavailable"

    def __init__(
        self,
        description: str | None = None,
        *,
        reason: str | None = None,
        retry_after: float = 5,
    ) -> None:
        self.retry_after = retry_after_seconds(retry_after)
        super().__init__(description, reason=reason)

    def challenge_params(self) -> list[tuple[str, str]]:
        # An outage is no token problem: the challenge names no error and no scope.
        return []

    def extra_headers(self) -> list[tuple[str, str]]:
        return [("retry-after", str(self.retry_after))]


class KeySetUnavailableError(ServiceUnavailableError):
    """The JWKS or the discovery document could not be fetched or was malformed."""

    default_description = "The signing keys are unavailable"


class IntrospectionUnavailableError(ServiceUnavailableError):
    """The RFC 7662 introspection endpoint failed or answered malformed data."""

    default_description = "The token introspection service is unavailable"
