"""Brute-force throttling: every guess is counted before it is judged.

RFC 6749 §2.3.1 and §4.3.2 say the token endpoint MUST be protected against brute
force; RFC 7662 §4 says the same of introspection (token scanning). Counters live in
the :class:`~scopegate.issuer.IssuerStore`, so several issuer processes share them:

========== ============================ ======================================================
counter    key                          rule (settings)
========== ============================ ======================================================
address    the client's IP address      ``address_max_failures`` free, then 1 s doubling to
                                        ``backoff_max``; locked for ``failure_window`` at
                                        ``max(lockout_failures, 10 * address_max_failures)``
client     the client id presented      ``client_max_failures`` free, then 1 s doubling to
                                        ``client_backoff_max``; never a lockout (see below)
user       the normalised username      ``user_max_failures`` free, then ``backoff_base``
                                        doubling to ``backoff_max``; locked for
                                        ``failure_window`` at ``lockout_failures`` (PW-7)
lookup     the introspecting or         ``lookup_max_misses`` unknown or inactive tokens,
           revoking client              then none until ``lookup_window`` has passed
========== ============================ ======================================================

**Reserve, then judge.** An attempt is reserved atomically *before* the expensive check
(a password hash, a token lookup): the counter goes up first, and only then is the
secret verified. However many requests arrive at once, no more guesses are judged than
the rule allows; the rest are refused unjudged. A success takes its reservation back
(``release``) or, for a user or a client, forgets the failures (``clear``); a failure
keeps it. The store does compare-and-set on a version number and never decides, so the
rule (:meth:`Backoff.wait`) exists once, here, for the memory and the Redis store.

**Concurrency is not guessing.** A request refused only because other attempts on the
same counter are still being judged (it would be allowed if they all succeeded) waits
for them, polling for at most a few seconds, instead of being refused: a service sending
many correct requests at once is never mistaken for an attacker.

**Per client: slow down, never lock out.** Anyone who knows a client id could lock a
service out if failures against that id locked it. So the client counter only delays
(with a cap), and an address from which the client authenticated successfully within
``failure_window`` is exempt from it (the service keeps working from where it runs while
an attacker elsewhere waits); the per-address counter, which an attacker cannot aim at
someone else, is the one that locks. Unknown client ids are counted exactly like known
ones, so the delays reveal nothing about which ids exist.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cachetools import TTLCache

from scopegate import _observe
from scopegate._errors import retry_after_seconds
from scopegate.issuer._store import AttemptCounter, CounterReservation, IssuerStore, Settlement

if TYPE_CHECKING:
    from scopegate.issuer._config import IssuerConfig

__all__ = ["Backoff", "Limit", "Limits", "Reservation", "Throttle", "Throttled"]

logger = logging.getLogger("scopegate.issuer")
# Waiting for attempts in flight: how often to look again, and for how long at most.
_POLL = 0.01
_MAX_WAIT = 5.0
# Compare-and-set rounds lost to other requests before giving up (each lost round means
# another request changed the counter, so this only bounds pathological contention).
_MAX_ROUNDS = 1000
# A process refreshes a client's known-address flag at most this often (seconds).
_REFRESH_KNOWN = 300


@dataclass(frozen=True)
class Backoff:
    """How long a counter must wait: the one definition of every brute-force delay.

    Below *threshold* attempts there is no wait. From *threshold* on, the wait after
    the latest attempt is ``min(base * 2**(count - threshold), maximum)``; at *lockout*
    attempts it is the whole *window*. A counter is forgotten *window* seconds after its
    latest attempt.
    """

    threshold: int
    base: float
    maximum: float
    lockout: int
    window: float

    def wait(self, count: int, last: float, now: float) -> float:
        """Seconds a counter at *count* (latest attempt at *last*) must still wait."""
        if count >= self.lockout:
            until = last + self.window
        elif count >= self.threshold:
            step = min(count - self.threshold, 64)  # 2**64 s is past any maximum
            until = last + min(self.base * 2.0**step, self.maximum)
        else:
            return 0.0
        return max(0.0, until - now)


@dataclass(frozen=True)
class Limit:
    """One kind of counter: its rule and what a success does to it."""

    kind: str
    backoff: Backoff
    on_success: Literal["release", "clear"]

    def key(self, value: str) -> str:
        """The storage key for *value* (hashed: no username or address reaches storage)."""
        digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.kind}:{digest[:40]}"


@dataclass(frozen=True)
class Limits:
    """The four counters of an issuer, built from its settings."""

    address: Limit
    client: Limit
    user: Limit
    lookup: Limit
    known_address_ttl: float

    @classmethod
    def from_config(cls, config: IssuerConfig) -> Limits:
        """The counters described in the module docstring, from *config*."""
        c, window = config, config.failure_window
        address_lockout = max(c.lockout_failures, c.address_max_failures * 10)
        never = sys.maxsize  # a client id is public: its counter never locks (see above)
        user_lockout = c.lockout_failures
        misses, lookup_window = c.lookup_max_misses, c.lookup_window
        # A row each of the docstring's table: Backoff(threshold, base, maximum, lockout, window)
        address = Backoff(c.address_max_failures, 1, c.backoff_max, address_lockout, window)
        client = Backoff(c.client_max_failures, 1, c.client_backoff_max, never, window)
        user = Backoff(c.user_max_failures, c.backoff_base, c.backoff_max, user_lockout, window)
        lookup = Backoff(misses, lookup_window, lookup_window, misses, lookup_window)
        return cls(
            address=Limit("addr", address, "release"),
            client=Limit("client", client, "clear"),
            user=Limit("user", user, "clear"),
            lookup=Limit("lookup", lookup, "release"),
            known_address_ttl=window,
        )


class Throttled(Exception):  # noqa: N818 - an outcome, caught where it is translated
    """A reservation was refused: *limit* must wait *retry_after* seconds."""

    def __init__(self, limit: Limit, retry_after: float) -> None:
        super().__init__(limit.kind)
        self.limit = limit
        self.retry_after = retry_after_seconds(retry_after)


class Reservation:
    """Attempts reserved on several counters at once; settle it exactly once.

    Use it as a context manager: leaving the block without :meth:`succeeded` (normally
    or by an exception) counts the attempt as failed.
    """

    def __init__(
        self,
        throttle: Throttle,
        slots: Sequence[tuple[Limit, str]],
        counters: Sequence[AttemptCounter],
        token: str,
    ) -> None:
        self._throttle = throttle
        self._slots = tuple(slots)
        self._counts = [c.count + 1 for c in counters]
        self._token = token
        self._settled = False

    def succeeded(self) -> None:
        """The secret was right: give the reservations back or clear the counters."""
        self._settle([limit.on_success for limit, _ in self._slots])

    def failed(self) -> None:
        """The secret was wrong: the reservations stay counted as failures.

        Reaching a threshold logs a WARNING (the alert hook of RFC 6749 §4.3.2) naming
        the hashed key only, never a username, address or client id.
        """
        self._settle(["fail"] * len(self._slots))
        for (limit, key), count in zip(self._slots, self._counts, strict=True):
            if count in (limit.backoff.threshold, limit.backoff.lockout):
                logger.warning(
                    "brute-force protection: %s after %d failed attempts (key %s)",
                    "lockout" if count == limit.backoff.lockout else "backoff",
                    count,
                    key,
                )

    def _settle(self, outcomes: list[Settlement]) -> None:
        if self._settled:
            return
        self._settled = True
        keys = [key for _, key in self._slots]
        self._throttle.store.settle_attempts(keys, outcomes, self._token, self._throttle.now())

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if self._settled:
            return
        if exc_type is None:
            self.failed()
            return
        try:
            self.failed()
        except Exception:  # the original exception is the one to report (and log once)
            logger.debug("could not settle a brute-force counter", exc_info=True)


class Throttle:
    """Reserves attempts on brute-force counters kept in an :class:`IssuerStore`.

    Args:
        store: Where the counters live (shared by every issuer process).
        clock: Seconds since the epoch.
        sleep: How to wait while other attempts are being judged (tests inject one).
    """

    def __init__(
        self,
        store: IssuerStore,
        clock: Callable[[], float],
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store = store
        self.now = clock
        self._sleep = sleep
        self._refreshed: TTLCache[str, bool] = TTLCache(maxsize=10_000, ttl=_REFRESH_KNOWN)
        self._refreshed_lock = threading.Lock()  # TTLCache is not thread-safe

    def wait(self, limit: Limit, key: str, now: float) -> float:
        """Seconds *key* must wait because of settled failures (attempts in flight aside)."""
        (counter,) = self.store.read_attempts([key], now)
        return limit.backoff.wait(counter.count - counter.pending, counter.last, now)

    def reserve(self, slots: Sequence[tuple[Limit, str]], now: float) -> Reservation:
        """Count one attempt on every ``(limit, key)`` at once, or on none.

        Raises:
            Throttled: A counter must wait; nothing was reserved.
            StoreUnavailableError: The store cannot be reached.
        """
        keys = [key for _, key in slots]
        waited = 0.0
        for _ in range(_MAX_ROUNDS):
            counters = self.store.read_attempts(keys, now)
            refusal = _refusal(slots, counters, now)
            if refusal is None:
                token = secrets.token_hex(12)
                reservations = [
                    CounterReservation(key, counter.version, limit.backoff.window)
                    for (limit, key), counter in zip(slots, counters, strict=True)
                ]
                if self.store.reserve_attempts(reservations, token, now):
                    return Reservation(self, slots, counters, token)
                continue  # another request changed a counter first: read again
            limit, retry_after, in_flight = refusal
            if not in_flight or waited >= _MAX_WAIT:
                _observe.report("issuer_throttled", "throttled", limit=limit.kind)
                raise Throttled(limit, retry_after)
            self._sleep(_POLL)
            waited += _POLL
            now = self.now()
        _observe.report("issuer_throttled", "throttled", limit=slots[0][0].kind)
        raise Throttled(slots[0][0], 1)

    def is_known(self, client_id: str, address: str | None, now: float) -> bool:
        """Whether *client_id* authenticated from *address* within the failure window."""
        return address is not None and self.store.has_flag(_known(client_id, address), now)

    def remember(self, client_id: str, address: str | None, ttl: float, now: float) -> None:
        """Note that *client_id* authenticated from *address*, for *ttl* more seconds.

        Called on every success; the flag is written again at most every few minutes
        per process, so a busy client costs no store write per request.
        """
        if address is None:
            return
        key = _known(client_id, address)
        with self._refreshed_lock:
            if key in self._refreshed:
                return
            self._refreshed[key] = True
        try:
            self.store.set_flag(key, ttl, now)
        except Exception:
            with self._refreshed_lock:
                self._refreshed.pop(key, None)  # try again next time
            raise


def _known(client_id: str, address: str) -> str:
    value = f"{client_id}\0{address}".encode("utf-8", "surrogatepass")
    return "known:" + hashlib.sha256(value).hexdigest()[:40]


def _refusal(
    slots: Sequence[tuple[Limit, str]], counters: Sequence[AttemptCounter], now: float
) -> tuple[Limit, float, bool] | None:
    """The counter that refuses, how long it waits, and whether in-flight attempts explain it.

    A refusal that would vanish if every attempt in flight succeeded is "in flight"
    (worth waiting for); any other refusal wins, because waiting cannot lift it.
    """
    soft: tuple[Limit, float, bool] | None = None
    for (limit, _), counter in zip(slots, counters, strict=True):
        wait = limit.backoff.wait(counter.count, counter.last, now)
        if wait <= 0:
            continue
        settled = limit.backoff.wait(counter.count - counter.pending, counter.last, now)
        if counter.pending == 0 or settled > 0:
            return limit, wait, False
        soft = soft or (limit, wait, True)
    return soft
