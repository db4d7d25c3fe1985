"""Resource owners (the login form, the legacy password grant): a store protocol and a store."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from scopegate._errors import ConfigurationError
from scopegate.issuer._clients import CLIENT_SUBJECT_PREFIX, _check_scopes, normalize_username
from scopegate.issuer._passwords import check_stored, hash_secret, is_hashed

__all__ = ["MemoryUserStore", "User", "UserStore", "stable_user_id"]


def stable_user_id(namespace: str, username: str) -> str:
    """A stable opaque user id derived from *namespace* and the normalised username.

    The token ``sub`` is a stable identifier, not the (changeable, personal) username
    (RFC 9068 §2.2; issuer spec PW-11).
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}#user:{normalize_username(username)}"))


@dataclass(frozen=True)
class User:
    """A resource owner.

    Attributes:
        subject: The stable user id used as ``sub``; never starts with ``client:``.
        username: The login name.
        password_hash: An argon2id or scrypt hash (see :mod:`scopegate.issuer._passwords`).
        scopes: Scopes the user may grant to clients.
        default_scopes: Granted when the request omits ``scope``; ``None`` = all *scopes*.
        disabled: Login always fails.
        acr: The ``acr`` (RFC 9470) of this user's password logins; the issuer's
            ``acr`` when ``None``.
    """

    subject: str
    username: str
    password_hash: str = field(repr=False)
    scopes: frozenset[str] = frozenset()
    default_scopes: frozenset[str] | None = None
    disabled: bool = False
    acr: str | None = None

    @property
    def effective_default_scopes(self) -> frozenset[str]:
        """Scopes granted when a request omits ``scope``."""
        return self.scopes if self.default_scopes is None else self.default_scopes


@runtime_checkable
class UserStore(Protocol):
    """Where users come from; implement this over your own user database."""

    def find_user(self, username: str) -> User | None:
        """The user for this login name (compare normalised names), or ``None``."""
        ...  # pragma: no cover

    def update_password_hash(self, user: User, new_hash: str) -> None:
        """Replace *user*'s hash after a login that found outdated parameters (PW-8)."""
        ...  # pragma: no cover


class MemoryUserStore:
    """Users kept in memory, keyed by normalised username (NFKC, case-folded).

    Plaintext passwords (from a configuration file) are hashed with argon2id when the
    store is built, so the store only ever holds hashes.
    """

    def __init__(self, users: Iterable[User]) -> None:
        self._lock = threading.Lock()
        self._users: dict[str, User] = {}
        subjects: set[str] = set()
        for user in users:
            if user.subject.startswith(CLIENT_SUBJECT_PREFIX):
                raise ConfigurationError("user ids may not start with 'client:'")
            if not user.subject or user.subject in subjects:
                raise ConfigurationError("user ids must be non-empty and unique")
            key = normalize_username(user.username)
            if not key or key in self._users:
                raise ConfigurationError("usernames must be non-empty and unique")
            pw = user.password_hash
            if is_hashed(pw) and not pw.startswith("$hmac-sha256$"):
                check_stored(pw)
            else:
                pw = hash_secret(pw)
            _check_scopes(user.scopes, "user scopes")
            subjects.add(user.subject)
            self._users[key] = replace(user, password_hash=pw, scopes=frozenset(user.scopes))

    def find_user(self, username: str) -> User | None:
        """The user for this login name, or ``None``."""
        return self._users.get(normalize_username(username))

    def __iter__(self) -> Iterator[User]:
        return iter(list(self._users.values()))

    def update_password_hash(self, user: User, new_hash: str) -> None:
        """Replace the stored hash (in memory only)."""
        key = normalize_username(user.username)
        with self._lock:
            current = self._users.get(key)
            if current is not None and current.subject == user.subject:
                self._users[key] = replace(current, password_hash=new_hash)
