"""The companion issuers, shared by every conformance module."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance._stack import Issuers


@pytest.fixture(scope="package")
def issuers() -> Iterator[Issuers]:
    """The companion issuers (one per token format), started lazily."""
    with tempfile.TemporaryDirectory(prefix="scopegate-conformance-") as workdir:
        issuers = Issuers(Path(workdir))
        with issuers.stack:
            yield issuers
