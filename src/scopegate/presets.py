"""One-line :class:`~scopegate.JWTVerifier` configurations for common identity providers.

Each function knows its provider's issuer URL, key location and token shape (where the
scopes or roles live, which claim names the client, which claims are always present) and
returns a ready verifier::

    from scopegate.presets import auth0
    verifier = auth0("example.eu.auth0.com", audience="https://api.example.com")

What every preset keeps from scopegate's defaults: the exact ``iss`` match, the audience
check (except Cognito, whose access tokens carry no ``aud``: the ``client_id`` is checked
instead), asymmetric algorithms only, keys only from the provider's JWKS, ``exp``/``iat``
checks with 60 s leeway, the maximum lifetime.

What presets relax, and why:

* ``typ`` is ``lenient``: these providers sign access tokens with ``typ: JWT`` (or no
  ``typ``) instead of RFC 9068's ``at+jwt``, so the audience check is what keeps ID tokens
  out (each provider gives APIs audiences distinct from client ids).
* ``required_claims`` lists what the provider really sends: Auth0 and Entra ID send no
  ``jti``; none of them uses the ``client_id`` claim name except Cognito.

Each preset takes ``keys=`` (static keys: tests, air-gapped setups) or ``jwks_uri=`` to
override where the keys come from, and passes any other keyword (``leeway``,
``runner``, ``clock``...) to :class:`~scopegate.JWTVerifier`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from scopegate._errors import ConfigurationError, InvalidTokenError

if TYPE_CHECKING:
    from scopegate._issuers import IssuerRouter
    from scopegate._jwt import JWTVerifier

__all__ = ["auth0", "cognito", "entra", "entra_v1_v2", "keycloak", "okta"]

ClaimsValidator = Callable[[Mapping[str, Any]], None]

_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?")
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
# What the providers always send: Auth0 and Entra ID send no jti.
_NO_JTI = ("iss", "exp", "aud", "sub", "iat")
_WITH_JTI = (*_NO_JTI, "jti")


def _host(value: str, name: str) -> str:
    # Accept "tenant.auth0.com" as well as "https://tenant.auth0.com/".
    host = value.removeprefix("https://").rstrip("/")
    if not _HOST.fullmatch(host):
        raise ConfigurationError(f"{name} must be a host name such as example.okta.com")
    return host


def _segment(value: str, name: str) -> str:
    if not _SEGMENT.fullmatch(value):
        raise ConfigurationError(f"{name} must be a plain identifier without '/' or spaces")
    return value


def _chain(*validators: ClaimsValidator | None) -> ClaimsValidator | None:
    active = [v for v in validators if v is not None]
    if not active:
        return None
    if len(active) == 1:
        return active[0]

    def run_all(claims: Mapping[str, Any]) -> None:
        for validator in active:
            validator(claims)

    return run_all


class _Shape(NamedTuple):
    """Where a provider puts what: the claims it always sends, the scopes, the client."""

    required_claims: tuple[str, ...]
    scope_claims: tuple[str, ...]
    client_id_claims: tuple[str, ...]


def _build(
    shape: _Shape,
    issuer: str,
    audience: str | Sequence[str] | None,
    jwks_uri: str,
    options: dict[str, Any],
    claims_validator: ClaimsValidator | None = None,
) -> JWTVerifier:
    from scopegate._jwt import JWTVerifier

    user_validator = options.pop("claims_validator", None)
    if options.get("keys") is None:
        options.setdefault("jwks_uri", jwks_uri)
    options.setdefault("typ", "lenient")
    for name, value in shape._asdict().items():
        options.setdefault(name, value)
    return JWTVerifier(
        issuer=issuer,
        audience=audience,
        claims_validator=_chain(claims_validator, user_validator),
        **options,
    )


def auth0(domain: str, audience: str | Sequence[str], **options: Any) -> JWTVerifier:
    """A verifier for Auth0 access tokens.

    Issuer ``https://{domain}/`` (with the trailing slash Auth0 uses), keys from
    ``https://{domain}/.well-known/jwks.json``. Scopes come from ``scope`` and, with
    role-based access control enabled, from the ``permissions`` array. The client is
    ``azp`` (``client_id`` when present).

    Args:
        domain: The tenant or custom domain, e.g. ``example.eu.auth0.com``.
        audience: The API identifier configured in Auth0 (``aud``).
        **options: ``keys=``/``jwks_uri=`` overrides and other ``JWTVerifier`` keywords.

    Raises:
        ConfigurationError: A malformed domain or an invalid option.
    """
    host = _host(domain, "domain")
    shape = _Shape(_NO_JTI, ("scope", "permissions"), ("azp", "client_id"))
    return _build(
        shape, f"https://{host}/", audience, f"https://{host}/.well-known/jwks.json", options
    )


def keycloak(
    base_url: str,
    realm: str,
    audience: str | Sequence[str],
    *,
    client_roles: str | Sequence[str] = (),
    realm_roles: bool = True,
    **options: Any,
) -> JWTVerifier:
    """A verifier for Keycloak access tokens.

    Issuer ``{base_url}/realms/{realm}``, keys from its ``protocol/openid-connect/certs``.
    Scopes come from ``scope``, realm roles from ``realm_access.roles`` and, for each
    client named in *client_roles*, ``resource_access.<client>.roles``. The client is
    ``azp``. Keycloak marks the token kind in the ``typ`` *claim*: only ``Bearer`` is
    accepted, so ID tokens (``ID``) and refresh tokens (``Refresh``) are refused even if
    their audience matched.

    Args:
        base_url: The server URL, e.g. ``https://sso.example.com`` (add ``/auth`` for
            Keycloak before version 17).
        realm: The realm name.
        audience: The ``aud`` your API expects (add an audience mapper in Keycloak).
        client_roles: Client ids whose roles count as scopes.
        realm_roles: Whether realm roles count as scopes.
        **options: ``keys=``/``jwks_uri=`` overrides and other ``JWTVerifier`` keywords.

    Raises:
        ConfigurationError: A malformed URL, realm or client id.
    """
    base = base_url.rstrip("/")
    if not base.startswith(("https://", "http://")):
        raise ConfigurationError("base_url must be the http(s) URL of the Keycloak server")
    issuer = f"{base}/realms/{_segment(realm, 'realm')}"
    clients = (client_roles,) if isinstance(client_roles, str) else tuple(client_roles)
    scope_claims = ["scope"]
    if realm_roles:
        scope_claims.append("realm_access.roles")
    # The client id is a single path segment; a dot would split the dotted claim path.
    for client in clients:
        if "." in client:
            raise ConfigurationError("client_roles: a client id containing '.' is not supported")
        scope_claims.append(f"resource_access.{_segment(client, 'client_roles')}.roles")

    def bearer_only(claims: Mapping[str, Any]) -> None:
        kind = claims.get("typ")
        if kind is not None and kind != "Bearer":
            raise InvalidTokenError("The access token is invalid", reason="wrong_token_type")

    shape = _Shape(_WITH_JTI, tuple(scope_claims), ("azp", "client_id"))
    jwks_uri = f"{issuer}/protocol/openid-connect/certs"
    return _build(shape, issuer, audience, jwks_uri, options, bearer_only)


def entra(
    tenant_id: str,
    audience: str | Sequence[str],
    *,
    version: Literal[1, 2] = 2,
    **options: Any,
) -> JWTVerifier:
    """A verifier for Microsoft Entra ID (Azure AD) access tokens for your own API.

    v2 tokens: issuer ``https://login.microsoftonline.com/{tenant}/v2.0``, client in
    ``azp``. v1 tokens: issuer ``https://sts.windows.net/{tenant}/``, client in ``appid``.
    The ``ver`` claim must match *version*. Delegated permissions come from ``scp`` (a
    space-delimited string) and application permissions from ``roles`` (an array).
    Which version you get is set by ``accessTokenAcceptedVersion`` in the API's app
    manifest, not by the endpoint the client used.

    Args:
        tenant_id: The directory (tenant) id, a GUID. Multi-tenant ``common`` is not
            supported: its issuer varies per token.
        audience: The API's application id (v2) or App ID URI such as
            ``api://my-api`` (v1); pass both as a list if unsure.
        version: 2 (default) or 1.
        **options: ``keys=``/``jwks_uri=`` overrides and other ``JWTVerifier`` keywords.

    Raises:
        ConfigurationError: A malformed tenant, ``common``/``organizations``, or a bad version.
    """
    tenant = _segment(tenant_id, "tenant_id")
    if tenant.lower() in ("common", "organizations", "consumers"):
        raise ConfigurationError(
            "entra() needs a specific tenant id: multi-tenant issuers vary per token"
        )
    if version == 2:
        issuer = f"https://login.microsoftonline.com/{tenant}/v2.0"
        jwks_uri = f"https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys"
        client_claims: tuple[str, ...] = ("azp", "appid")
        expected_ver = "2.0"
    elif version == 1:
        issuer = f"https://sts.windows.net/{tenant}/"
        jwks_uri = f"https://login.microsoftonline.com/{tenant}/discovery/keys"
        client_claims = ("appid", "azp")
        expected_ver = "1.0"
    else:
        raise ConfigurationError("version must be 1 or 2")

    def check_version(claims: Mapping[str, Any]) -> None:
        if claims.get("ver", expected_ver) != expected_ver:
            raise InvalidTokenError("The access token is invalid", reason="wrong_token_version")

    shape = _Shape(_NO_JTI, ("scp", "roles"), client_claims)
    return _build(shape, issuer, audience, jwks_uri, options, check_version)


def entra_v1_v2(
    tenant_id: str,
    *,
    v1_audience: str | Sequence[str],
    v2_audience: str | Sequence[str],
    **options: Any,
) -> IssuerRouter:
    """One API accepting Microsoft Entra ID v1 and v2 access tokens of one tenant.

    An API's token version follows ``accessTokenAcceptedVersion`` in its manifest, and
    clients may hold either during a migration; the two versions have different issuers
    (``https://sts.windows.net/{tenant}/`` and
    ``https://login.microsoftonline.com/{tenant}/v2.0``), keys locations and usually
    audiences (the App ID URI in v1, the application id in v2). Tokens are routed by
    their ``iss`` to the matching :func:`entra` verifier, never tried one after another.

    Args:
        tenant_id: The directory (tenant) id.
        v1_audience: Audience(s) of v1 tokens (the App ID URI, ``api://...``).
        v2_audience: Audience(s) of v2 tokens (the application id).
        **options: Passed to both :func:`entra` verifiers.

    Raises:
        ConfigurationError: As :func:`entra`.
    """
    from scopegate._issuers import IssuerRouter

    return IssuerRouter(
        [
            entra(tenant_id, v1_audience, version=1, **options),
            entra(tenant_id, v2_audience, version=2, **options),
        ]
    )


def okta(
    domain: str,
    audience: str | Sequence[str],
    *,
    authorization_server: str | None = "default",
    **options: Any,
) -> JWTVerifier:
    """A verifier for Okta access tokens.

    With a custom authorization server (``default`` unless told otherwise) the issuer is
    ``https://{domain}/oauth2/{authorization_server}`` and keys come from its
    ``/v1/keys``. Pass ``authorization_server=None`` for the org authorization server
    (issuer ``https://{domain}``); Okta does not intend those tokens for your own APIs.
    Scopes come from ``scp`` (an array); the client is ``cid``.

    Args:
        domain: The Okta domain, e.g. ``example.okta.com``.
        audience: The authorization server's audience (``api://default`` by default).
        authorization_server: The custom authorization server id, or ``None``.
        **options: ``keys=``/``jwks_uri=`` overrides and other ``JWTVerifier`` keywords.

    Raises:
        ConfigurationError: A malformed domain or server id.
    """
    host = _host(domain, "domain")
    if authorization_server is None:
        issuer = f"https://{host}"
        jwks_uri = f"https://{host}/oauth2/v1/keys"
    else:
        issuer = f"https://{host}/oauth2/{_segment(authorization_server, 'authorization_server')}"
        jwks_uri = f"{issuer}/v1/keys"
    shape = _Shape(_WITH_JTI, ("scp", "scope"), ("cid", "client_id"))
    return _build(shape, issuer, audience, jwks_uri, options)


def cognito(
    region: str,
    user_pool_id: str,
    client_ids: str | Sequence[str],
    **options: Any,
) -> JWTVerifier:
    """A verifier for Amazon Cognito user-pool access tokens.

    Issuer ``https://cognito-idp.{region}.amazonaws.com/{user_pool_id}``, keys from its
    ``/.well-known/jwks.json``. Cognito access tokens carry **no** ``aud``; instead the
    ``client_id`` claim must be one of *client_ids* and ``token_use`` must be
    ``access`` (an ID token has ``token_use: id``). Scopes come from ``scope``, groups
    from ``cognito:groups``.

    Args:
        region: The AWS region, e.g. ``eu-west-1``.
        user_pool_id: The user pool id, e.g. ``eu-west-1_AbCdEf123``.
        client_ids: The app client id(s) allowed to call your API.
        **options: ``keys=``/``jwks_uri=`` overrides and other ``JWTVerifier`` keywords.

    Raises:
        ConfigurationError: A malformed region, pool id, or no client id.
    """
    region = _segment(region, "region")
    pool = _segment(user_pool_id, "user_pool_id")
    allowed = frozenset((client_ids,) if isinstance(client_ids, str) else client_ids)
    if not allowed or not all(isinstance(c, str) and c for c in allowed):
        raise ConfigurationError("cognito() needs at least one app client id")
    issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool}"

    def access_token_for_our_clients(claims: Mapping[str, Any]) -> None:
        if claims.get("token_use") != "access":
            raise InvalidTokenError("The access token is invalid", reason="wrong_token_use")
        if claims.get("client_id") not in allowed:
            raise InvalidTokenError("The access token is invalid", reason="wrong_client")

    # No aud: the client_id claim is required and checked instead.
    shape = _Shape(
        ("iss", "exp", "sub", "client_id", "iat", "jti"),
        ("scope", "cognito:groups"),
        ("client_id",),
    )
    jwks_uri = f"{issuer}/.well-known/jwks.json"
    return _build(shape, issuer, None, jwks_uri, options, access_token_for_our_clients)
