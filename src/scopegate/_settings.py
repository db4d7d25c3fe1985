"""Type-checked settings: every option of a public constructor goes through these.

A security setting must never be "truthy": ``"false"`` where a boolean belongs is an
error, not ``True``; ``True`` where a number belongs is an error, not ``1``. Each helper
returns the value it accepted and raises :class:`~scopegate.ConfigurationError` naming
the setting (never echoing a value that may be a secret).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from scopegate._errors import ConfigurationError

__all__ = ["boolean", "number", "optional_number", "string", "strings", "whole"]


def boolean(name: str, value: Any) -> bool:
    """*value* if it is a ``bool``."""
    if type(value) is not bool:
        raise ConfigurationError(f"{name} must be True or False, not {type(value).__name__}")
    return value


def number(
    name: str, value: Any, *, low: float = 0.0, high: float = math.inf, low_open: bool = False
) -> float:
    """*value* as a float if it is a finite ``int``/``float`` within ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigurationError(f"{name} must be a number, not {type(value).__name__}")
    if not (math.isfinite(value) and (value > low if low_open else value >= low) and value <= high):
        bound = f"above {low:g}" if low_open else f"at least {low:g}"
        if high != math.inf:
            bound += f" and at most {high:g}"
        raise ConfigurationError(f"{name} must be a finite number {bound}")
    return float(value)


def optional_number(name: str, value: Any, **bounds: Any) -> float | None:
    """``None``, or :func:`number`."""
    return None if value is None else number(name, value, **bounds)


def whole(name: str, value: Any, *, low: int = 0, high: int | None = None) -> int:
    """*value* if it is an ``int`` (not a ``bool``) within ``[low, high]``."""
    if type(value) is not int:
        raise ConfigurationError(f"{name} must be an integer, not {type(value).__name__}")
    if value < low or (high is not None and value > high):
        limit = f" and at most {high}" if high is not None else ""
        raise ConfigurationError(f"{name} must be at least {low}{limit}")
    return value


def string(name: str, value: Any, *, empty: bool = False) -> str:
    """*value* if it is a ``str`` (non-empty unless *empty*)."""
    if type(value) is not str or (not empty and not value):
        raise ConfigurationError(f"{name} must be a non-empty string")
    return value


def strings(name: str, value: Any, *, empty: bool = False) -> tuple[str, ...]:
    """*value* as a tuple if it is a collection of non-empty strings (not one ``str``)."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ConfigurationError(f"{name} must be a list of strings, not a single value")
    items = tuple(value)
    if not all(type(item) is str and item for item in items):
        raise ConfigurationError(f"{name} must contain non-empty strings only")
    if not empty and not items:
        raise ConfigurationError(f"{name} must not be empty")
    return items
