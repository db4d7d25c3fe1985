"""JWT access-token verification (RFC 9068 profile, RFC 8725 best practices).

:class:`JWTVerifier` checks a compact JWS access token against the configured issuer's
keys and returns an :class:`~scopegate.AccessToken`. The pipeline, every step kept:

1. **Shape** (RFC 7515 §7.1): at most :data:`MAX_TOKEN_LENGTH` characters, exactly three
   non-empty segments of the base64url alphabet, no padding, canonical final character.
2. **Header**, parsed strictly (duplicate members, ``NaN``/``Infinity``, deep nesting
   and non-objects are refused): ``alg`` a string in the allow-list; no ``crit`` (we
   understand no extension, RFC 7515 §4.1.11); no ``b64``, ``zip``, ``cty``, ``enc``;
   ``typ`` per policy; ``kid`` absent or 1-256 printable ASCII characters. ``jku``,
   ``x5u``, ``jwk`` and ``x5c`` are never used (RFC 8725 §3.10).
3. **Key**: only keys of the configured issuer (static, JWKS URL or discovery), exact
   ``kid`` lookup, the key must allow the header's ``alg`` (RFC 8725 §3.1); without a
   ``kid`` exactly one key may match.
4. **Signature** with ``cryptography`` directly, before the payload is even decoded.
5. **Claims**, parsed strictly: required claims present (``exp`` always; ``aud`` when an
   audience is configured; ``client_id`` means the first of ``client_id_claims``);
   NumericDates are finite JSON numbers, never ``bool`` or strings; ``iss``, ``sub``,
   ``jti``, client id non-empty strings; ``aud`` a string or a list of strings;
   ``iss`` equals the issuer exactly; ``aud`` contains one of ours; ``exp``/``nbf``/
   ``iat`` against the clock with ``leeway``; ``exp - iat`` at most ``max_lifetime``;
   no ``cnf`` (a proof-of-possession token must not be accepted as a plain bearer
   token, RFC 9449 / RFC 8705); scope claims well-typed and RFC 6749 §3.3 characters.
6. ``claims_validator(claims)`` last; it raises :class:`~scopegate.InvalidTokenError`
   to reject.

Every token defect raises :class:`~scopegate.InvalidTokenError` with a fixed
description and one of these ``reason`` codes (stable; ``scopegate token inspect``
shows them)::

    too_long            longer than MAX_TOKEN_LENGTH
    malformed           not three base64url segments, or header/payload not a strict
                        JSON object (duplicates, NaN, too deep, invalid UTF-8)
    alg_not_allowed     alg missing, not a string, "none", or not in the allow-list
    crit                a crit header is present
    unsupported_header  b64, zip, cty or enc header present
    wrong_type          typ not allowed by the typ policy
    bad_kid             kid not a string of 1-256 printable ASCII characters
    unknown_key         no key with that kid (after a refresh), or no kid and no key
    ambiguous_key       no kid (or a duplicated kid) and several keys match the alg
    key_alg_mismatch    the kid's key does not allow the header alg
    bad_signature       the signature does not verify
    missing_claim       a required claim is absent
    bad_claim_type      a claim has the wrong JSON type (or an empty string)
    wrong_issuer        iss is not the configured issuer
    wrong_audience      aud does not contain the configured audience
    expired             exp + leeway is past
    not_yet_valid       nbf is later than now + leeway
    issued_in_future    iat is later than now + leeway
    lifetime            exp - iat (or exp - now without iat) exceeds max_lifetime
    sender_constrained  a cnf claim is present
    bad_scope_claim     a scope claim has the wrong type or invalid characters
    claims_validator    the claims_validator hook failed with an unexpected exception

A key-set failure is :class:`~scopegate.KeySetUnavailableError` (503), never one of the
above. :meth:`JWTVerifier.explain` runs the same check functions one by one and returns
``(check, passed, reason)`` triples for diagnostics.

**Verified-token cache** (``cache_verified=True``): successful results are kept in a
bounded dict keyed by the full token string (no hashing, no collisions; a malleated
twin is a different key verified on its own). On every hit ``exp`` and ``nbf`` are
checked against the clock again, and the entry is dropped when its key is no longer in
the current key set (a key removed from the JWKS stops its cached tokens at the next
refresh). ``claims_validator`` is not re-run on hits: it must depend on the claims only.

**Hot path**: keys are parsed once into ``cryptography`` objects with their padding and
hash prepared; a header segment that passed every header check is remembered by its
exact bytes (tokens of one key share it); validated scope sets are memoised by the
scope-claim strings; the claim checks run fused in one frame (:meth:`explain` runs the
same checks one by one, and a test holds the two to the same first reason); each
segment's alphabet is checked by the strict base64 decode itself, and the key for a
``(kid, alg)`` pair is one dict probe.
"""

from __future__ import annotations

import binascii
import dataclasses
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from math import isfinite
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from scopegate._discovery import DiscoveryKind, ServerMetadata
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    InvalidTokenError,
    KeySetUnavailableError,
)
from scopegate._flow import HTTPRunner
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._jwks import JWKSCache
from scopegate._keys import KeySet, StaticKeys, VerificationKey, check_algorithms, load_static_keys
from scopegate._token import DEFAULT_SCOPE_CLAIMS, AccessToken, ScopeMapping

__all__ = ["MAX_TOKEN_LENGTH", "Check", "JWTVerifier"]

logger = logging.getLogger("scopegate.jwt")

#: Longest token accepted, in characters (the bearer guard usually cuts earlier).
MAX_TOKEN_LENGTH = 16384
MAX_LEEWAY = 300.0

_TOKEN_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
# A final base64url character may carry unused bits; they must be zero (RFC 7515 §2,
# RFC 4648 §3.5), otherwise several strings decode to the same bytes.
_FINAL_2 = frozenset(b"AQgw")
_FINAL_3 = frozenset(b"AEIMQUYcgkosw048")
# _TAIL_OK[(len % 4) << 8 | last byte]: may a segment of that length end in that byte?
# (One index instead of three tests per segment.) len % 4 == 1 never decodes.
_TAIL_OK = bytes(
    rest == 0 or (rest == 2 and byte in _FINAL_2) or (rest == 3 and byte in _FINAL_3)
    for rest in range(4)
    for byte in range(256)
)
_PADDING = (b"", b"===", b"==", b"=")
_KID = re.compile(r"[\x20-\x7e]{1,256}")
_SCOPE_TEXT = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")
_STRICT_TYP = frozenset({"at+jwt", "application/at+jwt"})
_LENIENT_TYP = _STRICT_TYP | {"jwt", "application/jwt"}
_FORBIDDEN_HEADERS = ("b64", "zip", "cty", "enc")
_MISSING: Any = object()
# Tokens signed by one key share one header: a header that passed every check is
# remembered by its exact bytes (the checks depend on nothing else).
_HEADER_CACHE_SIZE = 256
_SCOPE_CACHE_SIZE = 1024


def _invalid(reason: str) -> InvalidTokenError:
    return InvalidTokenError(_DESCRIPTIONS.get(reason), reason=reason)


_DESCRIPTIONS = {
    "expired": "The access token has expired",
    "not_yet_valid": "The access token is not yet valid",
    "wrong_audience": "The access token is not intended for this resource",
    "bad_scope_claim": "The access token has a malformed scope claim",
}


class Check(NamedTuple):
    """One step of :meth:`JWTVerifier.explain`."""

    check: str
    passed: bool
    reason: str | None


class _KeySource(Protocol):
    def get(self, kid: str | None, alg: str) -> VerificationKey: ...
    async def aget(self, kid: str | None, alg: str) -> VerificationKey: ...
    def current(self) -> KeySet | None: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...


# Verified-token cache entry: (token, exp, nbf or None, key). A plain tuple (see _Parsed).
_Entry = tuple[AccessToken, float, float | None, VerificationKey]


# (alg, kid, signing input, decoded payload bytes, signature): a plain tuple, built per
# request, is ten times cheaper than a NamedTuple. The payload is only base64-decoded
# before the signature check; it is parsed as JSON after it.
_Parsed = tuple[str, str | None, bytes, bytes, bytes]


def _b64decode(segment: bytes) -> bytes:
    """Strict unpadded base64url (RFC 7515 §2): any other byte, padding included, fails."""
    rest = len(segment) & 3
    if not _TAIL_OK[rest << 8 | segment[-1]]:
        raise _invalid("malformed")
    try:
        # _TO_STD maps "+", "/" and "=" of the input to "!", which strict mode refuses
        # like every other byte outside the alphabet: the decode checks the alphabet.
        return binascii.a2b_base64(segment.translate(_TO_STD) + _PADDING[rest], strict_mode=True)
    except binascii.Error as exc:
        raise _invalid("malformed") from exc


def _segments(token: str) -> tuple[bytes, int, int]:
    """The token's ASCII bytes and the positions of its two dots (three non-empty parts).

    The alphabet of each part is checked when it is decoded (:func:`_b64decode`); a
    header found in the header cache is byte-identical to one that was.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise _invalid("too_long")
    if not token.isascii():
        raise _invalid("malformed")
    raw = token.encode("ascii")
    first = raw.find(b".")
    second = raw.find(b".", first + 1)
    if (
        first <= 0  # no dot, or an empty header
        or second <= first + 1  # one dot only, or an empty payload
        or second == len(raw) - 1  # an empty signature
        or raw.find(b".", second + 1) != -1  # more than three parts (JWE has five)
    ):
        raise _invalid("malformed")
    return raw, first, second


def _split(token: str) -> tuple[bytes, bytes, bytes, bytes]:
    raw, first, second = _segments(token)
    # explain() reports a foreign byte anywhere as a format failure up front.
    if raw.translate(None, _TOKEN_ALPHABET):
        raise _invalid("malformed")
    return raw, raw[:first], raw[first + 1 : second], raw[second + 1 :]


def _json(segment: bytes) -> dict[str, Any]:
    return _object(_b64decode(segment))


def _object(data: bytes) -> dict[str, Any]:
    try:
        return loads_object(data)
    except StrictJSONError as exc:
        raise _invalid("malformed") from exc


def _check_signature(parsed: _Parsed, key: VerificationKey) -> None:
    if not key.verify(parsed[0], parsed[2], parsed[4]):
        raise _invalid("bad_signature")


_TOKEN_FIELDS = ("subject", "client_id", "scopes", "expires_at", "claims", "issuer", "token")


def _token_factory(cls: type[AccessToken] = AccessToken) -> Callable[..., AccessToken]:
    """A positional AccessToken constructor that fills the slots directly.

    A frozen dataclass's ``__init__`` pays ``object.__setattr__`` by name for each of
    the seven fields; writing the slot descriptors is about half that, and this runs
    once per verified token. The shortcut is used only while AccessToken is exactly
    the plain slotted dataclass it was written for (same fields, no ``__post_init__``);
    otherwise the class itself is the constructor.
    """
    attrs = vars(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))
    if (
        names != _TOKEN_FIELDS
        or hasattr(cls, "__post_init__")
        or not all(hasattr(attrs.get(name), "__set__") for name in names)
    ):
        return cls
    set_subject, set_client, set_scopes, set_exp, set_claims, set_iss, set_token = (
        attrs[name].__set__ for name in names
    )
    new = object.__new__

    def make(
        subject: str | None,
        client_id: str | None,
        scopes: frozenset[str],
        expires_at: int | None,
        claims: Mapping[str, Any],
        issuer: str | None,
        token: str,
    ) -> AccessToken:
        access: AccessToken = new(cls)
        set_subject(access, subject)
        set_client(access, client_id)
        set_scopes(access, scopes)
        set_exp(access, expires_at)
        set_claims(access, claims)
        set_iss(access, issuer)
        set_token(access, token)
        return access

    return make


_new_token = _token_factory()


def _attempt(
    results: list[Check], name: str, fn: Callable[..., Any], *args: Any
) -> tuple[bool, Any]:
    """Run one check for :meth:`JWTVerifier.explain` and record its outcome."""
    try:
        value = fn(*args)
    except BearerError as exc:
        results.append(Check(name, False, exc.reason))
        return False, None
    except Exception:
        results.append(Check(name, False, "malformed"))
        return False, None
    results.append(Check(name, True, None))
    return True, value


def _is_numeric_date(value: Any) -> bool:
    kind = type(value)
    return kind is int or (kind is float and math.isfinite(value))


class JWTVerifier:
    """Verifies RFC 9068 JWT access tokens with the configured issuer's keys.

    Keys come from exactly one place: ``keys`` (static, never any network), ``jwks_uri``,
    or else discovery of the issuer's metadata (``discovery``).

    Args:
        issuer: The exact ``iss`` value expected; also the discovery base URL.
        audience: Our identifier(s); ``aud`` must contain one. ``None`` (explicitly)
            disables the audience check and requirement.
        jwks_uri: The JWKS URL (https; http only for loopback), skipping discovery.
        keys: Static keys: a PEM public key or certificate, a JWK, a JWKS (mapping or
            JSON text), or a list of those.
        discovery: ``"auto"`` (RFC 8414, then OIDC), ``"oauth"`` or ``"oidc"``.
        algorithms: The allow-list; asymmetric algorithms only.
        leeway: Clock skew tolerated, in seconds (0-300).
        max_lifetime: Largest ``exp - iat`` accepted, or ``None``.
        required_claims: Claims that must be present (``exp`` always is).
        typ: ``"strict"`` accepts ``at+jwt`` / ``application/at+jwt`` (RFC 9068 §4);
            ``"lenient"`` also ``JWT`` / ``application/jwt`` and a missing ``typ``.
        scope_claims: Claims (or dotted paths) read for scopes.
        client_id_claims: Claims read, in order, for the client id.
        claims_validator: Called with the claims after every built-in check; raises
            :class:`~scopegate.InvalidTokenError` to reject.
        jwks_ttl / jwks_cooldown / stale_if_error: See :class:`~scopegate._jwks.JWKSCache`.
        http_timeout: Seconds per network phase when a private runner is made.
        runner: A shared :class:`~scopegate._flow.HTTPRunner` (not closed by us).
        cache_verified: Keep verified tokens in memory (``exp`` re-checked on hits).
        cache_size: Most tokens kept; when full, the oldest eighth is evicted.
        clock: Unix seconds; also drives the JWKS timers (tests inject a fake clock).

    Raises:
        ConfigurationError: A missing or unsafe setting (checked here, not per request).

    Example::

        verifier = JWTVerifier(issuer="https://as.example", audience="api://orders")
        token = verifier.verify(raw)            # or: await verifier.averify(raw)
        token.has_scopes("orders:read")
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str | Sequence[str] | None,
        jwks_uri: str | None = None,
        keys: str | bytes | Mapping[str, Any] | Sequence[Any] | None = None,
        discovery: DiscoveryKind = "auto",
        algorithms: Sequence[str] = ("RS256", "PS256", "ES256", "EdDSA"),
        leeway: float = 60,
        max_lifetime: float | None = 86400,
        required_claims: Sequence[str] = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"),
        typ: Literal["strict", "lenient"] = "strict",
        scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS,
        client_id_claims: Sequence[str] = ("client_id",),
        claims_validator: Callable[[Mapping[str, Any]], None] | None = None,
        jwks_ttl: float = 600,
        jwks_cooldown: float = 30,
        stale_if_error: float = 86400,
        http_timeout: float = 5,
        runner: HTTPRunner | None = None,
        cache_verified: bool = True,
        cache_size: int = 10000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("issuer is required (the exact iss of your tokens)")
        self.issuer = issuer
        if isinstance(audience, str):
            audiences: frozenset[str] | None = frozenset({audience})
        elif audience is None:
            audiences = None
        else:
            audiences = frozenset(audience)
            if not audiences or not all(isinstance(a, str) and a for a in audiences):
                raise ConfigurationError("audience must be a non-empty string or strings")
        if audiences is not None and "" in audiences:
            raise ConfigurationError("audience must not be empty")
        self.audiences = audiences
        self.algorithms = check_algorithms(algorithms)
        if not 0 <= leeway <= MAX_LEEWAY:
            raise ConfigurationError("leeway must be between 0 and 300 seconds (RFC 9068 §4)")
        self.leeway = float(leeway)
        if max_lifetime is not None and not max_lifetime > 0:
            raise ConfigurationError("max_lifetime must be positive or None")
        self.max_lifetime = max_lifetime
        if typ not in ("strict", "lenient"):
            raise ConfigurationError("typ must be 'strict' or 'lenient'")
        self.typ = typ
        self._typ_allowed = _STRICT_TYP if typ == "strict" else _LENIENT_TYP
        if isinstance(client_id_claims, str) or not client_id_claims:
            raise ConfigurationError("client_id_claims must be a non-empty sequence of names")
        self.client_id_claims = tuple(client_id_claims)
        self._client_id_set = frozenset(self.client_id_claims)
        if isinstance(required_claims, str):
            raise ConfigurationError("required_claims must be a sequence of names")
        required = set(required_claims) | {"exp"}
        self._require_client_id = "client_id" in required
        required.discard("client_id")
        if audiences is None:
            required.discard("aud")
        else:
            required.add("aud")
        self._required = frozenset(required)
        #: The effective required claims ("client_id" = one of client_id_claims).
        self.required_claims = self._required | (
            {"client_id"} if self._require_client_id else frozenset()
        )
        self._string_claims = ("iss", "sub", "jti", *self.client_id_claims)
        self.scope_mapping = ScopeMapping(scope_claims)
        names = self.scope_mapping.claims
        self._flat_scope_claims = None if any("." in n for n in names) else names
        self._scope_cache: dict[tuple[str | None, ...], frozenset[str]] = {}
        self.claims_validator = claims_validator
        self._clock = clock
        if cache_size < 0:
            raise ConfigurationError("cache_size must be >= 0")
        self._cache_enabled = cache_verified and cache_size > 0
        self._cache_size = cache_size
        self._cache: dict[str, _Entry] = {}
        self._cache_lock = threading.Lock()
        self._headers: dict[bytes, tuple[str, str | None]] = {}

        self._own_runner = runner is None and keys is None
        sources = sum(x is not None for x in (keys, jwks_uri))
        if sources > 1:
            raise ConfigurationError("give either keys or jwks_uri, not both")
        self._source: _KeySource
        self.metadata: ServerMetadata | None = None
        if keys is not None:
            self._source = StaticKeys(load_static_keys(keys, self.algorithms))
            self._static = True
            self._runner = runner
        else:
            self._runner = runner if runner is not None else HTTPRunner(timeout=http_timeout)
            if jwks_uri is None:
                self.metadata = ServerMetadata(
                    issuer,
                    kind=discovery,
                    runner=self._runner,
                    clock=clock,
                    retry_interval=min(jwks_cooldown, 5.0),
                )
            self._source = JWKSCache(
                algorithms=self.algorithms,
                jwks_uri=jwks_uri,
                metadata=self.metadata,
                ttl=jwks_ttl,
                cooldown=jwks_cooldown,
                stale_if_error=stale_if_error,
                runner=self._runner,
                clock=clock,
            )
            self._static = False

        self._header_checks: tuple[tuple[str, Callable[[dict[str, Any]], None]], ...] = (
            ("alg", self._check_alg),
            ("crit", self._check_crit),
            ("header_members", self._check_header_members),
            ("typ", self._check_typ),
            ("kid", self._check_kid),
        )
        checks: list[tuple[str, Callable[[dict[str, Any], float], None]]] = [
            ("required_claims", self._check_required),
            ("claim_types", self._check_types),
            ("issuer", self._check_issuer),
        ]
        if audiences is not None:
            checks.append(("audience", self._check_audience))
        checks += [
            ("expiry", self._check_expiry),
            ("not_before", self._check_not_before),
            ("issued_at", self._check_issued_at),
        ]
        if max_lifetime is not None:
            checks.append(("lifetime", self._check_lifetime))
        checks.append(("confirmation", self._check_cnf))
        self._claim_checks = tuple(checks)

    def __repr__(self) -> str:
        source = "static keys" if self._static else repr(self._source)
        return f"JWTVerifier(issuer={self.issuer!r}, audience={self.audiences!r}, {source})"

    @property
    def key_source(self) -> StaticKeys | JWKSCache:
        """The static keys or the :class:`~scopegate._jwks.JWKSCache` in use."""
        assert isinstance(self._source, StaticKeys | JWKSCache)
        return self._source

    # -- header checks --------------------------------------------------------------

    def _check_alg(self, header: dict[str, Any]) -> None:
        alg = header.get("alg")
        # Membership in a set of str is exact and case-sensitive: "None"/"nOnE" fail too.
        if type(alg) is not str or alg not in self.algorithms:
            raise _invalid("alg_not_allowed")

    def _check_crit(self, header: dict[str, Any]) -> None:
        # RFC 7515 §4.1.11: we understand no extension, so any crit (even []) is fatal.
        if "crit" in header:
            raise _invalid("crit")

    def _check_header_members(self, header: dict[str, Any]) -> None:
        for name in _FORBIDDEN_HEADERS:
            if name in header:
                raise _invalid("unsupported_header")

    def _check_typ(self, header: dict[str, Any]) -> None:
        typ = header.get("typ", _MISSING)
        if typ is _MISSING:
            if self.typ == "strict":
                raise _invalid("wrong_type")
            return
        # RFC 7515 §4.1.9: media types compare case-insensitively.
        if type(typ) is not str or typ.lower() not in self._typ_allowed:
            raise _invalid("wrong_type")

    def _check_kid(self, header: dict[str, Any]) -> None:
        kid = header.get("kid")
        # kid is attacker-controlled: bounded, printable, only ever used as a dict key.
        if kid is not None and (type(kid) is not str or not _KID.fullmatch(kid)):
            raise _invalid("bad_kid")

    # -- claim checks ---------------------------------------------------------------

    def _check_required(self, claims: dict[str, Any], now: float) -> None:
        if not self._required <= claims.keys():
            raise _invalid("missing_claim")
        if self._require_client_id and not any(c in claims for c in self.client_id_claims):
            raise _invalid("missing_claim")

    def _check_types(self, claims: dict[str, Any], now: float) -> None:
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name, _MISSING)
            if value is not _MISSING and not _is_numeric_date(value):
                raise _invalid("bad_claim_type")
        for name in self._string_claims:
            value = claims.get(name, _MISSING)
            if value is not _MISSING and (type(value) is not str or not value):
                raise _invalid("bad_claim_type")
        aud = claims.get("aud", _MISSING)
        if aud is not _MISSING and not (
            (type(aud) is str and aud)
            or (type(aud) is list and aud and all(type(a) is str for a in aud))
        ):
            raise _invalid("bad_claim_type")

    def _check_issuer(self, claims: dict[str, Any], now: float) -> None:
        iss = claims.get("iss", _MISSING)
        # RFC 9068 §4: exact match, no normalisation (no trailing slash, no case folding).
        if iss is not _MISSING and iss != self.issuer:
            raise _invalid("wrong_issuer")

    def _check_audience(self, claims: dict[str, Any], now: float) -> None:
        aud = claims.get("aud")
        assert self.audiences is not None
        if type(aud) is str:
            if aud not in self.audiences:
                raise _invalid("wrong_audience")
        elif type(aud) is not list or self.audiences.isdisjoint(aud):
            raise _invalid("wrong_audience")

    def _check_expiry(self, claims: dict[str, Any], now: float) -> None:
        exp: Any = claims.get("exp")
        if not _is_numeric_date(exp):
            raise _invalid("missing_claim" if exp is None else "bad_claim_type")
        if now >= exp + self.leeway:
            raise _invalid("expired")

    def _check_not_before(self, claims: dict[str, Any], now: float) -> None:
        nbf = claims.get("nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise _invalid("not_yet_valid")

    def _check_issued_at(self, claims: dict[str, Any], now: float) -> None:
        iat = claims.get("iat")
        if iat is not None and iat > now + self.leeway:
            raise _invalid("issued_in_future")

    def _check_lifetime(self, claims: dict[str, Any], now: float) -> None:
        assert self.max_lifetime is not None
        exp = claims["exp"]
        iat = claims.get("iat")
        if iat is not None:
            too_long = exp - iat > self.max_lifetime
        else:
            too_long = exp - now > self.max_lifetime + self.leeway
        if too_long:
            raise _invalid("lifetime")

    def _check_claims(self, claims: dict[str, Any], now: float) -> None:
        """Every claim check of ``_claim_checks`` in one frame, same order, same reasons.

        The hot path runs this; :meth:`explain` runs the separate checks. A test
        asserts both give the same first reason for every corpus entry.
        """
        keys = claims.keys()
        if not keys >= self._required or (
            self._require_client_id and keys.isdisjoint(self._client_id_set)
        ):
            raise _invalid("missing_claim")
        exp: Any = claims.get("exp")
        iat = claims.get("iat", _MISSING)
        nbf = claims.get("nbf", _MISSING)
        # _is_numeric_date inlined for the three dates (a call each is measurable here).
        if (
            (type(exp) is not int and not (type(exp) is float and isfinite(exp)))
            or (
                iat is not _MISSING
                and type(iat) is not int
                and not (type(iat) is float and isfinite(iat))
            )
            or (
                nbf is not _MISSING
                and type(nbf) is not int
                and not (type(nbf) is float and isfinite(nbf))
            )
        ):
            raise _invalid("bad_claim_type")
        for name in self._string_claims:
            value = claims.get(name, _MISSING)
            if value is not _MISSING and (type(value) is not str or not value):
                raise _invalid("bad_claim_type")
        aud = claims.get("aud", _MISSING)
        if aud is not _MISSING and not (
            (type(aud) is str and aud)
            or (type(aud) is list and aud and all(type(a) is str for a in aud))
        ):
            raise _invalid("bad_claim_type")
        if "iss" in claims and claims["iss"] != self.issuer:
            raise _invalid("wrong_issuer")
        audiences = self.audiences
        if audiences is not None and (
            aud not in audiences if type(aud) is str else audiences.isdisjoint(aud)
        ):
            raise _invalid("wrong_audience")
        leeway = self.leeway
        if now >= exp + leeway:
            raise _invalid("expired")
        if nbf is not _MISSING and nbf > now + leeway:
            raise _invalid("not_yet_valid")
        if iat is not _MISSING and iat > now + leeway:
            raise _invalid("issued_in_future")
        max_lifetime = self.max_lifetime
        if max_lifetime is not None and (
            exp - iat > max_lifetime if iat is not _MISSING else exp - now > max_lifetime + leeway
        ):
            raise _invalid("lifetime")
        if "cnf" in claims:
            raise _invalid("sender_constrained")

    def _check_cnf(self, claims: dict[str, Any], now: float) -> None:
        # A sender-constrained token (DPoP / mTLS) sent as plain Bearer: fail closed.
        if "cnf" in claims:
            raise _invalid("sender_constrained")

    # -- pipeline -------------------------------------------------------------------

    def _parse(self, token: str) -> _Parsed:
        # _segments inlined (same checks, same order): one frame less per token.
        if len(token) > MAX_TOKEN_LENGTH:
            raise _invalid("too_long")
        if not token.isascii():
            raise _invalid("malformed")
        raw = token.encode("ascii")
        first = raw.find(b".")
        second = raw.find(b".", first + 1)
        if (
            first <= 0
            or second <= first + 1
            or second == len(raw) - 1
            or raw.find(b".", second + 1) != -1
        ):
            raise _invalid("malformed")
        header_b64 = raw[:first]
        known = self._headers.get(header_b64)
        if known is None:
            header = _json(header_b64)
            for _name, check in self._header_checks:
                check(header)
            known = (header["alg"], header.get("kid"))
            if len(self._headers) >= _HEADER_CACHE_SIZE:
                # Bounded against a flood of distinct headers; clearing is cheap and rare.
                self._headers.clear()
            self._headers[header_b64] = known
        return (
            known[0],
            known[1],
            raw[:second],
            _b64decode(raw[first + 1 : second]),
            _b64decode(raw[second + 1 :]),
        )

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        # Scope claims repeat across tokens: when every configured scope claim is a
        # top-level string (or absent), the validated set is memoised by those strings.
        key: tuple[Any, ...] | None = None
        if self._flat_scope_claims is not None:
            key = tuple(map(claims.get, self._flat_scope_claims))
            try:
                # Stored keys hold only str/None, so a hit means the same strings.
                found = self._scope_cache.get(key)
            except TypeError:  # a list value (e.g. scp) is unhashable: no memo
                found, key = None, None
            if found is not None:
                return found
            if key is not None and not all(v is None or type(v) is str for v in key):
                key = None
        scopes = self.scope_mapping.scopes(claims)
        if scopes and not _SCOPE_TEXT.fullmatch(" ".join(scopes)):
            # RFC 6749 §3.3 scope-token characters only.
            raise _invalid("bad_scope_claim")
        if key is not None:
            if len(self._scope_cache) >= _SCOPE_CACHE_SIZE:
                self._scope_cache.clear()
            self._scope_cache[key] = scopes
        return scopes

    def _build(self, claims: dict[str, Any], token: str) -> AccessToken:
        scopes = None
        if self._flat_scope_claims is not None:
            # The memo hit of _scopes, inlined (the usual case).
            try:
                scopes = self._scope_cache.get(tuple(map(claims.get, self._flat_scope_claims)))
            except TypeError:  # an unhashable (list) value: _scopes handles it
                scopes = None
        if scopes is None:
            scopes = self._scopes(claims)
        client_id = None
        for name in self.client_id_claims:
            client_id = claims.get(name)
            if client_id is not None:
                break
        return _new_token(
            claims.get("sub"),
            client_id,
            scopes,
            math.floor(claims["exp"]),
            MappingProxyType(claims),
            claims.get("iss"),
            token,
        )

    def _run_validator(self, claims: Mapping[str, Any]) -> None:
        if self.claims_validator is None:
            return
        try:
            self.claims_validator(claims)
        except BearerError:
            raise
        except Exception as exc:
            # A bug in the hook must not let the token through; it is logged, not echoed.
            logger.exception("claims_validator raised %s; token rejected", type(exc).__name__)
            raise _invalid("claims_validator") from exc

    def _finish(self, parsed: _Parsed, key: VerificationKey, token: str) -> AccessToken:
        # _check_signature inlined, with the key's per-alg verifier looked up directly:
        # Python frames are most of the cost above the signature itself.
        verifier = key._verifiers.get(parsed[0])
        if verifier is None or not verifier(parsed[2], parsed[4]):
            raise _invalid("bad_signature")
        try:
            claims = loads_object(parsed[3])
        except StrictJSONError as exc:
            raise _invalid("malformed") from exc
        self._check_claims(claims, self._clock())
        access = self._build(claims, token)
        if self.claims_validator is not None:
            self._run_validator(access.claims)
        if self._cache_enabled:
            self._remember(token, access, claims, key)
        return access

    # -- verified-token cache -------------------------------------------------------

    def cached(self, token: str) -> AccessToken | None:
        """The verified token from the cache, or ``None`` (no I/O, never raises).

        Lets a caller skip creating a coroutine on a hit; ``exp``/``nbf`` and key
        presence are re-checked exactly as :meth:`verify` does.
        """
        entry = self._cache.get(token)
        if entry is None:
            return None
        now = self._clock()
        if (
            now < entry[1] + self.leeway
            and (entry[2] is None or entry[2] <= now + self.leeway)
            and (self._static or self._key_present(entry[3]))
        ):
            return entry[0]
        # Under the lock: eviction iterates the dict, which a concurrent pop would break.
        with self._cache_lock:
            self._cache.pop(token, None)
        return None

    def _key_present(self, key: VerificationKey) -> bool:
        current = self._source.current()
        return current is not None and key in current

    def _remember(
        self, token: str, access: AccessToken, claims: dict[str, Any], key: VerificationKey
    ) -> None:
        entry: _Entry = (access, claims["exp"], claims.get("nbf"), key)
        with self._cache_lock:
            if len(self._cache) >= self._cache_size:
                # dicts keep insertion order: drop the oldest eighth in one pass. Evicting
                # one entry at a time would rescan the freed slots at the front each time.
                drop = max(1, self._cache_size // 8)
                for old in list(itertools.islice(self._cache, drop)):
                    del self._cache[old]
            self._cache[token] = entry

    def clear_cache(self) -> None:
        """Forget every verified token."""
        with self._cache_lock:
            self._cache.clear()

    # -- public API -----------------------------------------------------------------

    def verify(self, token: str) -> AccessToken:
        """Verify *token* (sync: threads, WSGI).

        Returns:
            The verified :class:`~scopegate.AccessToken`.

        Raises:
            InvalidTokenError: Any defect of the token (see the reason codes above).
            KeySetUnavailableError: The keys cannot be fetched (503).
        """
        if self._cache_enabled:
            hit = self.cached(token)
            if hit is not None:
                return hit
        try:
            parsed = self._parse(token)
            # _key inlined (see there): a key-source failure is an outage, not a token error.
            try:
                key = self._source.get(parsed[1], parsed[0])
            except BearerError:
                raise
            except Exception as exc:
                raise KeySetUnavailableError(reason="jwks_unavailable") from exc
            return self._finish(parsed, key, token)
        except BearerError:
            raise
        except Exception as exc:
            # Fail closed: whatever slipped past the typed checks is a bad token, not a 500.
            raise _invalid("malformed") from exc

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`; key fetches never block the event loop."""
        if self._cache_enabled:
            hit = self.cached(token)
            if hit is not None:
                return hit
        try:
            parsed = self._parse(token)
            try:
                key = await self._source.aget(parsed[1], parsed[0])
            except BearerError:
                raise
            except Exception as exc:
                raise KeySetUnavailableError(reason="jwks_unavailable") from exc
            return self._finish(parsed, key, token)
        except BearerError:
            raise
        except Exception as exc:
            raise _invalid("malformed") from exc

    def _key(self, parsed: _Parsed) -> VerificationKey:
        # A failure of the key source itself is an outage (503), never a token error.
        try:
            return self._source.get(parsed[1], parsed[0])
        except BearerError:
            raise
        except Exception as exc:
            raise KeySetUnavailableError(reason="jwks_unavailable") from exc

    def explain(self, token: str) -> list[Check]:
        """Run every check on *token* and report each outcome (diagnostics only).

        Uses the same check functions as :meth:`verify`, but keeps going after a
        failure where later checks still make sense (claims are reported even when the
        signature fails, so they are *unverified* then). The cache is not used. Key
        lookup may fetch the JWKS (sync). Never use the result to accept a token.

        Returns:
            ``Check(check, passed, reason)`` tuples in pipeline order; ``check`` names:
            ``format``, ``format_header``, ``alg``, ``crit``, ``header_members``, ``typ``,
            ``kid``, ``format_signature``, ``key``, ``signature``, ``payload``,
            ``required_claims``, ``claim_types``,
            ``issuer``, ``audience``, ``expiry``, ``not_before``, ``issued_at``,
            ``lifetime``, ``confirmation``, ``scope``, ``claims_validator``.
        """
        results: list[Check] = []
        ok, split = _attempt(results, "format", _split, token)
        if not ok:
            return results
        ok, header = _attempt(results, "format_header", _json, split[1])
        if not ok:
            return results
        header_ok = True
        for name, header_check in self._header_checks:
            header_ok &= _attempt(results, name, header_check, header)[0]
        if header_ok:
            ok, parsed = _attempt(results, "format_signature", self._parse, token)
            if ok:
                ok, key = _attempt(results, "key", self._key, parsed)
                if ok:
                    _attempt(results, "signature", _check_signature, parsed, key)
        ok, claims = _attempt(results, "payload", _json, split[2])
        if not ok:
            return results
        now = self._clock()
        for name, claim_check in self._claim_checks:
            _attempt(results, name, claim_check, claims, now)
        ok, access = _attempt(results, "scope", self._build, claims, token)
        if ok and self.claims_validator is not None:
            _attempt(results, "claims_validator", self._run_validator, access.claims)
        return results

    def close(self) -> None:
        """Close the private HTTP clients (a runner passed in is left open)."""
        if self._own_runner and self._runner is not None:
            self._runner.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        if self._own_runner and self._runner is not None:
            await self._runner.aclose()
