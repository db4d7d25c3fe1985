"""The verified access token and how scopes are read from its claims."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._jose import is_scope_string

__all__ = ["DEFAULT_SCOPE_CLAIMS", "AccessToken", "ScopeMapping"]

#: Claims read for scopes unless configured otherwise: RFC 9068 / RFC 8693 ``scope``
#: (space-delimited string), Okta/Entra ``scp`` (string or list), Auth0 ``permissions``.
DEFAULT_SCOPE_CLAIMS: tuple[str, ...] = ("scope", "scp", "permissions")


@dataclass(frozen=True, slots=True, eq=False)
class AccessToken:
    """A verified access token, the same whether it came from a JWT or introspection.

    Attributes:
        subject: ``sub``: the resource owner, or the client for client_credentials.
        client_id: The OAuth client the token was issued to (RFC 9068 §2.2).
        scopes: The granted scopes, matched exactly and case-sensitively.
        expires_at: ``exp`` as Unix seconds, when known.
        claims: Every claim (JWT payload or introspection response), read-only.
        issuer: ``iss`` when known.
        token: The raw token. Kept out of ``repr`` so it never reaches a log.
    """

    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    expires_at: int | None
    claims: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    issuer: str | None = None
    token: str = field(default="", repr=False)

    @property
    def jkt(self) -> str | None:
        """The thumbprint of the DPoP key the token is bound to (``cnf.jkt``, RFC 9449
        §6), or ``None`` for a plain bearer token."""
        cnf = self.claims.get("cnf")
        if cnf is None:
            return None  # the common case, without an ABC isinstance check
        if type(cnf) is dict or isinstance(cnf, Mapping):  # JSON's dict: no ABC check
            jkt = cnf.get("jkt")
            if isinstance(jkt, str):
                return jkt
        return None

    def has_scopes(self, *required: str) -> bool:
        """True when every scope in *required* was granted (all-of)."""
        return self.scopes.issuperset(required)

    def has_any_scope(self, *candidates: str) -> bool:
        """True when at least one scope in *candidates* was granted (any-of)."""
        return not self.scopes.isdisjoint(candidates)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AccessToken):
            return NotImplemented
        # Constant-time on the raw token: equality is sometimes used to compare sessions.
        return hmac.compare_digest(self.token, other.token) and self.claims == other.claims

    def __hash__(self) -> int:
        return hash((self.subject, self.client_id, self.expires_at))


def _split_path(path: str) -> tuple[str, ...]:
    parts = tuple(path.split("."))
    if not path or any(not p for p in parts):
        raise ConfigurationError(f"invalid scope claim path: {path!r}")
    return parts


class ScopeMapping:
    """Reads the granted scopes out of token claims.

    Each configured claim is a name or a dotted path into nested objects (Keycloak's
    ``realm_access.roles``). A value may be a space-delimited string or a list of strings
    (``scp``, ``permissions``, roles); ``scope`` itself must be a string (RFC 8693 §4.2).
    Any other JSON type is a malformed token, never a crash. Scopes from every configured
    claim are united.

    Args:
        claims: Claim names or dotted paths, read in order.

    Example:
        >>> ScopeMapping(["scope", "realm_access.roles"]).scopes(
        ...     {"scope": "a b", "realm_access": {"roles": ["admin"]}})
        frozenset({'a', 'b', 'admin'})
    """

    __slots__ = ("_paths", "claims")

    def __init__(self, claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS) -> None:
        self.claims: tuple[str, ...] = tuple(claims)
        self._paths: tuple[tuple[str, ...], ...] = tuple(_split_path(c) for c in self.claims)

    def __repr__(self) -> str:
        return f"ScopeMapping({list(self.claims)!r})"

    def scopes(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """Return the scopes in *claims*.

        Linear in the scope claims' length: each string is checked for RFC 6749 §3.3
        characters in one pass and split once, straight into the frozenset.

        Raises:
            InvalidTokenError: A scope claim has the wrong JSON type, or characters a
                scope-token cannot hold (``bad_scope_claim``).
        """
        found: frozenset[str] | None = None
        for path in self._paths:
            value: Any = claims
            for part in path:
                if not isinstance(value, Mapping):
                    value = None
                    break
                value = value.get(part)
            if value is None:
                continue
            if type(value) is str:
                if not is_scope_string(value):
                    raise _bad_scope_claim()
                scopes = frozenset(value.split(" "))
            elif (
                path != ("scope",)
                and isinstance(value, list | tuple)
                and all(type(v) is str for v in value)
            ):
                if not is_scope_string(" ".join(value)):
                    raise _bad_scope_claim()
                scopes = frozenset(_flatten(value))
            else:
                raise _bad_scope_claim()
            found = scopes if found is None else found | scopes
        if found is None:
            return _NO_SCOPES
        # Double spaces and leading or trailing ones split into empty strings.
        return found - _EMPTY_SCOPE if "" in found else found


_NO_SCOPES: frozenset[str] = frozenset()
_EMPTY_SCOPE = frozenset({""})


def _bad_scope_claim() -> InvalidTokenError:
    return InvalidTokenError(
        "The access token has a malformed scope claim", reason="bad_scope_claim"
    )


def _flatten(values: Sequence[str]) -> Iterable[str]:
    for value in values:
        # A list element is one scope; one with whitespace is not a valid scope-token.
        if value and " " not in value:
            yield value
