"""Keys and RFC 9068-style access tokens shared by every bench script.

The material lives in one directory (by default under the system temp dir) so a run of
``run.py`` and the server processes it starts all see the same keys and tokens. Minting
thousands of unique RS256 tokens takes seconds, so the directory is reused across runs
until its tokens get close to expiry (they live just under a day).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUER = "https://issuer.bench.example"
AUDIENCE = "api://bench"
SCOPE = "items:read items:write profile"
ALGORITHMS = ("RS256", "ES256", "EdDSA")
#: Unique tokens minted for the "every request has a new token" runs; more than twice
#: the verifier's default cache size (10 000), so a cycled list always misses an LRU.
UNIQUE_TOKENS = 25_000
_VERSION = "2"
# Under the verifiers' default max_lifetime (1 day); material is re-minted when less
# than an hour of validity is left, plenty for a full run.
_LIFETIME = 86000
_MIN_LEFT = 3600


def default_dir() -> Path:
    """Where the material lives: ``$SCOPEGATE_BENCH_DIR`` or a fixed temp directory."""
    env = os.environ.get("SCOPEGATE_BENCH_DIR")
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"scopegate-bench-v{_VERSION}"


def _private_pem(key: Any) -> bytes:
    return key.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _jwk(alg: str, key: Any) -> dict[str, Any]:
    pub = key.public_key()
    if alg == "RS256":
        jwk = RSAAlgorithm.to_jwk(pub, as_dict=True)
    elif alg == "ES256":
        jwk = ECAlgorithm.to_jwk(pub, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(pub, as_dict=True)
    jwk.update({"kid": f"bench-{alg.lower()}", "alg": alg, "use": "sig"})
    return jwk


def claims(now: int | None = None, **extra: Any) -> dict[str, Any]:
    """The 10 claims of the bench token (iss, sub, aud, exp, iat, nbf, jti, scope, ...)."""
    now = int(time.time()) if now is None else now
    base = {
        "iss": ISSUER,
        "sub": "user-1234",
        "aud": AUDIENCE,
        "exp": now + _LIFETIME,
        "iat": now,
        "nbf": now,
        "jti": uuid.uuid4().hex,
        "scope": SCOPE,
        "client_id": "bench-client",
        "auth_time": now,
    }
    base.update(extra)
    return base


def mint(alg: str, key: Any, kid: str, payload: dict[str, Any]) -> str:
    """Sign *payload* as an RFC 9068 access token (``typ: at+jwt``)."""
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt"})


@dataclass
class Material:
    """Keys (private objects and public JWKs) and tokens, per algorithm."""

    root: Path
    private: dict[str, Any]
    jwks: dict[str, Any]
    tokens: dict[str, str]

    @property
    def jwks_path(self) -> Path:
        return self.root / "jwks.json"

    @property
    def unique_path(self) -> Path:
        return self.root / "unique_rs256.txt"

    def public_key(self, alg: str) -> Any:
        return self.private[alg].public_key()

    def jwk(self, alg: str) -> dict[str, Any]:
        return next(k for k in self.jwks["keys"] if k["alg"] == alg)

    def unique_tokens(self, limit: int | None = None) -> list[str]:
        """The pre-minted unique RS256 tokens (each with its own ``jti``)."""
        lines = self.unique_path.read_text().split()
        return lines[:limit] if limit else lines


def _fresh(root: Path) -> bool:
    meta = root / "meta.json"
    if not meta.exists():
        return False
    try:
        data = json.loads(meta.read_text())
    except ValueError:
        return False
    return bool(data.get("version") == _VERSION and data.get("exp", 0) - time.time() > _MIN_LEFT)


def load(root: Path | None = None, *, unique: int = UNIQUE_TOKENS) -> Material:
    """Load the material from *root*, generating it first when absent or near expiry."""
    root = root or default_dir()
    if not _fresh(root):
        generate(root, unique=unique)
    private = {
        alg: serialization.load_pem_private_key((root / f"{alg}.pem").read_bytes(), None)
        for alg in ALGORITHMS
    }
    jwks = json.loads((root / "jwks.json").read_text())
    tokens = json.loads((root / "tokens.json").read_text())
    material = Material(root, private, jwks, tokens)
    if unique and len(material.unique_tokens()) < unique:
        _write_unique(material, unique)
    return material


def generate(root: Path, *, unique: int = UNIQUE_TOKENS) -> None:
    """Create keys, the JWKS, one token per algorithm and the unique RS256 tokens."""
    root.mkdir(parents=True, exist_ok=True)
    keys: dict[str, Any] = {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }
    now = int(time.time())
    jwks = {"keys": [_jwk(alg, key) for alg, key in keys.items()]}
    tokens = {alg: mint(alg, key, f"bench-{alg.lower()}", claims(now)) for alg, key in keys.items()}
    for alg, key in keys.items():
        path = root / f"{alg}.pem"
        path.write_bytes(_private_pem(key))
        path.chmod(0o600)
    (root / "jwks.json").write_text(json.dumps(jwks))
    (root / "tokens.json").write_text(json.dumps(tokens))
    material = Material(root, keys, jwks, tokens)
    material.unique_path.write_text("")
    if unique:
        _write_unique(material, unique)
    (root / "meta.json").write_text(json.dumps({"version": _VERSION, "exp": now + _LIFETIME}))


def _write_unique(material: Material, count: int) -> None:
    key = material.private["RS256"]
    now = (
        int(json.loads((material.root / "meta.json").read_text())["exp"]) - _LIFETIME
        if (material.root / "meta.json").exists()
        else int(time.time())
    )
    have = material.unique_tokens() if material.unique_path.exists() else []
    with material.unique_path.open("a") as out:
        for _ in range(count - len(have)):
            out.write(mint("RS256", key, "bench-rs256", claims(now)) + "\n")


if __name__ == "__main__":
    m = load()
    print(f"material in {m.root}: {len(m.unique_tokens())} unique RS256 tokens")
