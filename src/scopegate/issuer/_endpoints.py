"""The issuer's HTTP endpoints without I/O: request in, ``(status, headers, body)`` out.

The Starlette app (:mod:`scopegate.issuer._asgi`) and the WSGI app
(:mod:`scopegate.issuer._wsgi`) only translate to and from :class:`HTTPRequest` and
:class:`HTTPResponse`; every rule lives here once.

Request rules shared by the token, introspection and revocation endpoints (RFC 6749
§3.2, RFC 7662 §2.1, RFC 7009 §2.1): ``POST`` only (400 otherwise), a form body only
(``application/x-www-form-urlencoded``, optional ``charset=utf-8``), no query string
(credentials must never travel in the URL), every parameter at most once, empty values
treated as absent, strict UTF-8, and a size cap.

Brute-force counters (:mod:`scopegate.issuer._throttle`) are consulted here, in the
core: an attempt is reserved on the client address's and the client id's counters before
a client secret is hashed, and on the caller's lookup budget before an introspection or
revocation looks a token up. Adapters only translate the resulting 429.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from scopegate import _observe
from scopegate._errors import HTTPResponse
from scopegate._signing import SigningKeySet
from scopegate.issuer._clients import AuthenticatedClient, ClientAuthenticator
from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._dpop import TokenEndpointDPoP
from scopegate.issuer._errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuthError,
    RequestTooLargeError,
    ServerError,
    StoreUnavailableError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    no_store_headers,
)
from scopegate.issuer._grants import Grant, GrantRequest
from scopegate.issuer._store import IssuerStore, RefreshTokenRecord, token_hash
from scopegate.issuer._throttle import Limit, Limits, Reservation, Throttle, Throttled
from scopegate.issuer._tokens import TokenFactory, TokenInfo

__all__ = [
    "EndpointContext",
    "Form",
    "HTTPRequest",
    "HTTPResponse",
    "IntrospectionEndpoint",
    "JWKSEndpoint",
    "MetadataEndpoint",
    "RevocationEndpoint",
    "TokenEndpoint",
    "parse_form",
    "split_form",
]

logger = logging.getLogger("scopegate.issuer")
_MAX_FIELDS = 32
_MAX_TOKEN_LENGTH = 8192
_FORM_TYPE = "application/x-www-form-urlencoded"
# Fields that may appear once (RFC 9110 §5.3). Adapters join repeated fields with ", ",
# and neither a Basic credential (token68) nor the form media type contains a comma, so
# a comma means the client sent the field twice: a proxy reading the first value and the
# issuer reading the last would disagree on who is calling or what the body is.
_SINGLETON_FIELDS = ("authorization", "content-type")


@dataclass(frozen=True)
class HTTPRequest:
    """A framework-neutral request.

    Attributes:
        method: The HTTP method, upper-case.
        path: The URL path.
        query: The raw query string (without ``?``).
        headers: Header values by lower-case name. A field that arrived more than once
            must be joined into one value with ``", "`` (RFC 9110 §5.3), as WSGI
            servers and the ASGI adapter do, never reduced to one of its values: the
            endpoints refuse a repeated ``Authorization`` or ``Content-Type``.
        body: The request body (adapters cap its size).
        client_address: The peer address, used for throttling. Behind a reverse proxy
            this must be the proxy-verified client address, never a header the client
            could set itself (RFC 9700 §4.13).
    """

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    client_address: str | None = None

    def header(self, name: str) -> str | None:
        """A header value by lower-case name."""
        return self.headers.get(name)


def _json_response(status: int, payload: Any, headers: tuple[tuple[str, str], ...]) -> HTTPResponse:
    return HTTPResponse(status, headers, json.dumps(payload, separators=(",", ":")).encode())


class Form(dict[str, str]):
    """A parsed form: one value per parameter, plus every value of ``resource``.

    ``resource`` is the one parameter that may repeat (RFC 8707 §2); its values are in
    :attr:`resources`, never in the mapping.
    """

    resources: tuple[str, ...] = ()


#: Parameters that may appear more than once (RFC 8707 §2: one ``resource`` each).
REPEATABLE = frozenset({"resource"})


def collect_params(pairs: list[tuple[str, str]]) -> Form:
    """Apply RFC 6749 §3.2 to decoded pairs: no repeats (except ``resource``), empty = absent.

    Raises:
        InvalidRequestError: A parameter other than ``resource`` was repeated.
    """
    form = Form()
    seen: set[str] = set()
    resources: list[str] = []
    for name, value in pairs:
        if name in REPEATABLE:
            if value:
                resources.append(value)
            continue
        if name in seen:
            raise InvalidRequestError("A request parameter was repeated")
        seen.add(name)
        if value:  # RFC 6749 §3.2: an empty parameter is treated as omitted
            form[name] = value
    form.resources = tuple(resources)
    return form


def parse_form(request: HTTPRequest, max_body: int) -> Form:
    """Parse and vet an OAuth form body (RFC 6749 §3.2, App. B).

    Raises:
        InvalidRequestError: Wrong method or content type, a repeated ``Authorization``
            or ``Content-Type`` field, a query string, bad encoding, too many or repeated
            parameters.
        RequestTooLargeError: The body exceeds *max_body*.
    """
    if request.method != "POST":
        raise InvalidRequestError("The request must use the POST method")
    for name in _SINGLETON_FIELDS:
        if "," in (request.header(name) or ""):
            raise InvalidRequestError("A header field that must appear once was repeated")
    media, _, params = (request.header("content-type") or "").partition(";")
    if media.strip().lower() != _FORM_TYPE:
        raise InvalidRequestError("The request body must be application/x-www-form-urlencoded")
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            raise InvalidRequestError("The request body must be UTF-8")
    if request.query:
        raise InvalidRequestError("URL query parameters are not allowed")
    if len(request.body) > max_body:
        raise RequestTooLargeError()
    return collect_params(split_form(request.body, _MAX_FIELDS))


def split_form(data: str | bytes, max_fields: int) -> list[tuple[str, str]]:
    """Decode form-encoded *data* (a body or a query) into pairs (RFC 6749 App. B).

    Bytes must be ASCII; escapes must decode as strict UTF-8; at most *max_fields*.

    Raises:
        InvalidRequestError: Bad encoding or too many fields.
    """
    try:
        return parse_qsl(
            data.decode("ascii") if isinstance(data, bytes) else data,
            keep_blank_values=True,
            strict_parsing=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=max_fields,
        )
    except (UnicodeError, ValueError) as exc:
        raise InvalidRequestError("The request body is not valid form encoding") from exc


@dataclass(frozen=True)
class EndpointContext:
    """What the token, introspection and revocation endpoints are all built with."""

    config: IssuerConfig
    authenticator: ClientAuthenticator
    throttle: Throttle
    limits: Limits
    clock: Callable[[], float]


class _FormEndpoint:
    """Shared plumbing: parsing, throttling, client auth, error rendering."""

    def __init__(self, context: EndpointContext) -> None:
        self._config = context.config
        self._auth = context.authenticator
        self._throttle = context.throttle
        self._limits = context.limits
        self._clock = context.clock
        self._realm = context.config.issuer

    def handle(self, request: HTTPRequest) -> HTTPResponse:
        """Answer one request; never raises."""
        error: OAuthError
        try:
            return self._handle(request, self._clock())
        except OAuthError as exc:
            error = exc
        except StoreUnavailableError as exc:
            # One line per failed request: an outage must not bury the log in
            # tracebacks. The store's message names the server, never its password.
            logger.error("issuer state store unavailable, answered 503: %s", exc)
            error = TemporarilyUnavailableError(retry_after=5)
        except Exception:
            logger.exception("unexpected error in the issuer")
            error = ServerError()
        _observe.report("issuer_failure", error.error, endpoint=self._kind, status=error.status)
        return error.to_response(self._realm)

    @property
    def _kind(self) -> str:
        # "token", "introspection", "revocation": for records, from the class name.
        return type(self).__name__.removesuffix("Endpoint").lower()

    def _handle(self, request: HTTPRequest, now: float) -> HTTPResponse:  # pragma: no cover
        raise NotImplementedError

    def _check_address(self, request: HTTPRequest, now: float) -> str:
        """429 early for an address that is waiting, before any parsing."""
        key = self._limits.address.key(request.client_address or "-")
        wait = self._throttle.wait(self._limits.address, key, now)
        if wait > 0:
            _observe.report("issuer_throttled", "throttled", limit=self._limits.address.kind)
            raise TooManyRequestsError(retry_after=wait)
        return key

    def _reserve(
        self, slots: list[tuple[Limit, str]], now: float, description: str | None = None
    ) -> Reservation:
        try:
            return self._throttle.reserve(slots, now)
        except Throttled as refused:
            raise TooManyRequestsError(description, retry_after=refused.retry_after) from None

    def _authenticate(
        self, request: HTTPRequest, form: Mapping[str, str], address_key: str, now: float
    ) -> AuthenticatedClient:
        """Authenticate the client, counting the attempt before its secret is hashed.

        Counters: the address always; the client id too, unless the client has already
        authenticated from this address (a known address is exempt from the per-client
        delay, so an attacker elsewhere cannot lock the client out).
        """
        limits = self._limits
        address = request.client_address
        try:
            credentials = self._auth.credentials(request.header("authorization"), form)
        except InvalidClientError:
            with self._reserve([(limits.address, address_key)], now):
                raise  # no usable credentials: counted as a failure of the address
        slots = [(limits.address, address_key)]
        known = self._throttle.is_known(credentials.client_id, address, now)
        if not known:
            slots.append((limits.client, limits.client.key(credentials.client_id)))
        with self._reserve(slots, now) as attempt:
            authenticated = self._auth.verify(credentials)
            attempt.succeeded()
        self._throttle.remember(credentials.client_id, address, limits.known_address_ttl, now)
        return authenticated


class TokenEndpoint(_FormEndpoint):
    """The token endpoint (RFC 6749 §3.2): dispatches to the enabled grants.

    Order of checks: request format → ``grant_type`` known and enabled → client
    authentication → client registered for the grant → the DPoP proof, if any (RFC
    9449 §5), and one present if the client requires it → the grant's own checks.
    """

    def __init__(
        self, context: EndpointContext, grants: Mapping[str, Grant], dpop: TokenEndpointDPoP
    ) -> None:
        super().__init__(context)
        self._grants = dict(grants)
        self._dpop = dpop

    def _handle(self, request: HTTPRequest, now: float) -> HTTPResponse:
        address_key = self._check_address(request, now)
        form = parse_form(request, self._config.max_body_bytes)
        grant_type = form.get("grant_type")
        if grant_type is None:
            raise InvalidRequestError("The grant_type parameter is required")
        grant = self._grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantTypeError()
        authenticated = self._authenticate(request, form, address_key, now)
        client = authenticated.client
        if grant_type not in client.grant_types:
            raise UnauthorizedClientError()
        proof = self._dpop.check(request.header("dpop"), now)
        if proof is None and client.dpop_required:
            # RFC 9449 §5.2 (dpop_bound_access_tokens): refused. invalid_dpop_proof is
            # for a proof that is there and wrong (§5); a missing one is a request
            # missing what it requires, RFC 6749 §5.2's invalid_request.
            raise InvalidRequestError("A DPoP proof is required for this client")
        try:
            body = grant.handle(
                GrantRequest(client, form, request.client_address, now, form.resources, proof)
            )
        except OAuthError as exc:
            _observe.report("issuer_grant", exc.error, grant_type=grant_type)
            raise
        _observe.report("issuer_grant", "issued", grant_type=grant_type)
        headers = no_store_headers()
        if proof is not None:
            headers += self._dpop.response_headers()
        return _json_response(200, body, headers)


_TOO_MANY_LOOKUPS = "Too many lookups of unknown or inactive tokens; retry later"


class _TokenLookup(_FormEndpoint):
    # Each endpoint has its own budget per caller ("introspect", "revoke").
    budget = ""

    def __init__(self, context: EndpointContext, tokens: TokenFactory, store: IssuerStore) -> None:
        super().__init__(context)
        self._tokens = tokens
        self._store = store

    def _lookup_attempt(self, caller: AuthenticatedClient, now: float) -> Reservation:
        """Reserve one lookup on the caller's budget (RFC 7662 §4: token scanning).

        The caller settles it: a live token of its own gives it back; an unknown,
        inactive or hidden one keeps it counted.
        """
        limit = self._limits.lookup
        key = limit.key(f"{self.budget}\0{caller.client.client_id}")
        return self._reserve([(limit, key)], now, _TOO_MANY_LOOKUPS)

    def _request(
        self, request: HTTPRequest, now: float
    ) -> tuple[AuthenticatedClient, str, str | None]:
        address_key = self._check_address(request, now)
        form = parse_form(request, self._config.max_body_bytes)
        caller = self._authenticate(request, form, address_key, now)
        token = form.get("token")
        if token is None:
            raise InvalidRequestError("The token parameter is required")
        return caller, token, form.get("token_type_hint")

    def _lookup(self, token: str, hint: str | None, now: float) -> tuple[str, Any] | None:
        """Find the token: at most one extra lookup beyond the hinted type (RFC 7009 §5)."""
        if len(token) > _MAX_TOKEN_LENGTH:
            return None
        kinds = (
            ("refresh_token", "access_token")
            if hint == "refresh_token"
            else ("access_token", "refresh_token")
        )
        for kind in kinds:
            if kind == "access_token":
                info = self._tokens.inspect(token, now)
                if info is not None:
                    return kind, info
            elif "." not in token:  # refresh tokens are opaque url-safe strings
                record = self._store.get_refresh_token(token_hash(token), now)
                if record is not None:
                    return kind, record
        return None


class IntrospectionEndpoint(_TokenLookup):
    """RFC 7662 token introspection.

    The caller must authenticate as a client (401 otherwise). A client sees its own
    tokens; a client registered with ``introspect = true`` (a resource server) sees
    every access token. Refresh tokens are reported only to the client that holds them,
    so a resource server can never accept one as an access token. Anything else is
    exactly ``{"active": false}``.
    """

    budget = "introspect"

    def _handle(self, request: HTTPRequest, now: float) -> HTTPResponse:
        caller, token, hint = self._request(request, now)
        if caller.method == "none":
            # RFC 7662 §2.1: introspection needs real authentication; a public client
            # (no secret) cannot scan tokens here.
            raise InvalidClientError()
        with self._lookup_attempt(caller, now) as attempt:
            payload = self._introspect(caller, token, hint, now)
            if payload["active"]:
                attempt.succeeded()
        return _json_response(200, payload, no_store_headers())

    def _introspect(
        self, caller: AuthenticatedClient, token: str, hint: str | None, now: float
    ) -> dict[str, Any]:
        found = self._lookup(token, hint, now)
        inactive: dict[str, Any] = {"active": False}
        if found is None:
            return inactive
        kind, item = found
        client = caller.client
        if kind == "refresh_token":
            if (
                item.state != "active"
                or item.client_id != client.client_id
                or (now >= item.idle_expires_at)
            ):
                return inactive
            return self._active(item, "refresh_token")
        info: TokenInfo = item
        if not client.introspect and info.client_id != client.client_id:
            return inactive
        # RFC 9449 §6.2: an access token bound to a key is a DPoP token.
        payload = self._active(info, "Bearer" if info.jkt is None else "DPoP")
        payload["aud"] = info.audience
        payload["jti"] = info.jti
        if info.username is not None:
            payload["username"] = info.username
        # RFC 9470 §6 (step-up): how and when the user authenticated.
        if isinstance(info.auth_time, int):
            payload["auth_time"] = info.auth_time
        if isinstance(info.acr, str):
            payload["acr"] = info.acr
        return payload

    def _active(self, item: TokenInfo | RefreshTokenRecord, token_type: str) -> dict[str, Any]:
        """The members every active token reports (RFC 7662 §2.2), with its key binding."""
        payload: dict[str, Any] = {
            "active": True,
            "scope": " ".join(item.scopes),
            "client_id": item.client_id,
            "sub": item.subject,
            "iss": self._config.issuer,
            "exp": item.expires_at,
            "iat": item.issued_at,
            "token_type": token_type,
        }
        if item.jkt is not None:
            # RFC 9449 §6.2: the key a bound token must be presented with.
            payload["cnf"] = {"jkt": item.jkt}
        return payload


class RevocationEndpoint(_TokenLookup):
    """RFC 7009 token revocation.

    Unknown, invalid or expired tokens answer 200 (idempotent). A token of another
    client is refused with ``invalid_grant`` and left alone. Revoking a refresh token
    revokes its family and every access token issued from it; revoking a JWT access
    token puts its ``jti`` on the denylist that introspection consults (resource servers
    that verify JWTs locally keep accepting it until ``exp``).
    """

    budget = "revoke"

    def _handle(self, request: HTTPRequest, now: float) -> HTTPResponse:
        caller, token, hint = self._request(request, now)
        ok = _json_response(200, {}, no_store_headers())
        # RFC 7009 §5: the same counter-measures as the token endpoint. "Unknown" and
        # "another client's" answers are what scanning learns from, so they count.
        with self._lookup_attempt(caller, now) as attempt:
            found = self._lookup(token, hint, now)
            if found is None:
                return ok
            kind, item = found
            if item.client_id != caller.client.client_id:
                raise InvalidGrantError("The token was issued to another client")
            attempt.succeeded()
        if kind == "refresh_token":
            self._store.revoke_family(item.family_id, now)
        elif item.opaque_key is not None:
            self._store.delete_access_token(item.opaque_key)
        else:
            self._store.revoke_jti(item.jti, item.expires_at, now)
        return ok


def _get_only(request: HTTPRequest) -> HTTPResponse | None:
    if request.method in ("GET", "HEAD"):
        return None
    return HTTPResponse(
        405,
        (("allow", "GET, HEAD"), ("content-type", "application/json")),
        b'{"error":"method_not_allowed"}',
    )


# RFC 8414 §2 / RFC 9700 §2.6: public documents, cacheable; readable cross-origin
# through the issuer's CORS policy (scopegate.issuer._cors).
def _public_headers(max_age: int) -> tuple[tuple[str, str], ...]:
    return (
        ("content-type", "application/json"),
        ("cache-control", f"public, max-age={max_age}"),
    )


class MetadataEndpoint:
    """RFC 8414 authorization server metadata, built once."""

    def __init__(self, document: Mapping[str, Any], max_age: int = 300) -> None:
        self._body = json.dumps(document, separators=(",", ":")).encode()
        self._headers = _public_headers(max_age)
        self.document = dict(document)

    def handle(self, request: HTTPRequest) -> HTTPResponse:
        """Serve the metadata document to ``GET``/``HEAD``."""
        return _get_only(request) or HTTPResponse(200, self._headers, self._body)


class JWKSEndpoint:
    """The public JWK Set (RFC 7517 §5); reflects key rotation immediately.

    ``max-age`` should stay below the lead time with which a ``next`` key is published.
    """

    def __init__(self, keys: Callable[[], SigningKeySet], max_age: int = 300) -> None:
        self._keys = keys
        self._headers = _public_headers(max_age)
        self._cache: tuple[SigningKeySet, bytes] | None = None

    def handle(self, request: HTTPRequest) -> HTTPResponse:
        """Serve the key set to ``GET``/``HEAD``."""
        refused = _get_only(request)
        if refused is not None:
            return refused
        keys = self._keys()
        cached = self._cache
        if cached is None or cached[0] is not keys:
            cached = (keys, json.dumps(keys.jwks(), separators=(",", ":")).encode())
            self._cache = cached
        return HTTPResponse(200, self._headers, cached[1])
