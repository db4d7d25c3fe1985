"""What the gate decides and what it fetches, as records for hooks, logs and metrics.

Every decision the guard makes, and every fetch, rotation, introspection or fallback
behind it, becomes one :class:`Record`. Records carry fixed codes and values the library
chose or verified, never token material, never a secret, never an unbounded string an
attacker picked (an issuer or client id is only reported once a token from it verified).

Hooks are plain callables registered with :func:`add_hook`; each receives every record,
synchronously, in the thread or task that produced it. A hook must be cheap; one that
raises is logged (once per hook) and ignored, so it can never change an answer. With no
hook registered, producing a record costs one empty-list test.

Record names::

    decision            one per request the guard decided: outcome accepted / rejected /
                        unavailable / anonymous / document, reason, status, kind (jwt or
                        opaque), scheme (bearer or dpop), issuer and client_id (verified
                        tokens only), cached, duration
    jwks_fetch          a JWKS fetch: outcome ok / failed, reason, duration, keys
    discovery_fetch     an RFC 8414 / OIDC metadata fetch: outcome, reason, duration
    key_rotation        a fetched key set differs from the previous one: added, removed
    introspection       an RFC 7662 call: outcome active / inactive / failed, reason,
                        duration
    cache               an introspection cache lookup: outcome hit / miss (memory, redis)
    redis_fallback      a Redis-backed store is unavailable: purpose
    issuer_*            the companion issuer's grants, failures, throttling, reuse
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "Hook",
    "Incident",
    "Record",
    "add_hook",
    "decision",
    "emit",
    "hooks_enabled",
    "log_rejection",
    "refusal",
    "remove_hook",
    "set_rejection_log_level",
    "token_kind",
]

logger = logging.getLogger("scopegate.observe")
#: One line per refused request: status, error code and reason code, nothing else.
rejections = logging.getLogger("scopegate.rejections")

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Record:
    """One thing the library did or decided.

    Attributes:
        name: What happened (see the module docstring).
        outcome: A fixed word for how it ended.
        reason: A fixed reason code (the error's ``reason``), or ``None``.
        duration: Seconds it took, when measured.
        attributes: More fixed or verified values (bounded; see the module docstring).
        time: When it ended (Unix seconds).
    """

    name: str
    outcome: str
    reason: str | None = None
    duration: float | None = None
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    time: float = field(default_factory=time.time)


Hook = Callable[[Record], None]

#: The registered hooks. Read without a lock (a list read is atomic); written under one.
HOOKS: tuple[Hook, ...] = ()
_lock = threading.Lock()
_broken: set[int] = set()


def add_hook(hook: Hook) -> None:
    """Register *hook* to receive every record (sync-safe: called where records arise)."""
    global HOOKS
    candidate: object = hook  # checked at run time: callers may not be type-checked
    if not callable(candidate):
        from scopegate._errors import ConfigurationError

        raise ConfigurationError("a hook must be callable")
    with _lock:
        HOOKS = (*HOOKS, hook)


def remove_hook(hook: Hook) -> None:
    """Unregister *hook* (no error if it was not registered)."""
    global HOOKS
    with _lock:
        HOOKS = tuple(h for h in HOOKS if h is not hook)


def hooks_enabled() -> bool:
    """True when at least one hook is registered (record building can be skipped)."""
    return bool(HOOKS)


def emit(record: Record) -> None:
    """Hand *record* to every hook; a hook's exception never reaches the caller."""
    for hook in HOOKS:
        try:
            hook(record)
        except Exception as exc:
            key = id(hook)
            if key not in _broken:
                _broken.add(key)
                # The exception's type only: a hook's message could hold anything.
                logger.error("an observability hook raised %s; ignoring it", type(exc).__name__)


class Incident:
    """Logs trouble once per incident: the first failure at WARNING, the ones that
    follow at DEBUG, and the recovery at INFO.

    Args:
        log: The logger.
        what: What is in trouble, for the messages (fixed text, e.g. "JWKS fetch").
    """

    __slots__ = ("_active", "_lock", "log", "what")

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self._active = False
        self._lock = threading.Lock()

    def failed(self, detail: str, *args: Any) -> None:
        """A failure: WARNING when it starts an incident, DEBUG while one is running."""
        with self._lock:
            first, self._active = not self._active, True
        self.log.log(
            logging.WARNING if first else logging.DEBUG, f"{self.what} failed: {detail}", *args
        )

    def recovered(self) -> None:
        """A success: ends a running incident with one INFO line."""
        if self._active:
            with self._lock:
                was, self._active = self._active, False
            if was:
                self.log.info("%s works again", self.what)


_rejection_level: int | None = logging.INFO


def set_rejection_log_level(level: int | None) -> None:
    """The level at which refused requests are logged on ``scopegate.rejections``
    (``logging.INFO`` by default; ``None``: never).

    Raises:
        ConfigurationError: *level* is not a logging level.
    """
    global _rejection_level
    if level is not None and (type(level) is not int or not 0 < level <= logging.CRITICAL):
        from scopegate._errors import ConfigurationError

        raise ConfigurationError("the rejection log level must be a logging level, or None")
    _rejection_level = level


def log_rejection(status: int, error: str, reason: str, where: str) -> None:
    """One line for a refused request (fixed codes only: never the token, never a path)."""
    level = _rejection_level
    if level is not None and rejections.isEnabledFor(level):
        rejections.log(level, "%s %s %s (%s)", where, status, error, reason)


def refusal(status: int) -> str:
    """The outcome word of a refusal with *status*: ``unavailable`` for a 503."""
    return "unavailable" if status == 503 else "rejected"


def token_kind(raw: str | None) -> str:
    """``jwt`` for a compact JWS shape, ``opaque`` otherwise, ``none`` without a token."""
    if raw is None:
        return "none"
    return "jwt" if raw.count(".") == 2 else "opaque"


def decision(
    outcome: str,
    *,
    status: int,
    reason: str | None,
    kind: str,
    scheme: str,
    cached: bool,
    duration: float,
    issuer: str | None = None,
    client_id: str | None = None,
    stage: str = "guard",
) -> None:
    """Emit the ``decision`` record of one request (call only when hooks are set).

    *issuer* and *client_id* must come from a verified token; a refused request never
    names them.
    """
    emit(
        Record(
            "decision",
            outcome,
            reason,
            duration,
            MappingProxyType(
                {
                    "status": status,
                    "kind": kind,
                    "scheme": scheme,
                    "cached": cached,
                    "issuer": issuer,
                    "client_id": client_id,
                    "stage": stage,
                }
            ),
        )
    )
