"""A fake authorization server reachable over real HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

from scopegate._signing import SigningAlgorithm, SigningKey
from scopegate.testing._issuer import DEFAULT_AUDIENCE, LocalIssuer

if TYPE_CHECKING:
    from scopegate._jwt import JWTVerifier

__all__ = ["IssuerServer"]

_METADATA_PATHS = ("/.well-known/oauth-authorization-server", "/.well-known/openid-configuration")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        with owner._lock:
            owner.hits[path] += 1
            available = owner.available
        if not available:
            self._send(503, {"error": "temporarily_unavailable"}, (("Retry-After", "1"),))
        elif path in _METADATA_PATHS:
            self._send(200, owner.metadata())
        elif path == "/jwks.json":
            self._send(200, owner.jwks())
        else:
            self._send(404, {"error": "not_found"})

    def _send(self, status: int, body: Any, headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Test output stays clean; requests are counted in IssuerServer.hits instead.
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: IssuerServer


class IssuerServer(LocalIssuer):
    """A :class:`LocalIssuer` that also serves discovery and its JWKS over HTTP.

    The server binds ``127.0.0.1`` on a free port when built; its issuer identifier is
    ``http://127.0.0.1:PORT``, and it answers RFC 8414
    ``/.well-known/oauth-authorization-server``, OIDC ``/.well-known/openid-configuration``
    and ``/jwks.json``. Use it to test the real key-fetching path (discovery, caching,
    rotation, outages) end to end.

    Args:
        audience: Default ``aud`` of minted tokens.
        alg: Algorithm of the generated key.
        key: Reuse an existing :class:`SigningKey`.
        host: Interface to bind; keep the loopback default.
        port: ``0`` picks a free port.

    Attributes:
        available: Set to ``False`` to answer every request with 503 (an outage).
        hits: Requests served per path, to assert how often keys were fetched.

    Example:
        >>> with IssuerServer() as server:
        ...     verifier = server.verifier()    # discovers the JWKS over HTTP
        ...     token = server.make_token(scopes=["read"])
    """

    def __init__(
        self,
        *,
        audience: str = DEFAULT_AUDIENCE,
        alg: SigningAlgorithm = "RS256",
        key: SigningKey | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        **kwargs: Any,
    ) -> None:
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        bound_port = self._httpd.server_address[1]
        super().__init__(
            issuer=f"http://{host}:{bound_port}",
            audience=audience,
            alg=alg,
            key=key,
            **kwargs,
        )
        self.port = bound_port
        self.available = True
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def jwks_uri(self) -> str:
        """The URL of the JWK Set."""
        return f"{self.issuer}/jwks.json"

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization-server metadata this server publishes."""
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "token_endpoint": f"{self.issuer}/token",
            "grant_types_supported": ["client_credentials"],
            "response_types_supported": ["token"],
            "id_token_signing_alg_values_supported": [self.key.alg],
        }

    def start(self) -> IssuerServer:
        """Serve in a daemon thread; returns ``self``. Idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name="scopegate-issuer", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(10)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> IssuerServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def verifier(self, **options: Any) -> JWTVerifier:
        """A verifier that finds the keys over HTTP by discovery, like in production.

        Pass ``jwks_uri=server.jwks_uri`` to skip discovery, or ``keys=`` for offline.
        """
        from scopegate._jwt import JWTVerifier

        options.setdefault("issuer", self.issuer)
        options.setdefault("audience", self.audience)
        return JWTVerifier(**options)

    def env(self) -> dict[str, str]:
        """``SCOPEGATE_*`` variables that point :func:`scopegate.from_env` at this server."""
        return {
            "SCOPEGATE_ISSUER": self.issuer,
            "SCOPEGATE_AUDIENCE": self.audience,
            "SCOPEGATE_JWKS_URI": self.jwks_uri,
        }
