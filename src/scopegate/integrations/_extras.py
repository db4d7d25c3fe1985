"""The error an integration raises when its framework is not installed."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(module: str, needs: str) -> ImportError:
    """The ``ImportError`` for integration *module* (its ``__name__``) without *needs*
    installed: it names the extra that installs it, the module's own name
    (``scopegate.integrations.flask`` needs ``pip install 'scopegate[flask]'``)."""
    extra = module.rpartition(".")[2]
    return ImportError(f"{module} needs {needs}: pip install 'scopegate[{extra}]'")
