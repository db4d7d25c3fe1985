"""What to tell a user whose install lacks an optional dependency: one wording, naming
the ``scopegate[...]`` extra that brings it."""

from __future__ import annotations

__all__ = ["install_hint", "missing_extra"]


def install_hint(subject: str, needs: str, extra: str) -> str:
    """``"<subject> needs <needs>: pip install 'scopegate[<extra>]'"``."""
    return f"{subject} needs {needs}: pip install 'scopegate[{extra}]'"


def missing_extra(module: str, needs: str) -> ImportError:
    """The ``ImportError`` for integration *module* (its ``__name__``) without *needs*
    installed: the extra is named after the module
    (``scopegate.integrations.flask`` needs ``pip install 'scopegate[flask]'``)."""
    return ImportError(install_hint(module, needs, module.rpartition(".")[2]))
