"""OpenTelemetry spans and metrics of what the gate decides (``pip install 'scopegate[otel]'``).

Usage::

    import scopegate.otel

    instrumentation = scopegate.otel.instrument()   # the global providers
    ...
    instrumentation.uninstrument()

:func:`instrument` registers a hook (:func:`scopegate.add_hook`) that turns records
into telemetry through the OpenTelemetry API (configure the SDK and its exporters as
usual; without an SDK the API's no-op providers make this nearly free):

* **Spans** ``scopegate.decision`` (each guard decision and each decorator refusal),
  ``scopegate.jwks_fetch``, ``scopegate.discovery_fetch`` and
  ``scopegate.introspection``. A record arrives when the work is done, so each span is
  created afterwards with the measured start and end times, as a child of the span that
  is current then (the request's server span, with an ASGI/WSGI instrumentation). For
  the same reason a decision span is not the parent of the fetch spans made while it
  waited: they are its siblings. Attributes: ``scopegate.outcome``,
  ``scopegate.reason``, ``scopegate.token.kind``, ``scopegate.scheme``,
  ``scopegate.cached``, ``scopegate.stage``, ``http.response.status_code``; the issuer
  and client id (``scopegate.issuer``, ``scopegate.client_id``) only for verified
  tokens. A 503 (``unavailable``) or a failed fetch sets the span status to ERROR.
* **Metrics**: counter ``scopegate.decisions`` {outcome, reason, kind, scheme, cached,
  stage}; histograms ``scopegate.decision.duration`` (s, guard decisions) {cached} and
  ``scopegate.fetch.duration`` (s) {kind: jwks / discovery / introspection, outcome};
  counter ``scopegate.cache.lookups`` {backend, outcome} (the hit ratio is
  ``hit / (hit + miss)``); counters ``scopegate.redis.fallbacks`` {purpose},
  ``scopegate.key.rotations``, ``scopegate.issuer.grants`` {grant_type, outcome},
  ``scopegate.issuer.failures`` {endpoint, error}, ``scopegate.issuer.throttled``
  {limit}, ``scopegate.issuer.refresh_reuse``. Metric attributes take their values from
  fixed sets (:data:`scopegate._observe.LABEL_VALUES`, ``other`` otherwise); issuer and
  client ids are never metric attributes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from scopegate import _observe
from scopegate._errors import ConfigurationError
from scopegate._extras import install_hint
from scopegate._observe import Record
from scopegate._version import __version__

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

__all__ = ["Instrumentation", "instrument"]

#: The instrumentation scope name of scopegate's tracer and meter.
SCOPE = "scopegate"
_SPANS = {
    "decision": "scopegate.decision",
    "jwks_fetch": "scopegate.jwks_fetch",
    "discovery_fetch": "scopegate.discovery_fetch",
    "introspection": "scopegate.introspection",
}
_FETCH_KINDS = {
    "jwks_fetch": "jwks",
    "discovery_fetch": "discovery",
    "introspection": "introspection",
}
# Bucket boundaries advised for the duration histograms (seconds); see scopegate.prometheus.
_DECISION_BUCKETS = (0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)
_FETCH_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_MAX_BOUND = 4096

Attributes = Mapping[str, Any]
# What one record does to the meters: (instrument method, value is the duration?, attributes).
_Measure = tuple[Callable[..., None], bool, Attributes]


def _otel() -> tuple[Any, Any]:
    try:
        from opentelemetry import metrics, trace
    except ImportError as exc:
        raise ConfigurationError(
            install_hint("scopegate.otel", "opentelemetry-api", "otel")
        ) from exc
    return trace, metrics


class Instrumentation:
    """scopegate's spans and metrics through one tracer and one meter; see
    :func:`instrument`.

    Attributes:
        tracer: The ``opentelemetry.trace.Tracer`` used.
        meter: The ``opentelemetry.metrics.Meter`` used.
    """

    def __init__(self, tracer_provider: Any = None, meter_provider: Any = None) -> None:
        trace, metrics = _otel()
        self._trace = trace
        self.tracer = trace.get_tracer(SCOPE, __version__, tracer_provider=tracer_provider)
        self.meter = metrics.get_meter(SCOPE, __version__, meter_provider=meter_provider)
        meter = self.meter
        counter = meter.create_counter
        self._instruments: dict[str, tuple[Callable[..., None], Callable[..., Any]]] = {
            # record name -> (instrument method, attributes from the metric labels)
            "decision": (
                counter("scopegate.decisions", "{decision}", "Requests decided.").add,
                lambda v: {
                    "outcome": v[0],
                    "reason": v[1],
                    "kind": v[2],
                    "scheme": v[3],
                    "stage": v[4],
                    "cached": v[5],
                },
            ),
            "cache": (
                counter("scopegate.cache.lookups", "{lookup}", "Introspection cache lookups.").add,
                lambda v: {"backend": v[2], "outcome": v[0]},
            ),
            "redis_fallback": (
                counter(
                    "scopegate.redis.fallbacks", "{operation}", "Operations that fell back."
                ).add,
                lambda v: {"purpose": v[2]},
            ),
            "key_rotation": (
                counter("scopegate.key.rotations", "{rotation}", "Key set changes.").add,
                lambda v: {},
            ),
            "issuer_grant": (
                counter("scopegate.issuer.grants", "{grant}", "Issuer token grants.").add,
                lambda v: {"grant_type": v[2], "outcome": v[0]},
            ),
            "issuer_failure": (
                counter("scopegate.issuer.failures", "{response}", "Issuer error answers.").add,
                lambda v: {"endpoint": v[2], "error": v[0]},
            ),
            "issuer_throttled": (
                counter("scopegate.issuer.throttled", "{attempt}", "Throttled attempts.").add,
                lambda v: {"limit": v[2]},
            ),
            "issuer_refresh_reuse": (
                counter("scopegate.issuer.refresh_reuse", "{token}", "Reused refresh tokens.").add,
                lambda v: {},
            ),
        }
        self._decision_duration = meter.create_histogram(
            "scopegate.decision.duration",
            "s",
            "Time the guard took to decide a request.",
            explicit_bucket_boundaries_advisory=_DECISION_BUCKETS,
        ).record
        self._fetch_duration = meter.create_histogram(
            "scopegate.fetch.duration",
            "s",
            "Calls to the authorization server.",
            explicit_bucket_boundaries_advisory=_FETCH_BUCKETS,
        ).record
        self._measures: dict[tuple[Any, ...], tuple[_Measure, ...]] = {}
        self._lock = threading.Lock()
        self._active = False
        #: The hook registered with :func:`scopegate.add_hook`.
        self.hook: _observe.Hook = self._record

    def __repr__(self) -> str:
        return f"<scopegate.otel.Instrumentation active={self._active}>"

    def _record(self, record: Record) -> None:
        measures = self._measures.get(record.dimensions)
        if measures is None:
            measures = self._bind(record.dimensions)
        for method, timed, attributes in measures:
            if timed:
                if record.duration is not None:
                    method(record.duration, attributes)
            else:
                method(1, attributes)
        if record.name in _SPANS:
            self._span(record)

    def _bind(self, dimensions: tuple[Any, ...]) -> tuple[_Measure, ...]:
        """What a record with *dimensions* does to the meters (bounded attributes)."""
        labels = _observe.metric_labels(dimensions)
        measures: tuple[_Measure, ...] = ()
        if labels is not None:
            name = dimensions[0]
            out: list[_Measure] = []
            instrument = self._instruments.get(name)
            if instrument is not None:
                method, pick = instrument
                out.append((method, False, pick(labels)))
            if name == "decision" and labels[4] == "guard":
                out.append((self._decision_duration, True, {"cached": labels[5]}))
            if name in _FETCH_KINDS:
                fetch = {"kind": _FETCH_KINDS[name], "outcome": labels[0]}
                out.append((self._fetch_duration, True, fetch))
            measures = tuple(out)
        with self._lock:
            if len(self._measures) < _MAX_BOUND:
                self._measures[dimensions] = measures
        return measures

    def _span(self, record: Record) -> None:
        """The record's span, made after the fact with its measured times."""
        end = int(record.time * 1e9)
        duration = record.duration
        # The duration comes from a monotonic clock, the end from the wall clock: a span
        # never starts after it ends.
        start = end - max(0, round(duration * 1e9)) if duration is not None else end
        attributes: dict[str, Any] = {"scopegate.outcome": record.outcome}
        if record.reason is not None:
            attributes["scopegate.reason"] = record.reason
        values = record.attributes
        if record.name == "decision":
            attributes["scopegate.token.kind"] = values["kind"]
            attributes["scopegate.scheme"] = values["scheme"]
            attributes["scopegate.cached"] = values["cached"]
            attributes["scopegate.stage"] = values["stage"]
            attributes["http.response.status_code"] = values["status"]
            # Present only for verified tokens (the records never name others).
            if values.get("issuer") is not None:
                attributes["scopegate.issuer"] = values["issuer"]
            if values.get("client_id") is not None:
                attributes["scopegate.client_id"] = values["client_id"]
        elif record.name == "jwks_fetch":
            attributes["scopegate.keys"] = values.get("keys", 0)
            attributes["scopegate.cause"] = values.get("cause", "")
        elif record.name == "discovery_fetch":
            attributes["scopegate.discovery"] = values.get("kind", "")
        span = self.tracer.start_span(_SPANS[record.name], start_time=start, attributes=attributes)
        if record.outcome in ("unavailable", "failed"):
            trace = self._trace
            span.set_status(trace.Status(trace.StatusCode.ERROR, record.reason))
        span.end(end_time=end)

    def _start(self) -> None:
        _observe.add_hook(self.hook)
        self._active = True

    def uninstrument(self) -> None:
        """Stop producing spans and metrics (idempotent)."""
        if self._active:
            self._active = False
            _observe.remove_hook(self.hook)


def instrument(
    tracer_provider: TracerProvider | None = None, meter_provider: MeterProvider | None = None
) -> Instrumentation:
    """Produce scopegate's spans and metrics through OpenTelemetry.

    Call it once per pair of providers: each call adds a hook.

    Args:
        tracer_provider: The ``TracerProvider``; the global one when omitted.
        meter_provider: The ``MeterProvider``; the global one when omitted.

    Returns:
        The :class:`Instrumentation`; call ``uninstrument()`` to stop.

    Raises:
        ConfigurationError: opentelemetry-api is not installed (the ``otel`` extra).
    """
    instrumentation = Instrumentation(tracer_provider, meter_provider)
    instrumentation._start()
    return instrumentation
