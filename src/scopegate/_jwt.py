"""JWT access-token verification (RFC 9068 profile, RFC 8725 best practices).

:class:`JWTVerifier` checks a compact JWS access token against the configured issuer's
keys and returns an :class:`~scopegate.AccessToken`. The pipeline:

1. **Shape** (:func:`scopegate._jose.split_compact`): at most ``max_token_length``
   characters, three non-empty segments. Each segment is strict base64url.
2. **Header**, parsed as strict JSON, then the header rules of the table in
   :mod:`scopegate._checks` (``alg`` allow-list, no ``crit``, no ``b64``/``zip``/
   ``cty``/``enc``, ``typ`` policy, ``kid`` shape). ``jku``, ``x5u``, ``jwk`` and ``x5c``
   are never used (RFC 8725 §3.10).
3. **Key**: only keys of the configured issuer (static, JWKS URL or discovery), exact
   ``kid`` lookup, the key must allow the header's ``alg`` (RFC 8725 §3.1).
4. **Signature** with ``cryptography``, before the payload is parsed.
5. **Claims**, parsed as strict JSON, then the claim rules of the table (required
   claims, types, ``iss``, ``aud``, ``exp``/``nbf``/``iat`` with leeway, lifetime, ``cnf``).
6. **Scopes** read through :class:`~scopegate.ScopeMapping` (RFC 6749 §3.3 characters),
   then ``claims_validator(claims)``.

Every step before the signature is linear in the token's length, so a crafted token
costs about what a bad signature costs. Every token defect raises
:class:`~scopegate.InvalidTokenError` with a fixed description and a ``reason`` code
from :data:`scopegate._checks.REASONS`; a key-set failure is
:class:`~scopegate.KeySetUnavailableError` (503), never a token error.
:meth:`JWTVerifier.explain` runs the same table check by check for diagnostics.

**Verified-token cache** (``cache_verified=True``): successful results are kept in a
:class:`~scopegate._cache.BoundedDict` keyed by the full token string (no hashing, no
collisions; a malleated twin is a different key, verified on its own). On every hit
``exp`` and ``nbf`` are checked against the clock again, and the entry is dropped when
its key is no longer in the current key set. ``claims_validator`` is not re-run on hits:
it must depend on the claims only.

**Clocks**: claims are judged on ``clock`` (Unix seconds, the wall clock); the key
caches' timers run on ``timer`` (monotonic), so stepping the wall clock neither keeps a
removed key alive nor delays a new one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from scopegate._cache import BoundedDict
from scopegate._checks import (
    LENIENT_TYP,
    STRICT_TYP,
    Policy,
    compile_checks,
    compile_explainers,
    invalid,
)
from scopegate._discovery import DiscoveryKind, ServerMetadata
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    KeySetUnavailableError,
)
from scopegate._flow import ClientOwner, Flow, HTTPRunner, arun, run
from scopegate._jose import (
    MAX_HEADER_LENGTH,
    MAX_TOKEN_LENGTH,
    JOSEError,
    b64url_decode,
    split_compact,
)
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._jwks import JWKSCache
from scopegate._keys import KeySet, StaticKeys, VerificationKey, check_algorithms, load_static_keys
from scopegate._settings import boolean, number, optional_number, strings, whole
from scopegate._token import DEFAULT_SCOPE_CLAIMS, AccessToken, ScopeMapping

__all__ = ["Check", "JWTVerifier"]

logger = logging.getLogger("scopegate.jwt")

MAX_LEEWAY = 300.0
DEFAULT_REQUIRED_CLAIMS = ("iss", "exp", "aud", "sub", "client_id", "iat", "jti")
# Tokens signed by one key share one header: a header that passed every header rule is
# remembered by its exact bytes (the rules depend on nothing else).
_HEADER_CACHE_SIZE = 256
_SCOPE_CACHE_SIZE = 1024
# Longest scope string memoised. A set of a few hundred scopes costs tens of KB in the
# memo, and a stream of distinct large strings then churns memory (a 500-scope string
# not seen before cost 2.1x a known one with the memo; see RESULTS.md). Larger strings
# are split per token, which costs what a miss did without the churn.
_SCOPE_MEMO_MAX_CHARS = 1024


class Check(NamedTuple):
    """One step of :meth:`JWTVerifier.explain`.

    Attributes:
        check: The step's name (a rule of :data:`scopegate._checks.RULES`, or one of
            ``format``, ``format_header``, ``format_signature``, ``key``, ``signature``,
            ``payload``, ``scope``, ``claims_validator``).
        passed: ``True``, ``False``, or ``None`` when the step could not be judged
            because an input it needs is itself invalid.
        reason: The reason code of a failure.
    """

    check: str
    passed: bool | None
    reason: str | None


class KeySource(Protocol):
    """Where a verifier's keys come from: static keys or a :class:`JWKSCache`."""

    def lookup(self, kid: str | None, alg: str) -> VerificationKey | None: ...
    def key_flow(self, kid: str | None, alg: str) -> Flow[VerificationKey]: ...
    def current(self) -> KeySet | None: ...
    def close(self) -> None: ...
    async def aclose(self) -> None: ...


# Verified-token cache entry: (token, exp, nbf or None, key). A plain tuple (see _Parsed).
# (token, exp, nbf, key, the key set the key was found in or None)
_Entry = tuple[AccessToken, float, float | None, VerificationKey, KeySet | None]
# (alg, kid, signing input, decoded payload bytes, signature): a plain tuple, built per
# request, is ten times cheaper than a NamedTuple. The payload is base64-decoded before
# the signature check (linear, and a precise "malformed"); it is parsed as JSON after.
_Parsed = tuple[str, str | None, bytes, bytes, bytes]

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
    setters = tuple(attrs[name].__set__ for name in names)
    set_subject, set_client, set_scopes, set_exp, set_claims, set_iss, set_token = setters
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


class JWTVerifier(ClientOwner):
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
        max_lifetime: Largest ``exp - iat`` accepted in seconds, or ``None`` (the
            default: authorization servers commonly issue tokens for days).
        required_claims: Claims that must be present (``exp`` always is; ``client_id``
            means one of ``client_id_claims``).
        typ: ``"strict"`` accepts ``at+jwt`` / ``application/at+jwt`` (RFC 9068 §4);
            ``"lenient"`` also ``JWT`` / ``application/jwt`` and a missing ``typ``.
        scope_claims: Claims (or dotted paths) read for scopes.
        client_id_claims: Claims read, in order, for the client id.
        claims_validator: Called with the claims after every built-in check; raises
            :class:`~scopegate.InvalidTokenError` to reject.
        jwks_ttl: Seconds fetched keys are used; see :class:`~scopegate._jwks.JWKSCache`.
        jwks_cooldown: Least seconds between refreshes for an unknown ``kid``.
        stale_if_error: Seconds past the TTL old keys serve while the JWKS is unreachable.
        http_timeout: Seconds per network phase when a private runner is made.
        runner: A shared :class:`~scopegate._flow.HTTPRunner` (not closed by us).
        cache_verified: Keep verified tokens in memory (``exp`` re-checked on hits).
        cache_size: Most tokens kept; when full, the oldest eighth is evicted.
        max_token_length: Longest token accepted, checked before anything else.
        clock: Unix seconds for the claim checks (tests inject a fake clock).
        timer: Monotonic seconds for the key caches' TTL and cooldown (tests).

    Raises:
        ConfigurationError: A missing, mistyped or unsafe setting (checked here, not per
            request).

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
        max_lifetime: float | None = None,
        required_claims: Sequence[str] = DEFAULT_REQUIRED_CLAIMS,
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
        max_token_length: int = MAX_TOKEN_LENGTH,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(issuer, str) or not issuer:
            raise ConfigurationError("issuer is required (the exact iss of your tokens)")
        self.issuer = issuer
        audiences: frozenset[str] | None
        if audience is None:
            audiences = None
        elif isinstance(audience, str):
            if not audience:
                raise ConfigurationError("audience must not be empty")
            audiences = frozenset({audience})
        else:
            audiences = frozenset(strings("audience", audience))
        self.audiences = audiences
        self.algorithms = check_algorithms(algorithms)
        self.leeway = number("leeway", leeway, high=MAX_LEEWAY)
        self.max_lifetime = optional_number("max_lifetime", max_lifetime, low_open=True)
        if typ not in ("strict", "lenient"):
            raise ConfigurationError("typ must be 'strict' or 'lenient'")
        self.typ = typ
        self.client_id_claims = strings("client_id_claims", client_id_claims)
        required = set(strings("required_claims", required_claims, empty=True)) | {"exp"}
        require_client_id = "client_id" in required
        required.discard("client_id")
        if audiences is None:
            required.discard("aud")
        else:
            required.add("aud")
        #: The effective required claims ("client_id" = one of client_id_claims).
        self.required_claims = frozenset(required) | (
            {"client_id"} if require_client_id else frozenset()
        )
        self.scope_mapping = ScopeMapping(scope_claims)
        names = self.scope_mapping.claims
        self._flat_scope_claims = None if any("." in n for n in names) else names
        self._scope_cache: BoundedDict[tuple[str | None, ...], frozenset[str]] = BoundedDict(
            _SCOPE_CACHE_SIZE
        )
        if claims_validator is not None and not callable(claims_validator):
            raise ConfigurationError("claims_validator must be callable")
        self.claims_validator = claims_validator
        self.max_token_length = whole("max_token_length", max_token_length, low=16)
        self._clock = clock
        self._cache_enabled = boolean("cache_verified", cache_verified) and (
            whole("cache_size", cache_size) > 0
        )
        self._cache: BoundedDict[str, _Entry] = BoundedDict(max(1, cache_size))
        self._headers: BoundedDict[bytes, tuple[str, str | None]] = BoundedDict(_HEADER_CACHE_SIZE)

        self.policy = Policy(
            algorithms=self.algorithms,
            typ_allowed=STRICT_TYP if typ == "strict" else LENIENT_TYP,
            typ_required=typ == "strict",
            issuer=issuer,
            audiences=audiences,
            leeway=self.leeway,
            max_lifetime=self.max_lifetime,
            required=frozenset(required),
            client_id_claims=self.client_id_claims,
            client_id_required=require_client_id,
        )
        self._check_header = compile_checks(self.policy, "header")
        self._check_claims = compile_checks(self.policy, "claims")

        if keys is not None and jwks_uri is not None:
            raise ConfigurationError("give either keys or jwks_uri, not both")
        self._runner = runner
        self.metadata: ServerMetadata | None = None
        self._source: KeySource
        if keys is not None:
            self._source = StaticKeys(load_static_keys(keys, self.algorithms))
            self._static = True
        else:
            if runner is None:
                self._runner = self._owned = HTTPRunner(
                    timeout=number("http_timeout", http_timeout, low_open=True)
                )
            if jwks_uri is None:
                self.metadata = ServerMetadata(
                    issuer,
                    kind=discovery,
                    runner=self._runner,
                    timer=timer,
                    retry_interval=min(number("jwks_cooldown", jwks_cooldown), 5.0),
                )
            self._source = JWKSCache(
                algorithms=self.algorithms,
                jwks_uri=jwks_uri,
                metadata=self.metadata,
                ttl=jwks_ttl,
                cooldown=jwks_cooldown,
                stale_if_error=stale_if_error,
                runner=self._runner,
                timer=timer,
            )
            self._static = False

    def __repr__(self) -> str:
        source = "static keys" if self._static else repr(self._source)
        return f"JWTVerifier(issuer={self.issuer!r}, audience={self.audiences!r}, {source})"

    @property
    def key_source(self) -> StaticKeys | JWKSCache:
        """The static keys or the :class:`~scopegate._jwks.JWKSCache` in use."""
        assert isinstance(self._source, StaticKeys | JWKSCache)
        return self._source

    # -- pipeline -------------------------------------------------------------------

    def _parse(
        self,
        token: str,
        payload: bytes | None = None,
        split: tuple[bytes, int, int] | None = None,
    ) -> _Parsed:
        if split is not None and len(token) <= self.max_token_length:
            # A router split the same token with the same function (under its own cap,
            # the largest of its verifiers'): 0.4 µs not spent twice.
            raw, first, second = split
        else:
            try:
                raw, first, second = split_compact(token, self.max_token_length)
            except JOSEError as exc:
                raise invalid("too_long" if str(exc) == "too long" else "malformed") from None
        header_segment = raw[:first]
        known = self._headers.get(header_segment)
        if known is None:
            if first > MAX_HEADER_LENGTH:
                raise invalid("malformed")
            header = _json(header_segment)
            self._check_header(header, 0.0)
            known = (header["alg"], header.get("kid"))
            self._headers.put(header_segment, known)
        try:
            # A router that looked for iss decoded the payload already (the same strict
            # decoder, the same bytes): decoding it again costs ~1 µs (bench_issuers.py).
            if payload is None:
                payload = b64url_decode(raw[first + 1 : second])
            signature = b64url_decode(raw[second + 1 :])
        except JOSEError:
            raise invalid("malformed") from None
        return known[0], known[1], raw[:second], payload, signature

    def _key_flow(self, parsed: _Parsed) -> Flow[VerificationKey]:
        try:
            key: VerificationKey = yield from self._source.key_flow(parsed[1], parsed[0])
        except BearerError:
            raise
        except Exception as exc:
            # A failure of the key source itself is an outage (503), never a token error.
            raise KeySetUnavailableError(reason="jwks_unavailable") from exc
        return key

    def _finish(self, parsed: _Parsed, key: VerificationKey, token: str) -> AccessToken:
        verify = key.verifier(parsed[0])
        if verify is None or not verify(parsed[2], parsed[4]):
            raise invalid("bad_signature")
        try:
            claims = loads_object(parsed[3])
        except StrictJSONError:
            raise invalid("malformed") from None
        self._check_claims(claims, self._clock())
        access = self._build(claims, token)
        if self.claims_validator is not None:
            self._run_validator(access.claims)
        if self._cache_enabled:
            # The key set the key was found in: while it is still the current one, a hit
            # needs no membership test (a refresh replaces the set object).
            keys = None if self._static else self._source.current()
            if keys is not None and key not in keys:
                keys = None
            self._cache.put(token, (access, claims["exp"], claims.get("nbf"), key, keys))
        return access

    def _scopes(self, claims: dict[str, Any]) -> frozenset[str]:
        # Scope claims repeat across tokens: when every configured scope claim is a
        # top-level string (or absent), the validated set is memoised by those strings.
        key: tuple[Any, ...] | None = None
        if self._flat_scope_claims is not None:
            key = tuple(map(claims.get, self._flat_scope_claims))
            try:
                found = self._scope_cache.get(key)
            except TypeError:  # a list value (e.g. scp) is unhashable: no memo
                found, key = None, None
            if found is not None:
                return found
            if key is not None and not all(
                v is None or (type(v) is str and len(v) <= _SCOPE_MEMO_MAX_CHARS) for v in key
            ):
                key = None
        scopes = self.scope_mapping.scopes(claims)  # RFC 6749 §3.3 characters checked
        if key is not None:
            self._scope_cache.put(key, scopes)
        return scopes

    def _build(self, claims: dict[str, Any], token: str) -> AccessToken:
        client_id = None
        for name in self.client_id_claims:
            client_id = claims.get(name)
            if client_id is not None:
                break
        return _new_token(
            claims.get("sub"),
            client_id,
            self._scopes(claims),
            math.floor(claims["exp"]),
            MappingProxyType(claims),
            claims.get("iss"),
            token,
        )

    def _run_validator(self, claims: Mapping[str, Any]) -> None:
        assert self.claims_validator is not None
        try:
            self.claims_validator(claims)
        except BearerError:
            raise
        except Exception as exc:
            # A bug in the hook must not let the token through; it is logged, not echoed.
            logger.error("claims_validator raised %s; token rejected", type(exc).__name__)
            raise invalid("claims_validator") from exc

    # -- verified-token cache -------------------------------------------------------

    def cached(self, token: str) -> AccessToken | None:
        """The verified token from the cache, or ``None`` (no I/O, never raises).

        Lets a caller skip creating a coroutine on a hit; ``exp``/``nbf`` and key
        presence are re-checked exactly as :meth:`verify` does.
        """
        if not self._cache_enabled:
            return None  # and the token's hash is not computed for nothing
        entry = self._cache.get(token)
        if entry is None:
            return None
        now = self._clock()
        leeway = self.leeway
        if (
            now < entry[1] + leeway
            and (entry[2] is None or entry[2] <= now + leeway)
            and (self._static or self._key_present(entry))
        ):
            return entry[0]
        self._cache.pop_if(token, entry)
        return None

    def _key_present(self, entry: _Entry) -> bool:
        current = self._source.current()
        return current is not None and (current is entry[4] or entry[3] in current)

    def clear_cache(self) -> None:
        """Forget every verified token."""
        self._cache.clear()

    # -- public API: one flow, two drivers ---------------------------------------------

    def verify(self, token: str) -> AccessToken:
        """Verify *token* (sync: threads, WSGI).

        Returns:
            The verified :class:`~scopegate.AccessToken`.

        Raises:
            InvalidTokenError: Any defect of the token (see the reason codes).
            KeySetUnavailableError: The keys cannot be fetched (503).
        """
        done = self._first(token)
        if not isinstance(done, tuple):
            return done
        return run(self._fetched_flow(done, token))

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`; key fetches never block the event loop."""
        done = self._first(token)
        if not isinstance(done, tuple):
            return done
        return await arun(self._fetched_flow(done, token))

    def _first(self, token: str) -> AccessToken | _Parsed:
        """The cached token, or the flow's first step called directly: a token whose key
        is in memory (all but the first after a rotation) is verified without creating
        the generator and driver (1.1 µs of the 8 µs around an RS256 signature;
        RESULTS.md). A parsed token (a tuple) needs :meth:`_fetched_flow` to fetch its key."""
        hit = self.cached(token) if self._cache_enabled else None
        return hit if hit is not None else self._attempt(token, None)

    def verify_flow(self, token: str) -> Flow[AccessToken]:
        """Verify *token* as a flow (either driver runs it; it waits only to fetch keys)."""
        return self._routed_flow(token, None, None)

    def _routed_flow(
        self, token: str, payload: bytes | None, split: tuple[bytes, int, int] | None
    ) -> Flow[AccessToken]:
        """:meth:`verify_flow` for :class:`~scopegate.IssuerRouter`, which split *token*
        and decoded its payload from the token's own bytes (to look for ``iss``): the
        payload is parsed only once the signature over those bytes verified. Private: a
        payload from anywhere else would be claims no signature covers."""
        done = self._attempt(token, payload, split)
        if not isinstance(done, tuple):
            return done
        verified: AccessToken = yield from self._fetched_flow(done, token)
        return verified

    def _attempt(
        self,
        token: str,
        payload: bytes | None,
        split: tuple[bytes, int, int] | None = None,
    ) -> AccessToken | _Parsed:
        """The verification when the token's key is in memory; else the parsed token,
        for :meth:`_fetched_flow` to finish once the key is fetched."""
        try:
            parsed = self._parse(token, payload, split)
            key = self._source.lookup(parsed[1], parsed[0])
            if key is None:
                return parsed
            return self._finish(parsed, key, token)
        except BearerError:
            raise
        except Exception as exc:
            # Fail closed: whatever slipped past the typed checks is a bad token, not a 500.
            raise invalid("malformed") from exc

    def _fetched_flow(self, parsed: _Parsed, token: str) -> Flow[AccessToken]:
        """Fetch the key *parsed* names, then finish the verification."""
        key = yield from self._key_flow(parsed)
        try:
            return self._finish(parsed, key, token)
        except BearerError:
            raise
        except Exception as exc:
            raise invalid("malformed") from exc

    def explain(self, token: str, *, fetch: bool = True) -> list[Check]:
        """Run every check on *token* and report each outcome (diagnostics only).

        Runs the same rule table as :meth:`verify`, one rule at a time, and keeps going
        after a failure where later checks still make sense (claims are reported even
        when the signature fails, so they are *unverified* then). The cache is not used.
        Never use the result to accept a token.

        Args:
            token: The raw token.
            fetch: Whether the key lookup may fetch the JWKS or the discovery document
                (sync). With ``False`` only keys already in memory are used (static
                keys, or a key set fetched before); when the key would need a fetch,
                ``key`` and ``signature`` are reported as not checked.

        Returns:
            :class:`Check` tuples in pipeline order.
        """
        results: list[Check] = []

        def attempt(name: str, fn: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
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

        ok, split = attempt("format", _split, token, self.max_token_length)
        if not ok:
            return results
        raw, first, second = split
        ok, header = attempt("format_header", _json, raw[:first])
        if not ok:
            return results
        header_ok = self._explain_rules(results, "header", header, 0.0)
        if header_ok:
            ok, parsed = attempt("format_signature", self._parse, token)
            if ok:
                ok, key = attempt("key", self._explain_key, parsed, fetch)
                if ok and key is None:
                    results[-1:] = [Check("key", None, None), Check("signature", None, None)]
                elif ok:
                    attempt("signature", _check_signature, parsed, key)
        ok, claims = attempt("payload", _json, raw[first + 1 : second])
        if not ok:
            return results
        self._explain_rules(results, "claims", claims, self._clock())
        ok, access = attempt("scope", self._build, claims, token)
        if ok and self.claims_validator is not None:
            attempt("claims_validator", self._run_validator, access.claims)
        return results

    def _explain_key(self, parsed: _Parsed, fetch: bool) -> VerificationKey | None:
        if fetch:
            return run(self._key_flow(parsed))
        return self._source.lookup(parsed[1], parsed[0])

    def _explain_rules(
        self, results: list[Check], part: Literal["header", "claims"], data: Any, now: float
    ) -> bool:
        passed = True
        for rule, fails, requires in compile_explainers(self.policy, part):
            if requires is not None and not requires(data, now):
                results.append(Check(rule.name, None, None))
                continue
            try:
                failed = fails(data, now)
            except Exception:
                failed = True
            results.append(Check(rule.name, not failed, rule.reason if failed else None))
            passed = passed and not failed
        return passed


def _json(segment: bytes) -> dict[str, Any]:
    try:
        return loads_object(b64url_decode(segment))
    except (JOSEError, StrictJSONError):
        raise invalid("malformed") from None


def _split(token: str, max_length: int) -> tuple[bytes, int, int]:
    try:
        raw, first, second = split_compact(token, max_length)
        for segment in (raw[:first], raw[first + 1 : second], raw[second + 1 :]):
            b64url_decode(segment)
    except JOSEError as exc:
        raise invalid("too_long" if str(exc) == "too long" else "malformed") from None
    if first > MAX_HEADER_LENGTH:
        raise invalid("malformed")
    return raw, first, second


def _check_signature(parsed: _Parsed, key: VerificationKey) -> None:
    if not key.verify(parsed[0], parsed[2], parsed[4]):
        raise invalid("bad_signature")
