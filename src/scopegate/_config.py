"""Build a token verifier from ``SCOPEGATE_*`` environment variables.

Variables (empty values count as unset):

``SCOPEGATE_ISSUER`` (required)
    The trusted issuer identifier (``iss``), or several separated by spaces: tokens are
    then routed by their ``iss`` (:class:`~scopegate.IssuerRouter`), each issuer's keys
    coming from its own discovery document. Keys come from its RFC 8414 or OpenID
    Connect discovery document unless ``SCOPEGATE_JWKS_URI`` is set (one issuer only).
``SCOPEGATE_AUDIENCE`` (required unless ``SCOPEGATE_RESOURCE`` is set)
    The audience this API accepts (``aud``); several may be given, comma-separated.
    Defaults to ``SCOPEGATE_RESOURCE``.
``SCOPEGATE_RESOURCE``
    This API's resource identifier: its public URL without a trailing slash (RFC 8707,
    RFC 9728). The middleware then serves RFC 9728 metadata at
    ``/.well-known/oauth-protected-resource`` (and the path-inserted form), and every
    401 and 403 challenge carries ``resource_metadata``.
``SCOPEGATE_AUTHORIZATION_SERVERS``
    Issuers listed in the RFC 9728 metadata, space-separated (default: the issuer).
``SCOPEGATE_SCOPES_SUPPORTED``
    Scopes listed in the RFC 9728 metadata, space-separated.
``SCOPEGATE_RESOURCE_NAME``, ``SCOPEGATE_RESOURCE_DOCUMENTATION``
    The metadata's ``resource_name`` and ``resource_documentation``.
``SCOPEGATE_DPOP``
    ``off`` (the default: Bearer only), ``allowed`` (Bearer or DPoP, RFC 9449) or
    ``required`` (DPoP only). With ``SCOPEGATE_REDIS_URL`` the replay store is shared.
``SCOPEGATE_PUBLIC_URL``
    The origin clients use (``https://api.example``), for DPoP proofs' ``htu``.
``SCOPEGATE_TRUST_FORWARDED``
    ``true`` to take that origin from ``Forwarded`` / ``X-Forwarded-*`` (behind a proxy
    that sets them); ``false`` (the default).
``SCOPEGATE_JWKS_URI``
    The JWKS location; skips discovery.
``SCOPEGATE_ALGORITHMS``
    Accepted JWS algorithms, comma-separated (default ``RS256,PS256,ES256,EdDSA``).
``SCOPEGATE_LEEWAY``
    Clock-skew allowance in seconds for ``exp``/``nbf``/``iat`` (default 60).
``SCOPEGATE_MAX_LIFETIME``
    Largest ``exp - iat`` accepted, in seconds (default: no maximum).
``SCOPEGATE_JWKS_COOLDOWN``
    Least seconds between two JWKS refreshes caused by unknown ``kid`` values
    (default 30). The first unknown kid after an ordinary fetch refreshes at once.
``SCOPEGATE_TYP``
    ``strict`` (default; RFC 9068 ``at+jwt`` required) or ``lenient`` (also plain JWTs
    from authorization servers that do not set ``typ``).
``SCOPEGATE_REALM``
    The ``realm`` of ``WWW-Authenticate`` challenges (default ``api``); read by
    :func:`settings_from_env` for the middleware, not by the verifier.
``SCOPEGATE_INTROSPECTION_URI``
    When set, tokens that are not JWTs are checked by RFC 7662 introspection, and
    :func:`from_env` returns a :class:`~scopegate.HybridVerifier`.
``SCOPEGATE_INTROSPECTION_CLIENT_ID``, ``SCOPEGATE_INTROSPECTION_CLIENT_SECRET``
    The resource server's credentials at the introspection endpoint; required with
    ``SCOPEGATE_INTROSPECTION_URI``.
``SCOPEGATE_INTROSPECTION_AUTH_METHOD``
    ``client_secret_basic`` (the default) or ``client_secret_post``.
``SCOPEGATE_INTROSPECTION_CACHE_TTL``
    Seconds an active answer is reused (default 60): the revocation delay budget.
``SCOPEGATE_REDIS_URL``
    Share the introspection cache through Redis (``redis://...``).

Example::

    import os
    from scopegate import from_env
    from scopegate.asgi import BearerAuthMiddleware

    app = BearerAuthMiddleware(app, verifier=from_env(os.environ))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from scopegate._errors import ConfigurationError
from scopegate._settings import number
from scopegate._verifier import HybridVerifier, TokenVerifier

if TYPE_CHECKING:
    from scopegate._guard import GuardOptions

__all__ = [
    "EnvSettings",
    "from_env",
    "introspection_from_env",
    "options_from_env",
    "realm_from_env",
    "settings_from_env",
]

PREFIX = "SCOPEGATE_"

_Choice = TypeVar("_Choice", bound=str)
_TYPS: tuple[Literal["strict", "lenient"], ...] = ("strict", "lenient")
_DPOP_MODES: tuple[Literal["off", "allowed", "required"], ...] = ("off", "allowed", "required")


@dataclass(frozen=True, slots=True)
class EnvSettings:
    """Settings read from the environment; see the module docstring for each variable."""

    issuer: str
    audience: str | tuple[str, ...]
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] | None = None
    leeway: float | None = None
    max_lifetime: float | None = None
    jwks_cooldown: float | None = None
    typ: Literal["strict", "lenient"] | None = None
    realm: str = "api"
    introspection_uri: str | None = None
    introspection_client_id: str | None = None
    introspection_client_secret: str | None = field(default=None, repr=False)
    introspection_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"
    )
    introspection_cache_ttl: float | None = None
    redis_url: str | None = field(default=None, repr=False)
    issuers: tuple[str, ...] = ()
    resource: str | None = None
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None
    dpop: Literal["off", "allowed", "required"] = "off"
    public_url: str | None = None
    trust_forwarded: bool = False

    def __post_init__(self) -> None:
        if not self.issuers:
            object.__setattr__(self, "issuers", (self.issuer,))

    def guard_options(self, **settings: Any) -> GuardOptions:
        """The :class:`~scopegate.GuardOptions` these settings describe (realm, RFC 9728
        resource), with *settings* applied on top."""
        from scopegate._guard import GuardOptions
        from scopegate._resource import ProtectedResource

        resource = None
        if self.resource is not None:
            resource = ProtectedResource(
                resource=self.resource,
                authorization_servers=self.authorization_servers or self.issuers,
                scopes_supported=self.scopes_supported,
                resource_name=self.resource_name,
                resource_documentation=self.resource_documentation,
            )
        dpop = None
        if self.dpop != "off":
            from scopegate._dpop import DPoPPolicy, MemoryReplayStore, RedisReplayStore

            replay = (
                RedisReplayStore(self.redis_url)
                if self.redis_url is not None
                else MemoryReplayStore()
            )
            dpop = DPoPPolicy(mode=self.dpop, replay=replay)
        base = GuardOptions(
            realm=self.realm,
            resource=resource,
            dpop=dpop,
            public_url=self.public_url,
            trust_forwarded=self.trust_forwarded,
        )
        return GuardOptions.of(base, **settings)

    def jwt_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`~scopegate.JWTVerifier`."""
        options: dict[str, Any] = {
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks_uri": self.jwks_uri,
        }
        if self.algorithms is not None:
            options["algorithms"] = self.algorithms
        for name in ("leeway", "max_lifetime", "jwks_cooldown"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.typ is not None:
            options["typ"] = self.typ
        return options


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(PREFIX + name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def realm_from_env(environ: Mapping[str, str] | None = None) -> str:
    """``SCOPEGATE_REALM`` (trimmed), else ``"api"``; also the whole configuration of an
    integration given a verifier of its own."""
    return _get(os.environ if environ is None else environ, "REALM") or "api"


def _require(environ: Mapping[str, str], name: str) -> str:
    value = _get(environ, name)
    if value is None:
        raise ConfigurationError(f"{PREFIX}{name} is required")
    return value


def _seconds(environ: Mapping[str, str], name: str) -> float | None:
    raw = _get(environ, name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{PREFIX}{name} must be a number of seconds") from None
    return number(PREFIX + name, value)


@overload
def _choice(
    environ: Mapping[str, str], name: str, choices: tuple[_Choice, ...], default: _Choice
) -> _Choice: ...
@overload
def _choice(
    environ: Mapping[str, str], name: str, choices: tuple[_Choice, ...], default: None
) -> _Choice | None: ...
def _choice(
    environ: Mapping[str, str], name: str, choices: tuple[_Choice, ...], default: _Choice | None
) -> _Choice | None:
    """The variable's value among *choices* (any case), or *default* when it is unset."""
    raw = _get(environ, name)
    if raw is None:
        return default
    for choice in choices:
        if raw.lower() == choice:
            return choice
    raise ConfigurationError(f"{PREFIX}{name} must be one of: {', '.join(choices)}")


def _split(value: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in value.split(",")) if part)


def _introspection_settings(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``SCOPEGATE_INTROSPECTION_*`` variables, checked."""
    uri = _get(env, "INTROSPECTION_URI")
    client_id = _get(env, "INTROSPECTION_CLIENT_ID")
    client_secret = _get(env, "INTROSPECTION_CLIENT_SECRET")
    if uri is not None:
        for name, value in (("CLIENT_ID", client_id), ("CLIENT_SECRET", client_secret)):
            if value is None:
                raise ConfigurationError(
                    f"{PREFIX}INTROSPECTION_{name} is required with {PREFIX}INTROSPECTION_URI"
                )
    return {
        "introspection_uri": uri,
        "introspection_client_id": client_id,
        "introspection_client_secret": client_secret,
        "introspection_auth_method": _choice(
            env,
            "INTROSPECTION_AUTH_METHOD",
            ("client_secret_basic", "client_secret_post"),
            "client_secret_basic",
        ),
        "introspection_cache_ttl": _seconds(env, "INTROSPECTION_CACHE_TTL"),
    }


def introspection_from_env(environ: Mapping[str, str] | None = None) -> Any:
    """The :class:`~scopegate.IntrospectionVerifier` the variables describe, or ``None``
    without ``SCOPEGATE_INTROSPECTION_URI``.

    Besides the introspection variables it reads ``SCOPEGATE_ISSUER`` (the ``iss`` check,
    with one issuer), ``SCOPEGATE_AUDIENCE`` and ``SCOPEGATE_REDIS_URL`` (a shared cache);
    none of them is required here.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    settings = _introspection_settings(env)
    if settings["introspection_uri"] is None:
        return None
    from scopegate._introspection import IntrospectionVerifier

    issuers = (_get(env, "ISSUER") or "").split()
    audiences = _split(_get(env, "AUDIENCE") or _get(env, "RESOURCE") or "")
    cache = None
    redis_url = _get(env, "REDIS_URL")
    if redis_url is not None:
        from scopegate._cache import RedisCache

        cache = RedisCache(redis_url)
    verifier = IntrospectionVerifier(
        introspection_uri=settings["introspection_uri"],
        issuer=issuers[0] if len(issuers) == 1 else None,
        client_id=settings["introspection_client_id"],
        client_secret=settings["introspection_client_secret"],
        auth_method=settings["introspection_auth_method"],
        audience=audiences or None,
        cache=cache,
        cache_ttl=settings["introspection_cache_ttl"] or 60.0,
    )
    verifier._own_cache = cache is not None
    return verifier


def settings_from_env(environ: Mapping[str, str] | None = None) -> EnvSettings:
    """Read and check the ``SCOPEGATE_*`` variables.

    Args:
        environ: The variables; ``os.environ`` when omitted.

    Returns:
        The parsed :class:`EnvSettings`.

    Raises:
        ConfigurationError: A required variable is missing or a value is malformed; the
            message names the variable (never its value, which may be a secret).
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    issuers = tuple(_require(env, "ISSUER").split())
    jwks_uri = _get(env, "JWKS_URI")
    if len(issuers) > 1 and jwks_uri is not None:
        raise ConfigurationError(
            f"{PREFIX}JWKS_URI applies to one issuer; with several, keys come from discovery"
        )
    resource = _get(env, "RESOURCE")
    audiences = _split(_get(env, "AUDIENCE") or resource or "")
    if not audiences:
        raise ConfigurationError(f"{PREFIX}AUDIENCE (or {PREFIX}RESOURCE) is required")
    audience: str | tuple[str, ...] = audiences[0] if len(audiences) == 1 else audiences

    algorithms: tuple[str, ...] | None = None
    raw_algorithms = _get(env, "ALGORITHMS")
    if raw_algorithms is not None:
        algorithms = _split(raw_algorithms)
        if not algorithms:
            raise ConfigurationError(f"{PREFIX}ALGORITHMS lists no algorithm")

    max_lifetime = _seconds(env, "MAX_LIFETIME")
    if max_lifetime == 0:
        raise ConfigurationError(f"{PREFIX}MAX_LIFETIME must be a positive number of seconds")
    introspection = _introspection_settings(env)
    return EnvSettings(
        issuer=issuers[0],
        issuers=issuers,
        audience=audience,
        jwks_uri=jwks_uri,
        algorithms=algorithms,
        leeway=_seconds(env, "LEEWAY"),
        max_lifetime=max_lifetime,
        jwks_cooldown=_seconds(env, "JWKS_COOLDOWN"),
        typ=_choice(env, "TYP", _TYPS, None),
        realm=realm_from_env(env),
        **introspection,
        redis_url=_get(env, "REDIS_URL"),
        resource=resource,
        authorization_servers=tuple((_get(env, "AUTHORIZATION_SERVERS") or "").split()),
        scopes_supported=tuple((_get(env, "SCOPES_SUPPORTED") or "").split()),
        resource_name=_get(env, "RESOURCE_NAME"),
        resource_documentation=_get(env, "RESOURCE_DOCUMENTATION"),
        dpop=_choice(env, "DPOP", _DPOP_MODES, "off"),
        public_url=_get(env, "PUBLIC_URL"),
        trust_forwarded=_choice(env, "TRUST_FORWARDED", ("true", "false"), "false") == "true",
    )


def from_env(environ: Mapping[str, str] | None = None) -> TokenVerifier:
    """Build the verifier the ``SCOPEGATE_*`` variables describe.

    Returns a :class:`~scopegate.JWTVerifier`; when ``SCOPEGATE_INTROSPECTION_URI`` is set,
    a :class:`~scopegate.HybridVerifier` that sends non-JWT tokens to RFC 7662
    introspection (with the Redis cache when ``SCOPEGATE_REDIS_URL`` is set); with several
    issuers in ``SCOPEGATE_ISSUER``, an :class:`~scopegate.IssuerRouter` (one verifier per
    issuer, same settings).

    Args:
        environ: The variables; ``os.environ`` when omitted.

    Raises:
        ConfigurationError: A required variable is missing or a value is unusable.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    settings = settings_from_env(env)
    from scopegate._jwt import JWTVerifier

    # Imported lazily: introspection (and redis) are only needed when configured.
    introspection = introspection_from_env(env)
    if len(settings.issuers) > 1:
        from scopegate._issuers import IssuerRouter

        options = settings.jwt_options()
        verifiers = [JWTVerifier(**{**options, "issuer": issuer}) for issuer in settings.issuers]
        return IssuerRouter(verifiers, introspection=introspection)
    jwt = JWTVerifier(**settings.jwt_options())
    if introspection is None:
        return jwt
    return HybridVerifier(jwt=jwt, introspection=introspection)


def options_from_env(environ: Mapping[str, str] | None = None, **settings: Any) -> GuardOptions:
    """The :class:`~scopegate.GuardOptions` the ``SCOPEGATE_*`` variables describe.

    ``SCOPEGATE_REALM`` and, when ``SCOPEGATE_RESOURCE`` is set, the RFC 9728
    :class:`~scopegate.ProtectedResource`; keyword *settings* are applied on top
    (``options_from_env(exclude_paths=["/health"])``).

    Raises:
        ConfigurationError: A variable is missing or malformed.
    """
    return settings_from_env(environ).guard_options(**settings)
