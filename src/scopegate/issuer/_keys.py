"""Signing keys for JWT access tokens and their rotation.

A :class:`KeySet` holds one ``current`` key (the only one that signs), an optional
``next`` key (already published so resource servers cache it before it signs) and the
``previous`` keys (published, no longer signing, kept until every token they signed has
expired). Rotation moves ``next -> current -> previous``. The JWKS exports public members
only (RFC 7517 §4; issuer spec KEY-2), every JWK carries its one ``alg`` (RFC 8725 §3.1)
and its ``kid`` is the RFC 7638 thumbprint.

Supported algorithms: RS256 (RSA >= 2048 bits, RFC 7518 §3.3), ES256 (P-256) and EdDSA
(Ed25519). Symmetric algorithms are refused: resource servers never share a secret with
the issuer (RFC 9068 §2.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from scopegate._errors import ConfigurationError
from scopegate._keys import jwk_thumbprint, public_jwk

__all__ = ["SIGNING_ALGORITHMS", "KeySet", "SigningKey", "generate_key", "load_key"]

SigningAlgorithm = Literal["RS256", "ES256", "EdDSA"]
SIGNING_ALGORITHMS: tuple[SigningAlgorithm, ...] = ("RS256", "ES256", "EdDSA")
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_MIN_RSA_BITS = 2048


def _algorithm_for(key: object) -> SigningAlgorithm:
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError("RSA signing keys must be at least 2048 bits (RFC 7518 3.3)")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ConfigurationError("EC signing keys must use P-256 (ES256)")
        return "ES256"
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigurationError("unsupported signing key type; use RSA, EC P-256 or Ed25519")


@dataclass(frozen=True)
class SigningKey:
    """One asymmetric signing key bound to exactly one JWS algorithm (RFC 8725 §3.1).

    Attributes:
        kid: The RFC 7638 SHA-256 thumbprint of the public key.
        alg: ``"RS256"``, ``"ES256"`` or ``"EdDSA"``.
        private_key: The ``cryptography`` private key (hidden from ``repr``).
        public_jwk: The public JWK with ``kid``, ``alg`` and ``use: "sig"``.
    """

    kid: str
    alg: SigningAlgorithm
    private_key: PrivateKey = field(repr=False)
    public_jwk: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_private_key(cls, key: object, alg: str | None = None) -> SigningKey:
        """Wrap a ``cryptography`` private key, checking its type and strength.

        Raises:
            ConfigurationError: The key is weak, of an unsupported type, or does not fit
                the requested *alg*.
        """
        inferred = _algorithm_for(key)
        if alg is not None and alg != inferred:
            raise ConfigurationError("the signing key does not match the requested algorithm")
        private = cast(PrivateKey, key)
        jwk = public_jwk(private)
        kid = jwk_thumbprint(jwk)
        jwk = {**jwk, "kid": kid, "alg": inferred, "use": "sig"}
        assert not _PRIVATE_MEMBERS & jwk.keys()
        return cls(kid=kid, alg=inferred, private_key=private, public_jwk=jwk)

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (for ``scopegate keys generate``)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate_key(alg: str = "RS256") -> SigningKey:
    """Generate a fresh signing key: RSA 2048 (RS256), P-256 (ES256) or Ed25519 (EdDSA).

    Raises:
        ConfigurationError: *alg* is not one of :data:`SIGNING_ALGORITHMS`.
    """
    key: PrivateKey
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ConfigurationError("alg must be one of RS256, ES256, EdDSA")
    return SigningKey.from_private_key(key, alg)


def load_key(pem: bytes, password: bytes | None = None, alg: str | None = None) -> SigningKey:
    """Load a PEM private key (PKCS#8, PKCS#1 or SEC1).

    Raises:
        ConfigurationError: The PEM is not a usable private key. The message never
            contains key material.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError("the signing key is not a readable PEM private key") from exc
    return SigningKey.from_private_key(key, alg)


@dataclass(frozen=True)
class KeySet:
    """The issuer's keys: ``current`` signs, ``next`` and ``previous`` are published only.

    Immutable: rotation returns a new set, which the issuer swaps in atomically.

    Args:
        current: The signing key.
        next: Published ahead of use so JWKS caches pick it up before it signs
            (publish at least the longest resource-server JWKS cache TTL in advance).
        previous: Retired keys, still published until the tokens they signed expired
            (keep at least ``access_token_ttl + leeway + JWKS cache TTL``).
    """

    current: SigningKey
    next: SigningKey | None = None
    previous: tuple[SigningKey, ...] = ()

    def __post_init__(self) -> None:
        kids = [key.kid for key in self.published()]
        if len(kids) != len(set(kids)):
            raise ConfigurationError("the key set contains the same key twice")

    def published(self) -> tuple[SigningKey, ...]:
        """Every key in the JWKS: current, next, previous."""
        return (self.current, *((self.next,) if self.next else ()), *self.previous)

    def rotate(self, new_next: SigningKey | None = None, *, keep_previous: int = 1) -> KeySet:
        """``next`` becomes ``current``, ``current`` becomes ``previous`` (OIDC Core §10.1.1).

        Args:
            new_next: The key to publish as the new ``next``.
            keep_previous: How many retired keys to keep publishing.

        Raises:
            ConfigurationError: There is no ``next`` key to promote.
        """
        if self.next is None:
            raise ConfigurationError("rotation needs a published next key")
        previous = (self.current, *self.previous)[: max(0, keep_previous)]
        return KeySet(current=self.next, next=new_next, previous=previous)

    def without(self, kid: str, replacement: SigningKey | None = None) -> KeySet:
        """Emergency removal of a compromised key (issuer spec KEY-5).

        Removing ``current`` promotes ``next`` (or *replacement*) immediately, accepting
        that resource servers may not have cached it yet.

        Raises:
            ConfigurationError: ``current`` is removed and nothing can replace it.
        """
        previous = tuple(key for key in self.previous if key.kid != kid)
        nxt = self.next if self.next is not None and self.next.kid != kid else None
        if self.current.kid != kid:
            return KeySet(current=self.current, next=nxt, previous=previous)
        successor = nxt or replacement
        if successor is None:
            raise ConfigurationError("removing the current key needs a next or replacement key")
        return KeySet(current=successor, next=None if successor is nxt else nxt, previous=previous)

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set (RFC 7517 §5)."""
        return {"keys": [dict(key.public_jwk) for key in self.published()]}

    def verification_keys(self) -> dict[str, SigningKey]:
        """Published keys by ``kid``, for re-verifying tokens at introspection."""
        return {key.kid: key for key in self.published()}

    @classmethod
    def of(cls, keys: Sequence[SigningKey] | Iterable[SigningKey]) -> KeySet:
        """A set whose first key is current and the rest previous."""
        items = list(keys)
        if not items:
            raise ConfigurationError("at least one signing key is required")
        return cls(current=items[0], previous=tuple(items[1:]))
