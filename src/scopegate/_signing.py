"""Signing keys: one class for the issuer, the testing kit, ``token mint`` and the tests.

A :class:`SigningKey` is one asymmetric private key bound to exactly one JWS algorithm
(RFC 8725 §3.1). Its ``kid`` defaults to the RFC 7638 thumbprint of its public half, so
the same key file always gives the same ``kid``; its public JWK carries ``kid``, ``alg``
and ``use: "sig"`` as a real authorization server publishes it, and never a private
member. A :class:`SigningKeySet` is the rotating set an issuer publishes: one ``current``
key that signs, an optional ``next`` one published ahead of use, and ``previous`` ones
kept until the tokens they signed have expired.

RSA keys must have at least 2048 bits (RFC 7518 §3.3); EC keys use the curve of their
algorithm (P-256, P-384, P-521); Ed25519 signs ``EdDSA``. Symmetric keys do not exist
here: resource servers never share a secret with the issuer (RFC 9068 §2.1).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from scopegate._errors import ConfigurationError
from scopegate._jose import b64url_encode, compact_json, encode_compact
from scopegate._keys import jwk_thumbprint, public_jwk

__all__ = ["SigningAlgorithm", "SigningKey", "SigningKeySet"]

SigningAlgorithm = Literal[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"
]
_ALGORITHMS: tuple[str, ...] = get_args(SigningAlgorithm)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
_MIN_RSA_BITS = 2048
_EC_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def _default_algorithm(key: object) -> SigningAlgorithm:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        for alg, curve in _EC_CURVES.items():
            if isinstance(key.curve, curve):
                return cast(SigningAlgorithm, alg)
        raise ConfigurationError("EC signing keys must use P-256, P-384 or P-521")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "EdDSA"
    raise ConfigurationError("unsupported signing key type; use RSA, EC or Ed25519")


def _check_fit(key: object, alg: str) -> None:
    if alg not in _ALGORITHMS:
        raise ConfigurationError(f"alg must be one of {', '.join(_ALGORITHMS)}")
    if alg[:2] in ("RS", "PS"):
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError("the private key does not fit the signing algorithm")
        if key.key_size < _MIN_RSA_BITS:
            raise ConfigurationError("RSA signing keys must have at least 2048 bits")
    elif alg in _EC_CURVES:
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
            key.curve, _EC_CURVES[alg]
        ):
            raise ConfigurationError("the private key does not fit the signing algorithm")
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigurationError("the private key does not fit the signing algorithm")


class SigningKey:
    """An asymmetric private key bound to one JWS algorithm, with its ``kid``.

    Args:
        private_key: A ``cryptography`` RSA (>= 2048 bits), EC or Ed25519 private key.
        alg: The one algorithm it signs with; by default RS256 for RSA, the curve's ES*
            for EC, EdDSA for Ed25519.
        kid: The key id; by default the RFC 7638 thumbprint of the public key.

    Raises:
        ConfigurationError: The key is weak, of an unsupported type, or does not fit *alg*.

    Example:
        >>> key = SigningKey.generate("ES256")
        >>> token = key.sign({"iss": "https://as.example", "sub": "svc"})
        >>> token.count(".")
        2
    """

    __slots__ = ("_jwk", "_signer", "alg", "kid", "private_key")

    def __init__(
        self,
        private_key: PrivateKey,
        alg: SigningAlgorithm | None = None,
        *,
        kid: str | None = None,
    ) -> None:
        chosen: SigningAlgorithm = alg if alg is not None else _default_algorithm(private_key)
        _check_fit(private_key, chosen)
        if kid is not None and (not isinstance(kid, str) or not kid):
            raise ConfigurationError("kid must be a non-empty string")
        self.private_key = private_key
        self.alg: SigningAlgorithm = chosen
        jwk = public_jwk(private_key)
        self.kid: str = kid if kid is not None else jwk_thumbprint(jwk)
        self._jwk = {**jwk, "kid": self.kid, "alg": chosen, "use": "sig"}
        self._signer = get_default_algorithms()[chosen]

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.alg!r}, kid={self.kid!r})"

    @classmethod
    def generate(cls, alg: SigningAlgorithm = "RS256", *, kid: str | None = None) -> SigningKey:
        """A fresh key: RSA 2048 for RS*/PS*, the matching curve for ES*, Ed25519 for EdDSA.

        Raises:
            ConfigurationError: *alg* is not a supported signing algorithm.
        """
        key: PrivateKey
        if alg[:2] in ("RS", "PS") and alg in _ALGORITHMS:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg in _EC_CURVES:
            key = ec.generate_private_key(_EC_CURVES[alg]())
        elif alg == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ConfigurationError(f"alg must be one of {', '.join(_ALGORITHMS)}")
        return cls(key, alg, kid=kid)

    @classmethod
    def from_pem(
        cls,
        pem: bytes | str,
        *,
        alg: SigningAlgorithm | None = None,
        kid: str | None = None,
        password: bytes | None = None,
    ) -> SigningKey:
        """Load a PEM private key (PKCS#8, PKCS#1 or SEC1).

        Raises:
            ConfigurationError: Not a readable private key (the message never contains
                key material), or one that does not fit *alg*.
        """
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                "not a readable PEM private key (or a wrong password)"
            ) from exc
        if not isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        ):
            raise ConfigurationError("unsupported signing key type; use RSA, EC or Ed25519")
        return cls(key, alg, kid=kid)

    @property
    def public_key(self) -> Any:
        """The ``cryptography`` public key."""
        return self.private_key.public_key()

    def thumbprint(self) -> str:
        """The RFC 7638 SHA-256 thumbprint of the public key (base64url)."""
        return jwk_thumbprint(self._jwk)

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK with ``kid``, ``alg`` and ``use`` (a fresh dict, RFC 7517 §4)."""
        return dict(self._jwk)

    def jwks(self) -> dict[str, Any]:
        """A JWK Set holding only this key's public half."""
        return {"keys": [self.public_jwk()]}

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (key files, development)."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM."""
        pem: bytes = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def signature(self, signing_input: bytes) -> bytes:
        """The JWS signature of *signing_input* (raw ``R || S`` for ECDSA, RFC 7518 §3.4)."""
        signature: bytes = self._signer.sign(signing_input, self.private_key)
        return signature

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign *claims* as a compact JWS.

        Args:
            claims: The JWT claims set.
            headers: Header members; ``alg`` and ``kid`` default to this key's and
                ``typ`` to ``at+jwt`` (RFC 9068 §2.1). A member set to ``None`` is left
                out.
        """
        header: dict[str, Any] = {"alg": self.alg, "kid": self.kid, "typ": "at+jwt"}
        header.update(headers or {})
        return encode_compact(
            {k: v for k, v in header.items() if v is not None}, claims, self.signature
        )

    def sign_bytes(self, header: bytes, payload: bytes) -> str:
        """Sign exact header and payload JSON bytes (no re-serialisation; tests use it to
        build hostile but validly signed tokens)."""
        return encode_compact(header, payload, self.signature)

    def sign_segments(self, header_segment: str, payload_segment: str) -> str:
        """Sign already-encoded segments and return the compact JWS."""
        signing_input = f"{header_segment}.{payload_segment}"
        return f"{signing_input}.{b64url_encode(self.signature(signing_input.encode()))}"

    def header_segment(self, typ: str = "at+jwt") -> bytes:
        """The compact JSON of this key's usual protected header (issuers cache it)."""
        return compact_json({"alg": self.alg, "kid": self.kid, "typ": typ})


@dataclass(frozen=True)
class SigningKeySet:
    """An issuer's keys: ``current`` signs; ``next`` and ``previous`` are published only.

    Immutable: rotation returns a new set, which the issuer swaps in atomically.

    Args:
        current: The signing key.
        next: Published ahead of use so JWKS caches pick it up before it signs
            (publish it at least the longest resource-server JWKS cache TTL in advance).
        previous: Retired keys, still published until the tokens they signed expired
            (keep them at least ``access_token_ttl + leeway + JWKS cache TTL``).

    Raises:
        ConfigurationError: The same key appears twice.
    """

    current: SigningKey
    next: SigningKey | None = None
    previous: tuple[SigningKey, ...] = ()

    def __post_init__(self) -> None:
        kids = [key.kid for key in self.published()]
        if len(kids) != len(set(kids)):
            raise ConfigurationError("the key set contains the same key twice")

    @classmethod
    def of(cls, keys: Iterable[SigningKey]) -> SigningKeySet:
        """A set whose first key is current and the rest previous."""
        items = list(keys)
        if not items:
            raise ConfigurationError("at least one signing key is required")
        return cls(current=items[0], previous=tuple(items[1:]))

    def published(self) -> tuple[SigningKey, ...]:
        """Every key in the JWKS: current, next, previous."""
        return (self.current, *((self.next,) if self.next else ()), *self.previous)

    def rotate(
        self, new_next: SigningKey | None = None, *, keep_previous: int = 1
    ) -> SigningKeySet:
        """``next`` becomes ``current`` and ``current`` becomes ``previous`` (OIDC Core §10.1.1).

        Raises:
            ConfigurationError: There is no ``next`` key to promote.
        """
        if self.next is None:
            raise ConfigurationError("rotation needs a published next key")
        previous = (self.current, *self.previous)[: max(0, keep_previous)]
        return SigningKeySet(current=self.next, next=new_next, previous=previous)

    def with_next(self, key: SigningKey) -> SigningKeySet:
        """This set with *key* published as ``next``."""
        return SigningKeySet(current=self.current, next=key, previous=self.previous)

    def without(self, kid: str, replacement: SigningKey | None = None) -> SigningKeySet:
        """Emergency removal of a compromised key.

        Removing ``current`` promotes ``next`` (or *replacement*) at once, accepting that
        resource servers may not have cached it yet.

        Raises:
            ConfigurationError: ``current`` is removed and nothing can replace it.
        """
        previous = tuple(key for key in self.previous if key.kid != kid)
        nxt = self.next if self.next is not None and self.next.kid != kid else None
        if self.current.kid != kid:
            return SigningKeySet(current=self.current, next=nxt, previous=previous)
        successor = nxt or replacement
        if successor is None:
            raise ConfigurationError("removing the current key needs a next or replacement key")
        return SigningKeySet(
            current=successor, next=None if successor is nxt else nxt, previous=previous
        )

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The public JWK Set (RFC 7517 §5)."""
        return {"keys": [key.public_jwk() for key in self.published()]}
