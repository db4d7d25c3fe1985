"""Hypothesis settings for the fuzz suite, scaled by ``HYPOTHESIS_PROFILE``.

The default (``dev``) profile keeps ``make test`` quick; ``HYPOTHESIS_PROFILE=ci`` (set by
``.ci/run``) multiplies the example counts so CI fuzzes tens of thousands of inputs.
Each property counts the examples it really ran; the fuzz conftest prints the totals.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "dev")

settings.register_profile(
    "ci",
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None)
if PROFILE in ("ci", "dev"):
    settings.load_profile(PROFILE)

#: Examples executed per property in this session (the figure for the report).
EXAMPLES: Counter[str] = Counter()


def fuzz_settings(dev: int, ci: int) -> settings:
    """Settings running *dev* examples normally and *ci* under the ``ci`` profile."""
    return settings(
        max_examples=ci if PROFILE == "ci" else dev,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture,
        ],
    )


def count(name: str) -> None:
    """Record that one example of property *name* ran."""
    EXAMPLES[name] += 1


def attempt(
    fn: Callable[[], T], *errors: type[BaseException]
) -> tuple[T | None, BaseException | None]:
    """Call *fn*; return ``(result, None)``, or ``(None, exc)`` for one of *errors*."""
    try:
        return fn(), None
    except errors as exc:
        return None, exc
