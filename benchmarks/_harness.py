"""Interleaved micro-benchmark harness shared by the bench scripts.

Every case is calibrated once so that one sample takes about ``target`` seconds, then
all cases run round-robin for ``rounds`` rounds, the order reversed every other round.
A shared, noisy box drifts slowly, so every ratio is computed *inside* a round
(case / baseline of that same round) and only then summarised as min / median / max.
"""

from __future__ import annotations

import gc
import json
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

#: A sample function: run the case ``n`` times and return the elapsed seconds.
Runner = Callable[[int], float]

#: The clock of every micro-benchmark: CPU time of the measuring thread. On a shared box
#: a wall clock also counts the time the process sat descheduled behind other work; the
#: thread's CPU time counts only the work itself (ns resolution on Linux).
clock = time.thread_time


@dataclass
class Case:
    """One measured operation.

    ``run(n)`` performs the operation ``n`` times and returns the elapsed seconds, so a
    case can time a plain call (see :func:`call_case`) or a batch inside an event loop.
    """

    name: str
    run: Runner
    group: str = ""


@dataclass
class Stat:
    """Per-operation time of one case over all rounds (µs)."""

    case: str
    group: str
    samples_us: list[float] = field(default_factory=list)

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_us)

    @property
    def min_us(self) -> float:
        return min(self.samples_us)

    @property
    def max_us(self) -> float:
        return max(self.samples_us)

    def row(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "group": self.group,
            "median_us": round(self.median_us, 3),
            "min_us": round(self.min_us, 3),
            "max_us": round(self.max_us, 3),
        }


def call_case(name: str, fn: Callable[[], object], *, group: str = "", gc_off: bool = True) -> Case:
    """A case timing ``fn()`` with :mod:`timeit` (GC off unless ``gc_off`` is False)."""
    timer = timeit.Timer("fn()", timer=clock, globals={"fn": fn})

    def run(n: int) -> float:
        if gc_off:
            return timer.timeit(n)
        gc.enable()
        start = clock()
        for _ in range(n):
            fn()
        return clock() - start

    return Case(name, run, group)


def calibrate(case: Case, target: float) -> int:
    """Smallest loop count ``n`` (1, 2, 5, 10, ...) whose sample lasts ``target`` seconds."""
    n = 1
    while True:
        for mult in (1, 2, 5):
            count = n * mult
            if case.run(count) >= target * 0.2:
                elapsed = case.run(count)
                return max(1, int(count * target / max(elapsed, 1e-9)))
        n *= 10


def run_cases(
    cases: Sequence[Case],
    *,
    rounds: int = 9,
    target: float = 0.1,
    quick: bool = False,
    progress: bool = True,
) -> dict[str, Stat]:
    """Calibrate, then run every case ``rounds`` times round-robin; returns stats by name.

    ``quick`` runs each case a handful of times only: for smoke tests, not for numbers.
    """
    if quick:
        counts = {c.name: 3 for c in cases}
        rounds = min(rounds, 2)
    else:
        counts = {c.name: calibrate(c, target) for c in cases}
    stats = {c.name: Stat(c.name, c.group) for c in cases}
    for r in range(rounds):
        order = list(cases) if r % 2 == 0 else list(reversed(cases))
        for case in order:
            n = counts[case.name]
            elapsed = case.run(n)
            stats[case.name].samples_us.append(elapsed / n * 1e6)
        if progress:
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return stats


def ratio(stats: dict[str, Stat], num: str, den: str) -> dict[str, float]:
    """Per-round ``num/den`` ratios summarised as min / median / max."""
    values = [a / b for a, b in zip(stats[num].samples_us, stats[den].samples_us, strict=True)]
    return summary(values)


def difference(stats: dict[str, Stat], num: str, den: str) -> dict[str, float]:
    """Per-round ``num - den`` differences (µs) summarised as min / median / max."""
    values = [a - b for a, b in zip(stats[num].samples_us, stats[den].samples_us, strict=True)]
    return summary(values)


def summary(values: Sequence[float]) -> dict[str, float]:
    """min / median / max of *values*."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
    }


def fmt_us(stat: Stat) -> str:
    """``median (min-max)`` in µs with a sensible precision."""
    digits = 2 if stat.median_us < 10 else 1
    return f"**{stat.median_us:.{digits}f}** ({stat.min_us:.{digits}f}-{stat.max_us:.{digits}f})"


def fmt_summary(s: dict[str, float], prefix: str = "x", digits: int = 2) -> str:
    """``xmedian (min-max)``."""
    if prefix == "+":  # a difference: show its sign, whichever it is
        return f"{s['median']:+.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"
    return f"{prefix}{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of *dists* (``"-"`` when missing), plus Python and OpenSSL."""
    out: dict[str, str] = {"python": platform.python_version()}
    for dist in dists:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        out["openssl"] = backend.openssl_version_text()
    except Exception:  # pragma: no cover - informational only
        out["openssl"] = "?"
    return out


def loadavg() -> str:
    """The 1-minute load average, for the record."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:  # pragma: no cover - non-Linux
        return "?"


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    """Write *payload* as indented JSON."""
    Path(path).write_text(json.dumps(payload, indent=2, default=_default))


def _default(obj: object) -> object:
    if isinstance(obj, Stat):
        return obj.row()
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)  # type: ignore[call-overload]
    raise TypeError(type(obj).__name__)
