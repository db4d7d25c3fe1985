"""No test of this package may leave a hook behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scopegate import _observe


@pytest.fixture(autouse=True)
def no_leftover_hooks() -> Iterator[None]:
    """Each test starts and ends without hooks."""
    assert not _observe.HOOKS, _observe.HOOKS
    yield
    leftover = _observe.HOOKS
    for hook in leftover:
        _observe.remove_hook(hook)
    assert not leftover, f"a test left hooks registered: {leftover}"
