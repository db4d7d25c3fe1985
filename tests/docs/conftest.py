"""Collect the code blocks of README.md and docs/**/*.md as tests, one per block.

``make test`` runs ``pytest tests``, which never walks README.md or docs/. The file
tests/docs/pages.txt stands for them: collecting it yields one Sybil file per page (a
page added to docs/ is picked up by itself), and each block is one test item, named
``docs/PAGE.md::line:N,column:M``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sybil.integration.pytest import SybilFile

from tests.docs.blocks import make_sybil
from tests.servers import ROOT

HERE = Path(__file__).resolve().parent
SYBIL = make_sybil()


def pages() -> list[Path]:
    """README.md and every Markdown page of docs/ (folders starting with _ excluded)."""
    found = sorted(
        path
        for path in (ROOT / "docs").rglob("*.md")
        if not any(part.startswith("_") for part in path.relative_to(ROOT / "docs").parts)
    )
    return [ROOT / "README.md", *found]


class PageFile(SybilFile):
    """One documentation page; its blocks share a namespace, in order.

    A page's code may change process-wide state the way a reader would (register an
    observability hook, set a log level, add a handler): all of it is put back after
    the page, so later tests observe what they would without the docs.
    """

    def setup(self) -> None:
        from scopegate import _observe

        self._hooks = _observe.HOOKS
        self._rejection_level = _observe._rejection_level
        self._loggers = {
            name: (logger.level, list(logger.handlers), logger.propagate)
            for name, logger in _scopegate_loggers()
        }
        for document in self.documents:
            document.namespace["__file__"] = str(self.path)
        super().setup()

    def teardown(self) -> None:
        from scopegate import _observe

        for hook in _observe.HOOKS:
            if hook not in self._hooks:
                _observe.remove_hook(hook)
        _observe._rejection_level = self._rejection_level
        for name, logger in _scopegate_loggers():
            level, handlers, propagate = self._loggers.get(name, (logging.NOTSET, [], True))
            logger.setLevel(level)
            logger.handlers[:] = handlers
            logger.propagate = propagate
        super().teardown()


def _scopegate_loggers() -> list[tuple[str, logging.Logger]]:
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "scopegate"]
    return [(n, logging.getLogger(n)) for n in ["scopegate", *names]]


class Pages(pytest.File):
    """tests/docs/pages.txt: stands for README.md and the pages of docs/."""

    def collect(self):  # type: ignore[no-untyped-def]
        for path in pages():
            yield PageFile.from_parent(self, path=path, sybils=[SYBIL])


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect tests/docs/pages.txt as the documentation pages."""
    if file_path == HERE / "pages.txt":
        return Pages.from_parent(parent, path=file_path)
    return None
