"""Verification keys: JWK / JWKS / PEM parsing into ready-to-use key objects.

Each public key is parsed **once** into a ``cryptography`` key object wrapped in a
:class:`VerificationKey` that knows the algorithms it may verify (RFC 8725 §3.1: a key
is bound to its algorithm). The allowed algorithms of a key are

* its JWK ``alg`` when present (``Ed25519`` per RFC 9864 is treated like ``EdDSA``), or
* derived from the key type: RSA → ``RS256/384/512`` and ``PS256/384/512``;
  EC P-256 → ``ES256``, P-384 → ``ES384``, P-521 → ``ES512``; OKP Ed25519 → ``EdDSA``
  and ``Ed25519``;

intersected with the verifier's allow-list. Refused, whatever the configuration:
symmetric keys (``kty: oct``) and ``HS*``/``none`` (a public key is never an HMAC
secret, RFC 8725 §2.1), RSA moduli under 2048 bits (RFC 7518 §3.3), keys with ``use``
other than ``sig`` or ``key_ops`` without ``verify``, keys carrying private members
(a published private key is compromised), Ed448 and unknown curves. ``x5c``/``x5t``
members are ignored, never trusted.

A key from a fetched JWKS that is refused is skipped with a warning (the other keys of
the set stay usable); a refused *static* key is a :class:`ConfigurationError`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._jose import JOSEError, b64url_decode, b64url_encode
from scopegate._jsonstrict import StrictJSONError, loads_object

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "KeySet",
    "UnusableKeyError",
    "VerificationKey",
    "Verify",
    "check_algorithms",
    "jwk_thumbprint",
    "load_static_keys",
    "parse_jwk",
    "parse_jwks",
    "public_jwk",
]

logger = logging.getLogger("scopegate.keys")

#: Asymmetric JWS algorithms scopegate can verify (RFC 7518 §3, RFC 8037, RFC 9864).
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(
    {
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
        "EdDSA",
        "Ed25519",
    }
)
MIN_RSA_BITS = 2048

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}
_HASHLIB: dict[str, Callable[[bytes], Any]] = {
    "256": hashlib.sha256,
    "384": hashlib.sha384,
    "512": hashlib.sha512,
}
_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, str]] = {
    # crv: (curve, coordinate length in bytes, its algorithm) - RFC 7518 §3.4, §6.2.1
    "P-256": (ec.SECP256R1, 32, "ES256"),
    "P-384": (ec.SECP384R1, 48, "ES384"),
    "P-521": (ec.SECP521R1, 66, "ES512"),
}
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_OKP_ALGS = frozenset({"EdDSA", "Ed25519"})
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

#: One key's signature check for one algorithm: ``verify(signing_input, signature)``.
Verify = Callable[[bytes, bytes], bool]


# RFC 7638 §3.2: the members a thumbprint covers, per key type.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}


def public_jwk(
    key: rsa.RSAPrivateKey
    | rsa.RSAPublicKey
    | ec.EllipticCurvePrivateKey
    | ec.EllipticCurvePublicKey
    | ed25519.Ed25519PrivateKey
    | ed25519.Ed25519PublicKey,
) -> dict[str, Any]:
    """The public JWK (RFC 7517) of an RSA, EC or Ed25519 key, without ``kid``/``alg``.

    A private key is reduced to its public half first, so private members can never be
    exported. Shared by the issuer's JWKS and the testing kit.
    """
    public = (
        key.public_key()
        if isinstance(
            key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
        )
        else key
    )
    jwk: dict[str, Any]
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        raise ConfigurationError("only RSA, EC and Ed25519 keys have a JWK form here")
    jwk = dict(jwk)  # a fresh dict the caller may extend
    # "use" is what we publish; RFC 7517 §4.3 advises against combining it with key_ops.
    jwk.pop("key_ops", None)
    return jwk


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of *jwk*, base64url without padding."""
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url_encode(hashlib.sha256(canonical).digest())


class UnusableKeyError(ValueError):
    """A key cannot be used for verification; the message is fixed library text."""


def check_algorithms(algorithms: Iterable[str]) -> frozenset[str]:
    """Validate a configured algorithm allow-list.

    Raises:
        ConfigurationError: Empty, or an algorithm that is symmetric, ``none`` or unknown.
    """
    if isinstance(algorithms, str):
        raise ConfigurationError("algorithms must be a sequence of names, not a string")
    algs = frozenset(algorithms)
    if not algs:
        raise ConfigurationError("algorithms must not be empty")
    for alg in sorted(algs):
        if alg.lower() == "none" or alg.upper().startswith("HS"):
            raise ConfigurationError(
                f"algorithm {alg!r} is refused: only asymmetric algorithms verify access "
                "tokens (RFC 8725 §2.1)"
            )
        if alg not in SUPPORTED_ALGORITHMS:
            raise ConfigurationError(
                f"unsupported algorithm {alg!r}; choose from {sorted(SUPPORTED_ALGORITHMS)}"
            )
    return algs


# The signing input is hashed with hashlib and the digest handed over as Prehashed: the
# same check, cheaper than letting cryptography hash it (timeit, best of 5 on the bench
# machine: RS256 2048-bit 14.30 -> 14.06 µs, ES256 41.0 -> 40.5 µs per signature).
def _rsa_verifier(key: rsa.RSAPublicKey, alg: str) -> Verify:
    digest = _HASHES[alg[2:]]
    new_hash = _HASHLIB[alg[2:]]
    prehashed = Prehashed(digest)
    pad: padding.AsymmetricPadding
    if alg.startswith("PS"):
        # RFC 7518 §3.5: MGF1 with the same hash, salt as long as the hash output.
        pad = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
    else:
        pad = padding.PKCS1v15()

    def verify(message: bytes, signature: bytes) -> bool:
        try:
            key.verify(signature, new_hash(message).digest(), pad, prehashed)
        except InvalidSignature:
            return False
        return True

    return verify


# DER headers by length: INTEGER (P-521's R and S take up to 67 bytes) and SEQUENCE
# (over 127 bytes: the one-byte long form).
_DER_INTEGER = tuple(b"\x02" + bytes((n,)) for n in range(68))
_DER_SEQUENCE = tuple(b"\x30" + (b"\x81" if n > 127 else b"") + bytes((n,)) for n in range(256))


def _der_signature(signature: bytes, size: int) -> bytes:
    """The DER ``ECDSA-Sig-Value`` of a JWS ECDSA signature R || S (RFC 7518 §3.4).

    Minimal DER as ``encode_dss_signature`` writes it (leading zeros dropped, a zero byte
    before a set high bit), built from the bytes: 0.26 µs against 0.75 µs through two
    ints and cryptography's encoder (timeit on the bench machine).
    """
    r = signature[:size].lstrip(b"\x00")
    s = signature[size:].lstrip(b"\x00")
    if not r or r[0] > 0x7F:
        r = b"\x00" + r
    if not s or s[0] > 0x7F:
        s = b"\x00" + s
    body = _DER_INTEGER[len(r)] + r + _DER_INTEGER[len(s)] + s
    return _DER_SEQUENCE[len(body)] + body


def _ec_verifier(key: ec.EllipticCurvePublicKey, alg: str, size: int) -> Verify:
    new_hash = _HASHLIB[alg[2:]]
    scheme = ec.ECDSA(Prehashed(_HASHES[alg[2:]]))

    def verify(message: bytes, signature: bytes) -> bool:
        # RFC 7518 §3.4: the JWS signature is R || S, each exactly *size* bytes.
        if len(signature) != 2 * size:
            return False
        try:
            key.verify(_der_signature(signature, size), new_hash(message).digest(), scheme)
        except InvalidSignature:
            return False
        return True

    return verify


def _ed25519_verifier(key: ed25519.Ed25519PublicKey) -> Verify:
    def verify(message: bytes, signature: bytes) -> bool:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True

    return verify


@dataclass(frozen=True, eq=False, slots=True)
class VerificationKey:
    """A parsed public key bound to the algorithms it may verify.

    Attributes:
        kid: The JWK ``kid`` (``None`` for a PEM key or a JWK without one).
        algorithms: The algorithms this key verifies (already intersected with the
            verifier's allow-list); never empty.
        public_key: The ``cryptography`` public key object.
        fingerprint: Identity of the key material and its binding, used to keep the
            same object across JWKS refreshes.
    """

    kid: str | None
    algorithms: frozenset[str]
    public_key: Any = field(repr=False)
    fingerprint: tuple[Any, ...] = field(repr=False)
    _verifiers: Mapping[str, Verify] = field(repr=False, default_factory=dict)

    def verify(self, alg: str, message: bytes, signature: bytes) -> bool:
        """True when *signature* over *message* is valid for *alg* with this key."""
        verifier = self._verifiers.get(alg)
        return verifier is not None and verifier(message, signature)

    def verifier(self, alg: str) -> Verify | None:
        """This key's check for *alg* (``verifier(message, signature) -> bool``), or
        ``None`` when the key does not verify *alg*: for a caller that keeps it and
        checks many signatures (one call less each than :meth:`verify`)."""
        return self._verifiers.get(alg)


def _b64int(value: Any) -> int:
    return int.from_bytes(_b64bytes(value), "big")


def _b64bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise UnusableKeyError("key member is not a base64url string")
    try:
        # Lenient about unused trailing bits: key material from real servers is not
        # always canonically encoded, and the value decoded is the same either way.
        return b64url_decode(value, canonical=False)
    except JOSEError as exc:
        raise UnusableKeyError("key member is not base64url") from exc


def _bind(
    kid: str | None,
    public_key: Any,
    candidates: frozenset[str],
    declared: str | None,
    allowed: frozenset[str],
    fingerprint: tuple[Any, ...],
) -> VerificationKey:
    if declared is not None:
        if declared not in candidates:
            raise UnusableKeyError("key alg does not match its key type")
        algs = frozenset({declared}) & allowed
    else:
        algs = candidates & allowed
    if not algs:
        raise UnusableKeyError("key allows no configured algorithm")
    verifiers: dict[str, Verify] = {}
    for alg in algs:
        if isinstance(public_key, rsa.RSAPublicKey):
            verifiers[alg] = _rsa_verifier(public_key, alg)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            verifiers[alg] = _ec_verifier(public_key, alg, (public_key.curve.key_size + 7) // 8)
        else:
            verifiers[alg] = _ed25519_verifier(public_key)
    return VerificationKey(kid, algs, public_key, (*fingerprint, algs), verifiers)


def _check_rsa(key: rsa.RSAPublicKey) -> None:
    if key.key_size < MIN_RSA_BITS:
        raise UnusableKeyError("RSA key shorter than 2048 bits")


def parse_jwk(jwk: Mapping[str, Any], allowed: frozenset[str]) -> VerificationKey:
    """Parse one public JWK (RFC 7517 §4) into a :class:`VerificationKey`.

    Args:
        jwk: The JWK object.
        allowed: The verifier's algorithm allow-list.

    Raises:
        UnusableKeyError: The key is refused (see the module docstring).
    """
    if not isinstance(jwk, Mapping):
        raise UnusableKeyError("JWK is not an object")
    kty = jwk.get("kty")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKeyError("JWK kid is not a string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKeyError("JWK use is not sig")
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        raise UnusableKeyError("JWK key_ops does not allow verify")
    declared = jwk.get("alg")
    if declared is not None and not isinstance(declared, str):
        raise UnusableKeyError("JWK alg is not a string")
    if kty == "oct" or (
        declared is not None and (declared.upper().startswith("HS") or declared.lower() == "none")
    ):
        raise UnusableKeyError("symmetric keys are never used to verify access tokens")
    if any(member in jwk for member in _PRIVATE_MEMBERS):
        raise UnusableKeyError("JWK contains private key material")
    try:
        if kty == "RSA":
            n, e = _b64int(jwk.get("n")), _b64int(jwk.get("e"))
            if e < 3 or e % 2 == 0:
                raise UnusableKeyError("RSA exponent is invalid")
            if n.bit_length() < MIN_RSA_BITS:
                raise UnusableKeyError("RSA key shorter than 2048 bits")
            public_key: Any = rsa.RSAPublicNumbers(e, n).public_key()
            return _bind(kid, public_key, _RSA_ALGS, declared, allowed, ("RSA", kid, n, e))
        if kty == "EC":
            crv = jwk.get("crv")
            if not isinstance(crv, str) or crv not in _CURVES:
                raise UnusableKeyError("unsupported EC curve")
            curve, size, alg = _CURVES[crv]
            x, y = _b64bytes(jwk.get("x")), _b64bytes(jwk.get("y"))
            if len(x) != size or len(y) != size:
                raise UnusableKeyError("EC coordinates have the wrong length")
            # from_encoded_point checks that the point is on the curve.
            public_key = ec.EllipticCurvePublicKey.from_encoded_point(curve(), b"\x04" + x + y)
            return _bind(
                kid, public_key, frozenset({alg}), declared, allowed, ("EC", kid, crv, x, y)
            )
        if kty == "OKP":
            if jwk.get("crv") != "Ed25519":
                raise UnusableKeyError("unsupported OKP curve")
            x = _b64bytes(jwk.get("x"))
            if len(x) != 32:
                raise UnusableKeyError("Ed25519 key has the wrong length")
            if declared not in (None, "EdDSA", "Ed25519"):
                raise UnusableKeyError("key alg does not match its key type")
            public_key = ed25519.Ed25519PublicKey.from_public_bytes(x)
            # RFC 9864: for an Ed25519 key, EdDSA and Ed25519 name the same algorithm.
            return _bind(kid, public_key, _OKP_ALGS, None, allowed, ("OKP", kid, x))
    except UnusableKeyError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:
        raise UnusableKeyError("key material is invalid") from exc
    raise UnusableKeyError("unsupported key type")


class KeySet:
    """An immutable set of verification keys with exact ``kid`` lookup.

    Duplicate ``kid`` values are kept (RFC 7517 §4.5 only says SHOULD be unique); a
    token naming such a kid is accepted only when exactly one of them allows its alg.
    A key without a ``kid`` answers a token's unknown kid when it is the only kid-less
    key allowing the alg (a PEM key configured for an AS that sends kids).
    """

    __slots__ = ("_anonymous", "_by_kid", "_exact", "_members", "keys")

    def __init__(self, keys: Iterable[VerificationKey]) -> None:
        self.keys: tuple[VerificationKey, ...] = tuple(keys)
        by_kid: dict[str, list[VerificationKey]] = {}
        for key in self.keys:
            if key.kid is not None:
                by_kid.setdefault(key.kid, []).append(key)
        self._by_kid = {kid: tuple(group) for kid, group in by_kid.items()}
        self._anonymous = tuple(key for key in self.keys if key.kid is None)
        self._members = frozenset(id(key) for key in self.keys)
        # Every (kid, alg) that find() answers with one key, precomputed: a token's lookup
        # is then one dict probe. Unknown kids still take the full path below.
        exact: dict[tuple[str | None, str], VerificationKey] = {}
        algs = {alg for key in self.keys for alg in key.algorithms}
        for alg in algs:
            for kid, group in (*self._by_kid.items(), (None, self.keys)):
                matches = [key for key in group if alg in key.algorithms]
                if len(matches) == 1:
                    exact[kid, alg] = matches[0]
        self._exact = exact

    def __len__(self) -> int:
        return len(self.keys)

    def __contains__(self, key: object) -> bool:
        # Identity, not equality: the same object survives refreshes when unchanged.
        # The caller holds *key*, so its id cannot have been reused by another object.
        return id(key) in self._members

    def has_kid(self, kid: str) -> bool:
        """True when some key carries *kid*."""
        return kid in self._by_kid

    def find(self, kid: str | None, alg: str, *, anonymous: bool = False) -> VerificationKey | None:
        """The key for a token header's *kid* and *alg*.

        Args:
            kid: The header's kid, or ``None``.
            alg: The header's alg.
            anonymous: For a kid no key carries, answer with the one key published
                without a kid that allows *alg* (a PEM key configured for an AS that
                sends kids). A fetched set asks this only after a refresh did not
                bring the kid, so a key without kid never hides a newly published one.

        Returns:
            The key, or ``None`` when *kid* is not in the set (the caller may refresh).

        Raises:
            InvalidTokenError: The kid is known but no single key of it allows *alg*
                (``key_alg_mismatch`` / ``ambiguous_key``), or the token has no kid and
                not exactly one key allows *alg* (``unknown_key`` / ``ambiguous_key``).
        """
        found = self._exact.get((kid, alg))
        if found is not None:
            return found
        if kid is None:
            # RFC 7515 §4.1.4: without a kid only an unambiguous key may be used; trying
            # every key would multiply the work of a forged token.
            matches = [key for key in self.keys if alg in key.algorithms]
        else:
            group = self._by_kid.get(kid)
            if group is None:
                if not anonymous:
                    return None
                matches = [key for key in self._anonymous if alg in key.algorithms]
                if not matches:
                    return None
                if len(matches) > 1:
                    raise InvalidTokenError(reason="ambiguous_key")
                return matches[0]
            matches = [key for key in group if alg in key.algorithms]
            if not matches:
                raise InvalidTokenError(reason="key_alg_mismatch")
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise InvalidTokenError(reason="unknown_key")
        raise InvalidTokenError(reason="ambiguous_key")

    def reuse(self, previous: KeySet | None) -> KeySet:
        """This set with unchanged keys replaced by their objects in *previous*."""
        if previous is None:
            return self
        old = {key.fingerprint: key for key in previous.keys}
        return KeySet(old.get(key.fingerprint, key) for key in self.keys)


def parse_jwks(document: Mapping[str, Any], allowed: frozenset[str]) -> KeySet:
    """Parse a JWK Set (RFC 7517 §5) fetched from an authorization server.

    Unusable keys are skipped with a warning naming their ``kid`` and the fixed reason.

    Raises:
        UnusableKeyError: ``keys`` is missing or not a list, or no key is usable.
    """
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise UnusableKeyError("JWKS has no keys array")
    keys: list[VerificationKey] = []
    for entry in entries:
        try:
            keys.append(parse_jwk(entry, allowed))
        except UnusableKeyError as exc:
            kid = entry.get("kid") if isinstance(entry, Mapping) else None
            logger.warning(
                "skipping JWKS key kid=%r: %s", kid if isinstance(kid, str) else None, exc
            )
    if not keys:
        raise UnusableKeyError("JWKS contains no usable key")
    return KeySet(keys)


def _pem_key(data: bytes, allowed: frozenset[str]) -> VerificationKey:
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            from cryptography import x509

            public_key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            public_key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        if b"PRIVATE KEY" in data:
            raise ConfigurationError(
                "a private key was given; pass the public key (or a certificate)"
            ) from exc
        raise ConfigurationError("the PEM public key could not be parsed") from exc
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            _check_rsa(public_key)
            nums = public_key.public_numbers()
            return _bind(None, public_key, _RSA_ALGS, None, allowed, ("RSA", None, nums.n, nums.e))
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            for crv, (curve, _size, alg) in _CURVES.items():
                if isinstance(public_key.curve, curve):
                    point = public_key.public_bytes(
                        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                    )
                    return _bind(
                        None, public_key, frozenset({alg}), None, allowed, ("EC", None, crv, point)
                    )
            raise UnusableKeyError("unsupported EC curve")
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            raw = public_key.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            return _bind(None, public_key, _OKP_ALGS, None, allowed, ("OKP", None, raw))
    except UnusableKeyError as exc:
        raise ConfigurationError(f"static key refused: {exc}") from exc
    raise ConfigurationError("static key refused: unsupported key type")


def _static_one(item: Any, allowed: frozenset[str]) -> list[VerificationKey]:
    if isinstance(item, str | bytes):
        data = item.encode() if isinstance(item, str) else item
        if data.lstrip().startswith(b"{"):
            try:
                return _static_one(loads_object(data), allowed)
            except StrictJSONError as exc:
                raise ConfigurationError("the static JWK/JWKS is not valid JSON") from exc
        return [_pem_key(data, allowed)]
    if isinstance(item, Mapping):
        try:
            if "keys" in item:
                entries = item["keys"]
                if not isinstance(entries, list):
                    raise ConfigurationError("static JWKS: keys must be a list")
                return [parse_jwk(entry, allowed) for entry in entries]
            return [parse_jwk(item, allowed)]
        except UnusableKeyError as exc:
            raise ConfigurationError(f"static key refused: {exc}") from exc
    raise ConfigurationError("keys must be PEM text, a JWK, a JWKS or a list of those")


def load_static_keys(
    keys: str | bytes | Mapping[str, Any] | Sequence[Any], allowed: frozenset[str]
) -> KeySet:
    """Parse statically configured keys; no network is ever used.

    Args:
        keys: A PEM public key or certificate (``str``/``bytes``), a JWK or JWKS (a
            mapping or its JSON text), or a list of any of those.
        allowed: The verifier's algorithm allow-list.

    Raises:
        ConfigurationError: Any key is refused, or none is given.
    """
    items = (
        list(keys) if isinstance(keys, Sequence) and not isinstance(keys, str | bytes) else [keys]
    )
    parsed: list[VerificationKey] = []
    for item in items:
        parsed.extend(_static_one(item, allowed))
    if not parsed:
        raise ConfigurationError("no static key given")
    return KeySet(parsed)


class StaticKeys:
    """A key source over a fixed :class:`KeySet` (no network)."""

    __slots__ = ("keyset",)

    def __init__(self, keyset: KeySet) -> None:
        self.keyset = keyset

    def get(self, kid: str | None, alg: str) -> VerificationKey:
        """The key for *kid*/*alg*; an unknown kid is ``unknown_key``."""
        key = self.keyset.find(kid, alg, anonymous=True)
        if key is None:
            raise InvalidTokenError(reason="unknown_key")
        return key

    def lookup(self, kid: str | None, alg: str) -> VerificationKey:
        """Same as :meth:`get`: static keys never need a fetch."""
        return self.get(kid, alg)

    def key_flow(self, kid: str | None, alg: str) -> Generator[Any, Any, VerificationKey]:
        """Same as :meth:`get`, as a flow that never waits (the key-source protocol)."""
        key = self.get(kid, alg)
        yield from ()  # waits for nothing; only makes this function a generator
        return key

    async def aget(self, kid: str | None, alg: str) -> VerificationKey:
        """Async twin of :meth:`get`."""
        return self.get(kid, alg)

    def current(self) -> KeySet | None:
        """The keys in use."""
        return self.keyset

    def close(self) -> None:
        """Nothing to release."""

    async def aclose(self) -> None:
        """Nothing to release."""
