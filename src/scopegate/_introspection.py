"""Opaque access tokens checked by OAuth 2.0 Token Introspection (RFC 7662).

:class:`IntrospectionVerifier` asks the authorization server what a token means, reads
the answer strictly, and caches it so that one token costs one introspection per cache
lifetime, however many requests, threads, workers or hosts use it::

    verifier = IntrospectionVerifier(
        introspection_uri="https://as.example/oauth2/introspect",
        client_id="my-api", client_secret=secret,
        audience="https://api.example",
        cache=RedisCache("redis://cache:6379/0"),   # optional; memory by default
    )
    token = verifier.verify(raw)            # or: await verifier.averify(raw)
    if not token.has_scopes("items:read"): ...

What is enforced (RFC 7662 §2.2, §4; see also RFC 9700 §2.3):

* ``active`` must be the JSON literal ``true``; ``false`` is ``invalid_token``; anything
  else (missing, ``"true"``, ``1``) is a malformed answer.
* ``exp``, ``nbf`` and ``iat`` must be NumericDates from 1970 to the end of year 9999
  (anything else, e.g. ``10**400``, is a malformed answer) and are checked with
  ``leeway``; ``iss`` must equal the
  configured issuer and ``aud`` must name the configured audience when the response
  carries them; a ``token_type`` other than an access token (a refresh token sent as a
  bearer token) is refused, and ``DPoP`` is one only with the key it is bound to
  (``cnf.jkt``, RFC 9449 §6.2); the guard then accepts such a token only with a proof
  made with that key, never as a Bearer token.
* A malformed answer, a non-JSON or non-``application/json`` body, an oversized body, a
  redirect, a 401/403 (our credentials are wrong), a 5xx or a timeout is a 503 with
  ``Retry-After`` (:class:`~scopegate.IntrospectionUnavailableError`), never a 401 that
  would make clients throw good tokens away. Failures are logged on
  ``scopegate.introspection`` once per incident (WARNING with the reason code, ERROR
  for refused credentials; DEBUG while it lasts), the recovery at INFO, never with the
  token or a secret. With hooks, each call is an ``introspection`` record and each
  request's use of the cache a ``cache`` record (:mod:`scopegate._observe`).

Caching: the key is SHA-256 of the full token, partitioned by endpoint and client id.
A positive answer is kept for ``min(exp - now, cache_ttl)`` (``cache_ttl`` is the
revocation-delay budget), an inactive token for ``negative_ttl``; failures and rejected
answers are never cached. Concurrent requests for one uncached token share a single
introspection (threads and asyncio), and with a :class:`~scopegate.RedisCache` processes
share one too. Scopes are not part of what is cached as a decision: the caller checks
them on every request against the returned :class:`~scopegate.AccessToken`.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote_plus, urlencode

import httpx

from scopegate import _observe
from scopegate._bearer import is_b64token
from scopegate._cache import (
    CacheEntry,
    IntrospectionCache,
    MemoryCache,
    RedisCache,
    SharedIntrospectionCache,
)
from scopegate._checks import Policy, compile_checks
from scopegate._discovery import DiscoveryKind, ServerMetadata, check_endpoint_url, redacted
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    IntrospectionUnavailableError,
    InvalidTokenError,
)
from scopegate._flow import Call, Flight, Flow, HTTPRunner, ResponseTooLargeError, Sleep, arun, run
from scopegate._jose import MAX_TOKEN_LENGTH
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._settings import number, string
from scopegate._token import DEFAULT_SCOPE_CLAIMS, AccessToken, ScopeMapping

__all__ = ["IntrospectionVerifier", "basic_authorization"]

logger = logging.getLogger("scopegate.introspection")

AuthMethod = Literal["client_secret_basic", "client_secret_post"]

# RFC 7662 §2.2 token_type values that mean "an access token usable as a bearer token".
_ACCESS_TOKEN_TYPES = frozenset(
    {"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"}
)
# Members that must be strings when present, besides those the JWT rule table checks.
_STRING_MEMBERS = ("username", "token_type", "scope")
_MAX_RETRY_AFTER = 300

# A view memoised on a cache entry: owner, then the AccessToken fields derived from it.
_Fields = tuple[str | None, str | None, frozenset[str], int | None, Mapping[str, Any], str | None]


def basic_authorization(client_id: str, secret: str) -> str:
    """The ``Authorization`` value of ``client_secret_basic`` (RFC 6749 §2.3.1): each half
    is form-urlencoded before the Basic encoding."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


class IntrospectionVerifier:
    """Verifies opaque access tokens with RFC 7662 introspection, cached and coalesced.

    Args:
        introspection_uri: The introspection endpoint. When omitted, it is read from
            ``introspection_endpoint`` in the issuer's discovery metadata (RFC 8414).
        issuer: The expected ``iss`` (checked when the response carries one) and the
            issuer whose metadata is discovered when ``introspection_uri`` is omitted.
        client_id: This resource server's client id at the authorization server.
        client_secret: Its secret (never logged or shown in ``repr``).
        auth_method: ``"client_secret_basic"`` (HTTP Basic with form-urlencoded id and
            secret, RFC 6749 §2.3.1) or ``"client_secret_post"`` (form fields).
        audience: Accepted audience(s); when the response has ``aud``, it must name
            one of them. ``None`` skips the check.
        cache: Where answers are kept (:class:`~scopegate.MemoryCache` by default; a
            :class:`~scopegate.RedisCache` shares them between processes).
        cache_ttl: Longest time an active answer is reused, in seconds: the delay after
            which a token revoked at the AS stops being accepted (RFC 7662 §4).
        negative_ttl: How long an ``active: false`` answer is reused (0 disables).
        leeway: Clock skew tolerated on ``exp``, ``nbf`` and ``iat`` (0-300 s).
        scope_claims: Claims read for scopes, as for JWTs (see :class:`ScopeMapping`).
        http_timeout: Seconds per HTTP phase of the introspection call.
        runner: The :class:`~scopegate._flow.HTTPRunner` to use (one is made otherwise).
        discovery: Which metadata document to read when discovering the endpoint.
        clock: Unix time in seconds (tests inject one).

    Raises:
        ConfigurationError: A setting is missing or unsafe (e.g. an ``http`` endpoint
            that is not loopback).
    """

    def __init__(
        self,
        *,
        introspection_uri: str | None = None,
        issuer: str | None = None,
        client_id: str,
        client_secret: str,
        auth_method: AuthMethod = "client_secret_basic",
        audience: str | Sequence[str] | None = None,
        cache: IntrospectionCache | None = None,
        cache_ttl: float = 60,
        negative_ttl: float = 10,
        leeway: float = 60,
        scope_claims: Iterable[str] = DEFAULT_SCOPE_CLAIMS,
        http_timeout: float = 5,
        runner: HTTPRunner | None = None,
        discovery: DiscoveryKind = "auto",
        max_token_length: int = MAX_TOKEN_LENGTH,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (
            not isinstance(client_id, str)
            or not client_id
            or not isinstance(client_secret, str)
            or not client_secret
        ):
            raise ConfigurationError("introspection needs client_id and client_secret")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                "auth_method must be 'client_secret_basic' or 'client_secret_post'"
            )
        number("leeway", leeway, high=300)
        # Finite: the TTL becomes a Redis PX integer.
        number("cache_ttl", cache_ttl)
        number("negative_ttl", negative_ttl)
        number("http_timeout", http_timeout, low_open=True)
        if type(max_token_length) is not int or max_token_length < 16:
            raise ConfigurationError("max_token_length must be an integer of at least 16")
        if issuer is not None:
            string("issuer", issuer)
        if introspection_uri is not None and not check_endpoint_url(introspection_uri):
            raise ConfigurationError(
                "introspection_uri must be an https URL (http only for loopback hosts)"
            )
        if introspection_uri is None and issuer is None:
            raise ConfigurationError("give introspection_uri, or issuer to discover it")
        if isinstance(audience, str):
            audience = (audience,)
        self.introspection_uri = introspection_uri
        self.issuer = issuer
        self.client_id = client_id
        self.audience: frozenset[str] | None = None if audience is None else frozenset(audience)
        self.auth_method: AuthMethod = auth_method
        self.cache_ttl = float(cache_ttl)
        self.negative_ttl = float(negative_ttl)
        self.leeway = float(leeway)
        self.scope_mapping = ScopeMapping(scope_claims)
        self.max_token_length = max_token_length
        self._clock = clock
        # The answer's claims are judged by the JWT rule table (dates, types, iss, aud,
        # times, cnf): one definition of each rule for both kinds of token.
        self._check_claims = compile_checks(
            Policy(
                algorithms=frozenset(),
                typ_allowed=frozenset(),
                typ_required=False,
                issuer=issuer,
                audiences=self.audience,
                leeway=self.leeway,
                max_lifetime=None,
                required=frozenset(),
                client_id_claims=("client_id",),
                client_id_required=False,
            ),
            "claims",
        )
        self._own_runner = runner is None
        self._runner = runner if runner is not None else HTTPRunner(timeout=http_timeout)
        self._metadata: ServerMetadata | None = None
        if introspection_uri is None:
            assert issuer is not None
            self._metadata = ServerMetadata(
                issuer,
                kind=discovery,
                runner=self._runner,
                error=IntrospectionUnavailableError,
            )
        self._cache: IntrospectionCache = cache if cache is not None else MemoryCache()
        self._own_cache = False
        self._shared: SharedIntrospectionCache | None = (
            self._cache if isinstance(self._cache, SharedIntrospectionCache) else None
        )
        # A memory cache answers synchronously: the async hit path skips a coroutine.
        self._sync_cache = isinstance(self._cache, MemoryCache)
        backend = (
            "memory"
            if self._sync_cache
            else "redis"
            if isinstance(self._cache, RedisCache)
            else "other"
        )
        # The cache records, built once (a hit is the hot path of opaque tokens).
        self._hit = _observe.parts("cache", "hit", backend=backend)
        self._miss = _observe.parts("cache", "miss", backend=backend)
        where = (
            f"at {redacted(introspection_uri)}"
            if introspection_uri is not None
            else f"discovered from {redacted(issuer or '')}"
        )
        self._incident = _observe.Incident(logger, f"token introspection {where}")
        # Partition: one cache may serve verifiers of several endpoints or clients, and
        # an answer given to one of them must not be reused by another (attacks H-15).
        partition = f"{introspection_uri or ''}\n{issuer or ''}\n{client_id}".encode()
        self._prefix = hashlib.sha256(partition).hexdigest()[:16] + ":"
        self._headers = {
            "accept": "application/json",
            "content-type": "application/x-www-form-urlencoded",
        }
        self._form_auth: dict[str, str] = {}
        if auth_method == "client_secret_basic":
            self._headers["authorization"] = basic_authorization(client_id, client_secret)
        else:
            self._form_auth = {"client_id": client_id, "client_secret": client_secret}
        self._flight = Flight()

    def __repr__(self) -> str:
        where = self.introspection_uri or f"discovered from {self.issuer}"
        return f"IntrospectionVerifier({redacted(where) if self.introspection_uri else where})"

    # -- construction from the environment -----------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IntrospectionVerifier | None:
        """Build a verifier from ``SCOPEGATE_*`` variables, or ``None`` when not configured.

        See :func:`scopegate._config.introspection_from_env` (``SCOPEGATE_INTROSPECTION_*``,
        ``SCOPEGATE_ISSUER``, ``SCOPEGATE_AUDIENCE``, ``SCOPEGATE_REDIS_URL``).

        Raises:
            ConfigurationError: A variable is missing or invalid.
        """
        from scopegate._config import introspection_from_env

        verifier: IntrospectionVerifier | None = introspection_from_env(environ)
        return verifier

    # -- public API ----------------------------------------------------------------

    def verify(self, token: str) -> AccessToken:
        """Verify an opaque *token* (RFC 7662), from the cache when possible.

        Returns:
            The :class:`AccessToken`; check its scopes on every request.

        Raises:
            InvalidTokenError: Inactive, expired, not yet valid, for another audience or
                issuer, not an access token, or malformed.
            IntrospectionUnavailableError: The AS could not give a usable answer (503).
        """
        key = self._key(token)
        if self._sync_cache:
            hit = self._memory_hit(key, token)
            if hit is not None:
                return hit
        return run(self._after_memory_flow(token, key), self._runner)

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`; never blocks the event loop."""
        key = self._key(token)
        if self._sync_cache:
            hit = self._memory_hit(key, token)
            if hit is not None:
                return hit
        return await arun(self._after_memory_flow(token, key), self._runner)

    def cached(self, token: str) -> AccessToken | None:
        """The token from the in-memory cache, or ``None`` (no I/O, never raises)."""
        if not self._sync_cache:
            return None
        try:
            return self._memory_hit(self._key(token), token, probe=True)
        except BearerError:
            return None

    def _key(self, token: str) -> str:
        return self._prefix + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def _memory_hit(self, key: str, token: str, *, probe: bool = False) -> AccessToken | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        view = entry.view
        # Hot path (an in-memory hit this verifier already judged), inlined.
        if type(view) is tuple and view[0] is self and entry.until > self._clock():
            if _observe.HOOKS:
                _observe.emit_parts(self._hit)
            subject, client_id, scopes, expires_at, claims, issuer = view[1]
            return AccessToken(subject, client_id, scopes, expires_at, claims, issuer, token)
        if probe and not entry.active:
            return None  # a negative answer is reported when verify() gives it
        return self._used(entry, token)

    def _used(self, entry: CacheEntry, token: str) -> AccessToken | None:
        """:meth:`_use`, reported as a cache hit when the entry answered."""
        try:
            result = self._use(entry, token)
        except BearerError:  # a cached "inactive": the cache answered
            if _observe.HOOKS:
                _observe.emit_parts(self._hit)
            raise
        if result is not None and _observe.HOOKS:
            _observe.emit_parts(self._hit)
        return result

    def verify_flow(self, token: str, key: str | None = None) -> Flow[AccessToken]:
        """Verify *token* behind :meth:`cached` (either driver runs it).

        :meth:`cached` answers only what this verifier accepted; a cached negative
        answer ("inactive") is judged here, so it is never introspected again.
        """
        key = key or self._key(token)
        if self._sync_cache:
            entry = self._cache.get(key)
            hit = None if entry is None else self._used(entry, token)
            if hit is not None:
                return hit
        result: AccessToken = yield from self._after_memory_flow(token, key)
        return result

    def _after_memory_flow(self, token: str, key: str) -> Flow[AccessToken]:
        """Verify *token* once the in-memory cache (if any) has no answer: the shared
        cache, then one coalesced introspection."""
        if not self._sync_cache:
            entry = yield Call(self._cache.get, self._cache.aget, key)
            hit = None if entry is None else self._used(entry, token)
            if hit is not None:
                return hit
        self._check_format(token)
        if _observe.HOOKS:
            _observe.emit_parts(self._miss)
        fresh: AccessToken = yield self._flight.join(
            key, lambda: self._fill_flow(token, key), self._runner
        )
        return fresh

    def close(self) -> None:
        """Close the HTTP clients (and the cache when :meth:`from_env` made it)."""
        if self._own_runner:
            self._runner.close()
        if self._own_cache:
            close = getattr(self._cache, "close", None)
            if close is not None:
                close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`; call it on the loop that used the verifier."""
        if self._own_runner:
            await self._runner.aclose()
        if self._own_cache:
            aclose = getattr(self._cache, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- cache use -----------------------------------------------------------------

    def _use(self, entry: CacheEntry, token: str) -> AccessToken | None:
        """The token from a cached entry; ``None`` when the entry cannot be used."""
        if entry.until <= self._clock():
            return None
        if not entry.active:
            raise InvalidTokenError(reason="inactive")
        view = entry.view
        if type(view) is tuple and view[0] is self:
            fields: _Fields = view[1]
        else:
            try:
                fields = self._accept(entry.claims, self._clock(), log=False)
            except BearerError:
                # An entry written by another version or tampered with: ask the AS.
                return None
            entry.view = (self, fields)
        subject, client_id, scopes, expires_at, claims, issuer = fields
        return AccessToken(subject, client_id, scopes, expires_at, claims, issuer, token)

    def _check_format(self, token: str) -> None:
        # RFC 6750 §2.1 b64token only: anything else cannot be a bearer token, so it is
        # refused without asking the AS (RFC 7662 §4: do not help scanners fish).
        if len(token) > self.max_token_length:
            raise InvalidTokenError("The access token is too long", reason="too_long")
        if not is_b64token(token):
            raise InvalidTokenError(reason="malformed")

    def _fill_flow(self, token: str, key: str) -> Flow[AccessToken]:
        cache = self._cache
        # Another flight may have filled the entry between our miss and our turn.
        entry = yield Call(cache.get, cache.aget, key)
        if entry is not None and (result := self._use(entry, token)) is not None:
            return result
        handle = ""
        if self._shared is not None:
            result, handle = yield from self._peer_flow(self._shared, key, token)
            if result is not None:
                return result
        try:
            entry, ttl, outcome = yield from self._ask_flow(token)
            if entry is not None:
                yield Call(cache.set, cache.aset, key, entry, ttl)
        except Exception:
            yield from self._unlock_flow(key, handle)
            raise
        yield from self._unlock_flow(key, handle)
        if isinstance(outcome, BearerError):
            raise outcome
        return outcome

    def _ask_flow(
        self, token: str
    ) -> Flow[tuple[CacheEntry | None, float, AccessToken | BearerError]]:
        """One introspection call and its judgement, logged and reported."""
        started = _observe.timer()
        try:
            claims = yield from self._flow(token)
        except IntrospectionUnavailableError as exc:
            if _observe.HOOKS:
                duration = _observe.timer() - started
                _observe.report("introspection", "failed", exc.reason, duration)
            raise
        entry, ttl, outcome = self._conclude(claims, token)
        if isinstance(outcome, IntrospectionUnavailableError):
            result = "failed"
        else:
            self._incident.recovered()  # a usable answer, whatever it says
            result = "active" if claims["active"] is True else "inactive"
        if _observe.HOOKS:
            reason = outcome.reason if isinstance(outcome, BearerError) else None
            _observe.report("introspection", result, reason, _observe.timer() - started)
        return entry, ttl, outcome

    def _unlock_flow(self, key: str, handle: str) -> Flow[None]:
        # A release that never happens (a cancelled request) is harmless: the lock
        # expires by itself after lock_ttl.
        if handle and self._shared is not None:
            yield Call(self._shared.unlock, self._shared.aunlock, key, handle)

    def _peer_flow(
        self, cache: SharedIntrospectionCache, key: str, token: str
    ) -> Flow[tuple[AccessToken | None, str]]:
        """Wait for another process that is introspecting this token, within lock_wait.

        Returns its answer, or a lock handle when this process should introspect.
        """
        deadline = time.monotonic() + cache.lock_wait
        while True:
            handle = yield Call(cache.try_lock, cache.atry_lock, key)
            if handle:
                # The previous holder may have stored its answer and let go between our
                # miss and our lock: look once more before asking the AS.
                try:
                    entry = yield Call(cache.get, cache.aget, key)
                    result = None if entry is None else self._use(entry, token)
                except Exception:
                    yield from self._unlock_flow(key, handle)
                    raise
                if result is not None:
                    yield from self._unlock_flow(key, handle)
                    return result, ""
            if handle is not None:
                return None, handle
            if time.monotonic() >= deadline:
                return None, ""
            yield Sleep(cache.poll_interval)
            entry = yield Call(cache.get, cache.aget, key)
            if entry is not None and (result := self._use(entry, token)) is not None:
                return result, ""

    def _conclude(
        self, claims: dict[str, Any], token: str
    ) -> tuple[CacheEntry | None, float, AccessToken | BearerError]:
        """Judge a well-formed answer: what to cache, for how long, and the outcome."""
        now = self._clock()
        if claims["active"] is not True:
            # RFC 7662 §2.2: with active false the other members carry no meaning.
            error = InvalidTokenError(reason="inactive")
            if self.negative_ttl > 0:
                return CacheEntry(False, {}, now + self.negative_ttl), self.negative_ttl, error
            return None, 0.0, error
        try:
            fields = self._accept(claims, now, log=True)
        except BearerError as exc:
            return None, 0.0, exc
        ttl = self.cache_ttl
        exp = claims.get("exp")
        if exp is not None:
            ttl = min(ttl, exp - now)
        subject, client_id, scopes, expires_at, frozen_claims, issuer = fields
        result = AccessToken(subject, client_id, scopes, expires_at, frozen_claims, issuer, token)
        entry: CacheEntry | None = None
        if ttl > 0:
            entry = CacheEntry(True, claims, now + ttl)
            entry.view = (self, fields)
        return entry, ttl, result

    def _accept(self, claims: Mapping[str, Any], now: float, *, log: bool) -> _Fields:
        """Check an ``active: true`` answer; return the AccessToken fields.

        Raises:
            InvalidTokenError: The AS vouches for the token, but not for our use of it.
            IntrospectionUnavailableError: A member has the wrong JSON type, or a
                NumericDate is out of range.
        """
        for name in _STRING_MEMBERS:
            if name in claims and type(claims[name]) is not str:
                raise self._malformed(name, log)
        try:
            self._check_claims(claims, now)  # type: ignore[arg-type]
        except InvalidTokenError as exc:
            if exc.reason == "bad_claim_type":
                # The AS vouched for the token with a malformed answer: that is the AS's
                # fault (503), not the client's (401).
                raise self._malformed("a date, string or aud", log) from None
            raise
        token_type = claims.get("token_type")
        # RFC 7662 lets refresh tokens be introspected: one must not pass as a bearer. A
        # DPoP-bound access token names the key it is bound to (RFC 9449 §6.2).
        if (
            token_type is not None
            and token_type.lower() not in _ACCESS_TOKEN_TYPES
            and (token_type.lower() != "dpop" or "cnf" not in claims)
        ):
            raise InvalidTokenError(reason="wrong_token_type")
        exp = claims.get("exp")
        issuer = claims.get("iss")
        try:
            scopes = self.scope_mapping.scopes(claims)
        except InvalidTokenError:
            raise self._malformed("scope", log) from None
        return (
            claims.get("sub"),
            claims.get("client_id"),
            scopes,
            None if exp is None else int(exp),
            MappingProxyType(dict(claims)),
            issuer,
        )

    # -- the introspection request, written once for sync and async ----------------

    def _flow(self, token: str) -> Flow[dict[str, Any]]:
        """POST the token to the endpoint and return the checked JSON answer."""
        endpoint = self.introspection_uri
        if endpoint is None:
            assert self._metadata is not None
            endpoint = yield from self._metadata.endpoint_flow("introspection_endpoint")
        # RFC 7662 §2.1; the hint spares the AS a lookup and flags refresh tokens.
        form = {"token": token, "token_type_hint": "access_token", **self._form_auth}
        request = httpx.Request(
            "POST", endpoint, headers=self._headers, content=urlencode(form).encode()
        )
        try:
            response = yield request
        except httpx.HTTPError as exc:
            if isinstance(exc, ResponseTooLargeError):
                reason = "response_too_large"
            elif isinstance(exc, httpx.TimeoutException):
                reason = "timeout"
            else:
                reason = "unreachable"
            raise self._unavailable(reason) from exc
        return self._parse(response)

    def _parse(self, response: httpx.Response) -> dict[str, Any]:
        status = response.status_code
        if status != 200:
            if status in (401, 403):
                # Our own credentials were refused: an operator must fix the config.
                self._incident.failed(
                    "rejected_credentials: the endpoint refused our client credentials "
                    "(HTTP %d); answering 503",
                    status,
                    level=logging.ERROR,
                )
                raise IntrospectionUnavailableError(reason="rejected_credentials")
            reason = "redirect" if 300 <= status < 400 else "http_status"
            raise self._unavailable(reason, status, self._retry_after(response))
        ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            # A captive portal or proxy page is not an answer (attacks H-7).
            raise self._unavailable("content_type", status)
        try:
            body = loads_object(response.content)
        except StrictJSONError as exc:
            raise self._unavailable("not_json", status) from exc
        if type(body.get("active")) is not bool:
            # RFC 7662 §2.2: active is REQUIRED and a boolean; "false" must not pass.
            raise self._unavailable("bad_active", status)
        # A member sent as null means "not given".
        return {name: value for name, value in body.items() if value is not None}

    @staticmethod
    def _retry_after(response: httpx.Response) -> int:
        value = response.headers.get("retry-after", "")
        if response.status_code in (429, 503) and value.isdigit():
            return max(1, min(int(value), _MAX_RETRY_AFTER))
        return 5

    def _unavailable(
        self, reason: str, status: int | None = None, retry_after: int = 5
    ) -> IntrospectionUnavailableError:
        self._incident.failed(
            "%s%s; answering 503", reason, f" (HTTP {status})" if status is not None else ""
        )
        return IntrospectionUnavailableError(reason=reason, retry_after=retry_after)

    def _malformed(self, member: str, log: bool) -> IntrospectionUnavailableError:
        if log:
            # The member's name is ours (a fixed list), never one from the answer.
            self._incident.failed(
                "malformed_response (a malformed %s member); answering 503", member
            )
        return IntrospectionUnavailableError(reason="malformed_response")
