"""A real JWKS + discovery server on 127.0.0.1 for the key-handling tests.

``JWKSServer`` is a plain ASGI app run by uvicorn (``tests.servers.run_asgi``) whose
behaviour the test changes while it runs::

    with JWKSServer.running(keys=[RSA_KEY]) as server:
        server.url            # base URL = the issuer identifier
        server.jwks_uri       # server.url + "/jwks"
        server.keys = [RSA_KEY, RSA_KEY_2]   # rotate
        server.mode = "error"  # see MODES
        server.hits["/jwks"]  # requests counted per path

Modes for ``/jwks`` (``mode``) and for the discovery documents (``discovery_mode``):
``ok``, ``error`` (503), ``not_found`` (404), ``slow`` (sleeps ``delay`` seconds, then ok),
``garbage`` (200 non-JSON as application/json), ``html`` (200 text/html), ``redirect``
(302 to another host), ``huge`` (2 MiB JSON), ``not_object`` (a JSON array), ``empty``
(``{"keys": []}``). ``jwks_extra`` adds raw JWK dicts to the set.

Discovery: ``/.well-known/oauth-authorization-server[/path]`` serves RFC 8414 metadata
when ``oauth_enabled``, ``/[path/].well-known/openid-configuration`` serves OIDC metadata
when ``oidc_enabled``; ``metadata_issuer`` overrides the advertised ``issuer`` and
``metadata_extra`` adds members (e.g. a bad ``jwks_uri``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from tests.core.tokens import SigningKey
from tests.servers import free_port, run_asgi

MODES = (
    "ok",
    "error",
    "not_found",
    "slow",
    "garbage",
    "html",
    "redirect",
    "huge",
    "not_object",
    "empty",
)


class JWKSServer:
    """ASGI app serving a JWKS and discovery metadata, with switchable failures."""

    def __init__(self, keys: list[SigningKey] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.initial_keys = list(keys or [])
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Back to serving ``initial_keys`` with every switch off and counters zeroed."""
        self.keys: list[SigningKey] = list(self.initial_keys)
        self.jwks_extra: list[dict[str, Any]] = []
        self.mode = "ok"
        self.discovery_mode = "ok"
        self.delay = 2.0
        self.oauth_enabled = True
        self.oidc_enabled = True
        self.metadata_issuer: str | None = None
        self.metadata_extra: dict[str, Any] = {}
        self.hits: Counter[str] = Counter()

    @property
    def jwks_uri(self) -> str:
        return self.url + "/jwks"

    def metadata(self, issuer_path: str = "") -> dict[str, Any]:
        issuer = self.url + issuer_path
        doc: dict[str, Any] = {
            "issuer": self.metadata_issuer if self.metadata_issuer is not None else issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": self.url + "/token",
            "introspection_endpoint": self.url + "/introspect",
        }
        doc.update(self.metadata_extra)
        return doc

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk() for k in self.keys] + list(self.jwks_extra)}

    @classmethod
    @contextlib.contextmanager
    def running(cls, keys: list[SigningKey] | None = None) -> Iterator[JWKSServer]:
        """Serve a new instance with uvicorn in a thread."""
        server = cls(keys)
        with run_asgi(server, port=server.port):
            yield server

    async def _send(
        self,
        send: Any,
        status: int,
        body: bytes,
        ctype: str,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]
        await send(
            {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
        )
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, send: Any, mode: str, document: dict[str, Any]) -> None:
        if mode == "slow":
            await asyncio.sleep(self.delay)
            mode = "ok"
        if mode == "ok":
            await self._send(send, 200, json.dumps(document).encode(), "application/json")
        elif mode == "error":
            await self._send(send, 503, b"down", "text/plain")
        elif mode == "not_found":
            await self._send(send, 404, b"{}", "application/json")
        elif mode == "garbage":
            await self._send(send, 200, b"{not json", "application/json")
        elif mode == "html":
            await self._send(send, 200, json.dumps(document).encode(), "text/html")
        elif mode == "redirect":
            await self._send(
                send, 302, b"", "text/plain", [(b"location", b"http://evil.example/jwks")]
            )
        elif mode == "huge":
            body = json.dumps({"keys": [], "pad": "x" * (2 << 20)}).encode()
            await self._send(send, 200, body, "application/json")
        elif mode == "not_object":
            await self._send(send, 200, b"[]", "application/json")
        elif mode == "empty":
            await self._send(send, 200, b'{"keys": []}', "application/json")
        else:  # pragma: no cover - a typo in a test
            raise AssertionError(f"unknown mode {mode}")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        path: str = scope["path"]
        with self.lock:
            self.hits[path] += 1
        oauth = "/.well-known/oauth-authorization-server"
        oidc = "/.well-known/openid-configuration"
        if path == "/jwks":
            await self._serve(send, self.mode, self.jwks())
        elif path.startswith(oauth) and self.oauth_enabled:
            await self._serve(send, self.discovery_mode, self.metadata(path[len(oauth) :]))
        elif path.endswith(oidc) and self.oidc_enabled:
            await self._serve(send, self.discovery_mode, self.metadata(path[: -len(oidc)]))
        else:
            await self._send(send, 404, b"not found", "text/plain")
