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
  bearer token) is refused; a sender-constrained token (``cnf``) is refused because a
  bearer request cannot prove possession.
* A malformed answer, a non-JSON or non-``application/json`` body, an oversized body, a
  redirect, a 401/403 (our credentials are wrong), a 5xx or a timeout is a 503 with
  ``Retry-After`` (:class:`~scopegate.IntrospectionUnavailableError`), never a 401 that
  would make clients throw good tokens away. Each is logged without the token.

Caching: the key is SHA-256 of the full token, partitioned by endpoint and client id.
A positive answer is kept for ``min(exp - now, cache_ttl)`` (``cache_ttl`` is the
revocation-delay budget), an inactive token for ``negative_ttl``; failures and rejected
answers are never cached. Concurrent requests for one uncached token share a single
introspection (threads and asyncio), and with a :class:`~scopegate.RedisCache` processes
share one too. Scopes are not part of what is cached as a decision: the caller checks
them on every request against the returned :class:`~scopegate.AccessToken`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import httpx

from scopegate._cache import CacheEntry, IntrospectionCache, MemoryCache, SharedIntrospectionCache
from scopegate._discovery import DiscoveryKind, ServerMetadata, check_endpoint_url
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    IntrospectionUnavailableError,
    InvalidTokenError,
)
from scopegate._flow import AsyncSingleFlight, Flow, HTTPRunner, ResponseTooLargeError, SingleFlight
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._token import DEFAULT_SCOPE_CLAIMS, AccessToken, ScopeMapping

__all__ = ["IntrospectionVerifier"]

logger = logging.getLogger("scopegate.introspection")

AuthMethod = Literal["client_secret_basic", "client_secret_post"]

#: Longest token sent to the authorization server (same bound as the bearer guard).
MAX_TOKEN_LENGTH = 8192
# RFC 6750 §2.1 b64token: anything else cannot be a bearer token, so it is refused
# without asking the AS (RFC 7662 §4: do not help scanners fish for tokens).
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 7662 §2.2 token_type values that mean "an access token usable as a bearer token".
_ACCESS_TOKEN_TYPES = frozenset(
    {"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"}
)
_STRING_MEMBERS = ("sub", "client_id", "username", "iss", "token_type", "scope", "jti")
_TIME_MEMBERS = ("exp", "nbf", "iat")
_MAX_RETRY_AFTER = 300

# A view memoised on a cache entry: owner, then the AccessToken fields derived from it.
_Fields = tuple[str | None, str | None, frozenset[str], int | None, Mapping[str, Any], str | None]


def _redacted(url: str) -> str:
    # Log lines name the endpoint without userinfo or query (either may hold secrets).
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# RFC 7519 §2 NumericDate, bounded to what an AS can mean: the epoch to the end of year
# 9999 (the last second a datetime holds). JSON integers are unbounded, and one beyond
# float range would overflow the leeway and TTL arithmetic (OverflowError, not a 503).
_MAX_NUMERIC_DATE = 253_402_300_799


def _is_numeric_date(value: object) -> bool:
    # Compared before any float arithmetic; NaN and infinities fail the comparison too.
    return (type(value) is int or type(value) is float) and 0 <= value <= _MAX_NUMERIC_DATE


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
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not client_id or not client_secret:
            raise ConfigurationError("introspection needs client_id and client_secret")
        if auth_method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                "auth_method must be 'client_secret_basic' or 'client_secret_post'"
            )
        if not 0 <= leeway <= 300:
            raise ConfigurationError("leeway must be between 0 and 300 seconds")
        if not (0 <= cache_ttl < math.inf and 0 <= negative_ttl < math.inf):
            # Also refuses NaN and infinity: the TTL becomes a Redis PX integer.
            raise ConfigurationError("cache_ttl and negative_ttl must be finite, not negative")
        if http_timeout <= 0:
            raise ConfigurationError("http_timeout must be positive")
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
        self._clock = clock
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
            # RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
            pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}".encode()
            self._headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        else:
            self._form_auth = {"client_id": client_id, "client_secret": client_secret}
        self._flight: SingleFlight[AccessToken] = SingleFlight()
        self._aflight: AsyncSingleFlight[AccessToken] = AsyncSingleFlight()

    def __repr__(self) -> str:
        where = self.introspection_uri or f"discovered from {self.issuer}"
        return f"IntrospectionVerifier({_redacted(where) if self.introspection_uri else where})"

    # -- construction from the environment -----------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IntrospectionVerifier | None:
        """Build a verifier from ``SCOPEGATE_*`` variables, or ``None`` when not configured.

        Reads ``SCOPEGATE_INTROSPECTION_URI`` (unset: returns ``None``),
        ``SCOPEGATE_INTROSPECTION_CLIENT_ID`` / ``_CLIENT_SECRET`` (required),
        ``SCOPEGATE_INTROSPECTION_AUTH_METHOD`` (optional), ``SCOPEGATE_ISSUER`` (optional
        ``iss`` check), ``SCOPEGATE_AUDIENCE`` (optional ``aud`` check; comma-separated),
        ``SCOPEGATE_INTROSPECTION_CACHE_TTL`` (optional seconds) and
        ``SCOPEGATE_REDIS_URL`` (optional: a shared :class:`~scopegate.RedisCache`).

        Raises:
            ConfigurationError: A variable is missing or invalid.
        """
        env = os.environ if environ is None else environ
        uri = env.get("SCOPEGATE_INTROSPECTION_URI", "").strip()
        if not uri:
            return None
        # Values are stripped, as scopegate._config.settings_from_env reads them.
        client_id = env.get("SCOPEGATE_INTROSPECTION_CLIENT_ID", "").strip()
        client_secret = env.get("SCOPEGATE_INTROSPECTION_CLIENT_SECRET", "").strip()
        if not client_id or not client_secret:
            raise ConfigurationError(
                "SCOPEGATE_INTROSPECTION_URI needs SCOPEGATE_INTROSPECTION_CLIENT_ID "
                "and SCOPEGATE_INTROSPECTION_CLIENT_SECRET"
            )
        method = env.get("SCOPEGATE_INTROSPECTION_AUTH_METHOD", "").strip() or "client_secret_basic"
        if method not in ("client_secret_basic", "client_secret_post"):
            raise ConfigurationError(
                "SCOPEGATE_INTROSPECTION_AUTH_METHOD must be client_secret_basic or "
                "client_secret_post"
            )
        ttl_text = env.get("SCOPEGATE_INTROSPECTION_CACHE_TTL", "").strip()
        try:
            cache_ttl = float(ttl_text) if ttl_text else 60.0
        except ValueError:
            raise ConfigurationError(
                "SCOPEGATE_INTROSPECTION_CACHE_TTL must be a number of seconds"
            ) from None
        # Comma-separated, like SCOPEGATE_AUDIENCE for JWTs.
        audiences = [a.strip() for a in env.get("SCOPEGATE_AUDIENCE", "").split(",") if a.strip()]
        cache: IntrospectionCache | None = None
        redis_url = env.get("SCOPEGATE_REDIS_URL", "").strip()
        if redis_url:
            from scopegate._cache import RedisCache

            cache = RedisCache(redis_url)
        verifier = cls(
            introspection_uri=uri,
            issuer=env.get("SCOPEGATE_ISSUER", "").strip() or None,
            client_id=client_id,
            client_secret=client_secret,
            auth_method=method,  # type: ignore[arg-type]
            audience=audiences or None,
            cache=cache,
            cache_ttl=cache_ttl,
        )
        verifier._own_cache = cache is not None
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
        key = self._prefix + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        entry = self._cache.get(key)
        if entry is not None:
            view = entry.view
            # Hot path (an in-memory hit this verifier already judged), inlined.
            if type(view) is tuple and view[0] is self and entry.until > self._clock():
                subject, client_id, scopes, expires_at, claims, issuer = view[1]
                return AccessToken(subject, client_id, scopes, expires_at, claims, issuer, token)
            result = self._use(entry, token)
            if result is not None:
                return result
        self._check_format(token)
        return self._flight.do(key, lambda: self._fill(token, key))

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`; never blocks the event loop."""
        key = self._prefix + hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()
        if self._sync_cache:
            entry = self._cache.get(key)
        else:
            entry = await self._cache.aget(key)
        if entry is not None:
            view = entry.view
            if type(view) is tuple and view[0] is self and entry.until > self._clock():
                subject, client_id, scopes, expires_at, claims, issuer = view[1]
                return AccessToken(subject, client_id, scopes, expires_at, claims, issuer, token)
            result = self._use(entry, token)
            if result is not None:
                return result
        self._check_format(token)
        return await self._aflight.do(key, lambda: self._afill(token, key))

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
        if len(token) > MAX_TOKEN_LENGTH or not _B64TOKEN.fullmatch(token):
            raise InvalidTokenError(reason="malformed")

    def _fill(self, token: str, key: str) -> AccessToken:
        # Another flight may have filled the entry between our miss and our turn.
        entry = self._cache.get(key)
        if entry is not None and (result := self._use(entry, token)) is not None:
            return result
        handle = ""
        if self._shared is not None:
            result, handle = self._wait_for_peer(self._shared, key, token)
            if result is not None:
                return result
        try:
            claims = self._runner.run(self._flow(token))
            entry, ttl, outcome = self._conclude(claims, token)
            if entry is not None:
                self._cache.set(key, entry, ttl)
        finally:
            if handle and self._shared is not None:
                self._shared.unlock(key, handle)
        if isinstance(outcome, BearerError):
            raise outcome
        return outcome

    async def _afill(self, token: str, key: str) -> AccessToken:
        entry = await self._cache.aget(key)
        if entry is not None and (result := self._use(entry, token)) is not None:
            return result
        handle = ""
        if self._shared is not None:
            result, handle = await self._await_peer(self._shared, key, token)
            if result is not None:
                return result
        try:
            claims = await self._runner.arun(self._flow(token))
            entry, ttl, outcome = self._conclude(claims, token)
            if entry is not None:
                await self._cache.aset(key, entry, ttl)
        finally:
            if handle and self._shared is not None:
                await self._shared.aunlock(key, handle)
        if isinstance(outcome, BearerError):
            raise outcome
        return outcome

    def _wait_for_peer(
        self, cache: SharedIntrospectionCache, key: str, token: str
    ) -> tuple[AccessToken | None, str]:
        # Another process may be introspecting this token right now: wait for its answer
        # rather than asking too, but never longer than lock_wait.
        deadline = time.monotonic() + cache.lock_wait
        while True:
            handle = cache.try_lock(key)
            if handle:
                # The previous holder may have stored its answer and let go between
                # our miss and our lock: look once more before asking the AS.
                try:
                    entry = cache.get(key)
                    result = None if entry is None else self._use(entry, token)
                except BaseException:
                    cache.unlock(key, handle)
                    raise
                if result is not None:
                    cache.unlock(key, handle)
                    return result, ""
            if handle is not None:
                return None, handle
            if time.monotonic() >= deadline:
                return None, ""
            time.sleep(cache.poll_interval)
            entry = cache.get(key)
            if entry is not None and (result := self._use(entry, token)) is not None:
                return result, ""

    async def _await_peer(
        self, cache: SharedIntrospectionCache, key: str, token: str
    ) -> tuple[AccessToken | None, str]:
        deadline = time.monotonic() + cache.lock_wait
        while True:
            handle = await cache.atry_lock(key)
            if handle:
                try:
                    entry = await cache.aget(key)
                    result = None if entry is None else self._use(entry, token)
                except BaseException:
                    await cache.aunlock(key, handle)
                    raise
                if result is not None:
                    await cache.aunlock(key, handle)
                    return result, ""
            if handle is not None:
                return None, handle
            if time.monotonic() >= deadline:
                return None, ""
            await asyncio.sleep(cache.poll_interval)
            entry = await cache.aget(key)
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
            value = claims.get(name)
            if value is not None and type(value) is not str:
                raise self._malformed(name, log)
        for name in _TIME_MEMBERS:
            value = claims.get(name)
            if value is not None and not _is_numeric_date(value):
                raise self._malformed(name, log)
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if exp is not None and now > exp + self.leeway:
            raise InvalidTokenError("The access token has expired", reason="expired")
        if nbf is not None and nbf > now + self.leeway:
            raise InvalidTokenError("The access token is not yet valid", reason="not_yet_valid")
        if iat is not None and iat > now + self.leeway:
            raise InvalidTokenError("The access token is not yet valid", reason="issued_in_future")
        issuer = claims.get("iss")
        if issuer is not None and self.issuer is not None and issuer != self.issuer:
            raise InvalidTokenError(reason="wrong_issuer")
        aud = claims.get("aud")
        if aud is not None:
            audiences = [aud] if type(aud) is str else aud
            if type(audiences) is not list or not all(type(a) is str for a in audiences):
                raise self._malformed("aud", log)
            if self.audience is not None and self.audience.isdisjoint(audiences):
                raise InvalidTokenError(reason="wrong_audience")
        token_type = claims.get("token_type")
        if token_type is not None and token_type.lower() not in _ACCESS_TOKEN_TYPES:
            # RFC 7662 lets refresh tokens be introspected: one must not pass as a bearer.
            raise InvalidTokenError(reason="wrong_token_type")
        if claims.get("cnf") is not None:
            # RFC 9449 §7 / RFC 8705 §3: a bound token needs proof of possession, which a
            # plain bearer request cannot give.
            raise InvalidTokenError(reason="sender_constrained")
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
            raise self._unavailable(reason, endpoint) from exc
        return self._parse(response, endpoint)

    def _parse(self, response: httpx.Response, endpoint: str) -> dict[str, Any]:
        status = response.status_code
        if status != 200:
            if status in (401, 403):
                # Our own credentials were refused: an operator must fix the config.
                logger.error(
                    "token introspection at %s refused our client credentials (HTTP %d); "
                    "answering 503",
                    _redacted(endpoint),
                    status,
                )
                raise IntrospectionUnavailableError(reason="rejected_credentials")
            reason = "redirect" if 300 <= status < 400 else "http_status"
            raise self._unavailable(reason, endpoint, status, self._retry_after(response))
        ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            # A captive portal or proxy page is not an answer (attacks H-7).
            raise self._unavailable("content_type", endpoint, status)
        try:
            body = loads_object(response.content)
        except StrictJSONError as exc:
            raise self._unavailable("not_json", endpoint, status) from exc
        if type(body.get("active")) is not bool:
            # RFC 7662 §2.2: active is REQUIRED and a boolean; "false" must not pass.
            raise self._unavailable("bad_active", endpoint, status)
        return body

    @staticmethod
    def _retry_after(response: httpx.Response) -> int:
        value = response.headers.get("retry-after", "")
        if response.status_code in (429, 503) and value.isdigit():
            return max(1, min(int(value), _MAX_RETRY_AFTER))
        return 5

    @staticmethod
    def _unavailable(
        reason: str, endpoint: str, status: int | None = None, retry_after: int = 5
    ) -> IntrospectionUnavailableError:
        logger.warning(
            "token introspection at %s failed (%s%s); answering 503",
            _redacted(endpoint),
            reason,
            f", HTTP {status}" if status is not None else "",
        )
        return IntrospectionUnavailableError(reason=reason, retry_after=retry_after)

    @staticmethod
    def _malformed(member: str, log: bool) -> IntrospectionUnavailableError:
        if log:
            logger.warning(
                "token introspection answer has a malformed %r member; answering 503", member
            )
        return IntrospectionUnavailableError(reason="malformed_response")
