"""scopegate: OAuth 2.0 bearer-token validation for Python APIs.

Validate RFC 9068 JWT access tokens locally (keys from JWKS or RFC 8414 / OpenID
discovery) or opaque tokens through RFC 7662 introspection, enforce scopes, and answer
with exact RFC 6750 errors, in any ASGI or WSGI app::

    import scopegate
    from scopegate.asgi import BearerAuthMiddleware

    verifier = scopegate.JWTVerifier(issuer="https://as.example", audience="api://orders")
    app = BearerAuthMiddleware(app, verifier=verifier)

Adapters are imported by path: :mod:`scopegate.asgi`, :mod:`scopegate.wsgi`,
``scopegate.integrations.{starlette,fastapi,flask,django}``, :mod:`scopegate.issuer`,
:mod:`scopegate.testing`, :mod:`scopegate.presets`, and the metrics and traces of
:mod:`scopegate.prometheus` and :mod:`scopegate.otel` (hooks: :func:`add_hook`).
"""

from scopegate._cache import IntrospectionCache, MemoryCache, RedisCache, RedisConnection
from scopegate._config import from_env, options_from_env, settings_from_env
from scopegate._context import current_token
from scopegate._dpop import (
    DPoPPolicy,
    MemoryReplayStore,
    NonceSource,
    RedisReplayStore,
    ReplayStore,
)
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    HTTPResponse,
    InsufficientScopeError,
    InsufficientUserAuthenticationError,
    IntrospectionUnavailableError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    KeySetUnavailableError,
    MissingTokenError,
    ScopegateError,
    ServiceUnavailableError,
    UseDPoPNonceError,
)
from scopegate._flow import HTTPRunner
from scopegate._guard import BearerGuard, GuardOptions, Pending, RequestView
from scopegate._introspection import IntrospectionVerifier
from scopegate._issuers import IssuerRouter
from scopegate._jwt import JWTVerifier
from scopegate._observe import Record, add_hook, remove_hook, set_rejection_log_level
from scopegate._resource import ProtectedResource
from scopegate._scopes import Requirement, require_any_scope, require_scope
from scopegate._token import DEFAULT_SCOPE_CLAIMS, AccessToken, ScopeMapping
from scopegate._verifier import CachedVerifier, HybridVerifier, TokenVerifier
from scopegate._version import __version__

__all__ = [
    "DEFAULT_SCOPE_CLAIMS",
    "AccessToken",
    "BearerError",
    "BearerGuard",
    "CachedVerifier",
    "ConfigurationError",
    "DPoPPolicy",
    "GuardOptions",
    "HTTPResponse",
    "HTTPRunner",
    "HybridVerifier",
    "InsufficientScopeError",
    "InsufficientUserAuthenticationError",
    "IntrospectionCache",
    "IntrospectionUnavailableError",
    "IntrospectionVerifier",
    "InvalidDPoPProofError",
    "InvalidRequestError",
    "InvalidTokenError",
    "IssuerRouter",
    "JWTVerifier",
    "KeySetUnavailableError",
    "MemoryCache",
    "MemoryReplayStore",
    "MissingTokenError",
    "NonceSource",
    "Pending",
    "ProtectedResource",
    "Record",
    "RedisCache",
    "RedisConnection",
    "RedisReplayStore",
    "ReplayStore",
    "RequestView",
    "Requirement",
    "ScopeMapping",
    "ScopegateError",
    "ServiceUnavailableError",
    "TokenVerifier",
    "UseDPoPNonceError",
    "__version__",
    "add_hook",
    "current_token",
    "from_env",
    "options_from_env",
    "remove_hook",
    "require_any_scope",
    "require_scope",
    "set_rejection_log_level",
    "settings_from_env",
]
