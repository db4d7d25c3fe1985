"""Access-token minting (RFC 9068 JWTs or opaque values) and their re-verification.

JWT access tokens carry ``iss``, ``exp``, ``aud``, ``sub``, ``client_id``, ``iat``,
``jti`` and ``scope`` (plus ``auth_time`` after a user login) and the JOSE header
``{"typ": "at+jwt", "kid": ...}`` (RFC 9068 §2.1-§2.2). Opaque tokens are 256 random bits
(``secrets.token_urlsafe(32)``) stored only as a hash (RFC 6749 §10.10).
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from jwt.algorithms import get_default_algorithms

from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._keys import SIGNING_ALGORITHMS, KeySet
from scopegate.issuer._store import AccessTokenRecord, IssuerStore, token_hash

__all__ = ["IssuedAccessToken", "TokenFactory", "TokenInfo", "looks_like_jwt"]


def _b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def looks_like_jwt(token: str) -> bool:
    """Compact JWS shape: three dot-separated parts."""
    return token.count(".") == 2


@dataclass(frozen=True)
class IssuedAccessToken:
    """A freshly minted access token (the value is hidden from ``repr``)."""

    value: str
    expires_in: int
    jti: str
    expires_at: int


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


class TokenFactory:
    """Mints and re-verifies access tokens for one issuer.

    Args:
        config: The issuer settings (``issuer``, ``token_format``, lifetimes).
        keys: Returns the current :class:`KeySet` (read on each call so a rotation
            takes effect at once).
        store: State for opaque tokens, family links and the jti denylist.
    """

    def __init__(
        self, config: IssuerConfig, keys: Callable[[], KeySet], store: IssuerStore
    ) -> None:
        self._config = config
        self._keys = keys
        self._store = store
        # PyJWT's algorithm objects do the signing (raw r||s for ES256, RFC 7518 §3.4).
        self._algorithms = {name: get_default_algorithms()[name] for name in SIGNING_ALGORITHMS}
        self._headers: dict[str, bytes] = {}

    def mint(
        self,
        *,
        client_id: str,
        subject: str,
        scopes: Iterable[str],
        audience: str,
        now: float,
        family_id: str | None = None,
        username: str | None = None,
        auth_time: int | None = None,
    ) -> IssuedAccessToken | None:
        """Mint an access token; ``None`` if its refresh family was revoked meanwhile."""
        iat = int(now)
        ttl = self._config.access_token_ttl
        exp = iat + ttl
        jti = secrets.token_urlsafe(16)
        scope_list = tuple(sorted(scopes))
        if self._config.token_format == "opaque":  # noqa: S105 - not a secret
            value = secrets.token_urlsafe(32)
            record = AccessTokenRecord(
                client_id=client_id,
                subject=subject,
                scopes=scope_list,
                audience=audience,
                issued_at=iat,
                expires_at=exp,
                jti=jti,
                family_id=family_id,
                username=username,
                auth_time=auth_time,
            )
            if not self._store.save_access_token(token_hash(value), record, now):
                return None
            return IssuedAccessToken(value, ttl, jti, exp)
        if family_id is not None and not self._store.link_jti(family_id, jti, exp, now):
            return None
        claims: dict[str, Any] = {
            "iss": self._config.issuer,
            "sub": subject,
            "aud": audience,
            "client_id": client_id,
            "iat": iat,
            "exp": exp,
            "jti": jti,
        }
        if scope_list:
            claims["scope"] = " ".join(scope_list)
        if auth_time is not None:
            claims["auth_time"] = auth_time
        key = self._keys().current
        header = self._headers.get(key.kid)
        if header is None:
            # The protected header is the same for every token of a key: encode it once.
            header = _b64url(
                json.dumps(
                    {"alg": key.alg, "kid": key.kid, "typ": "at+jwt"}, separators=(",", ":")
                ).encode()
            )
            self._headers[key.kid] = header
        signing_input = header + b"." + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = self._algorithms[key.alg].sign(signing_input, key.private_key)
        value = (signing_input + b"." + _b64url(signature)).decode("ascii")
        return IssuedAccessToken(value, ttl, jti, exp)

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
        if looks_like_jwt(token):
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
        )

    def _inspect_jwt(self, token: str, now: float) -> TokenInfo | None:
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys().verification_keys().get(str(header.get("kid")))
            if key is None or header.get("alg") != key.alg or header.get("typ") != "at+jwt":
                return None
            claims = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=[key.alg],
                issuer=self._config.issuer,
                options={
                    "require": ["exp", "iat", "jti", "sub", "client_id"],
                    "verify_aud": False,
                    "verify_iat": False,
                },
                leeway=0,
            )
        except (jwt.PyJWTError, ValueError, TypeError):
            return None
        if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("client_id"), str):
            return None
        exp = int(claims["exp"])
        if exp <= now or self._store.is_jti_revoked(claims["jti"], now):
            return None
        scope = claims.get("scope", "")
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
        )
