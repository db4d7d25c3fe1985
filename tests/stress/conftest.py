"""Fixtures for the stress suite, and the figures it reports at the end of the run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.stress.figures import FIGURES, NOTES
from tests.stress.procs import FaultServer


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
