"""An in-process fake authorization server: a key, its JWKS and a token factory."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from scopegate._signing import SigningAlgorithm, SigningKey

if TYPE_CHECKING:
    from scopegate._jwt import JWTVerifier

__all__ = ["DEFAULT_AUDIENCE", "DEFAULT_ISSUER", "OMIT", "LocalIssuer"]

#: Identifiers under the reserved ``.example`` domain, so a test token can never be
#: mistaken for one from a real authorization server.
DEFAULT_ISSUER: Final = "https://issuer.example"
DEFAULT_AUDIENCE: Final = "https://api.example"


class _Omit:
    """Marker type for :data:`OMIT`."""

    _instance: _Omit | None = None

    def __new__(cls) -> _Omit:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "OMIT"


#: Pass as a claim value to :meth:`LocalIssuer.make_token` to leave that claim out
#: (``make_token(jti=OMIT)`` builds a token without ``jti``).
OMIT: Final = _Omit()


def _scope_string(scopes: str | Iterable[str] | None) -> str | None:
    if scopes is None:
        return None
    text = scopes if isinstance(scopes, str) else " ".join(scopes)
    # RFC 9068 §2.2.3: scope is present when scopes were granted; none granted, no claim.
    return text or None


class LocalIssuer:
    """A fake authorization server living in the test process; no network at all.

    It owns a signing key, publishes its JWKS and mints RFC 9068 access tokens that a
    :class:`~scopegate._jwt.JWTVerifier` from :meth:`verifier` accepts. Point your
    middleware at ``issuer.verifier()`` and send ``issuer.make_token(...)``.

    Args:
        issuer: The ``iss`` of minted tokens.
        audience: The default ``aud`` of minted tokens and of :meth:`verifier`.
        alg: Signing algorithm of the generated key (ignored when *key* is given).
        key: An existing :class:`SigningKey` (reuse one across tests: RSA generation
            costs some milliseconds).
        client_id: Default ``client_id`` claim.
        subject: Default ``sub`` claim.
        clock: Time source for ``iat``/``exp``; inject one to mint tokens "in the past".

    Example:
        >>> issuer = LocalIssuer()
        >>> token = issuer.make_token(scopes=["items:read"])
        >>> issuer.verifier().verify(token).scopes
        frozenset({'items:read'})
    """

    def __init__(
        self,
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        alg: SigningAlgorithm = "RS256",
        key: SigningKey | None = None,
        client_id: str = "test-client",
        subject: str = "test-user",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = key or SigningKey.generate(alg)
        #: Extra public keys published next to the current one (e.g. after a rotation).
        self.extra_keys: list[SigningKey] = []
        self.client_id = client_id
        self.subject = subject
        self.clock = clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}(issuer={self.issuer!r}, audience={self.audience!r})"

    def jwks(self) -> dict[str, Any]:
        """The JWK Set: the current key first, then any :attr:`extra_keys`."""
        return {"keys": [k.public_jwk() for k in (self.key, *self.extra_keys)]}

    def rotate_key(self, *, keep_old: bool = True) -> SigningKey:
        """Switch to a fresh key of the same algorithm; the old one stays published if asked.

        Returns:
            The previous key.
        """
        old = self.key
        self.key = SigningKey.generate(old.alg)
        if keep_old:
            self.extra_keys.insert(0, old)
        return old

    def claims(
        self,
        scopes: str | Iterable[str] | None = None,
        *,
        sub: str | _Omit | None = None,
        client_id: str | _Omit | None = None,
        audience: str | list[str] | _Omit | None = None,
        expires_in: float = 300,
        **claims: Any,
    ) -> dict[str, Any]:
        """The claims set :meth:`make_token` signs (RFC 9068 §2.2), without signing it.

        Args:
            scopes: Granted scopes, as a list or a space-delimited string (``scope``
                claim); ``None`` leaves the claim out.
            sub: ``sub``; defaults to :attr:`subject`.
            client_id: ``client_id``; defaults to :attr:`client_id`.
            audience: ``aud``; defaults to :attr:`audience`.
            expires_in: Seconds from now until ``exp``; negative for an expired token.
            **claims: Any other claim; overrides the defaults. :data:`OMIT` removes one.
        """
        now = int(self.clock())
        body: dict[str, Any] = {
            "iss": self.issuer,
            "sub": self.subject if sub is None else sub,
            "aud": self.audience if audience is None else audience,
            "client_id": self.client_id if client_id is None else client_id,
            "iat": now,
            "exp": now + int(expires_in),
            "jti": secrets.token_urlsafe(16),
        }
        scope = _scope_string(scopes)
        if scope is not None:
            body["scope"] = scope
        body.update(claims)
        return {k: v for k, v in body.items() if not isinstance(v, _Omit)}

    def make_token(
        self,
        scopes: str | Iterable[str] | None = None,
        *,
        headers: Mapping[str, Any] | None = None,
        key: SigningKey | None = None,
        **claims: Any,
    ) -> str:
        """Mint a signed RFC 9068 JWT access token.

        Args:
            scopes: Granted scopes (see :meth:`claims`).
            headers: JOSE header members to add or replace (``typ``, ``kid``...); a
                member set to ``None`` is removed.
            key: Sign with another key (e.g. an attacker's) instead of :attr:`key`.
            **claims: The keywords of :meth:`claims` (``sub``, ``client_id``,
                ``audience``, ``expires_in``) and any other claim; :data:`OMIT` removes one.

        Returns:
            The compact JWS string.
        """
        return (key or self.key).sign(self.claims(scopes, **claims), headers)

    def authorization(self, scopes: str | Iterable[str] | None = None, **kwargs: Any) -> str:
        """The ``Authorization`` header value carrying a fresh token (``"Bearer ..."``)."""
        return "Bearer " + self.make_token(scopes, **kwargs)

    def verifier(self, **options: Any) -> JWTVerifier:
        """A :class:`~scopegate._jwt.JWTVerifier` trusting this issuer's keys, offline.

        Args:
            **options: Any other ``JWTVerifier`` keyword (``leeway``, ``typ``...);
                ``issuer``, ``audience`` and ``keys`` default to this issuer's.
        """
        from scopegate._jwt import JWTVerifier

        options.setdefault("issuer", self.issuer)
        options.setdefault("audience", self.audience)
        if "jwks_uri" not in options:
            options.setdefault("keys", self.jwks())
        return JWTVerifier(**options)
