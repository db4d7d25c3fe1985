"""Issuer settings and the TOML configuration file.

:class:`IssuerConfig` holds the server-wide settings with secure defaults;
:func:`load_config` reads the TOML format documented for ``scopegate issuer serve``::

    issuer = "https://auth.example"      # default: http://HOST:PORT (loopback only)
    audience = "api://demo"
    token_format = "jwt"                 # or "opaque" (checked by introspection)
    access_token_ttl = 600
    refresh_token_ttl = 86400
    signing_key = "keys/issuer.pem"      # generated at start-up when absent
    allow_password_grant = false
    redis_url = "redis://127.0.0.1:6379/0"

    [[clients]]
    id = "svc-a"
    secret = "..."                       # or secrets = ["old", "new"] during rotation
    grant_types = ["client_credentials"]
    scopes = ["items:read"]

    [[users]]
    username = "alice"
    password = "..."
    scopes = ["items:read"]

Unknown keys are refused so a typo cannot silently weaken a setting.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from scopegate._errors import ConfigurationError
from scopegate.issuer._clients import Client
from scopegate.issuer._users import User, stable_user_id

__all__ = ["IssuerConfig", "LoadedConfig", "load_config"]

MAX_ACCESS_TOKEN_TTL = 3600


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class IssuerConfig:
    """Server-wide issuer settings.

    Args:
        issuer: The issuer identifier (RFC 8414 §2): ``https`` without query or fragment.
            ``http`` is accepted for loopback hosts (local development) or with
            *insecure_dev_mode*.
        audience: ``aud`` of issued access tokens: the resource server's identifier,
            never a client id (RFC 9068 §5).
        token_format: ``"jwt"`` (RFC 9068) or ``"opaque"`` (random, checked by RFC 7662
            introspection).
        access_token_ttl: Access-token lifetime in seconds (default 600, at most 3600
            unless *allow_long_lived_tokens*; RFC 6750 §5.3).
        refresh_token_ttl: Absolute lifetime of a refresh-token family (RFC 9700 §4.14.2).
        refresh_token_idle_ttl: A refresh token unused this long expires.
        allow_password_grant: Enable the legacy password grant (RFC 9700 §2.4 says it
            MUST NOT be used; a warning is emitted at start-up).
        insecure_dev_mode: Allow an ``http`` issuer on a non-loopback host.
        allow_long_lived_tokens: Allow *access_token_ttl* above one hour.
        max_body_bytes: Request bodies above this are refused with 413.
        user_max_failures: Failed logins before per-account backoff starts.
        backoff_base: First backoff in seconds; doubles with each further failure.
        backoff_max: Longest backoff step in seconds.
        lockout_failures: After this many consecutive failures the account is locked for
            the whole *failure_window* (NIST SP 800-63B §5.2.2 caps failures at 100).
        failure_window: Seconds after the last failure when a counter is forgotten.
        address_max_failures: Failed authentications (client or user) from one client
            address before that address gets 429 with backoff.
    """

    issuer: str
    audience: str
    token_format: Literal["jwt", "opaque"] = "jwt"  # noqa: S105 - not a secret
    access_token_ttl: int = 600
    refresh_token_ttl: int = 30 * 86400
    refresh_token_idle_ttl: int = 7 * 86400
    allow_password_grant: bool = False
    insecure_dev_mode: bool = False
    allow_long_lived_tokens: bool = False
    max_body_bytes: int = 64 * 1024
    user_max_failures: int = 5
    backoff_base: float = 60
    backoff_max: float = 900
    lockout_failures: int = 100
    failure_window: float = 12 * 3600
    address_max_failures: int = 20

    def __post_init__(self) -> None:
        parts = urlsplit(self.issuer) if isinstance(self.issuer, str) else None
        if parts is None or not parts.hostname or parts.query or parts.fragment:
            raise ConfigurationError("issuer must be an absolute URL without query or fragment")
        if "?" in self.issuer or "#" in self.issuer:
            raise ConfigurationError("issuer must be an absolute URL without query or fragment")
        if parts.scheme == "http":
            if not (self.insecure_dev_mode or _is_loopback(parts.hostname)):
                raise ConfigurationError(
                    "issuer must use https (RFC 8414 2); set insecure_dev_mode for plain http"
                )
        elif parts.scheme != "https":
            raise ConfigurationError("issuer must use https")
        if not isinstance(self.audience, str) or not self.audience:
            raise ConfigurationError("audience must be a non-empty string")
        if self.token_format not in ("jwt", "opaque"):
            raise ConfigurationError("token_format must be 'jwt' or 'opaque'")
        for name in ("access_token_ttl", "refresh_token_ttl", "refresh_token_idle_ttl"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigurationError(f"{name} must be a positive integer")
        if self.access_token_ttl > MAX_ACCESS_TOKEN_TTL and not self.allow_long_lived_tokens:
            raise ConfigurationError(
                "access_token_ttl above 3600 s needs allow_long_lived_tokens (RFC 6750 5.3)"
            )
        if self.max_body_bytes < 1024:
            raise ConfigurationError("max_body_bytes must be at least 1024")
        if min(self.user_max_failures, self.address_max_failures, self.lockout_failures) < 1:
            raise ConfigurationError("failure thresholds must be positive")

    @property
    def insecure_transport(self) -> bool:
        """Whether the issuer URL is plain ``http``."""
        return self.issuer.startswith("http:")


@dataclass(frozen=True)
class LoadedConfig:
    """Everything a configuration file describes."""

    config: IssuerConfig
    clients: tuple[Client, ...]
    users: tuple[User, ...]
    signing_keys: tuple[Path, ...] = ()
    next_signing_key: Path | None = None
    redis_url: str | None = field(default=None, repr=False)


_TOP_KEYS = {
    "issuer",
    "audience",
    "token_format",
    "access_token_ttl",
    "refresh_token_ttl",
    "refresh_token_idle_ttl",
    "allow_password_grant",
    "insecure_dev_mode",
    "allow_long_lived_tokens",
    "max_body_bytes",
    "user_max_failures",
    "backoff_base",
    "backoff_max",
    "lockout_failures",
    "failure_window",
    "address_max_failures",
    "signing_key",
    "previous_signing_keys",
    "next_signing_key",
    "redis_url",
    "clients",
    "users",
}
_CLIENT_KEYS = {
    "id",
    "secret",
    "secrets",
    "grant_types",
    "scopes",
    "default_scopes",
    "token_endpoint_auth_method",
    "introspect",
    "audience",
    "refresh_tokens",
    "disabled",
}
_USER_KEYS = {"username", "password", "id", "scopes", "default_scopes", "disabled"}


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ConfigurationError(f"unknown setting(s) in {where}: {', '.join(sorted(unknown))}")


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where} must be a list of strings")
    return value


def _client(table: Mapping[str, Any]) -> Client:
    _check_keys(table, _CLIENT_KEYS, "[[clients]]")
    if "id" not in table:
        raise ConfigurationError("every [[clients]] entry needs an id")
    if ("secret" in table) == ("secrets" in table):
        raise ConfigurationError("a client needs exactly one of secret or secrets")
    secrets = [table["secret"]] if "secret" in table else _str_list(table["secrets"], "secrets")
    defaults = table.get("default_scopes")
    return Client(
        client_id=table["id"],
        secret_hashes=tuple(secrets),
        grant_types=frozenset(
            _str_list(table.get("grant_types", ["client_credentials"]), "grant_types")
        ),
        scopes=frozenset(_str_list(table.get("scopes", []), "scopes")),
        default_scopes=None if defaults is None else frozenset(_str_list(defaults, "scopes")),
        auth_method=table.get("token_endpoint_auth_method", "client_secret_basic"),
        introspect=bool(table.get("introspect", False)),
        audience=table.get("audience"),
        refresh_tokens=bool(table.get("refresh_tokens", True)),
        disabled=bool(table.get("disabled", False)),
    )


def _user(table: Mapping[str, Any], issuer: str) -> User:
    _check_keys(table, _USER_KEYS, "[[users]]")
    username, password = table.get("username"), table.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not password:
        raise ConfigurationError("every [[users]] entry needs a username and a password")
    defaults = table.get("default_scopes")
    return User(
        subject=str(table.get("id") or stable_user_id(issuer, username)),
        username=username,
        password_hash=password,
        scopes=frozenset(_str_list(table.get("scopes", []), "scopes")),
        default_scopes=None if defaults is None else frozenset(_str_list(defaults, "scopes")),
        disabled=bool(table.get("disabled", False)),
    )


def load_config(path: str | Path, *, default_issuer: str | None = None) -> LoadedConfig:
    """Read an issuer TOML file.

    Args:
        path: The TOML file. Relative key paths in it are resolved against its folder.
        default_issuer: Used when the file has no ``issuer`` (``http://HOST:PORT``).

    Returns:
        The validated :class:`LoadedConfig`.

    Raises:
        ConfigurationError: The file is unreadable, not TOML, or has invalid settings.
    """
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigurationError("cannot read the issuer configuration file") from exc
    _check_keys(data, _TOP_KEYS, "the configuration file")
    issuer = data.get("issuer", default_issuer)
    if not isinstance(issuer, str):
        raise ConfigurationError("issuer is required")
    settings = {
        key: data[key]
        for key in _TOP_KEYS
        - {
            "issuer",
            "signing_key",
            "previous_signing_keys",
            "next_signing_key",
            "redis_url",
            "clients",
            "users",
        }
        if key in data
    }
    settings.setdefault("audience", "")
    try:
        config = IssuerConfig(issuer=issuer, **settings)
    except TypeError as exc:  # pragma: no cover - keys are filtered above
        raise ConfigurationError("invalid issuer settings") from exc
    clients = data.get("clients", [])
    users = data.get("users", [])
    if not isinstance(clients, list) or not isinstance(users, list):
        raise ConfigurationError("clients and users must be arrays of tables")
    base = file.parent

    def key_path(value: Any, where: str) -> Path:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{where} must be a file path")
        candidate = Path(value)
        return candidate if candidate.is_absolute() else base / candidate

    keys: list[Path] = []
    if "signing_key" in data:
        keys.append(key_path(data["signing_key"], "signing_key"))
    for item in data.get("previous_signing_keys", []):
        keys.append(key_path(item, "previous_signing_keys"))
    next_key = (
        key_path(data["next_signing_key"], "next_signing_key")
        if "next_signing_key" in data
        else None
    )
    if "previous_signing_keys" in data and "signing_key" not in data:
        raise ConfigurationError("previous_signing_keys needs signing_key")
    redis_url = data.get("redis_url")
    if redis_url is not None and not isinstance(redis_url, str):
        raise ConfigurationError("redis_url must be a string")
    return LoadedConfig(
        config=config,
        clients=tuple(_client(c) for c in clients),
        users=tuple(_user(u, config.issuer) for u in users),
        signing_keys=tuple(keys),
        next_signing_key=next_key,
        redis_url=redis_url,
    )
