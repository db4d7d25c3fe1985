"""Issuer state: opaque access tokens, refresh-token families, revocations, counters.

Everything a second issuer process must agree on lives behind :class:`IssuerStore`:
:class:`MemoryStore` for one process, :class:`RedisStore` for several behind a load
balancer. Tokens are stored only as SHA-256 hashes of their value (they carry 256 random
bits, so a fast hash is enough and a dump of the store yields no usable token; RFC 6749
§10.4, issuer spec RT-11).

Refresh tokens form *families*: every rotation adds a member and marks its parent
``rotated`` in one atomic compare-and-set (RFC 9700 §4.14.2), so two concurrent refreshes
of one token have exactly one winner. Revoking a family marks all members ``revoked``,
deletes its opaque access tokens and puts the ``jti`` of its JWT access tokens on the
denylist until they expire (a JWT already verified locally by a resource server stays
usable until ``exp``: the reason access tokens are short-lived).

Authorization codes and pending login requests are one-time values: consuming a code
marks it used in one atomic step (a second presentation learns that it is a replay, RFC
6749 §4.1.2), and taking a login request deletes it in one atomic step, so two
concurrent redemptions have exactly one winner. A code's refresh family is started when
the code is created, so a replay can revoke whatever the first redemption issued.

Brute-force counters (:class:`AttemptCounter`) live here too. The store does not judge
them: it returns a counter with its version and applies a reservation only if the
version is unchanged (compare-and-set), so the throttling rule is written once, in
:mod:`scopegate.issuer._throttle`, for both stores.

The Redis store targets a single Redis server (or a replicated primary); its Lua scripts
touch keys they compute, which Redis Cluster does not allow.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeVar, cast, runtime_checkable
from urllib.parse import urlsplit

from scopegate._cache import RedisConnection
from scopegate._dpop import RedisReplayStore
from scopegate._errors import ConfigurationError
from scopegate.issuer._errors import StoreUnavailableError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = [
    "PENDING_TTL",
    "AccessTokenRecord",
    "AttemptCounter",
    "Audience",
    "AuthorizationCodeRecord",
    "CounterReservation",
    "IssuerStore",
    "LoginRequestRecord",
    "MemoryStore",
    "RedisStore",
    "RefreshTokenRecord",
    "RotationOutcome",
    "Settlement",
    "TokenGrant",
    "audience_tuple",
    "token_hash",
]

RefreshState = Literal["active", "rotated", "revoked"]
#: A token's audience: one resource, or several (RFC 8707 §2, RFC 9068 §3).
Audience = str | tuple[str, ...]
RotationOutcome = Literal["active", "rotated", "revoked", "missing"]
#: How an attempt in flight ends: ``fail`` keeps it counted, ``release`` takes it back,
#: ``clear`` forgets every settled attempt of the counter (a successful login).
Settlement = Literal["fail", "release", "clear"]
#: An attempt still unsettled after this many seconds is presumed lost (its process
#: died): it stops counting as "in flight" but stays counted as a failure.
PENDING_TTL = 60.0
_R = TypeVar("_R")


def token_hash(token: str) -> str:
    """The storage key of a high-entropy token value (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def audience_tuple(audience: Audience) -> tuple[str, ...]:
    """The resources of an audience, as a tuple."""
    return (audience,) if isinstance(audience, str) else tuple(audience)


def _stored_fields(raw: str | bytes) -> dict[str, Any]:
    # JSON has no tuples: the scopes, and an audience of several resources, come back
    # as lists (one resource stays a string, RFC 8707 §2).
    data: dict[str, Any] = json.loads(raw)
    if "scopes" in data:
        data["scopes"] = tuple(data["scopes"])
    audience = data["audience"]
    data["audience"] = audience if isinstance(audience, str) else tuple(audience)
    return data


class _Stored:
    """The storage form of the records below: compact JSON, one codec for every kind."""

    def to_json(self) -> str:
        """Compact JSON for storage."""
        return json.dumps(asdict(cast("DataclassInstance", self)), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        """Parse a stored record."""
        return cls(**_stored_fields(raw))


@dataclass(frozen=True)
class TokenGrant:
    """What a token is minted for: the one field list of access and refresh tokens.

    ``scopes`` are sorted (the order of the ``scope`` claim and of stored records). The
    user fields (set after a user authenticated, RFC 9470) and the DPoP binding are
    keyword-only, after each record's own fields.
    """

    client_id: str
    subject: str
    scopes: tuple[str, ...]
    audience: Audience
    _: KW_ONLY
    username: str | None = None
    auth_time: int | None = None
    acr: str | None = None
    jkt: str | None = None  # the DPoP key it is bound to (cnf.jkt, RFC 9449 §6)


_GRANT_FIELDS = tuple(f.name for f in fields(TokenGrant))


@dataclass(frozen=True)
class _StoredGrant(TokenGrant, _Stored):
    """A grant as stored, with its lifetimes."""

    issued_at: int
    expires_at: int

    @classmethod
    def of(cls, grant: TokenGrant, **fields: Any) -> Self:
        """The record of *grant*: its fields, then the record's own *fields* (which may
        also override a grant field, e.g. an unbound refresh token's ``jkt=None``)."""
        record = {name: getattr(grant, name) for name in _GRANT_FIELDS}
        record.update(fields)
        return cls(**record)


@dataclass(frozen=True)
class AccessTokenRecord(_StoredGrant):
    """What the issuer remembers about an opaque access token (never its value)."""

    jti: str
    family_id: str | None = None


@dataclass(frozen=True)
class RefreshTokenRecord(_StoredGrant):
    """A refresh token's grant: client, user, original scope, family and lifetimes.

    ``expires_at`` is the family's absolute expiry (rotation never extends it, RT-8);
    ``idle_expires_at`` moves forward with each rotation. ``jkt`` is the DPoP key a
    public client's refresh token is bound to (RFC 9449 §5): a refresh must prove it.
    """

    family_id: str
    idle_expires_at: int
    state: RefreshState = field(default="active", compare=False)

    def to_json(self) -> str:
        """Compact JSON for storage (without the mutable ``state``)."""
        data = asdict(self)
        del data["state"]
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes, state: str = "active") -> RefreshTokenRecord:
        """Parse a stored record and attach its current state."""
        return cls(**_stored_fields(raw), state=state)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AuthorizationCodeRecord(_Stored):
    """What an authorization code stands for (RFC 6749 §4.1.2; never the code itself).

    Bound to the client, the exact redirect URI, the PKCE challenge (RFC 7636 §4.4), the
    resources (RFC 8707 §2.1) and, with ``dpop_jkt``, the DPoP key that must redeem it
    (RFC 9449 §10); ``family_id`` names the refresh family its tokens join, so a replay
    can revoke them.
    """

    client_id: str
    redirect_uri: str
    code_challenge: str
    scopes: tuple[str, ...]
    audience: Audience
    subject: str
    username: str
    auth_time: int
    acr: str | None
    family_id: str
    expires_at: int
    dpop_jkt: str | None = None


@dataclass(frozen=True)
class LoginRequestRecord(_Stored):
    """A validated authorization request waiting for the user to sign in.

    Stored under the hash of the login form's one-time token; ``browser_hash`` is the
    hash of the cookie that binds it to the browser that made the request (CSRF).
    """

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str | None
    audience: Audience
    browser_hash: str
    expires_at: int
    tries: int = 0
    dpop_jkt: str | None = None


_Expiring = TypeVar("_Expiring", AccessTokenRecord, RefreshTokenRecord, LoginRequestRecord)


def _live(record: _Expiring | None, now: float) -> _Expiring | None:
    """*record* while it lives: until ``expires_at``, exclusive (both stores)."""
    return record if record is not None and record.expires_at > now else None


@dataclass(frozen=True)
class AttemptCounter:
    """A brute-force counter as read from the store.

    Attributes:
        count: Attempts counted: failures plus attempts still in flight.
        pending: Of those, attempts still being judged.
        last: When the latest attempt was reserved or failed (0.0 when there is none).
        version: Changes whenever ``count`` or ``last`` does (compare-and-set).
    """

    count: int = 0
    pending: int = 0
    last: float = 0.0
    version: int = 0


@dataclass(frozen=True)
class CounterReservation:
    """One counter of :meth:`IssuerStore.reserve_attempts`.

    Attributes:
        key: The counter's storage key.
        version: Its version as read (the attempt is counted only if it is unchanged).
        window: Seconds after this attempt at which the counter is forgotten.
    """

    key: str
    version: int
    window: float


@runtime_checkable
class IssuerStore(Protocol):
    """Shared issuer state. Every method may raise :class:`StoreUnavailableError`."""

    def save_access_token(self, key: str, record: AccessTokenRecord, now: float) -> bool:
        """Store an opaque token; ``False`` (and nothing stored) if its family is revoked."""
        ...  # pragma: no cover

    def get_access_token(self, key: str, now: float) -> AccessTokenRecord | None:
        """The live opaque token record, or ``None``."""
        ...  # pragma: no cover

    def delete_access_token(self, key: str) -> None:
        """Forget an opaque token (revocation)."""
        ...  # pragma: no cover

    def link_jti(self, family_id: str, jti: str, expires_at: int, now: float) -> bool:
        """Attach a JWT's jti to a family; ``False`` if the family is already revoked."""
        ...  # pragma: no cover

    def revoke_jti(self, jti: str, expires_at: int, now: float) -> None:
        """Deny a JWT access token until its ``exp``."""
        ...  # pragma: no cover

    def is_jti_revoked(self, jti: str, now: float) -> bool:
        """Whether the jti is on the denylist."""
        ...  # pragma: no cover

    def create_refresh_token(self, key: str, record: RefreshTokenRecord, now: float) -> None:
        """Start a new family with its first refresh token."""
        ...  # pragma: no cover

    def get_refresh_token(self, key: str, now: float) -> RefreshTokenRecord | None:
        """The refresh token record (any state) until its absolute expiry, or ``None``."""
        ...  # pragma: no cover

    def rotate_refresh_token(
        self, old_key: str, new_key: str, record: RefreshTokenRecord, now: float
    ) -> RotationOutcome:
        """Atomically: if *old_key* is active, mark it rotated and add *new_key*.

        Returns the state *old_key* had (``"active"`` means this call won).
        """
        ...  # pragma: no cover

    def revoke_family(self, family_id: str, now: float) -> None:
        """Revoke every refresh token of a family and every access token issued from it."""
        ...  # pragma: no cover

    def revoke_subject(self, subject: str, now: float) -> None:
        """Revoke every family of a user (password change, logout; RT-9)."""
        ...  # pragma: no cover

    def start_family(self, family_id: str, subject: str, expires_at: float, now: float) -> None:
        """Create an empty refresh family (for an authorization code's tokens)."""
        ...  # pragma: no cover

    def save_authorization_code(
        self, key: str, record: AuthorizationCodeRecord, keep_until: float, now: float
    ) -> None:
        """Store an unused code; remember it until *keep_until* to recognise replays."""
        ...  # pragma: no cover

    def consume_authorization_code(
        self, key: str, now: float
    ) -> tuple[AuthorizationCodeRecord, bool] | None:
        """Atomically mark a code used; the record and whether this was its first use."""
        ...  # pragma: no cover

    def save_login_request(self, key: str, record: LoginRequestRecord, now: float) -> None:
        """Store a pending login request until its ``expires_at``."""
        ...  # pragma: no cover

    def take_login_request(self, key: str, now: float) -> LoginRequestRecord | None:
        """Atomically fetch and delete a pending login request (one-time)."""
        ...  # pragma: no cover

    def read_attempts(self, keys: Sequence[str], now: float) -> list[AttemptCounter]:
        """The brute-force counters of *keys* (zero counters for unknown keys)."""
        ...  # pragma: no cover

    def reserve_attempts(
        self, counters: Sequence[CounterReservation], token: str, now: float
    ) -> bool:
        """Atomically: if every counter still has its read ``version``, count one attempt.

        The attempt is counted on every counter at once (``count + 1``, ``last = now``,
        in flight under *token*), and each counter is forgotten its ``window`` seconds
        later. Returns ``False``, changing nothing, if any version moved.
        """
        ...  # pragma: no cover

    def settle_attempts(
        self, keys: Sequence[str], outcomes: Sequence[Settlement], token: str, now: float
    ) -> None:
        """End the attempt *token* on each key with its outcome (see :data:`Settlement`).

        A ``fail`` also moves ``last`` to *now*: waits run from the failure.
        """
        ...  # pragma: no cover

    def set_flag(self, key: str, ttl: float, now: float) -> None:
        """Remember *key* for *ttl* seconds (a client's known address)."""
        ...  # pragma: no cover

    def has_flag(self, key: str, now: float) -> bool:
        """Whether *key* was remembered and has not expired."""
        ...  # pragma: no cover


@dataclass
class _Family:
    subject: str
    expires_at: float
    revoked: bool = False
    refresh_keys: set[str] = field(default_factory=set)
    access_keys: set[str] = field(default_factory=set)
    jtis: dict[str, int] = field(default_factory=dict)


class MemoryStore:
    """Process-local state behind one lock; expired entries are swept as it goes."""

    _SWEEP_EVERY = 1024
    #: Pending login forms kept at most (see :meth:`save_login_request`).
    max_login_requests = 100_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._access: dict[str, AccessTokenRecord] = {}
        self._refresh: dict[str, RefreshTokenRecord] = {}
        self._families: dict[str, _Family] = {}
        self._subjects: dict[str, set[str]] = {}
        self._denied: dict[str, int] = {}
        self._attempts: dict[str, _Attempts] = {}
        self._flags: dict[str, float] = {}
        self._codes: dict[str, tuple[AuthorizationCodeRecord, float, bool]] = {}
        self._logins: dict[str, LoginRequestRecord] = {}
        self._ops = 0

    def _tick(self, now: float) -> None:
        self._ops += 1
        if self._ops % self._SWEEP_EVERY:
            return
        self._access = {k: v for k, v in self._access.items() if v.expires_at > now}
        self._refresh = {k: v for k, v in self._refresh.items() if v.expires_at > now}
        self._denied = {k: v for k, v in self._denied.items() if v > now}
        self._attempts = {k: v for k, v in self._attempts.items() if v.forget_at > now or v.pending}
        self._flags = {k: v for k, v in self._flags.items() if v > now}
        self._codes = {k: v for k, v in self._codes.items() if v[1] > now}
        self._logins = {k: v for k, v in self._logins.items() if v.expires_at > now}
        dead = [fid for fid, fam in self._families.items() if fam.expires_at <= now]
        for fid in dead:
            fam = self._families.pop(fid)
            subject_families = self._subjects.get(fam.subject)
            if subject_families is not None:
                subject_families.discard(fid)
                if not subject_families:
                    del self._subjects[fam.subject]

    def save_access_token(self, key: str, record: AccessTokenRecord, now: float) -> bool:
        """Store an opaque token; ``False`` if its family is revoked."""
        with self._lock:
            self._tick(now)
            if record.family_id is not None:
                fam = self._families.get(record.family_id)
                if fam is None or fam.revoked:
                    return False
                fam.access_keys.add(key)
            self._access[key] = record
            return True

    def get_access_token(self, key: str, now: float) -> AccessTokenRecord | None:
        """The live opaque token record, or ``None``."""
        with self._lock:
            record = self._access.get(key)
            return _live(record, now)

    def delete_access_token(self, key: str) -> None:
        """Forget an opaque token."""
        with self._lock:
            self._access.pop(key, None)

    def link_jti(self, family_id: str, jti: str, expires_at: int, now: float) -> bool:
        """Attach a JWT's jti to a family; ``False`` if the family is revoked."""
        with self._lock:
            fam = self._families.get(family_id)
            if fam is None or fam.revoked:
                return False
            fam.jtis[jti] = expires_at
            return True

    def revoke_jti(self, jti: str, expires_at: int, now: float) -> None:
        """Deny a JWT access token until its ``exp``."""
        with self._lock:
            if expires_at > now:
                self._denied[jti] = expires_at

    def is_jti_revoked(self, jti: str, now: float) -> bool:
        """Whether the jti is on the denylist."""
        with self._lock:
            until = self._denied.get(jti)
            return until is not None and until > now

    def create_refresh_token(self, key: str, record: RefreshTokenRecord, now: float) -> None:
        """Add a family's first refresh token (starting the family if needed).

        A family that was already revoked (a replayed authorization code) stays revoked,
        and so does the token added to it.
        """
        with self._lock:
            self._tick(now)
            fam = self._start_family_locked(record.family_id, record.subject, record.expires_at)
            fam.refresh_keys.add(key)
            self._refresh[key] = replace(record, state="revoked" if fam.revoked else "active")

    def _start_family_locked(self, family_id: str, subject: str, expires_at: float) -> _Family:
        fam = self._families.get(family_id)
        if fam is None:
            fam = self._families[family_id] = _Family(subject, expires_at + 3600)
            self._subjects.setdefault(subject, set()).add(family_id)
        else:
            fam.expires_at = max(fam.expires_at, expires_at + 3600)
        return fam

    def start_family(self, family_id: str, subject: str, expires_at: float, now: float) -> None:
        """Create an empty refresh family."""
        with self._lock:
            self._tick(now)
            self._start_family_locked(family_id, subject, expires_at)

    def save_authorization_code(
        self, key: str, record: AuthorizationCodeRecord, keep_until: float, now: float
    ) -> None:
        """Store an unused code."""
        with self._lock:
            self._tick(now)
            self._codes[key] = (record, keep_until, False)

    def consume_authorization_code(
        self, key: str, now: float
    ) -> tuple[AuthorizationCodeRecord, bool] | None:
        """Mark a code used under the store lock."""
        with self._lock:
            entry = self._codes.get(key)
            if entry is None or entry[1] <= now:
                return None
            record, keep_until, used = entry
            self._codes[key] = (record, keep_until, True)
            return record, not used

    def save_login_request(self, key: str, record: LoginRequestRecord, now: float) -> None:
        """Store a pending login request (at most ``max_login_requests``; oldest first out).

        Anyone who knows a client id and its redirect URI can open login forms, so the
        pending requests are capped: past the cap, expired ones are swept and then the
        oldest are dropped (their forms answer "expired").
        """
        with self._lock:
            self._tick(now)
            if len(self._logins) >= self.max_login_requests:
                self._logins = {k: v for k, v in self._logins.items() if v.expires_at > now}
                while len(self._logins) >= self.max_login_requests:
                    del self._logins[next(iter(self._logins))]
            self._logins[key] = record

    def take_login_request(self, key: str, now: float) -> LoginRequestRecord | None:
        """Pop a pending login request under the store lock."""
        with self._lock:
            record = self._logins.pop(key, None)
            return _live(record, now)

    def get_refresh_token(self, key: str, now: float) -> RefreshTokenRecord | None:
        """The refresh token record until its absolute expiry, or ``None``."""
        with self._lock:
            record = self._refresh.get(key)
            return _live(record, now)

    def rotate_refresh_token(
        self, old_key: str, new_key: str, record: RefreshTokenRecord, now: float
    ) -> RotationOutcome:
        """Compare-and-set rotation under the store lock."""
        with self._lock:
            old = self._refresh.get(old_key)
            if old is None or old.expires_at <= now:
                return "missing"
            if old.state != "active":
                return old.state
            fam = self._families.get(old.family_id)
            if fam is None or fam.revoked:
                return "revoked"
            self._refresh[old_key] = replace(old, state="rotated")
            self._refresh[new_key] = replace(record, state="active")
            fam.refresh_keys.add(new_key)
            return "active"

    def _revoke_family_locked(self, family_id: str, now: float) -> None:
        fam = self._families.get(family_id)
        if fam is None:
            return
        fam.revoked = True
        for key in fam.refresh_keys:
            record = self._refresh.get(key)
            if record is not None:
                self._refresh[key] = replace(record, state="revoked")
        for key in fam.access_keys:
            self._access.pop(key, None)
        for jti, exp in fam.jtis.items():
            if exp > now:
                self._denied[jti] = exp

    def revoke_family(self, family_id: str, now: float) -> None:
        """Revoke a family and everything issued from it."""
        with self._lock:
            self._revoke_family_locked(family_id, now)

    def revoke_subject(self, subject: str, now: float) -> None:
        """Revoke every family of a user."""
        with self._lock:
            for family_id in list(self._subjects.get(subject, ())):
                self._revoke_family_locked(family_id, now)

    def _counter(self, key: str, now: float) -> _Attempts:
        attempts = self._attempts.get(key)
        if attempts is None:
            attempts = self._attempts[key] = _Attempts()
        elif attempts.forget_at <= now and (attempts.count or attempts.last):
            # Forgotten like a Redis key whose TTL ran out; the version keeps growing so
            # a compare-and-set prepared before the reset cannot succeed on stale data.
            attempts.count, attempts.last = 0, 0.0
            attempts.version += 1
        stale = [t for t, at in attempts.pending.items() if at <= now - PENDING_TTL]
        for token in stale:
            del attempts.pending[token]
        return attempts

    def read_attempts(self, keys: Sequence[str], now: float) -> list[AttemptCounter]:
        """The counters of *keys*."""
        with self._lock:
            result = []
            for key in keys:
                if key not in self._attempts:  # reading creates nothing
                    result.append(AttemptCounter())
                    continue
                a = self._counter(key, now)
                result.append(AttemptCounter(a.count, len(a.pending), a.last, a.version))
            return result

    def reserve_attempts(
        self, counters: Sequence[CounterReservation], token: str, now: float
    ) -> bool:
        """Compare-and-set under the store lock."""
        with self._lock:
            self._tick(now)
            found = [(c, self._counter(c.key, now)) for c in counters]
            if any(a.version != c.version for c, a in found):
                return False
            for c, a in found:
                a.count += 1
                a.last = now
                a.version += 1
                a.forget_at = now + c.window
                a.pending[token] = now
            return True

    def settle_attempts(
        self, keys: Sequence[str], outcomes: Sequence[Settlement], token: str, now: float
    ) -> None:
        """End an attempt in flight."""
        with self._lock:
            for key, outcome in zip(keys, outcomes, strict=True):
                a = self._attempts.get(key)
                if a is None:
                    continue
                a.pending.pop(token, None)
                if outcome == "fail":
                    # Waits run from the failure, not from the reservation: a slow hash
                    # must not use up the delay that follows it.
                    a.last = max(a.last, now)
                    a.version += 1
                elif outcome == "release":
                    a.count = max(0, a.count - 1)
                    a.version += 1
                elif outcome == "clear":
                    a.count = len(a.pending)  # attempts still in flight stay counted
                    a.version += 1

    def set_flag(self, key: str, ttl: float, now: float) -> None:
        """Remember *key* for *ttl* seconds."""
        with self._lock:
            self._flags[key] = now + ttl

    def has_flag(self, key: str, now: float) -> bool:
        """Whether *key* is remembered."""
        with self._lock:
            return self._flags.get(key, 0.0) > now


@dataclass
class _Attempts:
    count: int = 0
    last: float = 0.0
    version: int = 0
    forget_at: float = 0.0
    pending: dict[str, float] = field(default_factory=dict)


# -- Redis -----------------------------------------------------------------------------

# Prepended to the scripts that keep family bookkeeping: its sets and hashes live as long
# as their longest-lived member, so a TTL is only ever extended, never shortened; and
# starting a family that exists never un-revokes it.
_FAMILY_LUA = """
local function extend(key, ttl)
  if redis.call('PTTL', key) < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
end
local function add_member(set, member, ttl)
  redis.call('SADD', set, member)
  extend(set, ttl)
end
local function start_family(family, subject_families, subject, ttl, family_id)
  redis.call('HSETNX', family, 'revoked', '0')
  redis.call('HSET', family, 'subject', subject)
  extend(family, ttl)
  add_member(subject_families, family_id, ttl)
end
"""

# KEYS: old rt, new rt, family, family rts. ARGV: new data, new ttl ms, new key hash.
_ROTATE = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'active' then return state end
if redis.call('HGET', KEYS[3], 'revoked') == '1' then return 'revoked' end
redis.call('HSET', KEYS[1], 'state', 'rotated')
redis.call('HSET', KEYS[2], 'data', ARGV[1], 'state', 'active')
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
return 'active'
"""

# KEYS: family, family members. ARGV: member, ttl ms.
_LINK = (
    _FAMILY_LUA
    + """
if redis.call('HGET', KEYS[1], 'revoked') ~= '0' then return 0 end
add_member(KEYS[2], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: family, family rts, family ats. ARGV: key prefix, now ms.
_REVOKE_FAMILY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
for _, h in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local k = ARGV[1] .. 'rt:' .. h
  if redis.call('EXISTS', k) == 1 then redis.call('HSET', k, 'state', 'revoked') end
end
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local kind, ref, exp = string.match(m, '^(%a+):([^:]+):(%d+)$')
  if kind == 'at' then
    redis.call('DEL', ARGV[1] .. 'at:' .. ref)
  elseif kind == 'jti' then
    local ttl = tonumber(exp) * 1000 - tonumber(ARGV[2])
    if ttl > 0 then redis.call('SET', ARGV[1] .. 'jti:' .. ref, '1', 'PX', math.floor(ttl)) end
  end
end
return 1
"""

# KEYS: n counter hashes, then their n in-flight sorted sets. ARGV: n, prune-before.
_READ_ATTEMPTS = """
local n = tonumber(ARGV[1])
local out = {}
for i = 1, n do
  redis.call('ZREMRANGEBYSCORE', KEYS[n + i], '-inf', ARGV[2])
  local v = redis.call('HMGET', KEYS[i], 'count', 'last', 'v')
  out[#out + 1] = v[1] or '0'
  out[#out + 1] = v[2] or '0'
  out[#out + 1] = v[3] or '0'
  out[#out + 1] = tostring(redis.call('ZCARD', KEYS[n + i]))
end
return out
"""

# Compare-and-set; the rule deciding whether to reserve is in Python (_throttle.py).
# KEYS: as above. ARGV: n, now, token, pending ttl ms, then per key: version, window ms.
_RESERVE_ATTEMPTS = """
local n = tonumber(ARGV[1])
for i = 1, n do
  if (redis.call('HGET', KEYS[i], 'v') or '0') ~= ARGV[3 + 2 * i] then return 0 end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'count', 1)
  redis.call('HINCRBY', KEYS[i], 'v', 1)
  redis.call('HSET', KEYS[i], 'last', ARGV[2])
  redis.call('PEXPIRE', KEYS[i], ARGV[4 + 2 * i])
  redis.call('ZADD', KEYS[n + i], ARGV[2], ARGV[3])
  redis.call('PEXPIRE', KEYS[n + i], ARGV[4])
end
return 1
"""

# KEYS: as above. ARGV: n, token, prune-before, now, then per key: fail | release | clear.
_SETTLE_ATTEMPTS = """
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('ZREM', KEYS[n + i], ARGV[2])
  local outcome = ARGV[4 + i]
  if redis.call('EXISTS', KEYS[i]) == 1 then
    if outcome == 'fail' then
      if tonumber(redis.call('HGET', KEYS[i], 'last') or '0') < tonumber(ARGV[4]) then
        redis.call('HSET', KEYS[i], 'last', ARGV[4])
      end
    elseif outcome == 'release' then
      if redis.call('HINCRBY', KEYS[i], 'count', -1) < 0 then
        redis.call('HSET', KEYS[i], 'count', 0)
      end
    else
      redis.call('ZREMRANGEBYSCORE', KEYS[n + i], '-inf', ARGV[3])
      redis.call('HSET', KEYS[i], 'count', redis.call('ZCARD', KEYS[n + i]))
    end
    redis.call('HINCRBY', KEYS[i], 'v', 1)
  end
end
return 1
"""

# KEYS: opaque at, family, family ats. ARGV: data, ttl ms, member, family ttl ms.
_SAVE_AT = (
    _FAMILY_LUA
    + """
if KEYS[2] ~= '' and redis.call('HGET', KEYS[2], 'revoked') ~= '0' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] ~= '' then add_member(KEYS[3], ARGV[3], ARGV[4]) end
return 1
"""
)


# Start a family, or extend one. KEYS: family, subject's families. ARGV: subject, ttl
# ms, family id.
_START_FAMILY = (
    _FAMILY_LUA
    + """
start_family(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
return 1
"""
)

# A family's first refresh token; revoked at once if the family already is (a replayed
# authorization code). KEYS: family, family rts, rt, subject's families.
# ARGV: subject, family ttl ms, rt key hash, data, rt ttl ms, family id.
_CREATE_RT = (
    _FAMILY_LUA
    + """
start_family(KEYS[1], KEYS[4], ARGV[1], ARGV[2], ARGV[6])
add_member(KEYS[2], ARGV[3], ARGV[2])
local state = 'active'
if redis.call('HGET', KEYS[1], 'revoked') == '1' then state = 'revoked' end
redis.call('HSET', KEYS[3], 'data', ARGV[4], 'state', state)
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return state
"""
)

# KEYS: the code. Returns {data, previous "used" flag}, or nil for an unknown code.
_CONSUME_CODE = """
local data = redis.call('HGET', KEYS[1], 'data')
if not data then return false end
local used = redis.call('HGET', KEYS[1], 'used')
redis.call('HSET', KEYS[1], 'used', '1')
return {data, used}
"""

# KEYS: the login request. GET and DEL in one step (GETDEL needs Redis 6.2).
_TAKE = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


_USERINFO = re.compile(r"//[^/@\s]*@")


def safe_url(url: str) -> str:
    """*url* without its user name and password, for messages and logs."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        shown = f"{parts.scheme}://{netloc}{parts.path}"
        return shown if parts.scheme else "(a Redis URL)"
    except ValueError:
        return "(a Redis URL)"


def _describe(exc: BaseException, secret: str | None) -> str:
    # One line naming what failed, for operators: the exception type and its message
    # with any URL credentials (and the password itself) removed.
    text = " ".join(str(exc).split())[:200]
    text = _USERINFO.sub("//", text)
    if secret:
        text = text.replace(secret, "***")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RedisStore:
    """Issuer state in Redis, shared by several issuer processes.

    Args:
        url: A ``redis://`` / ``rediss://`` URL (requires the ``redis`` extra).
        client: An existing ``redis.Redis`` client instead of *url*.
        prefix: Key prefix, so several issuer processes can share one database.
        family_grace: Extra seconds family bookkeeping outlives the refresh tokens, so
            access tokens issued near the end can still be revoked.
        max_connections: Connections kept to Redis (with *url*); more concurrent
            requests wait up to 2 s for one.

    Raises:
        ConfigurationError: Neither or both of *url* and *client*, or redis-py missing.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "scopegate:issuer:",
        family_grace: float = 3600,
        max_connections: int = 100,
    ) -> None:
        if (url is None) == (client is None):
            raise ConfigurationError("pass exactly one of url= or client=")
        try:
            import redis
        except ImportError as exc:  # pragma: no cover
            raise ConfigurationError("RedisStore needs the redis extra: scopegate[redis]") from exc
        self._redis_error: type[Exception] = redis.RedisError
        self._where = safe_url(str(url)) if url is not None else "Redis"
        self._password: str | None = None
        if url is not None:
            try:
                self._password = urlsplit(str(url)).password
                # A blocking pool: past max_connections a request waits (up to 2 s) for a
                # connection instead of failing at once with "Too many connections".
                pool = redis.BlockingConnectionPool.from_url(
                    str(url),
                    max_connections=max_connections,
                    timeout=2,
                    socket_timeout=2,
                    socket_connect_timeout=2,
                )
                self._client: Any = redis.Redis(connection_pool=pool)
                self._client.auto_close_connection_pool = True  # close() disconnects it
            except ValueError:
                # The message is ours: redis-py's may quote parts of the URL.
                raise ConfigurationError(
                    "redis_url must be a redis://, rediss:// or unix:// URL"
                ) from None
        else:
            self._client = client
        self._p = prefix
        self._grace = family_grace
        self._rotate = self._client.register_script(_ROTATE)
        self._link = self._client.register_script(_LINK)
        self._revoke = self._client.register_script(_REVOKE_FAMILY)
        self._read_attempts = self._client.register_script(_READ_ATTEMPTS)
        self._reserve_attempts = self._client.register_script(_RESERVE_ATTEMPTS)
        self._settle_attempts = self._client.register_script(_SETTLE_ATTEMPTS)
        self._save_at = self._client.register_script(_SAVE_AT)
        self._start_family = self._client.register_script(_START_FAMILY)
        self._create_rt = self._client.register_script(_CREATE_RT)
        self._consume_code = self._client.register_script(_CONSUME_CODE)
        self._take = self._client.register_script(_TAKE)

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r})"

    def replay_store(self) -> RedisReplayStore:
        """A DPoP replay store on this store's Redis client, under its key prefix, so
        every issuer process sharing the store refuses a proof any of them has seen."""
        connection = RedisConnection(client=self._client, purpose="issuer DPoP replay store")
        return RedisReplayStore(connection=connection, prefix=f"{self._p}dpop:")

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def ping(self) -> None:
        """Check that Redis answers (fail fast at start-up).

        Raises:
            StoreUnavailableError: Redis cannot be reached or refuses us; the message
                names the server, never the password.
        """
        try:
            self._client.ping()
        except self._redis_error as exc:
            raise StoreUnavailableError(
                f"cannot reach Redis at {self._where} ({_describe(exc, self._password)})"
            ) from None

    def _call(self, fn: Callable[[], _R]) -> _R:
        try:
            return fn()
        except self._redis_error as exc:
            raise StoreUnavailableError(
                f"Redis at {self._where}: {_describe(exc, self._password)}"
            ) from exc

    def _family_keys(self, family_id: str) -> tuple[str, str, str]:
        base = f"{self._p}fam:{family_id}"
        return base, base + ":rt", base + ":at"

    def save_access_token(self, key: str, record: AccessTokenRecord, now: float) -> bool:
        """Store an opaque token; ``False`` if its family is revoked."""
        ttl = _ms(record.expires_at - now)
        if record.family_id is None:
            keys = [f"{self._p}at:{key}", "", ""]
        else:
            fam, _, fam_at = self._family_keys(record.family_id)
            keys = [f"{self._p}at:{key}", fam, fam_at]
        args: list[str | int] = [
            record.to_json(),
            ttl,
            f"at:{key}:{record.expires_at}",
            ttl + _ms(self._grace),
        ]
        return bool(self._call(lambda: self._save_at(keys=keys, args=args)))

    def get_access_token(self, key: str, now: float) -> AccessTokenRecord | None:
        """The live opaque token record, or ``None``."""
        raw = self._call(lambda: self._client.get(f"{self._p}at:{key}"))
        return None if raw is None else _live(AccessTokenRecord.from_json(raw), now)

    def delete_access_token(self, key: str) -> None:
        """Forget an opaque token."""
        self._call(lambda: self._client.delete(f"{self._p}at:{key}"))

    def link_jti(self, family_id: str, jti: str, expires_at: int, now: float) -> bool:
        """Attach a JWT's jti to a family; ``False`` if the family is revoked."""
        fam, _, fam_at = self._family_keys(family_id)
        ttl = _ms(expires_at - now + self._grace)
        member = f"jti:{jti}:{expires_at}"
        return bool(self._call(lambda: self._link(keys=[fam, fam_at], args=[member, ttl])))

    def revoke_jti(self, jti: str, expires_at: int, now: float) -> None:
        """Deny a JWT access token until its ``exp``."""
        if expires_at > now:
            ttl = _ms(expires_at - now)
            self._call(lambda: self._client.set(f"{self._p}jti:{jti}", b"1", px=ttl))

    def is_jti_revoked(self, jti: str, now: float) -> bool:
        """Whether the jti is on the denylist."""
        return bool(self._call(lambda: self._client.exists(f"{self._p}jti:{jti}")))

    def create_refresh_token(self, key: str, record: RefreshTokenRecord, now: float) -> None:
        """Add a family's first refresh token (starting the family if needed)."""
        fam, fam_rt, _ = self._family_keys(record.family_id)
        ttl = _ms(record.expires_at - now)
        keys = [fam, fam_rt, f"{self._p}rt:{key}", f"{self._p}sub:{record.subject}"]
        args: list[str | int] = [
            record.subject,
            ttl + _ms(self._grace),
            key,
            record.to_json(),
            ttl,
            record.family_id,
        ]
        self._call(lambda: self._create_rt(keys=keys, args=args))

    def start_family(self, family_id: str, subject: str, expires_at: float, now: float) -> None:
        """Create an empty refresh family."""
        fam, _, _ = self._family_keys(family_id)
        keys = [fam, f"{self._p}sub:{subject}"]
        args: list[str | int] = [subject, _ms(expires_at - now + self._grace), family_id]
        self._call(lambda: self._start_family(keys=keys, args=args))

    def save_authorization_code(
        self, key: str, record: AuthorizationCodeRecord, keep_until: float, now: float
    ) -> None:
        """Store an unused code."""
        name = f"{self._p}code:{key}"

        def run() -> None:
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(name, mapping={"data": record.to_json(), "used": "0"})
            pipe.pexpire(name, _ms(keep_until - now))
            pipe.execute()

        self._call(run)

    def consume_authorization_code(
        self, key: str, now: float
    ) -> tuple[AuthorizationCodeRecord, bool] | None:
        """Mark a code used, in one Lua script."""
        result = self._call(lambda: self._consume_code(keys=[f"{self._p}code:{key}"]))
        if not result:
            return None
        data, used = result
        return AuthorizationCodeRecord.from_json(data), used in (b"0", "0")

    def save_login_request(self, key: str, record: LoginRequestRecord, now: float) -> None:
        """Store a pending login request."""
        ttl = _ms(record.expires_at - now)
        self._call(lambda: self._client.set(f"{self._p}login:{key}", record.to_json(), px=ttl))

    def take_login_request(self, key: str, now: float) -> LoginRequestRecord | None:
        """Fetch and delete a pending login request, in one Lua script."""
        raw = self._call(lambda: self._take(keys=[f"{self._p}login:{key}"]))
        return None if raw is None else _live(LoginRequestRecord.from_json(raw), now)

    def get_refresh_token(self, key: str, now: float) -> RefreshTokenRecord | None:
        """The refresh token record until its absolute expiry, or ``None``."""
        raw = self._call(lambda: self._client.hmget(f"{self._p}rt:{key}", ["data", "state"]))
        data, state = raw
        if data is None or state is None:
            return None
        return _live(RefreshTokenRecord.from_json(data, state.decode()), now)

    def rotate_refresh_token(
        self, old_key: str, new_key: str, record: RefreshTokenRecord, now: float
    ) -> RotationOutcome:
        """Compare-and-set rotation in one Lua script."""
        fam, fam_rt, _ = self._family_keys(record.family_id)
        keys = [f"{self._p}rt:{old_key}", f"{self._p}rt:{new_key}", fam, fam_rt]
        args: list[str | int] = [record.to_json(), _ms(record.expires_at - now), new_key]
        result = self._call(lambda: self._rotate(keys=keys, args=args))
        outcome = result.decode() if isinstance(result, bytes) else str(result)
        if outcome not in ("active", "rotated", "revoked", "missing"):  # pragma: no cover
            raise StoreUnavailableError("unexpected rotation result")
        return outcome  # type: ignore[return-value]

    def revoke_family(self, family_id: str, now: float) -> None:
        """Revoke a family and everything issued from it."""
        keys = list(self._family_keys(family_id))
        self._call(lambda: self._revoke(keys=keys, args=[self._p, int(now * 1000)]))

    def revoke_subject(self, subject: str, now: float) -> None:
        """Revoke every family of a user."""
        members = self._call(lambda: self._client.smembers(f"{self._p}sub:{subject}"))
        for family_id in members:
            self.revoke_family(family_id.decode(), now)

    def _attempt_keys(self, keys: Sequence[str]) -> list[str]:
        counters = [f"{self._p}att:{key}" for key in keys]
        return counters + [f"{counter}:pending" for counter in counters]

    def read_attempts(self, keys: Sequence[str], now: float) -> list[AttemptCounter]:
        """The counters of *keys*, in one script call."""
        redis_keys = self._attempt_keys(keys)
        args: list[str | int] = [len(keys), repr(now - PENDING_TTL)]
        raw = self._call(lambda: self._read_attempts(keys=redis_keys, args=args))
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in raw]
        return [
            AttemptCounter(
                count=int(values[i]),
                pending=int(values[i + 3]),
                last=float(values[i + 1]),
                version=int(values[i + 2]),
            )
            for i in range(0, len(values), 4)
        ]

    def reserve_attempts(
        self, counters: Sequence[CounterReservation], token: str, now: float
    ) -> bool:
        """Compare-and-set in one Lua script."""
        redis_keys = self._attempt_keys([c.key for c in counters])
        args: list[str | int] = [len(counters), repr(now), token, _ms(PENDING_TTL)]
        for c in counters:
            args += [str(c.version), _ms(c.window)]
        return bool(self._call(lambda: self._reserve_attempts(keys=redis_keys, args=args)))

    def settle_attempts(
        self, keys: Sequence[str], outcomes: Sequence[Settlement], token: str, now: float
    ) -> None:
        """End an attempt in flight, in one Lua script."""
        redis_keys = self._attempt_keys(keys)
        args: list[str | int] = [len(keys), token, repr(now - PENDING_TTL), repr(now), *outcomes]
        self._call(lambda: self._settle_attempts(keys=redis_keys, args=args))

    def set_flag(self, key: str, ttl: float, now: float) -> None:
        """Remember *key* for *ttl* seconds."""
        self._call(lambda: self._client.set(f"{self._p}flag:{key}", b"1", px=_ms(ttl)))

    def has_flag(self, key: str, now: float) -> bool:
        """Whether *key* is remembered."""
        return bool(self._call(lambda: self._client.exists(f"{self._p}flag:{key}")))
