"""Collect the code blocks of README.md and docs/**/*.md as tests, one per block.

``make test`` runs ``pytest tests``, which never walks README.md or docs/. The file
tests/docs/pages.txt stands for them: collecting it yields one Sybil file per page (a
page added to docs/ is picked up by itself), and each block is one test item, named
``docs/PAGE.md::line:N,column:M``.
"""

from __future__ import annotations

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
    """One documentation page; its blocks share a namespace, in order."""

    def setup(self) -> None:
        for document in self.documents:
            document.namespace["__file__"] = str(self.path)
        super().setup()


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
