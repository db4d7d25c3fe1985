"""Bearer Token Middleware for WSGI
================================

This middleware makes any WSGI application an OAuth 2.0 resource server: it extracts the
bearer token of each request (RFC 6750 §2), verifies it with a
:class:`~scopegate.TokenVerifier` and hands the :class:`~scopegate.AccessToken` to the
application as ``environ["scopegate.token"]`` and through :func:`scopegate.current_token`.
Requests that fail get the RFC 6750 §3 response (401/400/403/503 with
``WWW-Authenticate``) and never reach the application.

.. code-block:: python

    from scopegate import JWTVerifier, require_scope
    from scopegate.wsgi import BearerAuthMiddleware

    @require_scope("items:read")
    def app(environ, start_response):
        token = environ["scopegate.token"]
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [token.subject.encode()]

    verifier = JWTVerifier(issuer="https://issuer.example", audience="api://items")
    app = BearerAuthMiddleware(app, verifier=verifier, exclude_paths=["/health"])

A :class:`~scopegate.BearerError` raised while the application is called (for instance by
:func:`scopegate.require_scope`) is rendered as its RFC 6750 response; other exceptions
propagate unchanged. The token stays available to :func:`~scopegate.current_token` while
the response iterable is consumed.

.. admonition:: Security caveat

    Only the ``Authorization`` header (and, when enabled, the query or form parameter) is
    trusted. WSGI servers merge a repeated ``Authorization`` header into one value joined
    by ``", "``; such a value breaks the bearer grammar and is refused with 401, but the
    duplicate itself cannot be seen, unlike under ASGI. Excluded paths are compared with
    the raw request target (``REQUEST_URI`` or ``RAW_URI``, falling back to
    ``SCRIPT_NAME + PATH_INFO``) exactly; place this middleware *inside* any proxy-fixing
    or path-rewriting middleware only if those rewrite what your router sees as well.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from scopegate._context import reset_current_token, set_current_token
from scopegate._errors import BearerError, HTTPResponse
from scopegate._guard import GuardedApp, raw_path_from_uri
from scopegate._token import AccessToken

__all__ = ["BearerAuthMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: Environ key holding the verified :class:`~scopegate.AccessToken` (or ``None``).
ENVIRON_KEY = "scopegate.token"


#: The environ key of each header name asked for: the two PEP 3333 (CGI) names without
#: the ``HTTP_`` prefix, then the first 64 other names asked for (scopegate asks for a
#: handful, all constants).
_ENVIRON_KEYS = {"content-type": "CONTENT_TYPE", "content-length": "CONTENT_LENGTH"}


class WSGIRequest:
    """The guard's view of a WSGI ``environ`` (PEP 3333)."""

    __slots__ = ("_environ", "authorization", "method", "query", "token_source")

    def __init__(self, environ: Environ) -> None:
        self._environ = environ
        self.method: str = str(environ.get("REQUEST_METHOD", "GET"))
        self.query: str = str(environ.get("QUERY_STRING") or "")
        # PEP 3333: the server merged repeated fields into this one variable.
        header = environ.get("HTTP_AUTHORIZATION")
        self.authorization: tuple[str, ...] = (header,) if isinstance(header, str) else ()
        self.token_source: str | None = None

    @property
    def path(self) -> str:
        """The raw request target's path (``REQUEST_URI``/``RAW_URI``), else
        ``SCRIPT_NAME + PATH_INFO``."""
        environ = self._environ
        uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
        if isinstance(uri, str) and uri:
            return raw_path_from_uri(uri)
        return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))

    @property
    def scheme(self) -> str:
        """``wsgi.url_scheme``."""
        return str(self._environ.get("wsgi.url_scheme") or "http")

    @property
    def content_type(self) -> str | None:
        """``CONTENT_TYPE``, or ``None``."""
        return self._environ.get("CONTENT_TYPE") or None

    @property
    def content_length(self) -> str | None:
        """``CONTENT_LENGTH``, or ``None``."""
        return self._environ.get("CONTENT_LENGTH") or None

    def header(self, name: str) -> list[str]:
        """The value of header *name* (lower case), merged by the server as PEP 3333 says."""
        key = _ENVIRON_KEYS.get(name)
        if key is None:
            key = "HTTP_" + name.upper().replace("-", "_")
            if len(_ENVIRON_KEYS) < 66:
                _ENVIRON_KEYS[name] = key
        value = self._environ.get(key)
        if key == "HTTP_HOST" and not value:
            # PEP 3333 URL reconstruction without a Host header.
            port = str(self._environ.get("SERVER_PORT", ""))
            value = str(self._environ.get("SERVER_NAME", "")) + (f":{port}" if port else "")
        return [value] if isinstance(value, str) and value else []

    def read_body(self, limit: int) -> bytes | None:
        """Read a body of known length up to *limit*; re-wrap ``wsgi.input`` for the app."""
        try:
            length = int(self._environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None  # PEP 3333: without a length the body must not be read
        if length < 0 or length > limit:
            return None
        body: bytes = self._environ["wsgi.input"].read(length) if length else b""
        self._environ["wsgi.input"] = io.BytesIO(body)
        return body


def _patch_headers(headers: list[tuple[str, str]], private: bool) -> list[tuple[str, str]]:
    has_vary = has_private = False
    for name, value in headers:
        # Length first: most headers are neither, and that test is cheaper than lower().
        size = len(name)
        if size == 4 and name.lower() == "vary":
            fields = {f.strip().lower() for f in value.split(",")}
            has_vary = has_vary or "authorization" in fields or "*" in fields
        elif private and size == 13 and name.lower() == "cache-control":
            lvalue = value.lower()
            has_private = has_private or "private" in lvalue or "no-store" in lvalue
    if has_vary and not (private and not has_private):
        return headers
    headers = list(headers)
    if not has_vary:
        headers.append(("Vary", "Authorization"))
    if private and not has_private:
        # RFC 6750 §2.3: a response to a URI-query token must not be cached publicly.
        headers.append(("Cache-Control", "private"))
    return headers


class _TokenBoundIterable:
    """Keeps :func:`current_token` set while a lazy response body is produced."""

    __slots__ = ("_iterable", "_iterator", "_token")

    def __init__(self, iterable: Iterable[bytes], token: AccessToken | None) -> None:
        self._iterable = iterable
        self._iterator: Iterator[bytes] = iter(iterable)
        self._token = token

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        marker = set_current_token(self._token)
        try:
            return next(self._iterator)
        finally:
            reset_current_token(marker)

    def close(self) -> None:
        close = getattr(self._iterable, "close", None)
        if close is not None:
            close()


class BearerAuthMiddleware(GuardedApp[WSGIApp]):
    """WSGI middleware that requires (or, if ``optional``, accepts) an OAuth 2.0 bearer token.

    Args:
        app: The WSGI application to protect.
        verifier: A :class:`~scopegate.TokenVerifier`; its sync ``verify`` is used.
        options: A :class:`~scopegate.GuardOptions`.
        **settings: Any :class:`~scopegate.GuardOptions` field, overriding *options*
            (``realm``, ``exclude_paths``, ``optional``, ``allow_query_token``...).
        guard: A ready :class:`~scopegate.BearerGuard` instead of verifier and options.

    Raises:
        ConfigurationError: An unusable setting.
    """

    def populate_environ(self, environ: Environ, token: AccessToken | None) -> None:
        """Publish the verified token as ``environ["scopegate.token"]``; override to add keys."""
        environ[ENVIRON_KEY] = token

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        request = WSGIRequest(environ)
        token = self.guard.decide(request)
        if isinstance(token, HTTPResponse):
            return _respond(start_response, token)
        private = request.token_source == "query"  # noqa: S105 - a source name
        started = False

        def start_patched(
            status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
        ) -> Callable[[bytes], object]:
            nonlocal started
            started = True
            return start_response(status, _patch_headers(headers, private), exc_info)

        self.populate_environ(environ, token)
        marker = set_current_token(token)
        try:
            result = self.app(environ, start_patched)
        except BearerError as error:
            # A decorator's error (require_scope...), on any path: its RFC 6750 answer.
            # PEP 3333: replacing headers already passed to start_response needs exc_info.
            return _respond(
                start_response, self.guard.render(error), sys.exc_info() if started else None
            )
        finally:
            reset_current_token(marker)
        if isinstance(result, list | tuple):
            return result
        return _TokenBoundIterable(result, token)


def _respond(
    start_response: StartResponse, response: HTTPResponse, exc_info: Any = None
) -> list[bytes]:
    if exc_info is not None:
        start_response(response.status_line, list(response.headers), exc_info)
    else:
        start_response(response.status_line, list(response.headers))
    return [response.body]
