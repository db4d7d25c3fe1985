"""A table-driven verifier for the integration tests: known tokens map to AccessTokens.

The integrations only translate between a framework and the core, so their tests need a
verifier whose answers are known in advance; the real verifiers are exercised end to end
by tests/conformance against the companion issuer.
"""

from __future__ import annotations

import threading

from scopegate._errors import InvalidTokenError, KeySetUnavailableError
from scopegate._token import AccessToken

#: Token strings the fake verifier knows, and the scopes each one grants.
GRANTS: dict[str, frozenset[str]] = {
    "tok-read": frozenset({"items:read"}),
    "tok-write": frozenset({"items:write"}),
    "tok-admin": frozenset({"admin"}),
    "tok-read-admin": frozenset({"items:read", "admin"}),
    "tok-all": frozenset({"items:read", "items:write", "admin"}),
    "tok-none": frozenset(),
}

#: A token that makes the verifier fail as if the key server were down.
OUTAGE_TOKEN = "tok-outage"


def access_token(raw: str) -> AccessToken:
    """The AccessToken the fake verifier returns for a known *raw* token."""
    return AccessToken(
        subject=f"user-{raw}",
        client_id="client-1",
        scopes=GRANTS[raw],
        expires_at=2_000_000_000,
        claims={"sub": f"user-{raw}", "client_id": "client-1"},
        issuer="https://issuer.example",
        token=raw,
    )


class FakeVerifier:
    """Implements the TokenVerifier protocol from the GRANTS table; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.async_calls = 0
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def _lookup(self, token: str) -> AccessToken:
        if token == OUTAGE_TOKEN:
            raise KeySetUnavailableError(reason="jwks_unreachable")
        if token not in GRANTS:
            raise InvalidTokenError(reason="unknown_token")
        return access_token(token)

    def verify(self, token: str) -> AccessToken:
        """Sync verification, recording the calling thread."""
        with self._lock:
            self.calls += 1
            self.threads.add(threading.current_thread().name)
        return self._lookup(token)

    async def averify(self, token: str) -> AccessToken:
        """Async verification; never touches the sync counter."""
        self.async_calls += 1
        return self._lookup(token)


def bearer(token: str) -> dict[str, str]:
    """Authorization header for *token*."""
    return {"Authorization": f"Bearer {token}"}


def ws_url(base_url: str, path: str) -> str:
    """The ws:// URL of *path* on an http:// server."""
    return "ws" + base_url.removeprefix("http") + path


def ws_echo(base_url: str, path: str, token: str | None, text: str = "ping") -> str:
    """Open a WebSocket, send *text*, return the echo (raises if the handshake fails)."""
    from websockets.sync.client import connect

    headers = bearer(token) if token else None
    with connect(ws_url(base_url, path), additional_headers=headers, proxy=None) as conn:
        conn.send(text)
        return str(conn.recv(timeout=5))


def ws_refusal(base_url: str, path: str, token: str | None) -> int:
    """Open a WebSocket expecting refusal; return the handshake's HTTP status."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    headers = bearer(token) if token else None
    try:
        with connect(ws_url(base_url, path), additional_headers=headers, proxy=None):
            pass
    except InvalidStatus as exc:
        return int(exc.response.status_code)
    raise AssertionError("the WebSocket handshake was accepted")
