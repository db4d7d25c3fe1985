"""What the gate decides and what it fetches, as records for hooks, logs and metrics.

Every decision the guard makes, and every fetch, rotation, introspection or fallback
behind it, becomes one :class:`Record`. Records carry fixed codes and values the library
chose or verified, never token material, never a secret, never an unbounded string an
attacker picked (an issuer or client id is only reported once a token from it verified).

Hooks are plain callables registered with :func:`add_hook`; each receives every record,
synchronously, in the thread or task that produced it. A hook must be cheap; one that
raises is logged (once per hook) and ignored, so it can never change an answer. With no
hook registered, producing a record costs one empty-tuple test and builds nothing.

Record names, with their outcome words and attributes::

    decision            one per request the guard decided, and one per refusal of a scope
                        or step-up decorator. outcome: accepted / rejected / unavailable
                        (a 503) / anonymous / document (RFC 9728 metadata). reason: the
                        error's reason code (None when accepted). duration. attributes:
                        status (HTTP status), kind (jwt / opaque / none), scheme (bearer /
                        dpop / none), cached (answered from a cache without I/O), issuer
                        and client_id (verified tokens only, else None), stage (guard /
                        endpoint: a decorator's refusal)
    jwks_fetch          a JWKS fetch. outcome: ok / failed. reason: the 503 reason code of
                        a failure. duration. attributes: keys (number of usable keys, 0 on
                        failure), cause (initial / ttl / unknown_kid / retry: the first
                        fetch, an expired set or an explicit refresh(), a token naming a
                        kid the set lacks, a retry after a failed fetch)
    discovery_fetch     an RFC 8414 / OIDC metadata fetch. outcome: ok / failed. reason.
                        duration. attributes: kind (auto / oauth / oidc)
    key_rotation        a fetched key set differs from the previous one. outcome: rotated.
                        attributes: added, removed (numbers of keys; never kids)
    introspection       an RFC 7662 call. outcome: active / inactive / failed. reason: the
                        503 reason of a failure, or why an active token was still refused
                        (wrong_audience...). duration
    cache               an introspection answer looked up in its cache. outcome: hit (the
                        answer came from the cache) / miss (the authorization server is
                        asked). attributes: backend (memory / redis / other)
    redis_fallback      an operation on a Redis-backed store could not use Redis (an error,
                        or the circuit breaker is open). outcome: unavailable. attributes:
                        purpose (the store's configured purpose, e.g. "Redis cache")
    issuer_grant        the companion issuer's grant decided (after client authentication;
                        refusals before it are issuer_failure only). outcome: issued, or
                        the OAuth error code. attributes: grant_type (an enabled grant)
    issuer_failure      an issuer endpoint answered an error. outcome: the OAuth error
                        code. attributes: endpoint (token / introspection / revocation),
                        status
    issuer_throttled    brute-force protection refused an attempt. outcome: throttled.
                        attributes: limit (addr / client / user / lookup)
    issuer_refresh_reuse  a rotated refresh token was presented again; its family was
                        revoked. outcome: revoked. attributes: client_id (authenticated)

Reason codes come from one vocabulary, :data:`REASON_CODES` (the error classes' table in
:mod:`scopegate._errors` and the JWT rule table's in :mod:`scopegate._checks`); the values
a metric label may take are :data:`LABEL_VALUES` (see :func:`metric_labels`). The user
guide is ``docs/observability.md``.
Durations are measured on :data:`timer` (``time.perf_counter``, monotonic); a record's
``time`` is when it ended, on the wall clock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from scopegate._checks import REASONS as _JWT_REASONS
from scopegate._errors import REASONS as _ERROR_REASONS
from scopegate._errors import BearerError, ConfigurationError

if TYPE_CHECKING:
    from scopegate._token import AccessToken

__all__ = [
    "DIMENSIONS",
    "HOOKS",
    "LABEL_VALUES",
    "REASON_CODES",
    "Hook",
    "Incident",
    "Parts",
    "Record",
    "add_hook",
    "decision_parts",
    "emit",
    "emit_parts",
    "hooks_enabled",
    "log_rejection",
    "metric_labels",
    "parts",
    "refusal",
    "remove_hook",
    "report",
    "set_rejection_log_level",
    "timer",
    "token_kind",
]

logger = logging.getLogger("scopegate.observe")
#: One line per refused request: status, error code and reason code, nothing else.
rejections = logging.getLogger("scopegate.rejections")

#: Every reason code a :class:`~scopegate.BearerError` can carry (one vocabulary).
REASON_CODES: frozenset[str] = frozenset(_ERROR_REASONS) | frozenset(_JWT_REASONS)

#: The clock of every ``duration`` (monotonic, high resolution).
timer = time.perf_counter

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_wall = time.time
# A record is a tuple: building one this way skips the keyword-parsing __new__ (the
# decision of a cached request is on the hot path: see benchmarks/bench_inproc.py).
_tuple = tuple.__new__
_proxy = MappingProxyType


class _Fields(NamedTuple):
    name: str
    outcome: str
    reason: str | None
    duration: float | None
    attributes: Mapping[str, Any]
    time: float
    dimensions: tuple[Any, ...]


class Record(_Fields):
    """One thing the library did or decided (an immutable named tuple).

    Attributes:
        name: What happened (see :mod:`scopegate._observe` for the names).
        outcome: A fixed word for how it ended.
        reason: A fixed reason code (the error's ``reason``), or ``None``.
        duration: Seconds it took (monotonic clock), when measured.
        attributes: More fixed or verified values (bounded; read-only).
        time: When it ended (Unix seconds; now by default).
        dimensions: The record's bounded values as one hashable tuple: ``(name, outcome,
            reason, *values of the attributes listed in DIMENSIONS[name])``. Metric
            hooks use it as a dictionary key (issuer and client id are never part of it).
    """

    __slots__ = ()

    def __new__(
        cls,
        name: str,
        outcome: str,
        reason: str | None = None,
        duration: float | None = None,
        attributes: Mapping[str, Any] = _EMPTY,
        time: float | None = None,
        dimensions: tuple[Any, ...] | None = None,
    ) -> Record:
        stamp = _wall() if time is None else time
        if dimensions is None:
            dimensions = _dimensions(name, outcome, reason, attributes)
        record: Record = _tuple(
            cls, (name, outcome, reason, duration, attributes, stamp, dimensions)
        )
        return record


#: The attributes of each record that belong in :attr:`Record.dimensions`, in order:
#: the bounded ones a metric may be labelled with.
DIMENSIONS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "decision": ("kind", "scheme", "stage", "cached"),
        "jwks_fetch": ("cause",),
        "discovery_fetch": ("kind",),
        "key_rotation": (),
        "introspection": (),
        "cache": ("backend",),
        "redis_fallback": ("purpose",),
        "issuer_grant": ("grant_type",),
        "issuer_failure": ("endpoint",),
        "issuer_throttled": ("limit",),
        "issuer_refresh_reuse": (),
    }
)


# RFC 6749 §5.2 and the extensions the issuer may answer with (RFC 8707, RFC 9449).
_OAUTH_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "invalid_target",
        "invalid_dpop_proof",
        "use_dpop_nonce",
        "access_denied",
        "temporarily_unavailable",
        "server_error",
    }
)
# Registered grant types (RFC 6749 §4, RFC 8628, RFC 8693, RFC 7523, OpenID CIBA).
_GRANT_TYPES = frozenset(
    {
        "authorization_code",
        "client_credentials",
        "password",
        "refresh_token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:openid:params:grant-type:ciba",
    }
)
_FETCH = frozenset({"ok", "failed"})

#: The values each dimension of each record may take as a metric label (an outcome,
#: then the DIMENSIONS attributes); :func:`metric_labels` turns anything else into
#: ``"other"``, so a label never takes an unbounded set of values. ``reason`` is
#: always checked against :data:`REASON_CODES`.
LABEL_VALUES: Mapping[str, Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "decision": {
            "outcome": frozenset({"accepted", "rejected", "unavailable", "anonymous", "document"}),
            "kind": frozenset({"jwt", "opaque", "none"}),
            "scheme": frozenset({"bearer", "dpop", "none"}),
            "stage": frozenset({"guard", "endpoint"}),
            "cached": frozenset({"true", "false"}),
        },
        "jwks_fetch": {
            "outcome": _FETCH,
            "cause": frozenset({"initial", "ttl", "unknown_kid", "retry"}),
        },
        "discovery_fetch": {"outcome": _FETCH, "kind": frozenset({"auto", "oauth", "oidc"})},
        "key_rotation": {"outcome": frozenset({"rotated"})},
        "introspection": {"outcome": frozenset({"active", "inactive", "failed"})},
        "cache": {
            "outcome": frozenset({"hit", "miss"}),
            "backend": frozenset({"memory", "redis", "other"}),
        },
        "redis_fallback": {
            "outcome": frozenset({"unavailable"}),
            "purpose": frozenset({"redis_cache", "dpop_replay_store", "redis"}),
        },
        "issuer_grant": {"outcome": _OAUTH_ERRORS | {"issued"}, "grant_type": _GRANT_TYPES},
        "issuer_failure": {
            "outcome": _OAUTH_ERRORS,
            "endpoint": frozenset({"token", "introspection", "revocation"}),
        },
        "issuer_throttled": {
            "outcome": frozenset({"throttled"}),
            "limit": frozenset({"addr", "client", "user", "lookup"}),
        },
        "issuer_refresh_reuse": {"outcome": frozenset({"revoked"})},
    }
)


def _label(value: Any, allowed: frozenset[str]) -> str:
    if value is True or value is False:
        text = "true" if value else "false"
    elif isinstance(value, str):
        # A configured purpose ("Redis cache") becomes a label word ("redis_cache").
        text = value if value in allowed else value.lower().replace(" ", "_")
    else:
        return "other"
    return text if text in allowed else "other"


def metric_labels(dimensions: tuple[Any, ...]) -> tuple[str, ...] | None:
    """The label values of a record's :attr:`~Record.dimensions`: ``(outcome, reason,
    *DIMENSIONS[name])``, each from its fixed set in :data:`LABEL_VALUES` or
    ``"other"`` (a reason: ``"none"`` when absent). ``None`` for an unknown record."""
    name, outcome, reason, *rest = dimensions
    allowed = LABEL_VALUES.get(name)
    if allowed is None:
        return None
    keys = DIMENSIONS[name]
    return (
        _label(outcome, allowed["outcome"]),
        "none" if reason is None else reason if reason in REASON_CODES else "other",
        *(_label(value, allowed[key]) for key, value in zip(keys, rest, strict=False)),
    )


def _dimensions(
    name: str, outcome: str, reason: str | None, attributes: Mapping[str, Any]
) -> tuple[Any, ...]:
    return (name, outcome, reason, *(attributes.get(key) for key in DIMENSIONS.get(name, ())))


Hook = Callable[[Record], None]

#: The registered hooks. Read without a lock (one global read); replaced under one.
HOOKS: tuple[Hook, ...] = ()
_lock = threading.Lock()
_broken: set[int] = set()


def add_hook(hook: Hook) -> None:
    """Register *hook* to receive every record.

    A hook is called synchronously where the record arises (a request's thread or
    task), so it must be quick and thread-safe; an exception it raises is logged once
    (by type) on ``scopegate.observe`` and otherwise ignored: a hook never changes an
    answer. Registering the same hook twice delivers each record to it twice.

    Raises:
        ConfigurationError: *hook* is not callable.
    """
    global HOOKS
    candidate: object = hook  # checked at run time: callers may not be type-checked
    if not callable(candidate):
        raise ConfigurationError("a hook must be callable")
    with _lock:
        HOOKS = (*HOOKS, hook)


def remove_hook(hook: Hook) -> None:
    """Unregister *hook* (every registration of it; no error if it was not registered).

    Hooks are compared by equality, so ``remove_hook(obj.method)`` removes the bound
    method that ``add_hook(obj.method)`` registered.
    """
    global HOOKS
    with _lock:
        gone = [h for h in HOOKS if h == hook]
        HOOKS = tuple(h for h in HOOKS if h != hook)
        for h in gone:
            _broken.discard(id(h))


def hooks_enabled() -> bool:
    """True when at least one hook is registered (record building can be skipped)."""
    return bool(HOOKS)


def emit(record: Record) -> None:
    """Hand *record* to every hook; a hook's exception never reaches the caller."""
    for hook in HOOKS:
        try:
            hook(record)
        except Exception as exc:
            _hook_failed(hook, exc)


def _hook_failed(hook: Hook, exc: Exception) -> None:
    key = id(hook)
    if key not in _broken:
        _broken.add(key)
        # The exception's type only: a hook's message could hold anything.
        logger.error("an observability hook raised %s; ignoring it", type(exc).__name__)


def report(
    name: str,
    outcome: str,
    reason: str | None = None,
    duration: float | None = None,
    **attributes: Any,
) -> None:
    """Emit the record *name* (nothing is built without hooks).

    Call sites on a request path test :data:`HOOKS` first so that not even the keyword
    arguments are built; the issuer calls this directly (one line per decision point).
    """
    if HOOKS:
        dimensions = _dimensions(name, outcome, reason, attributes)
        emit(
            _tuple(
                Record,
                (name, outcome, reason, duration, _proxy(attributes), _wall(), dimensions),
            )
        )


#: A record without its duration and time, built once and reused for identical events:
#: name, outcome, reason, attributes (read-only) and dimensions.
Parts = tuple[str, str, "str | None", Mapping[str, Any], tuple[Any, ...]]


def parts(name: str, outcome: str, reason: str | None = None, **attributes: Any) -> Parts:
    """The parts of a record, to keep and emit many times with :func:`emit_parts`."""
    return name, outcome, reason, _proxy(attributes), _dimensions(name, outcome, reason, attributes)


def emit_parts(parts: Parts, duration: float | None = None) -> None:
    """Emit a record made of *parts* (call only when hooks are set)."""
    name, outcome, reason, attributes, dimensions = parts
    record = _tuple(Record, (name, outcome, reason, duration, attributes, _wall(), dimensions))
    for hook in HOOKS:  # emit(), inlined: this runs once per request
        try:
            hook(record)
        except Exception as exc:
            _hook_failed(hook, exc)


def decision_parts(
    outcome: str,
    status: int,
    reason: str | None,
    kind: str,
    scheme: str,
    cached: bool,
    issuer: str | None = None,
    client_id: str | None = None,
    stage: str = "guard",
) -> Parts:
    """The parts of a ``decision`` record (the one place its attributes are defined).

    *issuer* and *client_id* must come from a verified token; a refused request never
    names them. The parts can be kept and reused for identical decisions (the guard
    does, per remembered header); :func:`emit_parts` emits them with a duration.
    """
    return parts(
        "decision",
        outcome,
        reason,
        status=status,
        kind=kind,
        scheme=scheme,
        cached=cached,
        issuer=issuer,
        client_id=client_id,
        stage=stage,
    )


@dataclass(slots=True, eq=False, repr=False)
class Incident:
    """Logs trouble once per incident: the first failure at WARNING, the ones that
    follow at DEBUG, and the recovery at INFO.

    Args:
        log: The logger.
        what: What is in trouble, for the messages (fixed or configured text, never
            request data, e.g. "JWKS fetch from https://as.example/jwks").
        failure: The word for a failure ("failed": "JWKS fetch ... failed: <detail>").
        recovery: The words for the recovery ("works again").
        remind: While an incident lasts, repeat the WARNING at most this often
            (seconds); ``None``: never.
    """

    log: logging.Logger
    what: str
    _: KW_ONLY
    failure: str = "failed"
    recovery: str = "works again"
    remind: float | None = None
    _active: bool = field(default=False, init=False)
    _last: float = field(default=float("-inf"), init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def active(self) -> bool:
        """Whether an incident is running (failed, not recovered yet)."""
        return self._active

    def failed(self, detail: str, *args: Any, level: int = logging.WARNING) -> None:
        """A failure: *level* (WARNING) when it starts an incident, or when the last
        WARNING is older than ``remind``; DEBUG otherwise. *detail* is a %-format with
        *args* (fixed codes and type names only: never an exception message)."""
        now = time.monotonic()
        with self._lock:
            loud = not self._active or (self.remind is not None and now - self._last >= self.remind)
            self._active = True
            if loud:
                self._last = now
        self.log.log(
            level if loud else logging.DEBUG,
            f"{self.what} {self.failure}: {detail}",
            *args,
            stacklevel=2,  # the line that failed, not this one
        )

    def recovered(self) -> None:
        """A success: ends a running incident with one INFO line (cheap otherwise)."""
        if self._active:
            with self._lock:
                was, self._active = self._active, False
            if was:
                self.log.info("%s %s", self.what, self.recovery, stacklevel=2)


_rejection_level: int | None = logging.INFO


def set_rejection_log_level(level: int | None) -> None:
    """The level at which refused requests are logged on ``scopegate.rejections``
    (``logging.INFO`` by default; ``None``: never).

    Raises:
        ConfigurationError: *level* is not a logging level.
    """
    global _rejection_level
    if level is not None and (type(level) is not int or not 0 < level <= logging.CRITICAL):
        raise ConfigurationError("the rejection log level must be a logging level, or None")
    _rejection_level = level


def log_rejection(status: int, error: str, reason: str, where: str) -> None:
    """One line for a refused request (fixed codes only: never the token, never a path)."""
    level = _rejection_level
    if level is not None and rejections.isEnabledFor(level):
        rejections.log(level, "%s %s %s (%s)", where, status, error, reason)


def refused(error: BearerError, token: AccessToken | None, stage: str = "endpoint") -> None:
    """Log and report a refusal decided after the guard (a scope decorator, the MCP
    gate's per-tool check): one ``scopegate.rejections`` line and, with hooks, one
    ``decision`` record of *stage*."""
    log_rejection(error.status, error.error or "-", error.reason, stage)
    if HOOKS:
        emit_parts(
            decision_parts(
                refusal(error.status),
                error.status,
                error.reason,
                "none" if token is None else token_kind(token.token),
                "none" if token is None else ("dpop" if token.jkt else "bearer"),
                False,
                stage=stage,
            ),
            0.0,
        )


def refusal(status: int) -> str:
    """The outcome word of a refusal with *status*: ``unavailable`` for a 503."""
    return "unavailable" if status == 503 else "rejected"


def token_kind(raw: str | None) -> str:
    """``jwt`` for a compact JWS shape, ``opaque`` otherwise, ``none`` without a token."""
    if raw is None:
        return "none"
    return "jwt" if raw.count(".") == 2 else "opaque"
