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

from scopegate._bearer import DEFAULT_MAX_TOKEN_LENGTH
from scopegate._context import reset_current_token, set_current_token
from scopegate._errors import BearerError
from scopegate._guard import DEFAULT_MAX_FORM_BODY, BearerGuard, raw_path_from_uri
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier

__all__ = ["BearerAuthMiddleware"]

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Callable[[bytes], object]]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

#: Environ key holding the verified :class:`~scopegate.AccessToken` (or ``None``).
ENVIRON_KEY = "scopegate.token"


def _raw_path(environ: Environ) -> str:
    uri = environ.get("REQUEST_URI") or environ.get("RAW_URI")
    if isinstance(uri, str) and uri:
        return raw_path_from_uri(uri)
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


def _buffer_form(environ: Environ, limit: int) -> bytes | None:
    """Read a form body of known length up to *limit*; re-wrap ``wsgi.input`` for the app."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # PEP 3333: without a length the body must not be read
    if length < 0 or length > limit:
        return None
    body: bytes = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
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


class BearerAuthMiddleware:
    """WSGI middleware that requires (or, if ``optional``, accepts) an OAuth 2.0 bearer token.

    Args:
        app: The WSGI application to protect.
        verifier: A :class:`~scopegate.TokenVerifier`; its sync ``verify`` is used.
        realm: ``realm`` of the ``WWW-Authenticate`` challenge.
        exclude_paths: Raw paths served without authentication, matched exactly.
        optional: Let requests without credentials through with token ``None``.
        allow_query_token: Accept ``?access_token=`` on GET requests.
        allow_form_token: Accept an ``access_token`` field in POST form bodies.
        max_token_length: Longest token accepted (default 8192).
        allow_preflight: Let CORS preflight requests through unauthenticated.
        max_form_body: Largest form body buffered to look for ``access_token``.

    Raises:
        ConfigurationError: An unusable setting (see :class:`~scopegate.BearerGuard`).
    """

    def __init__(
        self,
        app: WSGIApp,
        *,
        verifier: TokenVerifier,
        realm: str = "api",
        exclude_paths: Iterable[str] = (),
        optional: bool = False,
        allow_query_token: bool = False,
        allow_form_token: bool = False,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
        allow_preflight: bool = False,
        max_form_body: int = DEFAULT_MAX_FORM_BODY,
    ) -> None:
        self.app = app
        self.guard = BearerGuard(
            verifier,
            realm=realm,
            exclude_paths=exclude_paths,
            optional=optional,
            allow_query_token=allow_query_token,
            allow_form_token=allow_form_token,
            max_token_length=max_token_length,
            allow_preflight=allow_preflight,
            max_form_body=max_form_body,
        )

    def populate_environ(self, environ: Environ, token: AccessToken | None) -> None:
        """Publish the verified token as ``environ["scopegate.token"]``; override to add keys."""
        environ[ENVIRON_KEY] = token

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        guard = self.guard
        method = str(environ.get("REQUEST_METHOD", "GET"))
        # The raw path is only computed when there are paths to exclude.
        if (guard.exclude_paths and guard.is_excluded(_raw_path(environ))) or (
            guard.allow_preflight
            and guard.is_preflight(
                method,
                origin="HTTP_ORIGIN" in environ,
                request_method="HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ,
            )
        ):
            # Anonymous by configuration: downstream code can still read the key.
            self.populate_environ(environ, None)
            return self.app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION")
        authorization = (header,) if isinstance(header, str) else ()
        try:
            body: bytes | None = None
            content_type = environ.get("CONTENT_TYPE")
            if content_type and guard.wants_form_body(
                method, content_type, has_header=bool(authorization)
            ):
                body = _buffer_form(environ, guard.max_form_body)
            query = environ.get("QUERY_STRING")
            if not query and body is None and authorization:
                # The common request: one header, nothing to cross-check; a value whose
                # token verified before needs no parsing (BearerGuard.remember).
                value = authorization[0]
                credentials = guard.header_credentials(value)
                token = guard.verify(credentials)
                if token is not None:
                    guard.remember(value, credentials)
            else:
                credentials = guard.extract(
                    authorization=authorization,
                    method=method,
                    query_string=str(query or ""),
                    form_body=body,
                )
                token = guard.verify(credentials)
        except BearerError as error:
            return self._error(start_response, error)

        private = credentials.source == "query"
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
            return self._error(start_response, error, sys.exc_info() if started else None)
        finally:
            reset_current_token(marker)
        if isinstance(result, (list, tuple)):
            return result
        return _TokenBoundIterable(result, token)

    def _error(
        self, start_response: StartResponse, error: BearerError, exc_info: Any = None
    ) -> list[bytes]:
        status, headers, body = self.guard.wsgi_error(error)
        if exc_info is not None:
            # PEP 3333: replacing headers already passed to start_response needs exc_info.
            start_response(status, headers, exc_info)
        else:
            start_response(status, headers)
        return [body]
