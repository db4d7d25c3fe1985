"""The JWKS cache: fetched keys with TTL, bounded refreshes and stale-if-error.

:class:`JWKSCache` serves :class:`~scopegate._keys.VerificationKey` objects for a token's
``kid``/``alg``. :meth:`JWKSCache.lookup` answers from memory without I/O; when a fetch
could help, :meth:`JWKSCache.key_flow` (one flow, run by either driver of
:mod:`scopegate._flow`) fetches the set and answers. Behaviour:

* **TTL**: a fetched set is used for ``ttl`` seconds, then fetched again on next use.
* **Unknown kid**: a token naming a kid the set lacks refreshes the set at once (an
  authorization server may sign with a key as soon as it publishes it). The kid is
  attacker-controlled, so such refreshes are spaced at least ``cooldown`` seconds apart:
  a flood of random kids costs at most one extra fetch per cooldown. A kid still unknown
  after a refresh is ``invalid_token`` (``unknown_key``) and kept in a bounded negative
  cache until the next successful fetch or for ``cooldown`` seconds. Ordinary fetches
  (start-up, TTL) do not start the cooldown.
* **Single flight**: concurrent refreshes (threads or tasks) share one request;
  cancelling one waiting task does not cancel the fetch.
* **Failures**: down, timeout, 3xx, non-200, non-JSON, oversized, or a set without a
  usable key is a failed fetch. With keys fetched less than ``ttl + stale_if_error``
  seconds ago, those keys keep being used; without them the request gets
  :class:`~scopegate.KeySetUnavailableError` (503), never ``invalid_token``. After a
  failure the next attempt waits ``retry_interval`` seconds (``min(cooldown, 5)``), so
  an outage does not become a request storm.
* **Key identity**: unchanged keys keep their object across refreshes, so a verified-
  token cache can drop entries whose key left the set (:meth:`JWKSCache.current`).
* **Clock**: every timer runs on ``time.monotonic``: stepping the wall clock neither
  keeps removed keys alive nor delays new ones.
* **Logs and records**: a failing JWKS is logged on ``scopegate.jwks`` once per
  incident (WARNING with the reason code, then DEBUG), its recovery at INFO, a changed
  key set at INFO with the numbers of keys added and removed. With hooks, each fetch is
  a ``jwks_fetch`` record and each change a ``key_rotation`` record
  (:mod:`scopegate._observe`).

``reason`` codes of the 503 (:class:`~scopegate.KeySetUnavailableError`)::

    jwks_unreachable    connection refused/reset, DNS, timeout
    jwks_too_large      body above the runner's max_body (1 MiB)
    jwks_http_status    any status but 200 (3xx redirects are never followed)
    jwks_malformed      not application/json or application/jwk-set+json, not a strict
                        JSON object, no keys array, or no usable key
    jwks_unavailable    an unexpected failure while fetching
    discovery_*         the metadata step failed (see scopegate._discovery)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from scopegate import _observe
from scopegate._discovery import ServerMetadata, check_endpoint_url, redacted
from scopegate._errors import (
    ConfigurationError,
    InvalidTokenError,
    KeySetUnavailableError,
    ServiceUnavailableError,
)
from scopegate._flow import (
    ClientOwner,
    Flight,
    Flow,
    HTTPRunner,
    ResponseTooLargeError,
    arun,
    run,
)
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._keys import KeySet, UnusableKeyError, VerificationKey, parse_jwks
from scopegate._settings import number

__all__ = ["JWKSCache"]

logger = logging.getLogger("scopegate.jwks")

_NEGATIVE_MAX = 1024
_JWKS_TYPES = ("application/json", "application/jwk-set+json")
_NEVER = float("-inf")


@dataclass(frozen=True, slots=True)
class _State:
    keys: KeySet | None = None
    fetched_at: float = _NEVER  # last success
    attempted_at: float = _NEVER  # last attempt, success or not
    failed: bool = False  # whether the last attempt failed
    generation: int = 0
    reason: str = "jwks_unavailable"  # reason code of the last failure


class JWKSCache(ClientOwner):
    """Keys of one issuer fetched from its JWKS (RFC 7517 §5), cached and refreshed.

    Args:
        algorithms: The verifier's algorithm allow-list (already validated).
        jwks_uri: The JWKS URL; or ``None`` to take ``jwks_uri`` from *metadata*.
        metadata: The issuer's :class:`~scopegate._discovery.ServerMetadata` when
            *jwks_uri* is ``None``.
        ttl: Seconds fetched keys are used before a refresh.
        cooldown: Minimum seconds between two refreshes caused by unknown kids.
        stale_if_error: Seconds past ``ttl`` that old keys serve while fetches fail.
        runner: The :class:`HTTPRunner` (timeouts, size cap, no redirects).
        timer: Monotonic seconds (tests inject a fake one).

    Raises:
        ConfigurationError: Neither or both of *jwks_uri* / *metadata*, a bad URL, or a
            negative duration.
    """

    def __init__(
        self,
        *,
        algorithms: frozenset[str],
        jwks_uri: str | None = None,
        metadata: ServerMetadata | None = None,
        ttl: float = 600,
        cooldown: float = 30,
        stale_if_error: float = 86400,
        runner: HTTPRunner | None = None,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if (jwks_uri is None) == (metadata is None):
            raise ConfigurationError("JWKSCache needs exactly one of jwks_uri or metadata")
        if jwks_uri is not None and not check_endpoint_url(jwks_uri):
            raise ConfigurationError("jwks_uri must be an https URL (http only for loopback hosts)")
        number("jwks_ttl", ttl)
        number("jwks_cooldown", cooldown)
        number("stale_if_error", stale_if_error)
        self.algorithms = algorithms
        self.jwks_uri = jwks_uri
        self.metadata = metadata
        self.ttl = ttl
        self.cooldown = cooldown
        self.stale_if_error = stale_if_error
        self.retry_interval = min(cooldown, 5.0)
        if runner is None:
            runner = self._owned = HTTPRunner()
        self.runner = runner
        self._timer = timer
        self._state = _State()
        self._kid_refresh_at = _NEVER  # when an unknown kid last caused a refresh
        self._lock = threading.Lock()
        self._negative: dict[str, float] = {}
        self._flight = Flight()
        if jwks_uri is not None:
            where = f"from {redacted(jwks_uri)}"
        else:
            assert metadata is not None
            where = f"for {redacted(metadata.issuer)}"
        self._incident = _observe.Incident(logger, f"JWKS fetch {where}")
        #: Number of fetch attempts (diagnostics and tests).
        self.fetch_count = 0

    def __repr__(self) -> str:
        source = self.jwks_uri if self.jwks_uri is not None else self.metadata
        return f"JWKSCache({source!r}, ttl={self.ttl}, cooldown={self.cooldown})"

    # -- the fetch ----------------------------------------------------------------------

    def fetch_flow(self) -> Flow[KeySet]:
        """Fetch and parse the key set once.

        Raises:
            KeySetUnavailableError: Any failure, including discovery.
        """
        uri = self.jwks_uri
        if uri is None:
            assert self.metadata is not None
            uri = yield from self.metadata.endpoint_flow("jwks_uri")
        request = httpx.Request(
            "GET", uri, headers={"accept": "application/jwk-set+json, application/json"}
        )
        try:
            response = yield request
        except ResponseTooLargeError as exc:
            raise KeySetUnavailableError(reason="jwks_too_large") from exc
        except httpx.HTTPError as exc:
            raise KeySetUnavailableError(reason="jwks_unreachable") from exc
        if response.status_code != 200:
            raise KeySetUnavailableError(reason="jwks_http_status")
        ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if ctype not in _JWKS_TYPES:
            raise KeySetUnavailableError(reason="jwks_malformed")
        try:
            keys = parse_jwks(loads_object(response.content), self.algorithms)
        except (StrictJSONError, UnusableKeyError) as exc:
            raise KeySetUnavailableError(reason="jwks_malformed") from exc
        return keys.reuse(self._state.keys)

    def _refresh_flow(self, generation: int, for_kid: bool) -> Flow[None]:
        state = self._state
        if state.generation != generation:
            return  # a refresh finished between our decision and our turn: reuse it
        now = self._timer()
        if for_kid:
            self._kid_refresh_at = now
        self.fetch_count += 1
        started = _observe.timer()
        try:
            keys = yield from self.fetch_flow()
        except Exception as exc:
            # Any fault on the AS side (including a bug in its data we did not foresee)
            # is an outage: fail closed with 503, never accept and never 401.
            self._store(None, exc)
        else:
            self._store(keys, None)
        if _observe.HOOKS:
            cause = (
                "unknown_kid"
                if for_kid
                else "retry"
                if state.failed
                else "initial"
                if state.keys is None
                else "ttl"
            )
            self._report(state, cause, _observe.timer() - started)

    def _report(self, old: _State, cause: str, duration: float) -> None:
        new = self._state
        if new.failed:
            _observe.report("jwks_fetch", "failed", new.reason, duration, keys=0, cause=cause)
            return
        keys = new.keys
        assert keys is not None
        _observe.report("jwks_fetch", "ok", None, duration, keys=len(keys), cause=cause)
        if old.keys is not None:
            added, removed = _changes(old.keys, keys)
            if added or removed:
                _observe.report("key_rotation", "rotated", added=added, removed=removed)

    # -- decisions ------------------------------------------------------------------------

    def current(self) -> KeySet | None:
        """The keys in use now (possibly stale), or ``None`` before the first fetch."""
        return self._state.keys

    def lookup(self, kid: str | None, alg: str) -> VerificationKey | None:
        """The key for a token's *kid*/*alg* from memory, or ``None`` when a fetch may help.

        Raises:
            InvalidTokenError: The kid is known to be absent (negative cache, cooldown),
                or the key does not allow *alg*.
            KeySetUnavailableError: No usable keys and no fetch may be tried yet.
        """
        planned = self._plan(kid, alg)
        return planned if isinstance(planned, VerificationKey) else None

    def _plan(self, kid: str | None, alg: str) -> VerificationKey | tuple[int, bool]:
        """The key, or ``(generation, for_kid)`` to refresh; raises when no fetch may help."""
        now = self._timer()
        state = self._state
        keys = state.keys
        if keys is not None and now - state.fetched_at < self.ttl:
            key = keys.find(kid, alg)
            if key is not None:
                return key
            if kid is not None and self._negative.get(kid, _NEVER) > now:
                return self._anonymous(keys, kid, alg)
            if now - self._kid_refresh_at < self.cooldown or (
                state.failed and now - state.attempted_at < self.retry_interval
            ):
                # kid is attacker-controlled: at most one refresh per cooldown.
                self._remember_missing(kid, self._kid_refresh_at + self.cooldown)
                if state.failed:
                    raise self._unavailable(now, state)
                return self._anonymous(keys, kid, alg)
            return state.generation, True
        if state.failed and now - state.attempted_at < self.retry_interval:
            return self._from_stale(kid, alg, now, state)
        return state.generation, False

    @staticmethod
    def _anonymous(keys: KeySet, kid: str | None, alg: str) -> VerificationKey:
        # No key carries this kid: a key published without any kid may stand for it.
        key = keys.find(kid, alg, anonymous=True)
        if key is None:
            raise InvalidTokenError(reason="unknown_key")
        return key

    def _after_refresh(self, kid: str | None, alg: str) -> VerificationKey:
        now = self._timer()
        state = self._state
        if not state.failed and state.keys is not None:
            key = state.keys.find(kid, alg)
            if key is None:
                self._remember_missing(kid, now + self.cooldown)
                return self._anonymous(state.keys, kid, alg)
            return key
        return self._from_stale(kid, alg, now, state)

    def _from_stale(self, kid: str | None, alg: str, now: float, state: _State) -> VerificationKey:
        keys = state.keys
        if keys is None or not now - state.fetched_at < self.ttl + self.stale_if_error:
            raise self._unavailable(now, state)
        key = keys.find(kid, alg)
        if key is None:
            # We could not check whether the AS added this key: that is an outage.
            raise self._unavailable(now, state)
        return key

    def _unavailable(self, now: float, state: _State) -> ServiceUnavailableError:
        wait = max(1.0, state.attempted_at + self.retry_interval - now)
        return KeySetUnavailableError(reason=state.reason, retry_after=wait)

    def _remember_missing(self, kid: str | None, until: float) -> None:
        if kid is None:
            return
        with self._lock:
            if len(self._negative) >= _NEGATIVE_MAX:
                self._negative.clear()
            self._negative[kid] = until

    def _store(self, keys: KeySet | None, error: Exception | None) -> None:
        now = self._timer()
        with self._lock:
            old = self._state
            if keys is not None:
                self._state = _State(keys, now, now, False, old.generation + 1)
                self._negative.clear()
            else:
                reason = (
                    error.reason
                    if isinstance(error, ServiceUnavailableError)
                    else "jwks_unavailable"
                )
                self._state = _State(
                    old.keys, old.fetched_at, now, True, old.generation + 1, reason
                )
        if error is not None:
            self._incident.failed(
                "%s; %s",
                self._state.reason,
                "serving the previous keys" if old.keys is not None else "no keys available",
            )
            return
        self._incident.recovered()
        if old.keys is not None and keys is not None:
            added, removed = _changes(old.keys, keys)
            if added or removed:
                # Numbers only: kids are the AS's, but a count is all an operator needs.
                logger.info("JWKS changed: %d key(s) added, %d removed", added, removed)

    # -- the key, with I/O when needed ---------------------------------------------------

    def key_flow(self, kid: str | None, alg: str) -> Flow[VerificationKey]:
        """The key for *kid*/*alg*, refreshing the set when that may help.

        Raises:
            InvalidTokenError: The kid is unknown after a refresh (``unknown_key``), or
                the key does not allow *alg*.
            KeySetUnavailableError: No usable keys and the JWKS cannot be fetched.
        """
        planned = self._plan(kid, alg)
        if isinstance(planned, VerificationKey):
            return planned
        generation, for_kid = planned
        yield self._flight.join(
            "jwks", lambda: self._refresh_flow(generation, for_kid), self.runner
        )
        return self._after_refresh(kid, alg)

    def get(self, kid: str | None, alg: str) -> VerificationKey:
        """The key for *kid*/*alg* (threads; see :meth:`key_flow`)."""
        key = self.lookup(kid, alg)
        return key if key is not None else run(self.key_flow(kid, alg))

    async def aget(self, kid: str | None, alg: str) -> VerificationKey:
        """The key for *kid*/*alg* (asyncio; see :meth:`key_flow`)."""
        key = self.lookup(kid, alg)
        return key if key is not None else await arun(self.key_flow(kid, alg))

    def refresh_flow(self) -> Flow[KeySet | None]:
        """Fetch now (e.g. at start-up to warm the cache); return the keys in use."""
        generation = self._state.generation
        yield self._flight.join("jwks", lambda: self._refresh_flow(generation, False), self.runner)
        return self._state.keys

    def refresh(self) -> KeySet | None:
        """Fetch now, in the calling thread (see :meth:`refresh_flow`)."""
        return run(self.refresh_flow())

    async def arefresh(self) -> KeySet | None:
        """Fetch now, on the event loop (see :meth:`refresh_flow`)."""
        return await arun(self.refresh_flow())


def _changes(old: KeySet, new: KeySet) -> tuple[int, int]:
    """Keys added to and removed from *old* in *new* (unchanged keys keep their object
    across refreshes, see ``KeySet.reuse``, so identity tells them apart)."""
    added = sum(1 for key in new.keys if key not in old)
    removed = sum(1 for key in old.keys if key not in new)
    return added, removed
