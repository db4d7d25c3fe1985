"""Reports how many examples the fuzz properties ran."""

from __future__ import annotations

from typing import Any

from tests.fuzz.profile import EXAMPLES, PROFILE


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the fuzzed-example totals per property."""
    if not EXAMPLES:
        return
    terminalreporter.section(f"scopegate fuzz (profile {PROFILE})")
    for name, n in sorted(EXAMPLES.items()):
        terminalreporter.write_line(f"{n:>8}  {name}")
    terminalreporter.write_line(f"{sum(EXAMPLES.values()):>8}  examples in total")
