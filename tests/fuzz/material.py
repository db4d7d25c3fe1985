"""Keys and tokens for the hardening suites (fuzz, stress, leaks).

Kept independent of the other test helpers so the hardening suites only depend on the
library's public behaviour: one RSA-2048 and one P-256 signing key, their JWKS, an
attacker key, and :func:`mint` for RFC 9068 access tokens with any header or claims.
"""

from __future__ import annotations

import secrets
import time
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.hardening.test"
AUDIENCE = "api://hardening"
RSA_KID = "rsa-1"
EC_KID = "ec-1"


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    """The issuer's RSA-2048 signing key (generated once per process)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def ec_key() -> ec.EllipticCurvePrivateKey:
    """The issuer's P-256 signing key."""
    return ec.generate_private_key(ec.SECP256R1())


@cache
def attacker_key() -> rsa.RSAPrivateKey:
    """A key the issuer never published: tokens signed with it are forged."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks(*, rsa_kid: str = RSA_KID, ec_kid: str = EC_KID) -> dict[str, Any]:
    """The public JWKS of the issuer's two keys."""
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key().public_key(), as_dict=True)
    ec_jwk = ECAlgorithm.to_jwk(ec_key().public_key(), as_dict=True)
    rsa_jwk.update(kid=rsa_kid, alg="RS256", use="sig")
    ec_jwk.update(kid=ec_kid, alg="ES256", use="sig")
    return {"keys": [rsa_jwk, ec_jwk]}


def claims(**overrides: Any) -> dict[str, Any]:
    """A complete, valid RFC 9068 claim set; ``None`` in *overrides* removes a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "client_id": "client-1",
        "iat": now,
        "exp": now + 300,
        "jti": secrets.token_hex(8),
        "scope": "items:read",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def mint(
    *,
    alg: str = "RS256",
    key: Any = None,
    kid: str | None = None,
    header: dict[str, Any] | None = None,
    issuer: str = ISSUER,
    audience: str = AUDIENCE,
    **overrides: Any,
) -> str:
    """A signed access token (``typ: at+jwt``) with *overrides* applied to the claims."""
    if key is None:
        key = ec_key() if alg == "ES256" else rsa_key()
    if kid is None:
        kid = EC_KID if alg == "ES256" else RSA_KID
    headers = {"typ": "at+jwt", "kid": kid, **(header or {})}
    payload = claims(iss=issuer, aud=audience, **overrides)
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def forged(**overrides: Any) -> str:
    """A token with the issuer's kid but signed by the attacker's key."""
    return mint(key=attacker_key(), **overrides)


def expired(**overrides: Any) -> str:
    """A correctly signed token that expired an hour ago (beyond any leeway)."""
    now = int(time.time())
    return mint(iat=now - 7200, exp=now - 3600, **overrides)
