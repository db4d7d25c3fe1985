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

import json
import time
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

from scopegate._jose import b64url_encode, encode_compact
from scopegate._jwt import JWTVerifier
from scopegate._keys import public_jwk
from scopegate.testing import SigningKey as _LibraryKey

ISSUER = "https://issuer.test"
AUDIENCE = "api://test"
DROP: Any = object()

_ALGS = get_default_algorithms()


def b64url(data: bytes | str) -> str:
    """Unpadded base64url of *data*."""
    return b64url_encode(data.encode() if isinstance(data, str) else data)


class _Conveniences:
    """Test shorthands over a private key with a kid and a default alg."""

    private_key: Any
    kid: str
    alg: str

    @property
    def private(self) -> Any:
        return self.private_key

    @property
    def public(self) -> Any:
        return self.private_key.public_key()

    def jwk(self, **extra: Any) -> dict[str, Any]:
        """The public JWK with kid and alg (pass alg=None to leave alg out)."""
        data: dict[str, Any] = {**public_jwk(self.private_key), "kid": self.kid, "alg": self.alg}
        data.update(extra)
        return {k: v for k, v in data.items() if v is not None}

    def pem(self) -> str:
        """The public key as PEM text."""
        return self.public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


class SigningKey(_Conveniences, _LibraryKey):
    """The library's one SigningKey, with test shorthands."""

    __slots__ = ()


class WeakKey(_Conveniences):
    """A key the library refuses to sign with (RSA < 2048): only tests forge with it."""

    def __init__(self, private_key: Any, kid: str, alg: str) -> None:
        self.private_key, self.kid, self.alg = private_key, kid, alg


RSA_KEY = SigningKey(
    rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", kid="rsa-1"
)
RSA_KEY_2 = SigningKey(
    rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", kid="rsa-2"
)
RSA_1024 = WeakKey(
    rsa.generate_private_key(public_exponent=65537, key_size=1024), "rsa-weak", "RS256"
)
EC_KEY = SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256", kid="ec-1")
EC384_KEY = SigningKey(ec.generate_private_key(ec.SECP384R1()), "ES384", kid="ec384-1")
ED_KEY = SigningKey(ed25519.Ed25519PrivateKey.generate(), "EdDSA", kid="ed-1")


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
    key: _Conveniences = RSA_KEY,
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
    key: _Conveniences = RSA_KEY,
    alg: str | None = None,
) -> str:
    """Sign the exact header and payload text (no re-serialisation), with any *alg* the
    key type allows: attack tests sign with algorithms the key is not bound to."""
    algorithm = alg or key.alg
    signer = _ALGS["EdDSA" if algorithm == "Ed25519" else algorithm]
    head = header_json.encode() if isinstance(header_json, str) else header_json
    body = payload_json.encode() if isinstance(payload_json, str) else payload_json
    return encode_compact(head, body, lambda data: signer.sign(data, key.private_key))


def jwks(*keys: _Conveniences) -> dict[str, Any]:
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
