"""The token grants: authorization code (PKCE), client credentials, password (legacy,
opt-in) and refresh token.

Each grant receives an already authenticated client that is registered for it (the
endpoint checks both first, so an unauthorised client never reaches a password check;
issuer spec PW-6) and returns the RFC 6749 §5.1 response members.

DPoP (RFC 9449 §5): when the request carried a valid proof, each grant calls
:meth:`GrantRequest.bind` once it has validated the request and before it stores or
mints anything; the access token is then bound to the proof's key (``token_type``
``DPoP``), and so is a public client's refresh token. A refresh token or a code that is
already bound (:meth:`GrantRequest.require_key`) is redeemed only with a proof made with
its key: ``invalid_grant`` otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from scopegate import _observe
from scopegate.issuer._clients import Client, is_resource, parse_scope
from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._dpop import TokenRequestProof
from scopegate.issuer._errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    InvalidTargetError,
)
from scopegate.issuer._login import ResourceOwnerLogin
from scopegate.issuer._store import (
    Audience,
    IssuerStore,
    RefreshTokenRecord,
    TokenGrant,
    audience_tuple,
    token_hash,
)
from scopegate.issuer._tokens import IssuedAccessToken, TokenFactory
from scopegate.issuer._users import User, UserStore

__all__ = [
    "AuthorizationCodeGrant",
    "ClientCredentialsGrant",
    "Grant",
    "GrantRequest",
    "PasswordGrant",
    "RefreshTokenGrant",
    "default_audience",
    "new_grant_audience",
    "pkce_matches",
    "resolve_resources",
    "resolve_scope",
]

logger = logging.getLogger("scopegate.issuer")
_BAD_REFRESH = "The refresh token is invalid, expired or revoked"
_BAD_CODE = "The authorization code is invalid, expired or already used"
_WRONG_KEY = "The grant is bound to a DPoP key this request does not prove"


@dataclass(frozen=True)
class GrantRequest:
    """One token request as a grant sees it.

    Attributes:
        resources: The ``resource`` parameters, in request order (RFC 8707 §2).
        proof: Its DPoP proof, checked except for replay (RFC 9449 §5), or ``None``.
    """

    client: Client
    form: Mapping[str, str]
    address: str | None
    now: float
    resources: tuple[str, ...] = ()
    proof: TokenRequestProof | None = None

    def require_key(self, bound: str | None) -> None:
        """Refuse the request unless its proof is made with the key *bound*: that of a
        DPoP-bound refresh token (RFC 9449 §5) or of a code's ``dpop_jkt`` (§10).

        Raises:
            InvalidGrantError: *bound* is set, and there is no proof or another key.
        """
        if bound is not None and (self.proof is None or self.proof.jkt != bound):
            raise InvalidGrantError(_WRONG_KEY)

    def bind(self) -> str | None:
        """Record the proof's single use; the key thumbprint to bind the tokens to.

        Call it once the request is validated, before anything is stored or minted.

        Returns:
            The proof key's thumbprint, or ``None`` without a proof (Bearer tokens).

        Raises:
            InvalidDPoPProofError: The proof was used before (replay).
            TemporarilyUnavailableError: The replay store cannot answer.
        """
        return None if self.proof is None else self.proof.claim()


class Grant(Protocol):
    """A token-endpoint grant (RFC 6749 §4)."""

    grant_type: str

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Return the RFC 6749 §5.1 response members or raise an ``OAuthError``."""
        ...  # pragma: no cover


def resolve_scope(
    requested: str | None,
    allowed: frozenset[str],
    default: frozenset[str],
    *,
    narrow: bool = False,
) -> frozenset[str]:
    """Apply RFC 6749 §3.3: exact tokens, requested ⊆ allowed, omitted → default.

    Args:
        narrow: Grant ``requested ∩ allowed`` instead of refusing a request that asks
            for more (RFC 6749 §3.3 lets the server ignore part of the request; the
            response's ``scope`` then says what was granted).

    Raises:
        InvalidScopeError: Bad grammar, a scope outside *allowed* (strict), or nothing
            to grant.
    """
    if requested is None:
        granted = default & allowed
    else:
        try:
            granted = parse_scope(requested)
        except ValueError as exc:
            raise InvalidScopeError() from exc
        if not granted <= allowed:
            if not narrow:
                raise InvalidScopeError()
            granted &= allowed
    if not granted:
        raise InvalidScopeError()
    return granted


def narrows(config: IssuerConfig, client: Client) -> bool:
    """Whether *client*'s scope policy is ``narrow`` (its own, else the issuer's)."""
    return (client.scope_policy or config.scope_policy) == "narrow"


def resolve_resources(
    requested: tuple[str, ...], allowed: frozenset[str], default: Audience
) -> Audience:
    """Apply RFC 8707 §2: the token's audience is the requested resource(s), if allowed.

    Resources are compared as exact strings: a client that names the RFC 9728
    ``resource`` verbatim gets exactly that ``aud``. Duplicates are collapsed.

    Returns:
        *default* when nothing was requested; one string for one resource; a tuple
        (in request order) for several.

    Raises:
        InvalidTargetError: A resource that is not an absolute URI without fragment, or
            not within *allowed*.
    """
    if not requested:
        return default
    unique = tuple(dict.fromkeys(requested))
    for resource in unique:
        if not is_resource(resource) or resource not in allowed:
            raise InvalidTargetError()
    return unique[0] if len(unique) == 1 else unique


def default_audience(config: IssuerConfig, client: Client) -> str:
    """The audience of *client*'s tokens when no resource is named (its own, else the issuer's)."""
    return client.audience or config.audience


def new_grant_audience(
    config: IssuerConfig, client: Client, requested: tuple[str, ...]
) -> Audience:
    """The audience of a new grant: *requested* among what *client* may ask for (RFC 8707 §2)."""
    default = default_audience(config, client)
    return resolve_resources(requested, client.allowed_resources(default), default)


def _response(
    token: IssuedAccessToken, scopes: frozenset[str], refresh: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": token.value,
        # RFC 9449 §5: "DPoP" tells the client its token is bound to its key.
        "token_type": "Bearer" if token.jkt is None else "DPoP",
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
            request.form.get("scope"),
            client.scopes,
            client.effective_default_scopes,
            narrow=narrows(self._config, client),
        )
        audience = new_grant_audience(self._config, client, request.resources)
        grant = TokenGrant(
            client.client_id, client.subject, tuple(sorted(scopes)), audience, jkt=request.bind()
        )
        token = self._tokens.mint(grant, request.now)
        assert token is not None  # no refresh family, so it cannot have been revoked
        return _response(token, scopes)


class _FamilyIssuer:
    """The grants that issue a user's tokens: password, authorization code and refresh."""

    def __init__(
        self,
        config: IssuerConfig,
        tokens: TokenFactory,
        store: IssuerStore,
        users: UserStore | None,
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._store = store
        self._users = users

    def current_user(self, username: str, subject: str) -> User | None:
        """The user a grant was made for, if still there, enabled and the same subject."""
        user = self._users.find_user(username) if self._users is not None else None
        if user is None or user.disabled or user.subject != subject:
            return None
        return user

    def refresh_allowed(self, client: Client) -> bool:
        return client.refresh_tokens and "refresh_token" in client.grant_types

    def idle_expiry(self, expires_at: int, iat: int) -> int:
        """When a refresh token issued at *iat* lapses unused (never after its family)."""
        return min(expires_at, iat + self._config.refresh_token_idle_ttl)

    def issue_for_user(
        self,
        client: Client,
        user: User,
        *,
        scopes: frozenset[str],
        audience: Audience,
        auth_time: int,
        now: float,
        family_id: str | None = None,
        jkt: str | None = None,
    ) -> dict[str, Any]:
        """Access (and refresh) token for a user who has just authenticated.

        With *jkt* (from :meth:`GrantRequest.bind`) the access token is bound to that
        DPoP key, and so is a public client's refresh token (RFC 9449 §5).

        With *family_id* (an authorization code's, started when the code was made), the
        tokens join that family, so a replay of the code revokes them. The code was
        already consumed, so this redemption is the one that succeeds even when a
        concurrent replay revoked the family first: its tokens are then issued revoked
        (the access token denied at once, the refresh token born revoked).
        """
        grant = TokenGrant(
            client.client_id,
            user.subject,
            tuple(sorted(scopes)),
            audience,
            username=user.username,
            auth_time=auth_time,
            acr=user.acr or self._config.acr,
            jkt=jkt,
        )
        record = None
        if self.refresh_allowed(client):
            iat = int(now)
            expires_at = iat + self._config.refresh_token_ttl
            record = RefreshTokenRecord.of(
                grant,
                family_id=family_id or secrets.token_urlsafe(16),
                issued_at=iat,
                expires_at=expires_at,
                idle_expires_at=self.idle_expiry(expires_at, iat),
                jkt=jkt if client.public else None,
            )
        refresh = secrets.token_urlsafe(32) if record is not None else None
        code_family = family_id is not None
        if record is not None and refresh is not None and not code_family:
            self._store.create_refresh_token(token_hash(refresh), record, now)
            family_id = record.family_id
        token = self._tokens.mint(grant, now, family_id)
        if token is None:
            if family_id is None:  # pragma: no cover - a brand-new family is never revoked
                raise InvalidGrantError(_BAD_REFRESH)
            # A replay of the code revoked the family before this winner minted: answer
            # the one redemption, with a token that is revoked like the family's others.
            token = self._tokens.mint(grant, now)
            assert token is not None  # not linked to a family: cannot be refused
            self._tokens.discard(token, now)
        if record is not None and refresh is not None and code_family:
            # An authorization code's family: its refresh token joins after the access
            # token, and is born revoked if the family was revoked in between.
            self._store.create_refresh_token(token_hash(refresh), record, now)
        return _response(token, scopes, refresh)


class PasswordGrant(_FamilyIssuer):
    """``password`` (RFC 6749 §4.3): legacy, migration-only, first-party clients only.

    RFC 9700 §2.4 says this grant MUST NOT be used; it exists for moving old clients.
    The password is checked by :class:`~scopegate.issuer._login.ResourceOwnerLogin`
    under the brute-force limits (reserved before hashing; a locked account gets the
    same ``invalid_grant`` even with the right password). Tokens carry ``auth_time`` and
    ``acr`` (RFC 9470).
    """

    grant_type = "password"

    def __init__(
        self,
        config: IssuerConfig,
        tokens: TokenFactory,
        store: IssuerStore,
        login: ResourceOwnerLogin,
    ) -> None:
        super().__init__(config, tokens, store, login.users)
        self._login = login

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Authenticate the resource owner, then issue an access (and refresh) token."""
        username = request.form.get("username")
        password = request.form.get("password")
        if username is None or password is None:
            raise InvalidRequestError("The username and password parameters are required")
        user = self._login.authenticate(username, password, request.address, request.now)
        client = request.client
        scopes = resolve_scope(
            request.form.get("scope"),
            client.scopes & user.scopes,
            user.effective_default_scopes,
            narrow=narrows(self._config, client),
        )
        audience = new_grant_audience(self._config, client, request.resources)
        return self.issue_for_user(
            client,
            user,
            scopes=scopes,
            audience=audience,
            auth_time=int(request.now),
            now=request.now,
            jkt=request.bind(),
        )


_CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6, S256: ``BASE64URL(SHA256(verifier)) == challenge``, in constant time."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    computed = base64.urlsafe_b64encode(digest).rstrip(b"=")
    return hmac.compare_digest(computed, challenge.encode("ascii"))


class AuthorizationCodeGrant(_FamilyIssuer):
    """``authorization_code`` (RFC 6749 §4.1.3) with PKCE (RFC 7636, S256 only).

    A code is consumed by its first presentation, whatever the outcome (one atomic
    step in the store: of two concurrent redemptions exactly one wins). It must come
    from the same client, with the same redirect URI and the verifier of its challenge;
    ``resource`` may narrow the resources bound at the authorization request (RFC 8707
    §2.2). A code presented again is a replay: the tokens issued from it are revoked
    (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
    """

    grant_type = "authorization_code"

    def handle(self, request: GrantRequest) -> dict[str, Any]:
        """Redeem a code for an access (and refresh) token."""
        form = request.form
        code, verifier = form.get("code"), form.get("code_verifier")
        redirect_uri = form.get("redirect_uri")
        if code is None or redirect_uri is None:
            raise InvalidRequestError("The code and redirect_uri parameters are required")
        if verifier is None or not _CODE_VERIFIER.fullmatch(verifier):
            # RFC 7636 §4.1 grammar; PKCE is mandatory here (RFC 9700 §2.1.1).
            raise InvalidRequestError("A valid code_verifier is required (PKCE, RFC 7636)")
        if len(code) > 512:
            raise InvalidGrantError(_BAD_CODE)
        now, client = request.now, request.client
        found = self._store.consume_authorization_code(token_hash(code), now)
        if found is None:
            raise InvalidGrantError(_BAD_CODE)
        record, first_use = found
        if not first_use:
            self._store.revoke_family(record.family_id, now)
            logger.warning(
                "authorization code replayed; tokens issued from it revoked (client_id=%r)",
                client.client_id,
            )
            raise InvalidGrantError(_BAD_CODE)
        if (
            now >= record.expires_at
            or record.client_id != client.client_id
            or redirect_uri != record.redirect_uri
            or not pkce_matches(verifier, record.code_challenge)
        ):
            raise InvalidGrantError(_BAD_CODE)
        user = self.current_user(record.username, record.subject)
        if user is None:
            raise InvalidGrantError(_BAD_CODE)
        bound = audience_tuple(record.audience)
        audience = resolve_resources(request.resources, frozenset(bound), record.audience)
        request.require_key(record.dpop_jkt)
        return self.issue_for_user(
            client,
            user,
            scopes=frozenset(record.scopes),
            audience=audience,
            auth_time=record.auth_time,
            now=now,
            family_id=record.family_id,
            jkt=request.bind(),
        )


class RefreshTokenGrant(_FamilyIssuer):
    """``refresh_token`` (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).

    Every use rotates the token. Presenting a token that was already rotated revokes its
    whole family, including the access tokens issued from it. Two concurrent refreshes
    of one token race on an atomic compare-and-set: one wins, the other gets
    ``invalid_grant`` without revoking the winner's family.
    """

    grant_type = "refresh_token"

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
        # A bound token is worthless without its key: checked before reuse detection, so
        # a thief without the key cannot even revoke the family.
        request.require_key(record.jkt)
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
        if (
            record.username is not None
            and self.current_user(record.username, record.subject) is None
        ):
            raise InvalidGrantError(_BAD_REFRESH)
        original = frozenset(record.scopes)
        narrow = narrows(self._config, client)
        scopes = resolve_scope(
            request.form.get("scope"), original & client.scopes, original, narrow=narrow
        )
        if request.form.get("scope") is None and not original <= client.scopes and not narrow:
            raise InvalidScopeError()  # the client lost a scope since the grant
        # RFC 8707 §2.2: a refresh may name a subset of the grant's resources, never more,
        # and only those the client may still ask for. The new refresh token keeps the
        # grant's resources, as it keeps its scope (RFC 6749 §6).
        granted = audience_tuple(record.audience)
        default = default_audience(self._config, client)
        still_allowed = frozenset(granted) & client.allowed_resources(default)
        if not request.resources and len(still_allowed) < len(set(granted)):
            raise InvalidTargetError()  # the client lost a resource since the grant
        audience = resolve_resources(request.resources, still_allowed, record.audience)
        # RFC 9449 §5: the new access token is bound to this request's proof; a public
        # client's refresh token too (a confidential client's stays unbound: its
        # client authentication already constrains it).
        jkt = request.bind()
        iat = int(now)
        successor = replace(
            record,
            issued_at=iat,
            idle_expires_at=self.idle_expiry(record.expires_at, iat),
            jkt=jkt if client.public else None,
        )
        # Mint first (linked to the family), then rotate: the compare-and-set winner can
        # no longer fail afterwards, so exactly one concurrent request gets a 200. A loser
        # discards what it minted. Requests that arrive after the rotation see a rotated
        # token: that is reuse (strict, no grace window) and revokes the family.
        # The stored grant, narrowed to what this refresh asked for and bound to its proof.
        grant = replace(record, scopes=tuple(sorted(scopes)), audience=audience, jkt=jkt)
        token = self._tokens.mint(grant, now, record.family_id)
        if token is None:
            raise InvalidGrantError(_BAD_REFRESH)
        refresh = secrets.token_urlsafe(32)
        outcome = self._store.rotate_refresh_token(old_key, token_hash(refresh), successor, now)
        if outcome != "active":
            self._tokens.discard(token, now)
            raise InvalidGrantError(_BAD_REFRESH)
        return _response(token, scopes, refresh)
