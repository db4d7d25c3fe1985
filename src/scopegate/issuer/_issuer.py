"""The :class:`Issuer`: one object wiring settings, keys, state, grants and endpoints."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scopegate._dpop import MemoryReplayStore, NonceSource, ReplayStore
from scopegate._errors import ConfigurationError
from scopegate._signing import SigningKey, SigningKeySet
from scopegate.issuer._authorize import AuthorizationEndpoint
from scopegate.issuer._clients import (
    AUTH_METHODS,
    Client,
    ClientAuthenticator,
    ClientStore,
    MemoryClientStore,
)
from scopegate.issuer._config import IssuerConfig, LoadedConfig
from scopegate.issuer._cors import CORSPolicy
from scopegate.issuer._dpop import TokenEndpointDPoP, nonce_secret
from scopegate.issuer._endpoints import (
    EndpointContext,
    HTTPRequest,
    HTTPResponse,
    IntrospectionEndpoint,
    JWKSEndpoint,
    MetadataEndpoint,
    RevocationEndpoint,
    TokenEndpoint,
)
from scopegate.issuer._grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    Grant,
    PasswordGrant,
    RefreshTokenGrant,
)
from scopegate.issuer._login import ResourceOwnerLogin
from scopegate.issuer._store import IssuerStore, MemoryStore, RedisStore
from scopegate.issuer._throttle import Limits, Throttle
from scopegate.issuer._tokens import TokenFactory
from scopegate.issuer._users import MemoryUserStore, User, UserStore

__all__ = ["InsecureGrantWarning", "Issuer"]

logger = logging.getLogger("scopegate.issuer")
_AUTH_METHODS = sorted(AUTH_METHODS)
_NOT_FOUND = HTTPResponse(404, (("content-type", "application/json"),), b'{"error":"not_found"}')
# Request headers a browser may send to the metadata and JWKS (the MCP TypeScript client
# sends MCP-Protocol-Version with its metadata requests, which makes them preflighted).
_DOC_HEADERS = ("mcp-protocol-version",)
# Swagger UI's "Authorize" sends X-Requested-With with its token request; a browser
# client using DPoP sends its proof, and reads the server's nonce (RFC 9449 §8).
_TOKEN_HEADERS = ("authorization", "content-type", "dpop", "x-requested-with")
_TOKEN_EXPOSED = ("dpop-nonce",)


class InsecureGrantWarning(UserWarning):
    """The password grant was enabled although RFC 9700 §2.4 says it MUST NOT be used."""


class Issuer:
    """A small OAuth 2.0 authorization server token module.

    Serves the authorization endpoint (the code grant with PKCE, for the configured
    users), the token endpoint (``authorization_code``, ``client_credentials``,
    ``refresh_token`` and, opt-in, ``password``; DPoP-bound tokens for requests with a
    DPoP proof, RFC 9449), RFC 7662 introspection, RFC 7009 revocation, the JWKS and
    RFC 8414 metadata. :meth:`handle` answers a framework-neutral :class:`HTTPRequest`;
    use :func:`scopegate.issuer.create_asgi_app` or
    :func:`scopegate.issuer.create_wsgi_app` to serve it.

    Endpoints, relative to the issuer URL ``https://host/base``: ``/base/authorize``,
    ``/base/token``,
    ``/base/introspect``, ``/base/revoke``, ``/base/jwks.json`` and
    ``/.well-known/oauth-authorization-server/base`` (RFC 8414 §3.1 path insertion).

    Args:
        config: Server-wide settings.
        clients: A :class:`ClientStore` or an iterable of :class:`Client`.
        users: A :class:`UserStore` or users: who can sign in at the authorization
            endpoint (and, opt-in, use the password grant).
        keys: The signing key set or one key; an RS256 key is generated when omitted
            (fine for a single process; several processes must share key files).
        store: Shared state; a :class:`MemoryStore` when omitted.
        clock: Seconds since the epoch (tests inject a fake clock).
        sleep: How a request waits for concurrent attempts on its brute-force counters
            to be judged (see :mod:`scopegate.issuer._throttle`).
        dpop_replay: Where the token endpoint remembers used DPoP proofs; by default
            the store's (:meth:`RedisStore.replay_store`) when it has one, else a
            :class:`~scopegate.MemoryReplayStore` (one process only).

    Raises:
        ConfigurationError: Inconsistent settings.

    Example::

        issuer = Issuer(
            IssuerConfig(issuer="https://auth.example", audience="api://orders"),
            clients=[Client("svc", ("secret",), scopes=frozenset({"orders:read"}))],
        )
        app = create_asgi_app(issuer)
    """

    def __init__(
        self,
        config: IssuerConfig,
        *,
        clients: ClientStore | Iterable[Client],
        users: UserStore | Iterable[User] | None = None,
        keys: SigningKeySet | SigningKey | None = None,
        store: IssuerStore | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        dpop_replay: ReplayStore | None = None,
    ) -> None:
        self.config = config
        self._clock = clock
        self._clients: ClientStore = (
            clients if isinstance(clients, ClientStore) else MemoryClientStore(clients)
        )
        self._users: UserStore | None = (
            users if users is None or isinstance(users, UserStore) else MemoryUserStore(users)
        )
        if keys is None:
            key = SigningKey.generate("RS256")
            logger.info("no signing key configured; generated an RS256 key (kid=%s)", key.kid)
            keys = SigningKeySet(current=key)
        self._keys = keys if isinstance(keys, SigningKeySet) else SigningKeySet(current=keys)
        self._keys_lock = threading.Lock()
        self.store: IssuerStore = store if store is not None else MemoryStore()
        if config.insecure_transport:
            logger.warning("issuer %s uses plain http: for local development only", config.issuer)

        limits = Limits.from_config(config)
        throttle = Throttle(self.store, clock, sleep=sleep)
        tokens = TokenFactory(config, lambda: self._keys, self.store, clock)
        self.tokens = tokens
        grants: dict[str, Grant] = {
            "client_credentials": ClientCredentialsGrant(config, tokens),
            "refresh_token": RefreshTokenGrant(config, tokens, self.store, self._users),
        }
        login = None
        if self._users is not None:
            # Users can sign in at the authorization endpoint (the code grant with PKCE).
            login = ResourceOwnerLogin(self._users, throttle=throttle, limits=limits)
            grants["authorization_code"] = AuthorizationCodeGrant(
                config, tokens, self.store, self._users
            )
        elif isinstance(self._clients, MemoryClientStore) and any(
            "authorization_code" in client.grant_types for client in self._clients
        ):
            raise ConfigurationError("the authorization_code grant needs users (a UserStore)")
        if config.allow_password_grant:
            if login is None:
                raise ConfigurationError("the password grant needs users (a UserStore)")
            grants["password"] = PasswordGrant(config, tokens, self.store, login)
            message = (
                "the OAuth password grant is enabled; RFC 9700 section 2.4 says it MUST NOT "
                "be used. Keep it for migrating first-party clients only."
            )
            logger.warning(message)
            warnings.warn(message, InsecureGrantWarning, stacklevel=2)
        authenticator = ClientAuthenticator(self._clients)

        base = config.issuer.rstrip("/")
        base_path = urlsplit(base).path
        self.authorization_path = base_path + "/authorize"
        self.token_path = base_path + "/token"
        self.introspection_path = base_path + "/introspect"
        self.revocation_path = base_path + "/revoke"
        self.jwks_path = base_path + "/jwks.json"
        self.metadata_path = "/.well-known/oauth-authorization-server" + base_path
        # RFC 8414 §2. The issuer is published exactly as configured (no slash added):
        # clients compare it as a string with the resource's authorization_servers entry
        # (RFC 9728 §3.3) and with every token's iss. authorization_endpoint is there even
        # for machine clients: the official MCP client refuses metadata without it.
        document: dict[str, Any] = {
            "issuer": config.issuer,
            "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token",
            "jwks_uri": base + "/jwks.json",
            "introspection_endpoint": base + "/introspect",
            "revocation_endpoint": base + "/revoke",
            "grant_types_supported": sorted(grants),
            # "none": public clients (PKCE) at the token and revocation endpoints.
            "token_endpoint_auth_methods_supported": [*_AUTH_METHODS, "none"],
            "introspection_endpoint_auth_methods_supported": _AUTH_METHODS,
            "revocation_endpoint_auth_methods_supported": [*_AUTH_METHODS, "none"],
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],  # plain is refused (RFC 9700 §2.1.1)
            "authorization_response_iss_parameter_supported": True,  # RFC 9207
        }
        if dpop_replay is None:
            replay_store = getattr(self.store, "replay_store", None)
            dpop_replay = replay_store() if callable(replay_store) else MemoryReplayStore()
        nonce = None
        if config.dpop_nonce:
            nonce = NonceSource(nonce_secret(self._keys.current), clock=clock)
        dpop = TokenEndpointDPoP(config, document["token_endpoint"], dpop_replay, nonce)
        document["dpop_signing_alg_values_supported"] = dpop.algorithms  # RFC 9449 §5.1
        if isinstance(self._clients, MemoryClientStore):
            scopes = sorted({s for client in self._clients for s in client.scopes})
            if scopes:  # RFC 8414 §3.2: claims with zero elements are omitted
                document["scopes_supported"] = scopes

        context = EndpointContext(config, authenticator, throttle, limits, clock)
        self.token_endpoint = TokenEndpoint(context, grants, dpop)
        self.introspection_endpoint = IntrospectionEndpoint(context, tokens, self.store)
        self.revocation_endpoint = RevocationEndpoint(context, tokens, self.store)
        self.authorization_endpoint = AuthorizationEndpoint(
            config, self._clients, login, self.store, clock, self.authorization_path
        )
        self.metadata_endpoint = MetadataEndpoint(document)
        self.jwks_endpoint = JWKSEndpoint(lambda: self._keys)
        self._routes: dict[str, Callable[[HTTPRequest], HTTPResponse]] = {
            self.authorization_path: self.authorization_endpoint.handle,
            self.token_path: self.token_endpoint.handle,
            self.introspection_path: self.introspection_endpoint.handle,
            self.revocation_path: self.revocation_endpoint.handle,
            self.jwks_path: self.jwks_endpoint.handle,
            self.metadata_path: self.metadata_endpoint.handle,
        }
        # Browsers: the token endpoint only when cors_origins is set; the public
        # documents from anywhere unless cors_origins narrows them. Introspection and
        # revocation are server-to-server: never cross-origin.
        documents = CORSPolicy(config.cors_origins or ("*",), ("GET", "HEAD"), _DOC_HEADERS)
        self._cors: dict[str, CORSPolicy] = {
            self.metadata_path: documents,
            self.jwks_path: documents,
        }
        if config.cors_origins:
            self._cors[self.token_path] = CORSPolicy(
                config.cors_origins, ("POST",), _TOKEN_HEADERS, _TOKEN_EXPOSED
            )

    @property
    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 metadata document."""
        return dict(self.metadata_endpoint.document)

    @property
    def keys(self) -> SigningKeySet:
        """The current key set."""
        return self._keys

    @property
    def routes(self) -> dict[str, Callable[[HTTPRequest], HTTPResponse]]:
        """Handlers by exact path (for adapters)."""
        return dict(self._routes)

    def handle(self, request: HTTPRequest) -> HTTPResponse:
        """Route a request to its endpoint; unknown paths answer 404. Never raises.

        CORS preflights are answered here for the endpoints that allow them, and their
        responses get ``Access-Control-Allow-Origin`` for allowed origins.
        """
        handler = self._routes.get(request.path)
        if handler is None:
            return _NOT_FOUND
        cors = self._cors.get(request.path)
        if cors is None:
            return handler(request)
        return cors.preflight(request) or cors.decorate(request, handler(request))

    def rotate_keys(
        self, new_next: SigningKey | None = None, *, keep_previous: int = 1
    ) -> SigningKeySet:
        """Promote the ``next`` key to ``current`` (see :meth:`SigningKeySet.rotate`)."""
        with self._keys_lock:
            self._keys = self._keys.rotate(new_next, keep_previous=keep_previous)
            return self._keys

    def publish_next_key(self, key: SigningKey) -> SigningKeySet:
        """Publish *key* as ``next`` so caches learn it before it signs."""
        with self._keys_lock:
            self._keys = self._keys.with_next(key)
            return self._keys

    def remove_key(self, kid: str, replacement: SigningKey | None = None) -> SigningKeySet:
        """Emergency removal of a compromised key (see :meth:`SigningKeySet.without`)."""
        with self._keys_lock:
            self._keys = self._keys.without(kid, replacement)
            return self._keys

    def revoke_subject(self, subject: str) -> None:
        """Revoke every refresh-token family of a user (password change, logout)."""
        self.store.revoke_subject(subject, self._clock())

    def check(self) -> None:
        """Check that the state store answers, to fail at start-up rather than per request.

        Raises:
            StoreUnavailableError: The store (Redis) cannot be reached; the message names
                it without credentials.
        """
        ping = getattr(self.store, "ping", None)
        if callable(ping):
            ping()

    def close(self) -> None:
        """Release the store's connections."""
        close = getattr(self.store, "close", None)
        if callable(close):
            close()

    @classmethod
    def from_config(cls, loaded: LoadedConfig, **kwargs: Any) -> Issuer:
        """Build an issuer from :func:`scopegate.issuer.load_config` output.

        Raises:
            ConfigurationError: A key file is unreadable or unusable.
        """
        keys = None
        if loaded.signing_keys:
            signing = [_read_key(path) for path in loaded.signing_keys]
            nxt = _read_key(loaded.next_signing_key) if loaded.next_signing_key else None
            keys = SigningKeySet(current=signing[0], next=nxt, previous=tuple(signing[1:]))
        elif loaded.redis_url:
            logger.warning(
                "redis_url is set but no signing_key: each process signs with its own key"
            )
        store = RedisStore(loaded.redis_url) if loaded.redis_url else None
        return cls(
            loaded.config,
            clients=loaded.clients,
            users=loaded.users,
            keys=keys,
            store=store,
            **kwargs,
        )


def _read_key(path: Path) -> SigningKey:
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError("cannot read a signing key file") from exc
    return SigningKey.from_pem(pem)
