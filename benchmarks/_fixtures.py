"""Keys and RFC 9068-style access tokens shared by every bench script.

The material lives in one directory (by default under the system temp dir) so a run of
``run.py`` and the server processes it starts all see the same keys and tokens. Minting
thousands of unique RS256 tokens takes seconds, so the directory is reused across runs
until its tokens get close to expiry (they live just under a day).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
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
#: Unique tokens per token-size variant: served by an app whose verified-token cache
#: holds 1000 (``SCOPEGATE_BENCH_CACHE_SIZE``), so a cycled list of 3000 always misses.
VARIANT_TOKENS = 3000
#: Scope names beyond the default three: ``s000:r`` .. ``s999:r`` (6 characters each,
#: so a 500-scope token stays well under the 8 KB token limit).
SCOPE_VOCABULARY = tuple(f"s{i:03d}:r" for i in range(1000))


@dataclass(frozen=True)
class Variant:
    """A token shape of the token-size matrix: how many scopes, or padded to a size."""

    id: str
    label: str
    scopes: int = 3
    pad_to: int | None = None  # total token length in bytes (an extra ``pad`` claim)


#: The token-size matrix (issue 18): 5 / 100 / 500 scopes; 1 / 4 / 7 KB (padded).
VARIANTS = (
    Variant("scopes-5", "5 scopes", scopes=5),
    Variant("scopes-100", "100 scopes", scopes=100),
    Variant("scopes-500", "500 scopes", scopes=500),
    Variant("pad-1k", "padded to 1 KB", pad_to=1024),
    Variant("pad-4k", "padded to 4 KB", pad_to=4096),
    Variant("pad-7k", "padded to 7 KB", pad_to=7168),
)


def variant(variant_id: str) -> Variant:
    """The :class:`Variant` called *variant_id*."""
    for v in VARIANTS:
        if v.id == variant_id:
            return v
    raise KeyError(variant_id)


def scope_string(count: int) -> str:
    """``items:read items:write profile`` followed by the first scope names, *count* in all."""
    base = SCOPE.split()
    return " ".join([*base, *SCOPE_VOCABULARY[: max(0, count - len(base))]][:count])


def random_scope_string(index: int, count: int = 500) -> str:
    """A scope string not seen before: ``items:read`` and *count* - 1 names drawn from the
    vocabulary, shuffled. Seeded by *index*, so each line of a token file has its own
    string while the set of scope names stays bounded (as with real users' grants)."""
    rng = random.Random(index)
    names = rng.sample(SCOPE_VOCABULARY, count - 1)
    names.insert(rng.randrange(count), "items:read")
    return " ".join(names)


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
    for derived in root.glob("variant_*.txt"):
        derived.unlink()
    for derived in root.glob("scopes_*.txt"):
        derived.unlink()
    material.unique_path.write_text("")
    if unique:
        _write_unique(material, unique)
    (root / "meta.json").write_text(json.dumps({"version": _VERSION, "exp": now + _LIFETIME}))


def _issued_at(material: Material) -> int:
    """The ``iat`` of the material (so every token file expires with ``meta.json``)."""
    meta = material.root / "meta.json"
    if meta.exists():
        return int(json.loads(meta.read_text())["exp"]) - _LIFETIME
    return int(time.time())


def _append_tokens(
    material: Material, path: Path, count: int, payload: Callable[[int, int], dict[str, Any]]
) -> list[str]:
    """Make sure *path* holds at least *count* RS256 tokens; ``payload(now, index)`` gives
    the claims of the token on line *index*. Returns the first *count* tokens."""
    key = material.private["RS256"]
    now = _issued_at(material)
    have = path.read_text().split() if path.exists() else []
    if len(have) < count:
        with path.open("a") as out:
            for index in range(len(have), count):
                token = mint("RS256", key, "bench-rs256", payload(now, index))
                out.write(token + "\n")
                have.append(token)
        path.chmod(0o600)
    return have[:count]


def _write_unique(material: Material, count: int) -> None:
    _append_tokens(material, material.unique_path, count, lambda now, _i: claims(now))


def _pad_length(material: Material, target: int, base: dict[str, Any]) -> int:
    """Length of the ``pad`` claim that brings a token to about *target* bytes."""
    key = material.private["RS256"]
    pad = 0
    for _ in range(4):  # base64url is 4/3 of the JSON: converge in a few steps
        size = len(mint("RS256", key, "bench-rs256", {**base, "pad": "x" * pad}))
        if abs(size - target) <= 3:
            break
        pad = max(0, pad + (target - size) * 3 // 4)
    return pad


def _variant_claims(material: Material, v: Variant) -> Callable[[int, int], dict[str, Any]]:
    extra: dict[str, Any] = {"scope": scope_string(v.scopes)}
    if v.pad_to is not None:
        filler = "0123456789abcdef" * (v.pad_to // 16 + 1)
        extra["pad"] = filler[: _pad_length(material, v.pad_to, claims(_issued_at(material)))]
    return lambda now, _i: claims(now, **extra)


def variant_files(material: Material, variant_id: str, unique: int) -> tuple[Path, Path]:
    """(repeated-token file, unique-token file) of a matrix variant, minted on first use
    and cached next to the other material: one token, then *unique* tokens."""
    v = variant(variant_id)
    make = _variant_claims(material, v)
    repeated = material.root / f"variant_{v.id}_repeated.txt"
    many = material.root / f"variant_{v.id}.txt"
    _append_tokens(material, repeated, 1, make)
    _append_tokens(material, many, unique, make)
    return repeated, many


def new_scope_tokens(material: Material, count: int) -> list[str]:
    """RS256 tokens with 500 scopes, each with a scope string of its own (see
    :func:`random_scope_string`), for the "scope string not seen before" figure."""
    path = material.root / "scopes_500_new.txt"
    return _append_tokens(
        material,
        path,
        count,
        lambda now, index: claims(now, scope=random_scope_string(index)),
    )


if __name__ == "__main__":
    m = load()
    print(f"material in {m.root}: {len(m.unique_tokens())} unique RS256 tokens")
    for v in VARIANTS:
        _rep, _many = variant_files(m, v.id, VARIANT_TOKENS)
        print(f"  {v.label}: {len(_rep.read_text().split()[0])} bytes")
