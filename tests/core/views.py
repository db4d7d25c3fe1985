"""A plain RequestView for driving BearerGuard directly in tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class FakeRequest:
    """What an adapter would hand the guard, set field by field."""

    method: str = "GET"
    scheme: str = "http"
    path: str = "/items"
    query: str = ""
    authorization: Sequence[str] = ()
    content_type: str | None = None
    content_length: str | None = None
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes | None = None
    token_source: str | None = None
    reads: int = 0

    def header(self, name: str) -> list[str]:
        """Every value of header *name*."""
        return self.headers.get(name, [])

    def read_body(self, limit: int) -> bytes | None:
        """The body when at most *limit* bytes."""
        self.reads += 1
        if self.body is None or len(self.body) > limit:
            return None
        return self.body


def bearer(token: str, **fields: object) -> FakeRequest:
    """A GET with one ``Authorization: Bearer <token>`` header."""
    return FakeRequest(authorization=[f"Bearer {token}"], **fields)  # type: ignore[arg-type]
