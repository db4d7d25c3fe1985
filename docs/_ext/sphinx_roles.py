"""Griffe extension for the API reference: Sphinx roles in docstrings become links.

scopegate's docstrings name other objects with Sphinx roles (:class:`~scopegate.X`,
:meth:`verify`, :mod:`scopegate.asgi`), which Python users also read in their editor.
For the site, each role becomes an *optional* mkdocstrings cross-reference: a link when
the target is on a reference page, plain code when it is private (``scopegate._flow``)
and therefore not documented. Relative names are resolved from the object's scope.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):`(~?)([^`]+)`")


def _identifier(target: str, obj: griffe.Object) -> str:
    """The full path *target* names, seen from *obj* (itself when it cannot be resolved)."""
    if target.startswith("scopegate"):
        return target
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except (griffe.NameResolutionError, AttributeError, KeyError):
        return target
    return f"{resolved}.{rest}" if rest else resolved


def _convert(text: str, obj: griffe.Object) -> str:
    def link(match: re.Match[str]) -> str:
        tilde, target = match.group(1), match.group(2).strip().removesuffix("()")
        title = target.rsplit(".", 1)[-1] if tilde else target
        identifier = html.escape(_identifier(target, obj), quote=True)
        code = f"<code>{html.escape(title)}</code>"
        return f'<autoref optional identifier="{identifier}">{code}</autoref>'

    return _ROLE.sub(link, text)


class SphinxRoles(griffe.Extension):
    """Rewrite Sphinx roles in every docstring of the loaded package."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = _convert(obj.docstring.value, obj)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]
