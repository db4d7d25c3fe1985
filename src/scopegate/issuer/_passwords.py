"""Hashing of client secrets and user passwords.

Stored forms (the first ``$``-field names the scheme):

- ``$argon2id$v=19$m=...,t=...,p=...$salt$hash``: Argon2id via argon2-cffi (RFC 9106;
  OWASP Password Storage Cheat Sheet first choice). The default.
- ``$scrypt$ln=17,r=8,p=1$salt$hash``: ``hashlib.scrypt`` (N=2^17, r=8, p=1), used when
  argon2-cffi is missing or chosen explicitly.
- ``$hmac-sha256$digest``: what a *plaintext* value from the configuration file becomes in
  memory. The plaintext already sits in that file, so a slow hash would protect nothing;
  a keyed hash with a per-process random pepper keeps memory free of the raw value.

Every comparison is constant time on bytes (``hmac.compare_digest``), and candidates
longer than :data:`MAX_SECRET_BYTES` are refused before any hashing (long-password DoS,
issuer spec PW-9).

An unknown client id or username must cost what a known one costs, or response times
tell them apart (issuer spec CA-7, PW-9). :func:`verify_dummy` spends exactly that work:
one verification against a hash of a random secret with the same scheme and cost
parameters (:func:`hash_profile`) as the real ones.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from scopegate._errors import ConfigurationError

__all__ = [
    "DEFAULT_PROFILE",
    "MAX_SECRET_BYTES",
    "generate_client_secret",
    "hash_profile",
    "hash_secret",
    "is_hashed",
    "needs_rehash",
    "peppered_digest",
    "typical_profile",
    "verify_dummy",
    "verify_secret",
]

MAX_SECRET_BYTES = 4096
Scheme = Literal["argon2id", "scrypt"]

# Per-process key for plaintext-from-config digests; never leaves memory.
_PEPPER = secrets.token_bytes(32)
_SCRYPT_LN, _SCRYPT_R, _SCRYPT_P = 17, 8, 1
# hashlib.scrypt's default 32 MiB limit is too small for N=2^17, r=8 (needs 128 MiB).
_SCRYPT_MAXMEM = 256 * 1024 * 1024

try:
    import argon2 as _argon2

    _ARGON2: Any = _argon2.PasswordHasher()
    #: What :func:`hash_secret` produces today (and so what unknown identities imitate
    #: until real hashes are seen).
    DEFAULT_PROFILE = (
        f"$argon2id$v=19$m={_ARGON2.memory_cost},t={_ARGON2.time_cost},p={_ARGON2.parallelism}"
    )
except ImportError:  # pragma: no cover - argon2-cffi is part of the issuer extra
    _ARGON2 = None
    DEFAULT_PROFILE = f"$scrypt$ln={_SCRYPT_LN},r={_SCRYPT_R},p={_SCRYPT_P}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def generate_client_secret() -> str:
    """A new client secret: 256 random bits from the unreserved URL alphabet.

    Only ``[A-Za-z0-9_-]`` is produced, so form-encoding leaves it unchanged and clients
    that forget to encode Basic credentials still work (RFC 6749 §2.3.1, issuer spec CA-2).
    """
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, *, scheme: Scheme = "argon2id") -> str:
    """Hash *secret* for storage.

    Args:
        secret: The client secret or password.
        scheme: ``"argon2id"`` (default; falls back to scrypt without argon2-cffi) or
            ``"scrypt"``.

    Returns:
        A self-describing ``$scheme$...`` string for the configuration file.

    Raises:
        ValueError: *secret* is empty or longer than :data:`MAX_SECRET_BYTES`.
    """
    raw = secret.encode()
    if not raw or len(raw) > MAX_SECRET_BYTES:
        raise ValueError("secret must be 1 to 4096 bytes")
    if scheme == "argon2id" and _ARGON2 is not None:
        return str(_ARGON2.hash(raw))
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        raw, salt=salt, n=1 << _SCRYPT_LN, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM
    )
    return f"$scrypt$ln={_SCRYPT_LN},r={_SCRYPT_R},p={_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def peppered_digest(secret: str) -> str:
    """The in-memory form of a plaintext secret: HMAC-SHA-256 under the process pepper."""
    mac = hmac.new(_PEPPER, secret.encode(), hashlib.sha256).digest()
    return f"$hmac-sha256${_b64(mac)}"


def is_hashed(value: str) -> bool:
    """Whether *value* is a stored hash (as opposed to a plaintext from the config file)."""
    return value.startswith(("$argon2id$", "$scrypt$", "$hmac-sha256$"))


def check_stored(value: str) -> None:
    """Raise :class:`ConfigurationError` if *value* is a hash this build cannot verify."""
    if value.startswith("$argon2id$"):
        if _ARGON2 is None:  # pragma: no cover
            raise ConfigurationError("argon2id hashes need argon2-cffi (scopegate[issuer])")
        return
    if value.startswith("$scrypt$"):
        if _parse_scrypt(value) is None:
            raise ConfigurationError("malformed scrypt hash")
        return
    if value.startswith("$hmac-sha256$"):
        return
    raise ConfigurationError("unknown secret hash format")


def _parse_scrypt(value: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = value.split("$")
    if len(parts) != 5 or parts[1] != "scrypt":
        return None
    try:
        params = dict(item.split("=", 1) for item in parts[2].split(","))
        ln, r, p = int(params["ln"]), int(params["r"]), int(params["p"])
        salt, digest = _unb64(parts[3]), _unb64(parts[4])
    except (ValueError, KeyError):
        return None
    # Bound the parameters so a crafted stored hash cannot exhaust memory or CPU.
    if not (10 <= ln <= 20 and 1 <= r <= 16 and 1 <= p <= 4 and len(digest) >= 16):
        return None
    return ln, r, p, salt, digest


def verify_secret(stored: str, candidate: str) -> bool:
    """Check *candidate* against a stored form, in constant time on bytes.

    Args:
        stored: A value from :func:`hash_secret` or :func:`peppered_digest`.
        candidate: What the client or user presented.

    Returns:
        ``True`` on a match. Over-long candidates and unknown formats are ``False``.
    """
    return _verify(stored, candidate)


def _verify(stored: str, candidate: str) -> bool:
    raw = candidate.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_SECRET_BYTES:
        return False
    if stored.startswith("$hmac-sha256$"):
        mac = hmac.new(_PEPPER, raw, hashlib.sha256).digest()
        return hmac.compare_digest(peppered_digest_bytes(stored), mac)
    if stored.startswith("$argon2id$") and _ARGON2 is not None:
        try:
            return bool(_ARGON2.verify(stored, raw))
        except Exception:  # argon2 raises VerifyMismatchError / InvalidHashError
            return False
    parsed = _parse_scrypt(stored) if stored.startswith("$scrypt$") else None
    if parsed is None:
        return False
    ln, r, p, salt, digest = parsed
    computed = hashlib.scrypt(
        raw, salt=salt, n=1 << ln, r=r, p=p, dklen=len(digest), maxmem=_SCRYPT_MAXMEM
    )
    return hmac.compare_digest(computed, digest)


def hash_profile(stored: str) -> str:
    """The scheme and cost parameters of a stored hash, without its salt and digest.

    ``$argon2id$v=19$m=65536,t=3,p=4$salt$hash`` gives ``$argon2id$v=19$m=65536,t=3,p=4``;
    a plaintext-from-config digest gives ``$hmac-sha256``. Two hashes with one profile
    cost the same to verify.
    """
    if stored.startswith("$hmac-sha256$"):
        return "$hmac-sha256"
    return stored.rsplit("$", 2)[0] if stored.count("$") >= 4 else DEFAULT_PROFILE


def typical_profile(entries: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """The most common profile tuple among *entries* (each one client's or user's hashes).

    A client with two secrets (rotation) costs two verifications, so the tuple, not a
    single profile, is what an unknown identity must imitate.
    """
    counts = Counter(tuple(hash_profile(h) for h in hashes) for hashes in entries if hashes)
    return counts.most_common(1)[0][0] if counts else (DEFAULT_PROFILE,)


@functools.lru_cache(maxsize=32)
def _dummy_for(profile: str) -> str:
    # Built from configuration (trusted input); the random secret is never compared for
    # a match, only to spend the work.
    secret = secrets.token_urlsafe(16)
    if profile == "$hmac-sha256":
        return peppered_digest(secret)
    params = dict(
        item.split("=", 1) for item in profile.rsplit("$", 1)[-1].split(",") if "=" in item
    )
    try:
        if profile.startswith("$argon2id$") and _ARGON2 is not None:
            hasher = _argon2.PasswordHasher(
                time_cost=int(params["t"]),
                memory_cost=int(params["m"]),
                parallelism=int(params["p"]),
            )
            return str(hasher.hash(secret))
        if profile.startswith("$scrypt$"):
            ln, r, p = int(params["ln"]), int(params["r"]), int(params["p"])
            salt = secrets.token_bytes(16)
            digest = hashlib.scrypt(
                secret.encode(), salt=salt, n=1 << ln, r=r, p=p, maxmem=_SCRYPT_MAXMEM
            )
            return f"$scrypt$ln={ln},r={r},p={p}${_b64(salt)}${_b64(digest)}"
    except (KeyError, ValueError):
        pass
    return hash_secret(secret)


def verify_dummy(profile: Sequence[str], candidate: str) -> None:
    """Spend the work of verifying *candidate* against hashes with these *profile* s.

    Used for an unknown client or user, and for a locked account, so their answer takes
    as long as a wrong secret for a real one. Never a match: nothing is compared for it.
    """
    for item in profile:
        _verify(_dummy_for(item), candidate)


def peppered_digest_bytes(stored: str) -> bytes:
    """The raw MAC inside a ``$hmac-sha256$`` value (empty bytes if malformed)."""
    try:
        return _unb64(stored.split("$")[2])
    except (ValueError, IndexError):
        return b""


def needs_rehash(stored: str) -> bool:
    """Whether a verified hash uses outdated parameters and should be replaced (PW-8)."""
    if stored.startswith("$argon2id$") and _ARGON2 is not None:
        try:
            return bool(_ARGON2.check_needs_rehash(stored))
        except Exception:
            return False
    if stored.startswith("$scrypt$"):
        parsed = _parse_scrypt(stored)
        return parsed is None or parsed[0] < _SCRYPT_LN or _ARGON2 is not None
    return False
