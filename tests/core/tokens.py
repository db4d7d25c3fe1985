"""Token-minting helpers for the core tests (owned by helper [A]; reuse freely).

Quick use::

    from tests.core.tokens import ISSUER, AUDIENCE, RSA_KEY, mint, static_verifier

    verifier = static_verifier()                  # JWTVerifier on RSA_KEY's public JWK
    token = mint(scope="items:read")              # valid RS256 at+jwt for that verifier
    verifier.verify(token).has_scopes("items:read")

* ``ISSUER`` / ``AUDIENCE``: what ``static_verifier()`` expects.
* ``RSA_KEY``, ``RSA_KEY_2`` (RSA-2048), ``EC_KEY`` (P-256), ``ED_KEY`` (Ed25519),
  ``EC384_KEY`` (P-384), ``RSA_1024`` (too short): :class:`SigningKey` objects with
  ``.private``, ``.public``, ``.kid``, ``.alg``, ``.jwk()`` (public JWK dict) and
  ``.pem()`` (public PEM text). Generated once per test session.
* ``claims(**overrides)``: a full RFC 9068 claim set (iat now, exp +10 min); an override
  of ``DROP`` removes the claim.
* ``mint(key=RSA_KEY, *, alg=None, header=None, **claim_overrides)``: a signed compact
  JWS (PyJWT's algorithm objects sign). ``header`` entries override or extend
  ``{"typ": "at+jwt", "kid": key.kid}``; a header value of ``DROP`` removes that member
  (e.g. ``header={"kid": DROP}``).
* ``sign_raw(header_json, payload_json, key=RSA_KEY, alg=None)``: signs *exact* JSON
  text (bytes/str) so tests can forge duplicate members, NaN, deep nesting...
* ``b64url(data)``: unpadded base64url.
* ``jwks(*keys)``: a JWKS dict of the public JWKs.
* ``static_verifier(**kwargs)``: ``JWTVerifier(issuer=ISSUER, audience=AUDIENCE,
  keys=jwks(RSA_KEY, EC_KEY, ED_KEY), **kwargs)`` - no network.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from scopegate._jwt import JWTVerifier

ISSUER = "https://issuer.test"
AUDIENCE = "api://test"
DROP: Any = object()

_ALGS = get_default_algorithms()


def b64url(data: bytes | str) -> str:
    """Unpadded base64url of *data*."""
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class SigningKey:
    """A private key with its kid and default algorithm."""

    private: Any
    kid: str
    alg: str

    @property
    def public(self) -> Any:
        return self.private.public_key()

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK with kid and alg (pass alg=None to leave alg out)."""
        algo = _ALGS["EdDSA" if self.alg in ("EdDSA", "Ed25519") else self.alg]
        data: dict[str, Any] = json.loads(algo.to_jwk(self.public))
        data["kid"] = self.kid
        data["alg"] = self.alg
        data.update(extra)
        return {k: v for k, v in data.items() if v is not None}

    def pem(self) -> str:
        """The public key as PEM text."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


RSA_KEY = SigningKey(
    rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1", "RS256"
)
RSA_KEY_2 = SigningKey(
    rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-2", "RS256"
)
RSA_1024 = SigningKey(
    rsa.generate_private_key(public_exponent=65537, key_size=1024), "rsa-weak", "RS256"
)
EC_KEY = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ec-1", "ES256")
EC384_KEY = SigningKey(ec.generate_private_key(ec.SECP384R1()), "ec384-1", "ES384")
ED_KEY = SigningKey(ed25519.Ed25519PrivateKey.generate(), "ed-1", "EdDSA")


def claims(**overrides: Any) -> dict[str, Any]:
    """A complete RFC 9068 claim set; overrides replace claims, DROP removes them."""
    now = int(time.time())
    data: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "client_id": "svc-a",
        "iat": now,
        "exp": now + 600,
        "jti": "jti-1",
        "scope": "items:read",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not DROP}


def mint(
    key: SigningKey = RSA_KEY,
    *,
    alg: str | None = None,
    header: dict[str, Any] | None = None,
    **claim_overrides: Any,
) -> str:
    """A signed compact JWS with the full claim set plus *claim_overrides*."""
    headers: dict[str, Any] = {"typ": "at+jwt", "kid": key.kid}
    headers.update(header or {})
    headers = {k: v for k, v in headers.items() if v is not DROP}
    algorithm = alg or key.alg
    full = {"alg": algorithm, **headers}
    return sign_raw(json.dumps(full), json.dumps(claims(**claim_overrides)), key, algorithm)


def sign_raw(
    header_json: bytes | str,
    payload_json: bytes | str,
    key: SigningKey = RSA_KEY,
    alg: str | None = None,
) -> str:
    """Sign the exact header and payload text (no re-serialisation)."""
    algorithm = alg or key.alg
    signing_input = f"{b64url(header_json)}.{b64url(payload_json)}".encode()
    signer = _ALGS["EdDSA" if algorithm == "Ed25519" else algorithm]
    signature = signer.sign(signing_input, key.private)
    return f"{signing_input.decode()}.{b64url(signature)}"


def jwks(*keys: SigningKey) -> dict[str, Any]:
    """A JWKS with the public JWKs of *keys*."""
    return {"keys": [k.jwk() for k in keys]}


def static_verifier(**kwargs: Any) -> JWTVerifier:
    """A JWTVerifier for ISSUER/AUDIENCE over the static RSA, EC and Ed25519 keys."""
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "keys": jwks(RSA_KEY, EC_KEY, ED_KEY),
    }
    options.update(kwargs)
    return JWTVerifier(**options)
