"""The token grants: client credentials, password (legacy, opt-in) and refresh token.

Each grant receives an already authenticated client that is registered for it (the
endpoint checks both first, so an unauthorised client never reaches a password check;
issuer spec PW-6) and returns the RFC 6749 §5.1 response members.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from scopegate import _observe
from scopegate.issuer._clients import CLIENT_SUBJECT_PREFIX, Client, normalize_username, parse_scope
from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    TooManyRequestsError,
)
from scopegate.issuer._passwords import (
    MAX_SECRET_BYTES,
    hash_profile,
    hash_secret,
    needs_rehash,
    typical_profile,
    verify_dummy,
    verify_secret,
)
from scopegate.issuer._store import IssuerStore, RefreshTokenRecord, token_hash
from scopegate.issuer._throttle import Limits, Throttle, Throttled
from scopegate.issuer._tokens import IssuedAccessToken, TokenFactory
from scopegate.issuer._users import User, UserStore

__all__ = [
    "ClientCredentialsGrant",
    "Grant",
    "GrantRequest",
    "PasswordGrant",
    "RefreshTokenGrant",
    "resolve_scope",
]

logger = logging.getLogger("scopegate.issuer")
_BAD_CREDENTIALS = "Invalid resource owner credentials"
_BAD_REFRESH = "The refresh token is invalid, expired or revoked"


@dataclass(frozen=True)
class GrantRequest:
    """One token request as a grant sees it."""

    client: Client
    form: Mapping[str, str]
    address: str | None
    now: float


class Grant(Protocol):
    """A token-endpoint grant (RFC 6749 §4)."""

    grant_type: str

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Return the RFC 6749 §5.1 response members or raise an ``OAuthError``."""
        ...  # pragma: no cover


def resolve_scope(
    requested: str | None, allowed: frozenset[str], default: frozenset[str]
) -> frozenset[str]:
    """Apply RFC 6749 §3.3: exact tokens, requested ⊆ allowed, omitted → default.

    Raises:
        InvalidScopeError: Bad grammar, a scope outside *allowed*, or nothing to grant.
    """
    if requested is None:
        granted = default & allowed
    else:
        try:
            granted = parse_scope(requested)
        except ValueError as exc:
            raise InvalidScopeError() from exc
        if not granted <= allowed:
            raise InvalidScopeError()
    if not granted:
        raise InvalidScopeError()
    return granted


def _response(
    token: IssuedAccessToken, scopes: frozenset[str], refresh: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": token.value,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "scope": " ".join(sorted(scopes)),
    }
    if refresh is not None:
        body["refresh_token"] = refresh
    return body


class ClientCredentialsGrant:
    """``client_credentials`` (RFC 6749 §4.4): a token for the client itself, no refresh."""

    grant_type = "client_credentials"

    def __init__(self, config: IssuerConfig, tokens: TokenFactory) -> None:
        self._config = config
        self._tokens = tokens

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Issue an access token whose ``sub`` is the client's namespaced subject."""
        client = request.client
        scopes = resolve_scope(
            request.form.get("scope"), client.scopes, client.effective_default_scopes
        )
        token = self._tokens.mint(
            client_id=client.client_id,
            subject=client.subject,
            scopes=scopes,
            audience=client.audience or self._config.audience,
            now=request.now,
        )
        assert token is not None  # no refresh family, so it cannot have been revoked
        return _response(token, scopes)


class _FamilyIssuer:
    def __init__(self, config: IssuerConfig, tokens: TokenFactory, store: IssuerStore) -> None:
        self._config = config
        self._tokens = tokens
        self._store = store

    def refresh_allowed(self, client: Client) -> bool:
        return client.refresh_tokens and "refresh_token" in client.grant_types

    def new_record(
        self,
        base: RefreshTokenRecord | None,
        *,
        client: Client,
        subject: str,
        scopes: frozenset[str],
        audience: str,
        username: str | None,
        auth_time: int | None,
        now: float,
    ) -> RefreshTokenRecord:
        iat = int(now)
        if base is None:
            family_id = secrets.token_urlsafe(16)
            expires_at = iat + self._config.refresh_token_ttl
        else:
            family_id, expires_at = base.family_id, base.expires_at
        return RefreshTokenRecord(
            client_id=client.client_id,
            subject=subject,
            scopes=tuple(sorted(scopes)),
            audience=audience,
            family_id=family_id,
            issued_at=iat,
            expires_at=expires_at,
            idle_expires_at=min(expires_at, iat + self._config.refresh_token_idle_ttl),
            username=username,
            auth_time=auth_time,
        )


class PasswordGrant(_FamilyIssuer):
    """``password`` (RFC 6749 §4.3): legacy, migration-only, first-party clients only.

    RFC 9700 §2.4 says this grant MUST NOT be used; it exists for moving old clients.
    Each attempt is reserved on the normalised username's and the client address's
    counters *before* the password is hashed, so concurrent guesses cannot outrun the
    limit (:mod:`scopegate.issuer._throttle`). While an account waits, even the correct
    password is refused with the same ``invalid_grant`` (issuer spec PW-5, PW-7). An
    unknown or locked user costs one dummy verification with the users' own hash
    parameters, so timing tells nothing either.
    """

    grant_type = "password"

    def __init__(
        self,
        config: IssuerConfig,
        tokens: TokenFactory,
        store: IssuerStore,
        users: UserStore,
        *,
        throttle: Throttle,
        limits: Limits,
    ) -> None:
        super().__init__(config, tokens, store)
        self._users = users
        self._throttle = throttle
        self._limits = limits
        known = iter(users) if isinstance(users, Iterable) else iter(())
        self._profile = typical_profile((user.password_hash,) for user in known)

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Authenticate the resource owner, then issue an access (and refresh) token."""
        username = request.form.get("username")
        password = request.form.get("password")
        if username is None or password is None:
            raise InvalidRequestError("The username and password parameters are required")
        now = request.now
        address, user_limit = self._limits.address, self._limits.user
        slots = [
            (address, address.key(request.address or "-")),
            (user_limit, user_limit.key(normalize_username(username))),
        ]
        try:
            attempt = self._throttle.reserve(slots, now)
        except Throttled as refused:
            if refused.limit is not user_limit:
                raise TooManyRequestsError(retry_after=refused.retry_after) from None
            # Locked: refuse even the right password, same body and cost as a wrong one.
            verify_dummy(self._profile, password)
            raise InvalidGrantError(_BAD_CREDENTIALS) from None
        with attempt:
            user = self._check(username, password)
            attempt.succeeded()
        if needs_rehash(user.password_hash):
            self._users.update_password_hash(user, hash_secret(password))
        if user.subject.startswith(CLIENT_SUBJECT_PREFIX):
            logger.error("password grant refused: user id uses the reserved client: prefix")
            raise InvalidGrantError(_BAD_CREDENTIALS)
        return self._issue(request, user)

    def _check(self, username: str, password: str) -> User:
        """Judge one (reserved) guess; ``InvalidGrantError`` for any wrong one."""
        user = None
        ok = False
        if len(password.encode()) <= MAX_SECRET_BYTES and len(username) <= 256:
            user = self._users.find_user(username)
            if user is None:
                verify_dummy(self._profile, password)
            else:
                self._profile = (hash_profile(user.password_hash),)
                ok = verify_secret(user.password_hash, password)
        if not ok or user is None or user.disabled:
            raise InvalidGrantError(_BAD_CREDENTIALS)
        return user

    def _issue(self, request: GrantRequest, user: User) -> dict[str, Any]:
        now = request.now
        client = request.client
        scopes = resolve_scope(
            request.form.get("scope"),
            client.scopes & user.scopes,
            user.effective_default_scopes,
        )
        audience = client.audience or self._config.audience
        auth_time = int(now)
        family_id = refresh = None
        if self.refresh_allowed(client):
            record = self.new_record(
                None,
                client=client,
                subject=user.subject,
                scopes=scopes,
                audience=audience,
                username=user.username,
                auth_time=auth_time,
                now=now,
            )
            refresh = secrets.token_urlsafe(32)
            self._store.create_refresh_token(token_hash(refresh), record, now)
            family_id = record.family_id
        token = self._tokens.mint(
            client_id=client.client_id,
            subject=user.subject,
            scopes=scopes,
            audience=audience,
            now=now,
            family_id=family_id,
            username=user.username,
            auth_time=auth_time,
        )
        if token is None:  # pragma: no cover - a brand-new family cannot be revoked yet
            raise InvalidGrantError(_BAD_REFRESH)
        return _response(token, scopes, refresh)


class RefreshTokenGrant(_FamilyIssuer):
    """``refresh_token`` (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).

    Every use rotates the token. Presenting a token that was already rotated revokes its
    whole family, including the access tokens issued from it. Two concurrent refreshes
    of one token race on an atomic compare-and-set: one wins, the other gets
    ``invalid_grant`` without revoking the winner's family.
    """

    grant_type = "refresh_token"

    def __init__(
        self,
        config: IssuerConfig,
        tokens: TokenFactory,
        store: IssuerStore,
        users: UserStore | None,
        clock: Callable[[], float],
    ) -> None:
        super().__init__(config, tokens, store)
        self._users = users
        self._clock = clock

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Rotate the presented refresh token and issue a new access token."""
        presented = request.form.get("refresh_token")
        if presented is None:
            raise InvalidRequestError("The refresh_token parameter is required")
        if len(presented) > 512:
            raise InvalidGrantError(_BAD_REFRESH)
        now = request.now
        client = request.client
        old_key = token_hash(presented)
        record = self._store.get_refresh_token(old_key, now)
        if record is None or record.client_id != client.client_id:
            # Another client's token is refused and left untouched (RFC 6749 §10.4).
            raise InvalidGrantError(_BAD_REFRESH)
        if record.state == "rotated":
            self._store.revoke_family(record.family_id, now)
            logger.warning(
                "refresh token reuse detected; family revoked (client_id=%r family=%s)",
                client.client_id,
                record.family_id,
            )
            _observe.report("issuer_refresh_reuse", "revoked", client_id=client.client_id)
            raise InvalidGrantError(_BAD_REFRESH)
        if record.state != "active" or now >= record.idle_expires_at:
            raise InvalidGrantError(_BAD_REFRESH)
        if record.username is not None:
            user = self._users.find_user(record.username) if self._users else None
            if user is None or user.disabled or user.subject != record.subject:
                raise InvalidGrantError(_BAD_REFRESH)
        original = frozenset(record.scopes)
        scopes = resolve_scope(request.form.get("scope"), original & client.scopes, original)
        if request.form.get("scope") is None and not original <= client.scopes:
            raise InvalidScopeError()  # the client lost a scope since the grant
        successor = self.new_record(
            record,
            client=client,
            subject=record.subject,
            scopes=original,
            audience=record.audience,
            username=record.username,
            auth_time=record.auth_time,
            now=now,
        )
        # Mint first (linked to the family), then rotate: the compare-and-set winner can
        # no longer fail afterwards, so exactly one concurrent request gets a 200. A loser
        # discards what it minted. Requests that arrive after the rotation see a rotated
        # token: that is reuse (strict, no grace window) and revokes the family.
        token = self._tokens.mint(
            client_id=client.client_id,
            subject=record.subject,
            scopes=scopes,
            audience=record.audience,
            now=now,
            family_id=record.family_id,
            username=record.username,
            auth_time=record.auth_time,
        )
        if token is None:
            raise InvalidGrantError(_BAD_REFRESH)
        refresh = secrets.token_urlsafe(32)
        outcome = self._store.rotate_refresh_token(old_key, token_hash(refresh), successor, now)
        if outcome != "active":
            self._tokens.discard(token, now)
            raise InvalidGrantError(_BAD_REFRESH)
        return _response(token, scopes, refresh)
