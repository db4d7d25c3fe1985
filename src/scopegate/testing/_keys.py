"""A local signing key for tests and development: generate, export as JWKS, sign."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from typing import Any, Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from scopegate._errors import ConfigurationError
from scopegate._keys import jwk_thumbprint, public_jwk

__all__ = ["SigningAlgorithm", "SigningKey", "b64url"]

SigningAlgorithm = Literal["RS256", "PS256", "ES256", "EdDSA"]

_PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _compact_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class SigningKey:
    """An asymmetric private key with its ``kid`` and the one algorithm it signs with.

    Each key is bound to exactly one algorithm (RFC 8725 §3.1), and its public JWK
    carries that ``alg``, as a real authorization server publishes it.

    Args:
        private_key: A ``cryptography`` RSA, EC P-256 or Ed25519 private key.
        algorithm: ``RS256``, ``PS256`` (RSA), ``ES256`` (P-256) or ``EdDSA`` (Ed25519).
        kid: The key id; a random one when omitted.

    Raises:
        ConfigurationError: The key type does not fit the algorithm.
    """

    __slots__ = ("_algorithm", "_private_key", "algorithm", "kid")

    def __init__(
        self,
        private_key: _PrivateKey,
        algorithm: SigningAlgorithm = "RS256",
        kid: str | None = None,
    ) -> None:
        expected: dict[str, type[Any]] = {
            "RS256": rsa.RSAPrivateKey,
            "PS256": rsa.RSAPrivateKey,
            "ES256": ec.EllipticCurvePrivateKey,
            "EdDSA": ed25519.Ed25519PrivateKey,
        }
        if algorithm not in expected or not isinstance(private_key, expected[algorithm]):
            raise ConfigurationError("the private key does not fit the signing algorithm")
        if isinstance(private_key, ec.EllipticCurvePrivateKey) and not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ConfigurationError("ES256 needs a P-256 key")
        self._private_key = private_key
        self.algorithm: SigningAlgorithm = algorithm
        self._algorithm = get_default_algorithms()[algorithm]
        self.kid = kid or "test-" + secrets.token_hex(8)

    def __repr__(self) -> str:
        return f"SigningKey(algorithm={self.algorithm!r}, kid={self.kid!r})"

    @classmethod
    def generate(cls, algorithm: SigningAlgorithm = "RS256", kid: str | None = None) -> SigningKey:
        """Generate a fresh key: RSA 2048 for RS256/PS256, P-256 for ES256, Ed25519 for EdDSA."""
        key: _PrivateKey
        if algorithm in ("RS256", "PS256"):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif algorithm == "ES256":
            key = ec.generate_private_key(ec.SECP256R1())
        elif algorithm == "EdDSA":
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ConfigurationError("algorithm must be RS256, PS256, ES256 or EdDSA")
        return cls(key, algorithm, kid)

    @classmethod
    def from_pem(
        cls,
        pem: bytes | str,
        algorithm: SigningAlgorithm | None = None,
        kid: str | None = None,
        password: bytes | None = None,
    ) -> SigningKey:
        """Load a PKCS#8 / traditional PEM private key.

        Args:
            pem: The PEM text.
            algorithm: Defaults to RS256 for RSA, ES256 for EC and EdDSA for Ed25519.
            kid: Defaults to the RFC 7638 thumbprint of the public key, so the same
                file always gives the same ``kid``.
            password: For an encrypted PEM.

        Raises:
            ConfigurationError: Not a supported private key.
        """
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError("not a PEM private key (or wrong password)") from exc
        if isinstance(key, rsa.RSAPrivateKey):
            default: SigningAlgorithm = "RS256"
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            default = "ES256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            default = "EdDSA"
        else:
            raise ConfigurationError("only RSA, EC P-256 and Ed25519 keys are supported")
        made = cls(key, algorithm or default, kid or "pending")
        if kid is None:
            made.kid = made.thumbprint()
        return made

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM (for development files only)."""
        pem: bytes = self._private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return pem

    def public_pem(self) -> bytes:
        """The public key as SubjectPublicKeyInfo PEM."""
        pem: bytes = self._private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem

    def thumbprint(self) -> str:
        """The RFC 7638 JWK thumbprint (SHA-256, base64url) of the public key."""
        return jwk_thumbprint(public_jwk(self._private_key))

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK with ``kid``, ``alg`` and ``use: sig`` (RFC 7517 §4)."""
        return {
            **public_jwk(self._private_key),
            "kid": self.kid,
            "alg": self.algorithm,
            "use": "sig",
        }

    def jwks(self) -> dict[str, Any]:
        """A JWK Set holding only this key's public half."""
        return {"keys": [self.public_jwk()]}

    def sign_segments(self, header_segment: str, payload_segment: str) -> str:
        """Sign already-encoded segments and return the compact JWS.

        This is the raw primitive behind :meth:`sign`; tests use it to build hostile
        tokens (duplicate members, odd encodings) that are still validly signed.
        """
        message = f"{header_segment}.{payload_segment}".encode("ascii")
        signature = self._algorithm.sign(message, self._private_key)
        return f"{header_segment}.{payload_segment}.{b64url(signature)}"

    def sign_bytes(self, header: bytes, payload: bytes) -> str:
        """Sign exact header and payload bytes (no re-serialisation)."""
        return self.sign_segments(b64url(header), b64url(payload))

    def sign(self, claims: Mapping[str, Any], headers: Mapping[str, Any] | None = None) -> str:
        """Sign *claims* as a compact JWS.

        Args:
            claims: The JWT claims set.
            headers: Header members; ``alg`` and ``kid`` default to this key's, ``typ`` to
                ``at+jwt`` (RFC 9068 §2.1). A member set to ``None`` is left out.

        Returns:
            The compact serialization ``header.payload.signature``.
        """
        header: dict[str, Any] = {"alg": self.algorithm, "kid": self.kid, "typ": "at+jwt"}
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not None}
        return self.sign_bytes(_compact_json(header), _compact_json(dict(claims)))
