"""Fixtures for the stress suite, and the figures it reports at the end of the run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.stress.procs import FaultServer

#: Faults injected (and survived, when the test passed) per kind; load figures.
FIGURES: Counter[str] = Counter()
NOTES: list[str] = []


def record(kind: str, n: int = 1) -> None:
    """Add *n* to the figure *kind*."""
    FIGURES[kind] += n


def note(line: str) -> None:
    """Remember a line for the end-of-run summary (measured values)."""
    NOTES.append(line)


@pytest.fixture
def fault_server() -> Iterator[FaultServer]:
    """A misbehaving authorization server process (starts in ``ok`` mode)."""
    with FaultServer() as server:
        yield server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/stress carries the ``stress`` marker."""
    for item in items:
        if "tests/stress/" in str(item.fspath):
            item.add_marker(pytest.mark.stress)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the faults injected, requests checked and memory measured."""
    if not FIGURES and not NOTES:
        return
    terminalreporter.section("scopegate stress figures")
    for name, n in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{n:>9}  {name}")
    for line in NOTES:
        terminalreporter.write_line(line)
