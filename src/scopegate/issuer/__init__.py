"""scopegate's companion OAuth 2.0 issuer (a small authorization server).

Grants: ``authorization_code`` with PKCE (RFC 6749 §4.1, RFC 7636 S256, RFC 9207) for
the configured users through a minimal login form, ``client_credentials`` (RFC 6749
§4.4), ``refresh_token`` with rotation and reuse detection (RFC 6749 §6, RFC 9700
§4.14.2) and, opt-in and discouraged, ``password`` (RFC 6749 §4.3, RFC 9700 §2.4); RFC
8707 resource indicators and DPoP (RFC 9449: tokens bound to the key of the request's
proof; ``dpop_jkt`` at the authorization endpoint) on all of them. Tokens: RFC 9068 JWT
access tokens (RS256, ES256, EdDSA) or opaque ones. Endpoints: authorization, token,
RFC 7662 introspection, RFC 7009 revocation, JWKS, RFC 8414 metadata; served by a
Starlette app or a WSGI app over one sans-io core.

Example::

    from scopegate.issuer import Client, Issuer, IssuerConfig, create_asgi_app

    issuer = Issuer(
        IssuerConfig(issuer="https://auth.example", audience="api://orders"),
        clients=[Client("svc", ("long-random-secret",), scopes=frozenset({"orders:read"}))],
    )
    app = create_asgi_app(issuer)

Or from the command line: ``scopegate issuer serve --config issuer.toml --port 9000``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scopegate._signing import SigningKey, SigningKeySet
from scopegate.issuer._authorize import AuthorizationEndpoint
from scopegate.issuer._clients import AuthenticatedClient, Client, ClientStore, MemoryClientStore
from scopegate.issuer._config import IssuerConfig, LoadedConfig, load_config
from scopegate.issuer._endpoints import (
    HTTPRequest,
    HTTPResponse,
    IntrospectionEndpoint,
    JWKSEndpoint,
    MetadataEndpoint,
    RevocationEndpoint,
    TokenEndpoint,
)
from scopegate.issuer._errors import (
    InvalidClientError,
    InvalidDPoPProofError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
    OAuthError,
    ServerError,
    StoreUnavailableError,
    TemporarilyUnavailableError,
    TooManyRequestsError,
    UnauthorizedClientError,
    UnsupportedGrantTypeError,
    UseDPoPNonceError,
)
from scopegate.issuer._grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    PasswordGrant,
    RefreshTokenGrant,
)
from scopegate.issuer._issuer import InsecureGrantWarning, Issuer
from scopegate.issuer._login import ResourceOwnerLogin
from scopegate.issuer._passwords import generate_client_secret, hash_secret, verify_secret
from scopegate.issuer._store import (
    AttemptCounter,
    CounterReservation,
    IssuerStore,
    MemoryStore,
    RedisStore,
)
from scopegate.issuer._users import MemoryUserStore, User, UserStore
from scopegate.issuer._wsgi import create_wsgi_app

if TYPE_CHECKING:
    from scopegate.issuer._asgi import create_asgi_app

__all__ = [
    "AttemptCounter",
    "AuthenticatedClient",
    "AuthorizationCodeGrant",
    "AuthorizationEndpoint",
    "Client",
    "ClientCredentialsGrant",
    "ClientStore",
    "CounterReservation",
    "HTTPRequest",
    "HTTPResponse",
    "InsecureGrantWarning",
    "IntrospectionEndpoint",
    "InvalidClientError",
    "InvalidDPoPProofError",
    "InvalidGrantError",
    "InvalidRequestError",
    "InvalidScopeError",
    "InvalidTargetError",
    "Issuer",
    "IssuerConfig",
    "IssuerStore",
    "JWKSEndpoint",
    "LoadedConfig",
    "MemoryClientStore",
    "MemoryStore",
    "MemoryUserStore",
    "MetadataEndpoint",
    "OAuthError",
    "PasswordGrant",
    "RedisStore",
    "RefreshTokenGrant",
    "ResourceOwnerLogin",
    "RevocationEndpoint",
    "ServerError",
    "SigningKey",
    "SigningKeySet",
    "StoreUnavailableError",
    "TemporarilyUnavailableError",
    "TokenEndpoint",
    "TooManyRequestsError",
    "UnauthorizedClientError",
    "UnsupportedGrantTypeError",
    "UseDPoPNonceError",
    "User",
    "UserStore",
    "create_asgi_app",
    "create_wsgi_app",
    "generate_client_secret",
    "hash_secret",
    "load_config",
    "verify_secret",
]


def __getattr__(name: str) -> Any:
    # Starlette is imported only when the ASGI app is asked for, so the core and the
    # WSGI app work without it.
    if name == "create_asgi_app":
        from scopegate.issuer._asgi import create_asgi_app

        return create_asgi_app
    raise AttributeError(name)
