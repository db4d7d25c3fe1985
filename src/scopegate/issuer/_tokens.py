"""Access-token minting (RFC 9068 JWTs or opaque values) and their re-verification.

JWT access tokens carry ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``,
``jti`` and ``scope`` (plus ``auth_time`` and ``acr``, RFC 9470, after a user login)
and the JOSE header ``{"typ": "at+jwt", "kid": ...}`` (RFC 9068 §2.1-§2.2). Opaque
tokens are 256 random bits (``secrets.token_urlsafe(32)``) stored only as a hash (RFC
6749 §10.10).

The issuer judges its own JWTs (at introspection and revocation) with the resource
server's :class:`~scopegate.JWTVerifier` on its published public keys: one rule set for
every token the project reads.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from scopegate._errors import BearerError
from scopegate._jose import encode_compact, looks_like_jws
from scopegate._jwt import JWTVerifier
from scopegate._signing import SigningKeySet
from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._store import AccessTokenRecord, IssuerStore, TokenGrant, token_hash

__all__ = ["IssuedAccessToken", "TokenFactory", "TokenInfo"]


@dataclass(frozen=True)
class IssuedAccessToken:
    """A freshly minted access token (the value is hidden from ``repr``).

    Attributes:
        jkt: The DPoP key it is bound to (``cnf.jkt``), or ``None`` for a Bearer token.
    """

    value: str = field(repr=False)
    expires_in: int
    jti: str
    expires_at: int
    jkt: str | None = None


@dataclass(frozen=True)
class TokenInfo:
    """What introspection and revocation learn about a live access token."""

    client_id: str
    subject: str
    scopes: tuple[str, ...]
    audience: Any
    issued_at: int
    expires_at: int
    jti: str
    username: str | None
    opaque_key: str | None
    auth_time: int | None = None
    acr: str | None = None
    jkt: str | None = None


class TokenFactory:
    """Mints and re-verifies access tokens for one issuer.

    Args:
        config: The issuer settings (``issuer``, ``token_format``, lifetimes).
        keys: Returns the current :class:`~scopegate.issuer.SigningKeySet` (read on each
            call so a rotation takes effect at once).
        store: State for opaque tokens, family links and the jti denylist.
        clock: Seconds since the epoch.
    """

    def __init__(
        self,
        config: IssuerConfig,
        keys: Callable[[], SigningKeySet],
        store: IssuerStore,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._keys = keys
        self._store = store
        self._clock = clock
        self._headers: dict[str, bytes] = {}
        self._verifier: tuple[SigningKeySet, JWTVerifier] | None = None

    def mint(
        self, grant: TokenGrant, now: float, family_id: str | None = None
    ) -> IssuedAccessToken | None:
        """Mint an access token for *grant*, in the refresh family *family_id* if any;
        ``None`` if that family was revoked meanwhile.

        With ``grant.jkt`` the token is bound to that DPoP key: ``cnf.jkt`` in a JWT, and
        in the record of an opaque token, which introspection reports (RFC 9449 §6).
        """
        iat = int(now)
        ttl = self._config.access_token_ttl
        exp = iat + ttl
        jti = secrets.token_urlsafe(16)
        scope_list = grant.scopes
        jkt = grant.jkt
        if self._config.token_format == "opaque":  # noqa: S105 - not a secret
            value = secrets.token_urlsafe(32)
            record = AccessTokenRecord.of(
                grant, issued_at=iat, expires_at=exp, jti=jti, family_id=family_id
            )
            if not self._store.save_access_token(token_hash(value), record, now):
                return None
            return IssuedAccessToken(value, ttl, jti, exp, jkt)
        if family_id is not None and not self._store.link_jti(family_id, jti, exp, now):
            return None
        audience = grant.audience
        claims: dict[str, Any] = {
            "iss": self._config.issuer,
            "sub": grant.subject,
            # RFC 9068 §3 / RFC 8707 §2: one string, or an array for several resources.
            "aud": audience if isinstance(audience, str) else list(audience),
            "client_id": grant.client_id,
            "iat": iat,
            "exp": exp,
            "jti": jti,
        }
        if scope_list:
            claims["scope"] = " ".join(scope_list)
        if grant.auth_time is not None:
            claims["auth_time"] = grant.auth_time
        if grant.acr is not None:
            claims["acr"] = grant.acr
        if jkt is not None:
            claims["cnf"] = {"jkt": jkt}
        key = self._keys().current
        header = self._headers.get(key.kid)
        if header is None:
            # The protected header is the same for every token of a key: encode it once.
            header = self._headers[key.kid] = key.header_segment()
        value = encode_compact(header, claims, key.signature)
        return IssuedAccessToken(value, ttl, jti, exp, jkt)

    def discard(self, token: IssuedAccessToken, now: float) -> None:
        """Invalidate a token that was minted but never handed out."""
        if self._config.token_format == "opaque":  # noqa: S105 - not a secret
            self._store.delete_access_token(token_hash(token.value))
        else:
            self._store.revoke_jti(token.jti, token.expires_at, now)

    def inspect(self, token: str, now: float) -> TokenInfo | None:
        """Re-verify an access token: signature, ``iss``, ``exp``, denylist (RFC 7662 §2.2).

        Returns:
            The token's facts, or ``None`` for anything not live and issued here.
        """
        if looks_like_jws(token):
            return self._inspect_jwt(token, now)
        if len(token) > 512:
            return None
        key = token_hash(token)
        record = self._store.get_access_token(key, now)
        if record is None:
            return None
        return TokenInfo(
            client_id=record.client_id,
            subject=record.subject,
            scopes=record.scopes,
            audience=record.audience,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
            jti=record.jti,
            username=record.username,
            opaque_key=key,
            auth_time=record.auth_time,
            acr=record.acr,
            jkt=record.jkt,
        )

    def _jwt_verifier(self) -> JWTVerifier:
        keys = self._keys()
        cached = self._verifier
        if cached is None or cached[0] is not keys:
            # Rebuilt when the key set rotates: it trusts exactly the published keys.
            verifier = JWTVerifier(
                issuer=self._config.issuer,
                audience=None,
                keys=keys.jwks(),
                algorithms=sorted({key.alg for key in keys.published()}),
                leeway=0,
                required_claims=("iss", "exp", "iat", "jti", "sub", "client_id"),
                cache_verified=False,
                clock=self._clock,
            )
            cached = self._verifier = (keys, verifier)
        return cached[1]

    def _inspect_jwt(self, token: str, now: float) -> TokenInfo | None:
        try:
            claims = self._jwt_verifier().verify(token).claims
        except BearerError:
            return None
        exp = int(claims["exp"])
        if exp <= now or self._store.is_jti_revoked(claims["jti"], now):
            return None
        scope = claims.get("scope", "")
        cnf = claims.get("cnf")  # the verifier admits only {"jkt": thumbprint}
        return TokenInfo(
            client_id=claims["client_id"],
            subject=str(claims["sub"]),
            scopes=tuple(scope.split()) if isinstance(scope, str) else (),
            audience=claims.get("aud"),
            issued_at=int(claims["iat"]),
            expires_at=exp,
            jti=claims["jti"],
            username=None,
            opaque_key=None,
            auth_time=claims.get("auth_time"),
            acr=claims.get("acr"),
            jkt=cnf["jkt"] if isinstance(cnf, dict) else None,
        )
