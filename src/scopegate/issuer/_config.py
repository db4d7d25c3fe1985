"""Issuer settings and the TOML configuration file.

:class:`IssuerConfig` holds the server-wide settings with secure defaults;
:func:`load_config` reads the TOML format documented for ``scopegate issuer serve``::

    issuer = "https://auth.example"      # default: http://HOST:PORT (loopback only)
    audience = "api://demo"
    token_format = "jwt"                 # or "opaque" (checked by introspection)
    access_token_ttl = 600
    refresh_token_ttl = 86400
    signing_key = "keys/issuer.pem"      # a PEM file (scopegate keys generate); omit it
                                         # and a new key is generated at each start
    allow_password_grant = false
    redis_url = "redis://127.0.0.1:6379/0"
    scope_policy = "strict"              # or "narrow" (RFC 6749 §3.3)
    cors_origins = ["http://127.0.0.1:8000"]
    authorization_code_ttl = 60
    acr = "urn:scopegate:pwd"
    dpop_algorithms = ["ES256", "EdDSA", "PS256", "RS256"]   # RFC 9449 proofs accepted
    dpop_nonce = false                   # require server nonces in proofs (RFC 9449 §8)

    [[clients]]
    id = "svc-a"
    secret = "..."                       # or secrets = ["old", "new"] during rotation
    grant_types = ["client_credentials"]
    scopes = ["items:read"]
    resources = ["http://127.0.0.1:8000/mcp"]   # RFC 8707

    [[clients]]
    id = "web-app"                       # public: no secret, PKCE
    token_endpoint_auth_method = "none"
    grant_types = ["authorization_code", "refresh_token"]
    redirect_uris = ["http://127.0.0.1:8765/callback"]
    dpop_required = true                 # token requests must carry a DPoP proof

    [[users]]
    username = "alice"
    password = "..."
    scopes = ["items:read"]

Every value is checked against its type (TOML has booleans: ``"false"`` is a string,
and ``bool("false")`` is true), and unknown keys are refused, so a typo cannot silently
weaken a setting. Errors name the file, the line, the table (client id or username) and
the bad value, but never the value of a secret, a password or the Redis URL.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from scopegate._dpop import DEFAULT_ALGORITHMS
from scopegate._errors import ConfigurationError
from scopegate._keys import SUPPORTED_ALGORITHMS, check_algorithms
from scopegate.issuer._clients import Client, is_loopback
from scopegate.issuer._errors import SettingError
from scopegate.issuer._users import User, stable_user_id

__all__ = ["IssuerConfig", "LoadedConfig", "check_type", "load_config"]

MAX_ACCESS_TOKEN_TTL = 3600


# -- value types -----------------------------------------------------------------------
# A kind is "boolean", "integer", "number", "string", "list of strings", or a tuple of
# the strings allowed (a choice). One table per place a value can appear; the dataclass
# annotations give IssuerConfig's, so a field and its check cannot drift apart.
Kind = str | tuple[str, ...]


def _expected(kind: Kind) -> str:
    if isinstance(kind, tuple):
        return "one of " + ", ".join(json.dumps(choice) for choice in kind)
    return {
        "boolean": "true or false (a TOML boolean)",
        "integer": "an integer",
        "number": "a number",
        "string": "a string",
        "list of strings": "a list of strings",
    }[kind]


def _fits(kind: Kind, value: Any) -> bool:
    if isinstance(kind, tuple):
        return isinstance(value, str) and value in kind
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        )
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, list | tuple) and all(isinstance(item, str) for item in value)


def _shown(value: Any, secret: bool) -> str:
    """How a bad value is quoted in an error: its TOML type, and the value unless secret."""
    if isinstance(value, bool):
        what, text = "the boolean", "true" if value else "false"
    elif isinstance(value, int):
        what, text = "the integer", str(value)
    elif isinstance(value, float):
        what, text = "the number", repr(value)
    elif isinstance(value, str):
        what, text = "the string", json.dumps(value if len(value) <= 60 else value[:57] + "...")
    elif isinstance(value, list):
        what, text = "a list", ""
    elif isinstance(value, dict):
        what, text = "a table", ""
    else:
        what, text = "a date or time", ""
    if secret:
        return f"{what} (value not shown)"
    return f"{what} {text}".rstrip()


def check_type(name: str, kind: Kind, value: Any, *, secret: bool = False) -> None:
    """Raise :class:`SettingError` unless *value* is of *kind*.

    Args:
        name: The setting, for the message.
        kind: See :data:`Kind`.
        value: The value to check.
        secret: Never show the value (secrets, passwords, URLs with credentials).
    """
    if not _fits(kind, value):
        raise SettingError(name, f"{name} must be {_expected(kind)}, not {_shown(value, secret)}")


def _kind_of(annotation: Any) -> Kind:
    if typing.get_origin(annotation) is Literal:
        return tuple(str(arg) for arg in typing.get_args(annotation))
    if annotation == tuple[str, ...]:
        return "list of strings"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}[annotation]


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
        client_max_failures: Failed authentications for one client id (from anywhere)
            before further attempts for it wait: 1 s, doubling with each failure.
        client_backoff_max: Longest wait in seconds for one client id. There is no
            lockout per client id: anyone may know it, so it must not lock a service
            out; addresses the client authenticated from are exempt.
        lookup_max_misses: Unknown or inactive tokens one client may look up at the
            introspection (or revocation) endpoint before it gets 429 (RFC 7662 §4:
            token scanning). Lookups of live tokens are never counted.
        lookup_window: Seconds after the last miss until the lookup budget is full again.
        scope_policy: ``"strict"`` (default): a request for any scope the client (or
            user) may not have is ``invalid_scope``. ``"narrow"``: grant the allowed part
            and say so in the response's ``scope`` (RFC 6749 §3.3); ``invalid_scope``
            only when nothing requested is allowed. Clients may override it.
        authorization_code_ttl: Seconds an authorization code may be redeemed (RFC 6749
            §4.1.2: short; default 60, at most 600).
        acr: The ``acr`` claim (RFC 9470) of tokens issued after a password check (the
            password grant and the login form), unless the user has its own.
        cors_origins: Browser origins (``scheme://host[:port]``, compared exactly) that
            may call the token endpoint and read the metadata and JWKS cross-origin;
            ``("*",)`` for any origin (never with credentials). Empty (default): no CORS
            on the token endpoint; metadata and JWKS stay readable from any origin.
        dpop_algorithms: The signature algorithms of DPoP proofs the token endpoint
            accepts (RFC 9449 §5.1 ``dpop_signing_alg_values_supported``): asymmetric
            only. A token request with a valid proof gets tokens bound to its key.
        dpop_nonce: Require a server nonce in every DPoP proof (RFC 9449 §8): a proof
            without the current one gets 400 ``use_dpop_nonce`` with a ``DPoP-Nonce``.

    Raises:
        ConfigurationError: A value of the wrong type (a string for a boolean...) or an
            unsafe or inconsistent one.
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
    client_max_failures: int = 20
    client_backoff_max: float = 60
    lookup_max_misses: int = 300
    lookup_window: float = 60
    scope_policy: Literal["strict", "narrow"] = "strict"
    authorization_code_ttl: int = 60
    acr: str = "urn:scopegate:pwd"
    cors_origins: tuple[str, ...] = ()
    dpop_algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    dpop_nonce: bool = False

    def __post_init__(self) -> None:
        for name, kind in _SETTING_KINDS.items():
            check_type(name, kind, getattr(self, name))
        parts = urlsplit(self.issuer)
        if not parts.hostname or parts.query or parts.fragment:
            raise SettingError("issuer", "issuer must be an absolute URL without query or fragment")
        if "?" in self.issuer or "#" in self.issuer:
            raise SettingError("issuer", "issuer must be an absolute URL without query or fragment")
        if parts.scheme == "http":
            if not (self.insecure_dev_mode or is_loopback(parts.hostname)):
                raise SettingError(
                    "issuer",
                    "issuer must use https (RFC 8414 2); set insecure_dev_mode for plain http",
                )
        elif parts.scheme != "https":
            raise SettingError("issuer", "issuer must use https")
        if not self.audience:
            raise SettingError("audience", "audience must be a non-empty string")
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise SettingError(name, f"{name} must be positive")
        if self.access_token_ttl > MAX_ACCESS_TOKEN_TTL and not self.allow_long_lived_tokens:
            raise SettingError(
                "access_token_ttl",
                "access_token_ttl above 3600 s needs allow_long_lived_tokens (RFC 6750 5.3)",
            )
        if self.max_body_bytes < 1024:
            raise SettingError("max_body_bytes", "max_body_bytes must be at least 1024")
        if self.authorization_code_ttl > 600:
            raise SettingError(
                "authorization_code_ttl", "authorization_code_ttl must be at most 600 seconds"
            )
        if not self.acr or not self.acr.isprintable():
            raise SettingError("acr", "acr must be a non-empty printable string")
        object.__setattr__(self, "cors_origins", _check_origins(self.cors_origins))
        object.__setattr__(self, "dpop_algorithms", _check_dpop_algorithms(self.dpop_algorithms))

    @property
    def insecure_transport(self) -> bool:
        """Whether the issuer URL is plain ``http``."""
        return self.issuer.startswith("http:")


def _check_origins(origins: tuple[str, ...]) -> tuple[str, ...]:
    """Exact origins (RFC 6454 §6.2 serialisation), or ``("*",)`` alone."""
    values = tuple(dict.fromkeys(origins))
    if "*" in values:
        if len(values) > 1:
            raise SettingError("cors_origins", 'cors_origins: "*" cannot be combined with origins')
        return values
    for origin in values:
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises ValueError for a bad port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
            or origin != f"{parts.scheme}://{parts.netloc}"
            or origin != origin.lower()
        ):
            raise SettingError(
                "cors_origins",
                "cors_origins must be origins such as https://app.example or "
                'http://127.0.0.1:8000 (lower case, no path, no trailing slash), or ["*"]',
            )
    return values


def _check_dpop_algorithms(algorithms: tuple[str, ...]) -> tuple[str, ...]:
    """Asymmetric JWS algorithms only (RFC 9449 §4.2: never ``none`` or a MAC)."""
    try:
        check_algorithms(algorithms)
    except ConfigurationError:
        raise SettingError(
            "dpop_algorithms",
            "dpop_algorithms must list asymmetric algorithms, some of "
            + ", ".join(sorted(SUPPORTED_ALGORITHMS)),
        ) from None
    return tuple(dict.fromkeys(algorithms))


_HINTS = typing.get_type_hints(IssuerConfig)
#: The type of every IssuerConfig field, from its annotation.
_SETTING_KINDS: dict[str, Kind] = {f.name: _kind_of(_HINTS[f.name]) for f in fields(IssuerConfig)}
_POSITIVE = tuple(
    name
    for name, kind in _SETTING_KINDS.items()
    if kind in ("integer", "number") and name != "max_body_bytes"
)


@dataclass(frozen=True)
class LoadedConfig:
    """Everything a configuration file describes."""

    config: IssuerConfig
    clients: tuple[Client, ...]
    users: tuple[User, ...]
    signing_keys: tuple[Path, ...] = ()
    next_signing_key: Path | None = None
    redis_url: str | None = field(default=None, repr=False)


# Top-level keys that are not IssuerConfig fields, and the keys of each table.
_FILE_KINDS: dict[str, Kind] = {
    "signing_key": "string",
    "previous_signing_keys": "list of strings",
    "next_signing_key": "string",
    "redis_url": "string",
}
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")
_CLIENT_KINDS: dict[str, Kind] = {
    "id": "string",
    "secret": "string",
    "secrets": "list of strings",
    "grant_types": "list of strings",
    "scopes": "list of strings",
    "default_scopes": "list of strings",
    "auth_methods": "list of strings",
    "token_endpoint_auth_method": _AUTH_METHODS,
    "introspect": "boolean",
    "audience": "string",
    "refresh_tokens": "boolean",
    "disabled": "boolean",
    "resources": "list of strings",
    "scope_policy": ("strict", "narrow"),
    "redirect_uris": "list of strings",
    "dpop_required": "boolean",
}
_USER_KINDS: dict[str, Kind] = {
    "username": "string",
    "password": "string",
    "id": "string",
    "scopes": "list of strings",
    "default_scopes": "list of strings",
    "disabled": "boolean",
    "acr": "string",
}
# Values never repeated in an error message.
_SECRET_KEYS = frozenset({"secret", "secrets", "password", "redis_url"})
_TABLES = ("clients", "users")


class _Source:
    """The configuration text, to find the line of a key (tomllib gives no positions).

    Best effort: a key is found on a line ``key = ...`` (bare or quoted) in the right
    table; keys inside inline tables or multi-line values may not be found, and the
    message then names the table without a line.
    """

    _HEADER = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\"' -]+?)\s*\]\]?")

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        # (table name or "" for the top level, occurrence index, header line, key lines)
        self._sections: list[tuple[str, int, int, dict[str, int]]] = [("", 0, 0, {})]
        seen: dict[str, int] = {}
        key_line = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
        for number, line in enumerate(text.splitlines(), 1):
            header = self._HEADER.match(line)
            if header:
                name = header.group(1).strip().strip("\"'")
                index = seen.get(name, 0)
                seen[name] = index + 1
                self._sections.append((name, index, number, {}))
                continue
            match = key_line.match(line)
            if match:
                key = next(group for group in match.groups() if group)
                self._sections[-1][3].setdefault(key, number)

    def line(self, key: str | None, table: str = "", index: int = 0) -> int | None:
        """The line of *key* in the *index*-th ``[[table]]`` (or its header line)."""
        for name, occurrence, header, keys in self._sections:
            if name == table and occurrence == index:
                if key is None:
                    return header or None
                return keys.get(key, header or None)
        return None

    def error(self, message: str, line: int | None, where: str = "") -> ConfigurationError:
        """A :class:`ConfigurationError` saying ``FILE:LINE: [[table]] "id": message``."""
        place = f"{self.path}:{line}" if line else str(self.path)
        return ConfigurationError(f"{place}: {where + ': ' if where else ''}{message}")


def _check_table(
    source: _Source,
    table: Mapping[str, Any],
    kinds: Mapping[str, Kind],
    *,
    name: str = "",
    index: int = 0,
    where: str = "",
) -> None:
    """Refuse unknown keys and values of the wrong type, naming file, line and table."""
    for key, value in table.items():
        line = source.line(key, name, index)
        if key not in kinds:
            what = f"[[{name}]]" if name else "the top level"
            raise source.error(
                f"unknown setting {json.dumps(key)} (settings allowed in {what}: "
                f"{', '.join(sorted(kinds))})",
                line,
                where,
            )
        try:
            check_type(key, kinds[key], value, secret=key in _SECRET_KEYS)
        except SettingError as exc:
            raise source.error(str(exc), line, where) from None


def _where(kind: str, table: Mapping[str, Any], label: str, index: int) -> str:
    value = table.get(label)
    return (
        f"[[{kind}]] {json.dumps(value)}" if isinstance(value, str) else f"[[{kind}]] #{index + 1}"
    )


def _client(source: _Source, table: Mapping[str, Any], index: int) -> Client:
    where = _where("clients", table, "id", index)
    _check_table(source, table, _CLIENT_KINDS, name="clients", index=index, where=where)
    header = source.line(None, "clients", index)
    if "id" not in table:
        raise source.error("every [[clients]] entry needs an id", header, where)
    public = "none" in (table.get("auth_methods") or [table.get("token_endpoint_auth_method")])
    if ("secret" in table and "secrets" in table) or (
        not public and "secret" not in table and "secrets" not in table
    ):
        raise source.error("a client needs exactly one of secret or secrets", header, where)
    if "auth_methods" in table and "token_endpoint_auth_method" in table:
        raise source.error(
            "use auth_methods or token_endpoint_auth_method, not both",
            source.line("auth_methods", "clients", index),
            where,
        )
    secrets = [table["secret"]] if "secret" in table else table.get("secrets", [])
    defaults = table.get("default_scopes")
    extra: dict[str, Any] = {}
    if "auth_methods" in table:
        extra["auth_methods"] = frozenset(table["auth_methods"])
    elif "token_endpoint_auth_method" in table:  # the RFC 7591 name, one method only
        extra["auth_methods"] = frozenset({table["token_endpoint_auth_method"]})
    try:
        return Client(
            client_id=table["id"],
            secret_hashes=tuple(secrets),
            grant_types=frozenset(table.get("grant_types", ["client_credentials"])),
            scopes=frozenset(table.get("scopes", [])),
            default_scopes=None if defaults is None else frozenset(defaults),
            introspect=table.get("introspect", False),
            audience=table.get("audience"),
            refresh_tokens=table.get("refresh_tokens", True),
            disabled=table.get("disabled", False),
            resources=frozenset(table.get("resources", [])),
            scope_policy=table.get("scope_policy"),
            redirect_uris=tuple(table.get("redirect_uris", [])),
            dpop_required=table.get("dpop_required", False),
            **extra,
        )
    except SettingError as exc:
        raise source.error(str(exc), source.line(exc.setting, "clients", index), where) from None
    except ConfigurationError as exc:
        raise source.error(str(exc), header, where) from None


def _user(source: _Source, table: Mapping[str, Any], index: int, issuer: str) -> User:
    where = _where("users", table, "username", index)
    _check_table(source, table, _USER_KINDS, name="users", index=index, where=where)
    header = source.line(None, "users", index)
    username, password = table.get("username"), table.get("password")
    if not username or not password:
        raise source.error("every [[users]] entry needs a username and a password", header, where)
    defaults = table.get("default_scopes")
    return User(
        subject=str(table.get("id") or stable_user_id(issuer, username)),
        username=username,
        password_hash=password,
        scopes=frozenset(table.get("scopes", [])),
        default_scopes=None if defaults is None else frozenset(defaults),
        disabled=table.get("disabled", False),
        acr=table.get("acr"),
    )


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigurationError(f"{file}: configuration file not found") from None
    except PermissionError:
        raise ConfigurationError(f"{file}: permission denied reading the file") from None
    except IsADirectoryError:
        raise ConfigurationError(f"{file}: is a directory, not a configuration file") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"{file}: not UTF-8 text") from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigurationError(f"{file}: cannot read the file ({reason})") from None


def load_config(path: str | Path, *, default_issuer: str | None = None) -> LoadedConfig:
    """Read an issuer TOML file.

    Args:
        path: The TOML file. Relative key paths in it are resolved against its folder.
        default_issuer: Used when the file has no ``issuer`` (``http://HOST:PORT``).

    Returns:
        The validated :class:`LoadedConfig`.

    Raises:
        ConfigurationError: The file is missing, unreadable or not TOML (the message
            says which, with tomllib's line and column), or a setting is unknown, of the
            wrong type or invalid (the message names the file, line and table).
    """
    file = Path(path)
    text = _read(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{file}: TOML syntax error: {exc}") from None
    source = _Source(file, text)
    for name in _TABLES:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise source.error(
                f"{name} must be an array of tables: write [[{name}]] above each entry",
                source.line(name) or source.line(None, name),
            )
    top = {key: value for key, value in data.items() if key not in _TABLES}
    _check_table(source, top, {**_SETTING_KINDS, **_FILE_KINDS})
    issuer = data.get("issuer", default_issuer)
    if issuer is None:
        raise source.error("issuer is required", None)
    settings = {key: value for key, value in top.items() if key in _SETTING_KINDS}
    settings.setdefault("audience", "")
    settings["issuer"] = issuer
    try:
        config = IssuerConfig(**settings)
    except SettingError as exc:
        raise source.error(str(exc), source.line(exc.setting)) from None
    base = file.parent

    def key_path(value: str) -> Path:
        candidate = Path(value)
        return candidate if candidate.is_absolute() else base / candidate

    keys: list[Path] = []
    if "signing_key" in data:
        keys.append(key_path(data["signing_key"]))
    keys += [key_path(item) for item in data.get("previous_signing_keys", [])]
    next_key = key_path(data["next_signing_key"]) if "next_signing_key" in data else None
    if "previous_signing_keys" in data and "signing_key" not in data:
        raise source.error(
            "previous_signing_keys needs signing_key", source.line("previous_signing_keys")
        )
    for name in ("signing_key", "next_signing_key"):
        if data.get(name) == "":
            raise source.error(f"{name} must be a file path", source.line(name))
    return LoadedConfig(
        config=config,
        clients=tuple(_client(source, c, i) for i, c in enumerate(data.get("clients", []))),
        users=tuple(
            _user(source, u, i, config.issuer) for i, u in enumerate(data.get("users", []))
        ),
        signing_keys=tuple(keys),
        next_signing_key=next_key,
        redis_url=data.get("redis_url"),
    )
