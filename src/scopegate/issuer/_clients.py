"""Registered OAuth clients and client authentication (RFC 6749 §2.3).

A confidential client has one or more secrets (several at once so a secret can be
rotated, issuer spec CA-9) and the authentication methods it may use,
``client_secret_basic`` and ``client_secret_post`` (both by default, as the metadata
advertises; one request may still use only one, RFC 6749 §2.3). A *public* client
(``auth_methods={"none"}``: a browser or native app that cannot keep a secret) has no
secret, identifies itself with ``client_id`` alone, and may use only the
authorization-code grant with PKCE and refresh tokens (RFC 6749 §2.1, RFC 9700 §2.1.1).

Authentication is two steps so the endpoints can throttle in between: read the
credentials (:meth:`ClientAuthenticator.credentials`, cheap), reserve the attempt, then
verify them (:meth:`ClientAuthenticator.verify`, a hash).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import re
import secrets
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import InitVar, dataclass, field
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import unquote_to_bytes, urlsplit

from cachetools import TTLCache

from scopegate._errors import ConfigurationError
from scopegate.issuer._errors import InvalidClientError, InvalidRequestError, SettingError
from scopegate.issuer._passwords import (
    check_stored,
    hash_profile,
    is_hashed,
    peppered_digest,
    typical_profile,
    verify_dummy,
    verify_secret,
)

__all__ = [
    "AUTH_METHODS",
    "CLIENT_SUBJECT_PREFIX",
    "GRANT_TYPES",
    "PUBLIC_GRANT_TYPES",
    "AuthenticatedClient",
    "Client",
    "ClientAuthenticator",
    "ClientCredentials",
    "ClientStore",
    "MemoryClientStore",
    "is_redirect_uri",
    "is_resource",
    "parse_scope",
]

GRANT_TYPES = frozenset({"authorization_code", "client_credentials", "password", "refresh_token"})
#: What a public client may use (RFC 6749 §4.4 and §4.3 need a confidential client).
PUBLIC_GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
#: The secret-based token-endpoint authentication methods (RFC 8414
#: ``*_auth_methods_supported``); ``none`` is a public client's (RFC 7591 §2).
AUTH_METHODS: frozenset[str] = frozenset({"client_secret_basic", "client_secret_post"})
PUBLIC: frozenset[str] = frozenset({"none"})
# Client subjects live in their own namespace so a client can never impersonate a user
# whose id happens to equal a client_id (RFC 9068 §5, RFC 9700 §4.15.1).
CLIENT_SUBJECT_PREFIX = "client:"
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_MAX_CLIENT_ID = 255
# RFC 8707 §2: an absolute URI (RFC 3986 §4.3) without a fragment. URIs are ASCII; no
# space or control character, and a cap so a resource cannot bloat every token.
_RESOURCE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[\x21-\x22\x24-\x7e]+")
_MAX_RESOURCE = 2048
SCOPE_POLICIES = ("strict", "narrow")
# RFC 8252 §7.1: a private-use scheme is a reverse domain name (it contains a dot).
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+")


def parse_scope(value: str) -> frozenset[str]:
    """Split an RFC 6749 §3.3 scope string into tokens; ``ValueError`` on bad grammar."""
    tokens = value.split(" ")
    result = frozenset(token for token in tokens if token)
    if not all(_SCOPE_TOKEN.fullmatch(token) for token in result):
        raise ValueError("invalid scope token")
    return result


def is_resource(value: object) -> bool:
    """Whether *value* is a usable RFC 8707 resource: an absolute URI without fragment."""
    return (
        isinstance(value, str)
        and len(value) <= _MAX_RESOURCE
        and _RESOURCE.fullmatch(value) is not None
    )


def is_redirect_uri(value: object) -> bool:
    """Whether *value* may be registered as a redirect URI.

    RFC 6749 §3.1.2: absolute, no fragment. RFC 9700 §2.1 and RFC 8252 §7: ``https``;
    ``http`` only on a loopback host (native apps, development); or a private-use scheme
    named after a reverse domain (``com.example.app:/cb``). No user information, which
    makes look-alikes such as ``https://app.example@evil.example/`` easy to miss.
    """
    if not isinstance(value, str) or not is_resource(value):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    if "@" in parts.netloc:
        return False
    if parts.scheme == "https":
        return bool(host)
    if parts.scheme == "http":
        return host is not None and is_loopback(host)
    return _PRIVATE_SCHEME.fullmatch(parts.scheme) is not None and not parts.netloc


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP address (RFC 8252 §7.3)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_scopes(scopes: Iterable[str], what: str) -> frozenset[str]:
    result = frozenset(scopes)
    for scope in result:
        if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
            raise ConfigurationError(f"{what} contains an invalid scope token")
    return result


@dataclass(frozen=True)
class Client:
    """A registered client: confidential (with secrets) or public (``auth_methods={"none"}``).

    Args:
        client_id: The identifier (printable, no control characters, <= 255 chars).
        secret_hashes: Stored secrets. Values made by ``scopegate hash-secret``
            (``$argon2id$``/``$scrypt$``) are kept; any other value is taken as a
            plaintext secret and replaced by a keyed digest at construction. Empty for
            a public client, required otherwise.
        grant_types: Grants this client may use (RFC 7591 ``grant_types``).
        scopes: Scopes the client may request.
        default_scopes: Granted when the request omits ``scope``; ``None`` means all of
            *scopes*; empty means "scope is required" (RFC 6749 §3.3).
        auth_method: Shorthand for ``auth_methods={auth_method}`` (one method only).
        introspect: May introspect any token (a resource server); otherwise only its own.
        audience: ``aud`` for its access tokens; the issuer-wide audience when ``None``.
        refresh_tokens: Issue refresh tokens for the password grant (RFC 9700 §4.14.2).
        disabled: Authentication always fails.
        auth_methods: The token-endpoint authentication methods it may use; both by
            default. Restrict to ``{"client_secret_basic"}`` where post is unwanted
            (RFC 6749 §2.3.1 calls it NOT RECOMMENDED). ``{"none"}`` makes it a public
            client: no secret, ``authorization_code`` (with PKCE) and ``refresh_token``
            only.
        redirect_uris: The exact redirect URIs of the authorization-code grant (RFC 6749
            §3.1.2; compared as strings, no prefix or pattern). Required with that
            grant. See :func:`is_redirect_uri` for what may be registered.
        resources: RFC 8707 resources (token audiences) it may ask for with
            ``resource=``, besides its default audience (*audience*, else the issuer's).
            Compared as exact strings.
        scope_policy: ``"strict"`` (a scope outside the allowed ones is
            ``invalid_scope``) or ``"narrow"`` (grant the allowed part, RFC 6749 §3.3);
            ``None`` follows the issuer's ``scope_policy``.
        dpop_required: Every token request must carry a DPoP proof, so every token it
            gets is bound to its key (RFC 9449 §5.2 ``dpop_bound_access_tokens``); a
            request without one is ``invalid_request``.

    Raises:
        ConfigurationError: A value of the wrong type or an unknown grant or method.
    """

    client_id: str
    secret_hashes: tuple[str, ...] = field(default=(), repr=False)
    grant_types: frozenset[str] = frozenset({"client_credentials"})
    scopes: frozenset[str] = frozenset()
    default_scopes: frozenset[str] | None = None
    auth_method: InitVar[AuthMethod | None] = None
    introspect: bool = False
    audience: str | None = None
    refresh_tokens: bool = True
    disabled: bool = False
    auth_methods: frozenset[str] = AUTH_METHODS
    resources: frozenset[str] = frozenset()
    scope_policy: Literal["strict", "narrow"] | None = None
    redirect_uris: tuple[str, ...] = ()
    dpop_required: bool = False

    def __post_init__(self, auth_method: AuthMethod | None) -> None:
        if (
            not isinstance(self.client_id, str)
            or not 0 < len(self.client_id) <= _MAX_CLIENT_ID
            or not self.client_id.isprintable()
        ):
            raise ConfigurationError("client_id must be 1-255 printable characters")
        if isinstance(self.secret_hashes, str):  # type: ignore[unreachable]
            raise ConfigurationError("a client needs at least one secret (a list of strings)")
        stored = []
        for value in self.secret_hashes:
            if not isinstance(value, str) or not value:
                raise ConfigurationError("client secrets must be non-empty strings")
            if is_hashed(value):
                check_stored(value)
                stored.append(value)
            else:
                stored.append(peppered_digest(value))
        object.__setattr__(self, "secret_hashes", tuple(stored))
        grants = frozenset(self.grant_types)
        if not grants <= GRANT_TYPES:
            raise SettingError(
                "grant_types",
                "grant_types may contain only " + ", ".join(sorted(GRANT_TYPES)),
            )
        object.__setattr__(self, "grant_types", grants)
        object.__setattr__(self, "scopes", _check_scopes(self.scopes, "client scopes"))
        if self.default_scopes is not None:
            defaults = _check_scopes(self.default_scopes, "client default_scopes")
            if not defaults <= self.scopes:
                raise SettingError("default_scopes", "default_scopes must be a subset of scopes")
            object.__setattr__(self, "default_scopes", defaults)
        for name in ("introspect", "refresh_tokens", "disabled", "dpop_required"):
            if not isinstance(getattr(self, name), bool):
                raise SettingError(name, f"{name} must be true or false (a boolean)")
        if self.audience is not None and not isinstance(self.audience, str):
            raise SettingError("audience", "audience must be a string")
        methods = frozenset(self.auth_methods)
        if auth_method is not None:
            if methods not in (AUTH_METHODS, frozenset({auth_method})):
                raise SettingError("auth_methods", "auth_method and auth_methods disagree")
            methods = frozenset({auth_method})
        if methods != PUBLIC and (not methods or not methods <= AUTH_METHODS):
            raise SettingError(
                "auth_methods",
                "auth_methods must list client_secret_basic and/or client_secret_post, "
                'or be ["none"]',
            )
        object.__setattr__(self, "auth_methods", methods)
        self._check_kind(grants)
        if isinstance(self.redirect_uris, str):  # type: ignore[unreachable]
            raise SettingError("redirect_uris", "redirect_uris must be a list of strings")
        uris = tuple(dict.fromkeys(self.redirect_uris))
        for uri in uris:
            if not is_redirect_uri(uri):
                raise SettingError(
                    "redirect_uris",
                    "redirect_uris must be absolute https URIs (http only on loopback, or a "
                    "private-use scheme such as com.example.app:/cb), without fragment or "
                    "user information",
                )
        object.__setattr__(self, "redirect_uris", uris)
        if "authorization_code" in grants and not uris:
            raise SettingError("grant_types", "the authorization_code grant needs redirect_uris")
        if isinstance(self.resources, str):  # type: ignore[unreachable]
            raise SettingError("resources", "resources must be a list of strings")
        resources = frozenset(self.resources)
        if not all(is_resource(r) for r in resources):
            raise SettingError(
                "resources", "resources must be absolute URIs without fragment (RFC 8707 2)"
            )
        object.__setattr__(self, "resources", resources)
        if self.scope_policy is not None and self.scope_policy not in SCOPE_POLICIES:
            raise SettingError("scope_policy", 'scope_policy must be "strict" or "narrow"')

    def _check_kind(self, grants: frozenset[str]) -> None:
        if self.auth_methods == PUBLIC:
            if self.secret_hashes:
                raise SettingError(
                    "secret", 'a public client (auth_methods ["none"]) has no secret'
                )
            if not grants <= PUBLIC_GRANT_TYPES:
                raise SettingError(
                    "grant_types",
                    "a public client may use only authorization_code and refresh_token",
                )
            if self.introspect:
                raise SettingError("introspect", "a public client may not introspect tokens")
        elif not self.secret_hashes:
            raise ConfigurationError("a client needs at least one secret (a list of strings)")

    @property
    def public(self) -> bool:
        """A public client: no secret, identified by ``client_id`` alone (RFC 6749 §2.1)."""
        return self.auth_methods == PUBLIC

    @property
    def subject(self) -> str:
        """The ``sub`` of tokens issued to the client itself (RFC 9068 §2.2)."""
        return CLIENT_SUBJECT_PREFIX + self.client_id

    @property
    def effective_default_scopes(self) -> frozenset[str]:
        """Scopes granted when a request omits ``scope``."""
        return self.scopes if self.default_scopes is None else self.default_scopes

    def allowed_resources(self, default_audience: str) -> frozenset[str]:
        """The RFC 8707 resources it may ask for: *resources* plus its default audience."""
        return self.resources | {default_audience}


@runtime_checkable
class ClientStore(Protocol):
    """Where clients come from; implement this to load them from a database."""

    def get_client(self, client_id: str) -> Client | None:
        """The client with this id, or ``None``."""
        ...  # pragma: no cover


class MemoryClientStore:
    """Clients held in a dict, e.g. from the TOML configuration."""

    def __init__(self, clients: Iterable[Client]) -> None:
        self._clients: dict[str, Client] = {}
        for client in clients:
            if client.client_id in self._clients:
                raise ConfigurationError("duplicate client_id in client registry")
            self._clients[client.client_id] = client

    def get_client(self, client_id: str) -> Client | None:
        """The client with this id, or ``None``."""
        return self._clients.get(client_id)

    def __iter__(self) -> Iterator[Client]:
        return iter(self._clients.values())


@dataclass(frozen=True)
class AuthenticatedClient:
    """The outcome of client authentication: the client and the method it used."""

    client: Client
    method: AuthMethod


@dataclass(frozen=True)
class ClientCredentials:
    """Credentials read from a request, not yet verified."""

    client_id: str
    secret: str = field(repr=False)
    method: AuthMethod


def _form_decode(raw: bytes) -> str:
    # RFC 6749 §2.3.1: the Basic user-id and password are form-urlencoded first, so
    # decode "+" and %XX; reject malformed escapes that unquote would leave unchanged.
    if _BAD_ESCAPE.search(raw):
        raise ValueError("bad percent-escape")
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8")


def parse_basic(header: str) -> tuple[str, str]:
    """Decode ``Authorization: Basic`` client credentials (RFC 6749 §2.3.1, RFC 7617).

    Raises:
        InvalidClientError: Bad base64, no ``:``, bad escapes or non-UTF-8 content.
    """
    _, _, value = header.strip().partition(" ")
    try:
        raw = base64.b64decode(value.strip().encode("ascii"), validate=True)
        user, sep, password = raw.partition(b":")
        if not sep:
            raise ValueError("no colon")
        return _form_decode(user), _form_decode(password)
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidClientError() from exc


class ClientAuthenticator:
    """Authenticates a client from the ``Authorization`` header or the form body.

    Secrets verified with a slow hash (argon2id, scrypt) are remembered for
    *verified_ttl* seconds as a keyed digest of ``(client_id, stored hash, secret)``, so
    a busy client pays the slow hash once instead of on every token request.

    An unknown client id costs what a known one does (issuer spec CA-7): its secret is
    verified against dummy hashes of the same scheme and parameters as the registered
    clients' (the most common set at start-up for an iterable store, then that of the
    last client verified), so response times do not tell which ids exist.

    Args:
        clients: The client registry.
        verified_ttl: Seconds a successful slow-hash verification is remembered.
    """

    def __init__(self, clients: ClientStore, *, verified_ttl: float = 300) -> None:
        self._clients = clients
        self._key = secrets.token_bytes(32)
        self._verified: TTLCache[bytes, bool] = TTLCache(maxsize=4096, ttl=verified_ttl)
        self._lock = threading.Lock()
        registered = iter(clients) if isinstance(clients, Iterable) else iter(())
        self._profile = typical_profile(client.secret_hashes for client in registered)

    def authenticate(
        self, authorization: str | None, form: Mapping[str, str]
    ) -> AuthenticatedClient:
        """Identify and authenticate the calling client (no throttling).

        Raises:
            InvalidRequestError: See :meth:`credentials`.
            InvalidClientError: Anything that is not a valid credential.
        """
        return self.verify(self.credentials(authorization, form))

    def credentials(self, authorization: str | None, form: Mapping[str, str]) -> ClientCredentials:
        """Read the client's credentials from the request, without verifying them.

        Args:
            authorization: The ``Authorization`` header value, if any.
            form: The parsed request body.

        Raises:
            InvalidRequestError: More than one method, or Basic and body ids differ
                (RFC 6749 §2.3).
            InvalidClientError: No credentials, client_id alone, malformed Basic.
        """
        body_id = form.get("client_id")
        body_secret = form.get("client_secret")
        if authorization is not None and authorization.strip():
            if "," in authorization:
                # Basic credentials are a token68 (no comma): a comma means repeated
                # Authorization fields joined by the server, i.e. ambiguous credentials.
                raise InvalidRequestError("The Authorization header was repeated")
            if authorization.strip().split(" ", 1)[0].lower() != "basic":
                raise InvalidClientError()
            if body_secret is not None:
                raise InvalidRequestError("Only one client authentication method may be used")
            client_id, secret = parse_basic(authorization)
            if body_id is not None and body_id != client_id:
                raise InvalidRequestError("The client_id does not match the credentials")
            return ClientCredentials(client_id, secret, "client_secret_basic")
        if body_id is not None and body_secret is not None:
            return ClientCredentials(body_id, body_secret, "client_secret_post")
        if body_id is not None:
            # client_id alone: the "none" method, for public clients only; a confidential
            # client sending it is refused in verify() (RFC 6749 §3.2.1, issuer spec CA-12).
            return ClientCredentials(body_id, "", "none")
        raise InvalidClientError()

    def verify(self, credentials: ClientCredentials) -> AuthenticatedClient:
        """Check the credentials against the registry (the expensive step).

        Raises:
            InvalidClientError: Unknown client, wrong secret, disabled client, or a
                method the client may not use; one answer for all (CA-7).
        """
        client = self._clients.get_client(credentials.client_id) if credentials.client_id else None
        if credentials.method == "none":
            # No secret, so nothing to hash for anyone: known and unknown ids cost the same.
            if client is None or client.disabled or not client.public:
                raise InvalidClientError()
            return AuthenticatedClient(client, "none")
        if client is None or client.public:
            verify_dummy(self._profile, credentials.secret)
            raise InvalidClientError()
        ok = self._check(client, credentials.secret)
        if not ok or client.disabled or credentials.method not in client.auth_methods:
            raise InvalidClientError()
        return AuthenticatedClient(client, credentials.method)

    def _check(self, client: Client, secret: str) -> bool:
        self._profile = tuple(hash_profile(stored) for stored in client.secret_hashes)
        for stored in client.secret_hashes:
            if stored.startswith("$hmac-sha256$"):
                if verify_secret(stored, secret):
                    return True
                continue
            memo = hmac.new(
                self._key,
                b"\0".join(
                    (client.client_id.encode(), stored.encode(), secret.encode("utf-8", "replace"))
                ),
                hashlib.sha256,
            ).digest()
            with self._lock:
                if self._verified.get(memo):
                    return True
            if verify_secret(stored, secret):
                with self._lock:
                    self._verified[memo] = True
                return True
        return False


def normalize_username(username: str) -> str:
    """NFKC + case-fold, so ``Alice`` and ``alice`` share one account and one counter."""
    return unicodedata.normalize("NFKC", username).casefold()
