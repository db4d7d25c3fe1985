"""Figures the stress and leak suites report at the end of a run (faults, requests, memory)."""

from __future__ import annotations

from collections import Counter

#: Faults injected (and survived, when the test passed) per kind; load figures.
FIGURES: Counter[str] = Counter()
#: Measured values, one line each.
NOTES: list[str] = []


def record(kind: str, n: int = 1) -> None:
    """Add *n* to the figure *kind*."""
    FIGURES[kind] += n


def note(line: str) -> None:
    """Remember a line for the end-of-run summary (measured values)."""
    NOTES.append(line)
