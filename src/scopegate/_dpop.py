"""DPoP (RFC 9449): proofs of possession for sender-constrained access tokens.

A DPoP-bound access token carries the thumbprint of the client's key (``cnf.jkt``,
RFC 9449 §6). The client presents it as ``Authorization: DPoP <token>`` with one
``DPoP`` header holding a *proof*: a short JWT signed with that key, naming the request's
method and URL, when it was made, a unique ``jti``, and the hash of the token. A stolen
token is useless without the key; a stolen proof is useless for any other request.

:class:`ProofVerifier` checks a proof statelessly (RFC 9449 §4.3): ``typ`` ``dpop+jwt``;
an asymmetric ``alg`` from the allow-list; a public ``jwk`` only; the key the verified
token is bound to, when there is one (``cnf.jkt``, :func:`check_binding`); claims of at
most 4 KiB; the signature; a flat claims object; ``htm`` equal to the method; ``htu``
equal to the request URL without query and fragment, both normalised per RFC 3986
§6.2.2-6.2.3; ``iat`` within the accepted window; ``ath`` equal to the token's hash; the
server's nonce when one is required. The guard verifies the token first, and records the
``jti`` in a :class:`ReplayStore` last (so only holders of a valid bound token make it
read a proof's claims or write to the store): :class:`MemoryReplayStore` for one process,
:class:`RedisReplayStore` for many. A replay store that cannot answer fails closed
(503), never accepts a proof unchecked.

Every failure of a proof is :class:`~scopegate.InvalidDPoPProofError` (401
``invalid_dpop_proof``) with a fixed reason code::

    dpop_missing          no DPoP header with an Authorization: DPoP token
    dpop_multiple         more than one DPoP header
    dpop_too_long         the proof is over max_proof_length, or its claims over 4 KiB
    dpop_malformed        not a compact JWS of strict JSON objects
    dpop_type             typ is not dpop+jwt
    dpop_alg              alg missing, symmetric, none, or not allowed
    dpop_key              jwk missing, private, or not usable for alg
    dpop_signature        the signature does not verify
    dpop_claims           jti, htm, htu or iat missing or mistyped, or nested claims
    dpop_method           htm is not the request method
    dpop_url              htu is not the request URL
    dpop_iat              iat outside the accepted window
    dpop_ath              ath missing or not the token's hash
    dpop_replayed         this jti was already used with this key
    dpop_nonce            (use_dpop_nonce) the nonce is missing or stale
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from scopegate._cache import BoundedDict, RedisConnection
from scopegate._errors import (
    ConfigurationError,
    InvalidDPoPProofError,
    InvalidTokenError,
    ServiceUnavailableError,
    UseDPoPNonceError,
)
from scopegate._flow import ClientOwner, Flow
from scopegate._jose import (
    MAX_HEADER_LENGTH,
    JOSEError,
    b64url_decode,
    b64url_encode,
    is_numeric_date,
    split_compact,
)
from scopegate._jsonstrict import StrictJSONError, TooDeepError, loads_object
from scopegate._keys import (
    SUPPORTED_ALGORITHMS,
    UnusableKeyError,
    Verify,
    check_algorithms,
    jwk_thumbprint,
    parse_jwk,
)
from scopegate._settings import number, whole
from scopegate._token import AccessToken

__all__ = [
    "DPoPPolicy",
    "MemoryReplayStore",
    "NonceSource",
    "Proof",
    "ProofVerifier",
    "RedisReplayStore",
    "ReplayStore",
    "access_token_hash",
    "check_binding",
    "normalize_url",
]

DEFAULT_ALGORITHMS = ("ES256", "EdDSA", "RS256", "PS256")
_PROOF_TYPE = "dpop+jwt"
_MAX_JTI = 256  # RFC 9449 §4.2 asks for >= 96 bits; anything longer is junk
#: Longest claims segment of a proof, in characters (3 KiB of JSON): jti, htm, htu (a URL
#: without its query), iat, ath and a nonce fit many times over.
_MAX_CLAIMS_SEGMENT = 4096
_HEADER_CACHE = 1024
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _fail(reason: str) -> InvalidDPoPProofError:
    return InvalidDPoPProofError(reason=reason)


def check_binding(token: AccessToken, jkt: str | None = None) -> AccessToken:
    """Enforce how a token was presented against what it is bound to.

    A token bound to a DPoP key (``cnf.jkt``, RFC 9449 §6) is accepted only with a proof
    made with that key (*jkt*, the proof key's RFC 7638 thumbprint); presented as a
    plain Bearer token it is refused, so a stolen bound token is useless. A token that
    is not bound is refused when a proof was required for it.

    Raises:
        InvalidTokenError: ``sender_constrained`` or ``dpop_binding``.
    """
    bound = token.jkt
    if bound is None and jkt is None:
        return token
    if jkt is None:
        raise InvalidTokenError(reason="sender_constrained")
    if bound != jkt:
        raise InvalidTokenError(reason="dpop_binding")
    return token


def access_token_hash(token: str) -> str:
    """``ath``: base64url SHA-256 of the access token's ASCII (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(token.encode("ascii")).digest())


def _normalize_path(path: str) -> str:
    # RFC 3986 §6.2.2.2: percent-encoding of unreserved characters is decoded, other
    # escapes are upper-cased; §6.2.2.3: dot segments removed; §6.2.3: empty path is "/".
    parts: list[str] = []
    for segment in path.split("/"):
        decoded = unquote(segment, errors="strict")
        parts.append(quote(decoded, safe="!$&'()*+,;=:@-._~"))
    out: list[str] = []
    for segment in parts[1:]:
        if segment == ".":
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        out.append(segment)
    return "/" + "/".join(out)


def normalize_url(url: str) -> str:
    """*url* without query and fragment, normalised for comparison (RFC 3986 §6.2.2-6.2.3).

    Scheme and host are lower-cased, a default port is dropped, percent-encodings are
    made canonical, dot segments are removed and an empty path becomes ``/``. ``ws``
    and ``wss`` compare as ``http`` and ``https`` (a WebSocket handshake is an HTTP GET).

    Raises:
        ValueError: Not an absolute http(s)/ws(s) URL.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = (parts.hostname or "").lower()
    if scheme not in ("http", "https") or not host:
        raise ValueError("not an absolute http(s) URL")
    port = parts.port
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, _normalize_path(parts.path or "/"), "", ""))


class Proof(NamedTuple):
    """A proof that passed every stateless check.

    Attributes:
        jkt: The RFC 7638 thumbprint of the proof's key (compared with ``cnf.jkt``).
        jti: The proof's unique identifier (recorded by the replay store).
        iat: When it was made (the replay entry lives until ``iat + max_age``).
    """

    jkt: str
    jti: str
    iat: float


@runtime_checkable
class ReplayStore(Protocol):
    """Remembers which proofs were used, for as long as they could be replayed."""

    def first_use_flow(self, key: str, ttl: float) -> Flow[bool]:
        """True when *key* is seen for the first time (and is now recorded for *ttl* s).

        The guard's keys are ``"<jkt>:<jti>"``: the proof key's thumbprint and the
        proof's ``jti``, at most 300 characters.

        Raises:
            ServiceUnavailableError: The store cannot answer (the request fails closed).
        """
        ...


class MemoryReplayStore:
    """Used proofs in this process (bounded).

    When the store is full of entries that may still be replayed, a new proof is refused
    with 503 rather than forgetting one of them (forgetting would open a replay window).

    Args:
        maxsize: Most proofs remembered (at a 60 s window, 100,000 is 1,600 DPoP
            requests a second per process).
        timer: Monotonic seconds (tests).
    """

    __slots__ = ("_data", "_lock", "_timer", "maxsize")

    def __init__(
        self, maxsize: int = 100_000, *, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.maxsize = whole("maxsize", maxsize, low=1)
        self._timer = timer
        self._data: dict[str, float] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._data)

    def first_use(self, key: str, ttl: float) -> bool:
        """True when *key* was not seen within its lifetime; records it."""
        now = self._timer()
        data = self._data
        with self._lock:
            expires = data.get(key)
            if expires is not None and expires > now:
                return False
            if len(data) >= self.maxsize:
                # Insertion order is expiry order (one window for all): drop the dead.
                for old in list(data):
                    if data[old] > now:
                        break
                    del data[old]
                if len(data) >= self.maxsize:
                    raise ServiceUnavailableError(reason="dpop_replay_store_full", retry_after=1)
            data.pop(key, None)
            data[key] = now + ttl
        return True

    def first_use_flow(self, key: str, ttl: float) -> Flow[bool]:
        """See :class:`ReplayStore` (answers without waiting)."""
        first = self.first_use(key, ttl)
        yield from ()
        return first


class RedisReplayStore(ClientOwner):
    """Used proofs shared by every process through Redis (``SET NX PX``).

    Args:
        url: ``redis://`` URL, or give *connection* (a shared
            :class:`~scopegate.RedisConnection`).
        prefix: Key namespace.

    A Redis error fails the request closed with 503 (``dpop_replay_unavailable``).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        connection: RedisConnection | None = None,
        prefix: str = "scopegate:dpop:",
    ) -> None:
        if connection is None:
            connection = self._owned = RedisConnection(url, purpose="DPoP replay store")
        self.redis = connection
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"RedisReplayStore(prefix={self.prefix!r})"

    def first_use_flow(self, key: str, ttl: float) -> Flow[bool]:
        """See :class:`ReplayStore`."""
        redis = self.redis
        if not redis.available():
            raise ServiceUnavailableError(reason="dpop_replay_unavailable", retry_after=2)
        px = max(1, math.ceil(ttl * 1000))
        try:
            # A fixed-size Redis key (160 bits of SHA-256), whatever the jti's length.
            name = self.prefix + hashlib.sha256(key.encode()).hexdigest()[:40]
            taken = yield redis.command("SET", name, b"1", "NX", "PX", px)
        except redis.errors as exc:
            redis.failed(exc)
            raise ServiceUnavailableError(reason="dpop_replay_unavailable", retry_after=2) from exc
        redis.recovered()
        return bool(taken)


class NonceSource:
    """Server-provided DPoP nonces (RFC 9449 §8), rotating every *period* seconds.

    A nonce is an HMAC of the current period: processes that share *secret* agree on it
    without shared state. The current and the previous nonce are accepted, so a rotation
    does not break requests in flight.

    Args:
        secret: Key of the HMAC (random when omitted: one process only).
        period: Seconds a nonce is handed out.
        clock: Unix seconds.
    """

    __slots__ = ("_clock", "_secret", "period")

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        period: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
            raise ConfigurationError("the DPoP nonce secret must be at least 16 bytes")
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.period = number("period", period, low_open=True)
        self._clock = clock

    def _nonce(self, step: int) -> str:
        digest = hmac.new(self._secret, str(step).encode(), hashlib.sha256).digest()
        return b64url_encode(digest[:18])

    def current(self) -> str:
        """The nonce to hand out now (``DPoP-Nonce``)."""
        return self._nonce(int(self._clock() // self.period))

    def accepts(self, nonce: object) -> bool:
        """True for the current or the previous period's nonce."""
        if not isinstance(nonce, str):
            return False
        step = int(self._clock() // self.period)
        return any(hmac.compare_digest(nonce, self._nonce(s)) for s in (step, step - 1))


@dataclass(frozen=True, slots=True, kw_only=True)
class DPoPPolicy:
    """How a guard accepts DPoP (RFC 9449).

    Attributes:
        mode: ``"allowed"`` (Bearer or DPoP) or ``"required"`` (DPoP only).
        algorithms: Proof signature algorithms accepted (asymmetric only).
        max_age: Seconds after its ``iat`` a proof is accepted (the replay window).
        leeway: Seconds a proof's ``iat`` may lie in the future (clock skew).
        replay: Where used proofs are remembered (a :class:`MemoryReplayStore` by
            default; a :class:`RedisReplayStore` for several processes).
        nonce: Require server nonces (:class:`NonceSource`), or ``None``.
        max_proof_length: Longest proof accepted, in characters.
    """

    mode: Literal["allowed", "required"] = "allowed"
    algorithms: Sequence[str] = DEFAULT_ALGORITHMS
    max_age: float = 60
    leeway: float = 5
    replay: ReplayStore = field(default_factory=MemoryReplayStore)
    nonce: NonceSource | None = None
    max_proof_length: int = 8192

    def __post_init__(self) -> None:
        if self.mode not in ("allowed", "required"):
            raise ConfigurationError("dpop mode must be 'allowed' or 'required'")
        object.__setattr__(self, "algorithms", tuple(sorted(check_algorithms(self.algorithms))))
        number("max_age", self.max_age, low_open=True, high=3600)
        number("leeway", self.leeway, high=300)
        whole("max_proof_length", self.max_proof_length, low=256)
        if not isinstance(self.replay, ReplayStore):
            raise ConfigurationError("replay must be a ReplayStore")
        if self.nonce is not None and not isinstance(self.nonce, NonceSource):
            raise ConfigurationError("nonce must be a NonceSource")

    @property
    def algs(self) -> str:
        """The ``algs`` parameter of the DPoP challenge (RFC 9449 §7.1)."""
        return " ".join(self.algorithms)


class ProofVerifier:
    """The stateless checks of RFC 9449 §4.3 for one policy (the guard owns one).

    Proof headers repeat (a client signs every proof with the same key): a header that
    passed its checks is remembered by its exact bytes with its parsed key, so a repeat
    costs one dict lookup instead of a JWK parse.
    """

    __slots__ = ("_headers", "allowed", "policy")

    def __init__(self, policy: DPoPPolicy) -> None:
        self.policy = policy
        self.allowed = frozenset(policy.algorithms) & SUPPORTED_ALGORITHMS
        self._headers: BoundedDict[bytes, tuple[Verify, str]] = BoundedDict(_HEADER_CACHE)

    def check(
        self,
        proof: str,
        *,
        method: str,
        url: str,
        token: str | None,
        now: float,
        bound: AccessToken | None = None,
    ) -> Proof:
        """Check *proof* for a request with *method* to *url* presenting *token*.

        Args:
            token: The access token the proof accompanies (its hash must be the proof's
                ``ath``); ``None`` for a token request, which presents no access token
                (RFC 9449 §5: ``ath`` is not checked there).
            bound: The verified access token: the proof's key must be the one it is
                bound to (:func:`check_binding`), checked before the proof's signature
                and claims are read.

        Raises:
            InvalidDPoPProofError: Any defect (see the module's reason codes).
            InvalidTokenError: ``dpop_binding``: the proof is not made with *bound*'s key.
            UseDPoPNonceError: A nonce is required and missing or stale.
        """
        policy = self.policy
        if len(proof) > policy.max_proof_length:
            raise _fail("dpop_too_long")
        try:
            raw, first, second = split_compact(proof, policy.max_proof_length)
        except JOSEError:
            raise _fail("dpop_malformed") from None
        header_segment = raw[:first]
        known = self._headers.get(header_segment)
        if known is None:
            known = self._header(header_segment)
            self._headers.put(header_segment, known)
        verify, jkt = known
        if bound is not None:
            check_binding(bound, jkt)
        if second - first > _MAX_CLAIMS_SEGMENT:
            raise _fail("dpop_too_long")
        try:
            payload = b64url_decode(raw[first + 1 : second])
            signature = b64url_decode(raw[second + 1 :])
        except JOSEError:
            raise _fail("dpop_malformed") from None
        if not verify(raw[:second], signature):
            raise _fail("dpop_signature")
        try:
            # Anyone can sign a proof (with a key of their own), and at a token endpoint
            # no one is known before it: its claims are scalars (RFC 9449 §4.2), so with
            # max_depth=1 a nested document is refused by counting brackets before the
            # parser reads it (brackets in strings, an IPv6 htu, are fine). With the size
            # cap, the costliest claims cost about a proof signature to read
            # (tests/core/test_hostile_tokens.py), not 10x.
            claims = loads_object(payload, max_depth=1)
        except TooDeepError:
            raise _fail("dpop_claims") from None
        except StrictJSONError:
            raise _fail("dpop_malformed") from None
        get: Callable[[str], Any] = claims.get
        jti, htm, htu, iat = get("jti"), get("htm"), get("htu"), get("iat")
        if (
            type(jti) is not str
            or not 0 < len(jti) <= _MAX_JTI
            or type(htm) is not str
            or type(htu) is not str
            or len(htu) > 8192
            # One NumericDate rule (RFC 7519 §2): a 400-digit iat must not reach float
            # arithmetic (math.isfinite raised OverflowError on it: a 500).
            or not is_numeric_date(iat)
        ):
            raise _fail("dpop_claims")
        issued = float(iat)  # a NumericDate: an int or float in range
        if htm != method:
            raise _fail("dpop_method")
        # The exact string is the common case; normalisation only when it differs.
        if htu != url:
            try:
                if normalize_url(htu) != normalize_url(url):
                    raise _fail("dpop_url")
            except ValueError:
                raise _fail("dpop_url") from None
        if not now - policy.max_age <= issued <= now + policy.leeway:
            raise _fail("dpop_iat")
        if token is not None:
            ath = get("ath")
            if type(ath) is not str or not hmac.compare_digest(ath, access_token_hash(token)):
                raise _fail("dpop_ath")
        if policy.nonce is not None and not policy.nonce.accepts(get("nonce")):
            raise UseDPoPNonceError(nonce=policy.nonce.current())
        return tuple.__new__(Proof, (jkt, jti, issued))  # without Proof's Python __new__

    def record_flow(self, proof: Proof, now: float) -> Flow[None]:
        """Record *proof*'s single use in the policy's replay store (RFC 9449 §11.1).

        The entry is keyed by the key's thumbprint and the ``jti`` and lives as long as
        the proof could be accepted (``iat + max_age + leeway``).

        Raises:
            InvalidDPoPProofError: ``dpop_replayed``: this proof was used before.
            ServiceUnavailableError: The store cannot answer (fail closed).
        """
        policy = self.policy
        key = f"{proof.jkt}:{proof.jti}"  # a thumbprint has no ":"; at most 300 characters
        ttl = max(1.0, proof.iat + policy.max_age + policy.leeway - now)
        replay = policy.replay
        if type(replay) is MemoryReplayStore:
            # It answers at once: asked directly, without its flow's generator (0.2 µs
            # of a DPoP request; bench_dpop.py).
            first = replay.first_use(key, ttl)
        else:
            first = yield from replay.first_use_flow(key, ttl)
        if not first:
            raise _fail("dpop_replayed")

    def _header(self, segment: bytes) -> tuple[Verify, str]:
        """The signature check and the key's thumbprint of a proof header (cached by the
        caller: a client signs every proof with the same header)."""
        if len(segment) > MAX_HEADER_LENGTH:
            raise _fail("dpop_malformed")
        try:
            header = loads_object(b64url_decode(segment))
        except (JOSEError, StrictJSONError):
            raise _fail("dpop_malformed") from None
        if header.get("typ") != _PROOF_TYPE:
            raise _fail("dpop_type")
        alg = header.get("alg")
        if type(alg) is not str or alg not in self.allowed:
            raise _fail("dpop_alg")
        jwk: Any = header.get("jwk")
        if type(jwk) is not dict:
            raise _fail("dpop_key")
        try:
            # parse_jwk refuses private members, symmetric keys, weak RSA and a key that
            # does not fit the alg (RFC 9449 §4.3 items 5-7).
            key = parse_jwk(jwk, frozenset({alg}))
            jkt = jwk_thumbprint(jwk)
        except (UnusableKeyError, KeyError, TypeError, ValueError):
            raise _fail("dpop_key") from None
        verify = key.verifier(alg)
        if verify is None:
            raise _fail("dpop_key")
        return verify, jkt
