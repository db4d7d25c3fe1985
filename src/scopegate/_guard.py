"""The sans-io request guard that every adapter (ASGI, WSGI, frameworks) drives.

:class:`BearerGuard` holds the validated configuration and answers the questions an
adapter has, in order:

1. :meth:`~BearerGuard.skips`: is this request let through unauthenticated (an excluded
   path, or a CORS preflight when allowed)?
2. :meth:`~BearerGuard.wants_form_body`: must the body be read to look for an
   ``access_token`` form field?
3. :meth:`~BearerGuard.extract` then :meth:`~BearerGuard.verify` /
   :meth:`~BearerGuard.averify` (or :meth:`~BearerGuard.authenticate` /
   :meth:`~BearerGuard.aauthenticate` for both): the :class:`~scopegate.AccessToken`, or
   ``None`` for an anonymous request in ``optional`` mode; a
   :class:`~scopegate.BearerError` otherwise.
4. :meth:`~BearerGuard.error_response`: the RFC 6750 §3 response for that error.

Adapters only translate their request and response objects; no policy lives in them.

Excluded paths are compared **exactly** with the raw request path as it was received
(ASGI ``raw_path``, WSGI ``REQUEST_URI``/``RAW_URI``), without the query string and
without any decoding or normalisation. ``/public/``, ``//public``, ``/public/../items``
or ``/%70ublic`` are therefore *not* ``/public`` and need a token: an unusual spelling
can only ever cost the client a 401, never skip authentication for a route it reaches.
List each spelling you want public.
"""

from __future__ import annotations

import itertools
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from scopegate._bearer import (
    DEFAULT_MAX_TOKEN_LENGTH,
    NO_CREDENTIALS,
    Credentials,
    extract_token,
    is_form_content_type,
    parse_authorization,
)
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    ErrorResponse,
    InvalidTokenError,
    MissingTokenError,
    check_realm,
)
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier

__all__ = ["DEFAULT_MAX_FORM_BODY", "BearerGuard", "add_vary", "raw_path_from_uri"]

logger = logging.getLogger("scopegate")

#: Largest form body buffered to look for an ``access_token`` field (RFC 6750 §2.2).
DEFAULT_MAX_FORM_BODY = 64 * 1024

# Methods whose body can carry a form; GET/HEAD/OPTIONS bodies have no defined meaning.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Printable ASCII without whitespace, '?', '#': a path as it appears on the wire.
_PATH_CHARS = re.compile(r"/[\x21\x24-\x3e\x40-\x7e]*")
# Authorization values whose token verified, remembered so that a repeated request skips
# the grammar check and hashes its token only once (the memo hands back the same str
# object the verifier cached, whose hash is stored in it). Bounded; the oldest eighth
# goes when full.
_KNOWN_HEADERS = 2048


def _normalized_exclude(path: str) -> str:
    if not isinstance(path, str) or not _PATH_CHARS.fullmatch(path):
        raise ConfigurationError(
            f"exclude path {path!r} must start with '/' and be printable ASCII without "
            "spaces, '?' or '#'"
        )
    segments = path.split("/")[1:]
    if "//" in path or any(s in {".", ".."} for s in segments):
        raise ConfigurationError(
            f"exclude path {path!r} must not contain empty, '.' or '..' segments"
        )
    return path


def raw_path_from_uri(uri: str) -> str:
    """Path part of a raw request-target (``/a/b?x`` or ``http://host/a/b?x``)."""
    path = uri.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        scheme_end = path.find("://")
        if scheme_end >= 0:
            slash = path.find("/", scheme_end + 3)
            path = path[slash:] if slash >= 0 else "/"
    return path


def add_vary(value: str | None) -> str:
    """Return a ``Vary`` value that includes ``Authorization`` (RFC 9110 §12.5.5)."""
    if not value:
        return "Authorization"
    fields = {f.strip().lower() for f in value.split(",")}
    if "authorization" in fields or "*" in fields:
        return value
    return f"{value}, Authorization"


class BearerGuard:
    """Framework-free RFC 6750 request guard: extraction, verification, error rendering.

    Args:
        verifier: A :class:`~scopegate.TokenVerifier` (``JWTVerifier``,
            ``IntrospectionVerifier``, ``HybridVerifier``...).
        realm: The ``realm`` of every challenge (RFC 6750 §3).
        exclude_paths: Raw paths served without authentication, matched exactly (see the
            module docstring).
        optional: Let requests *without* bearer credentials through anonymously (token
            ``None``). A presented token that fails is still a 401.
        allow_query_token: Accept ``?access_token=`` on GET (RFC 6750 §2.3; discouraged).
            Responses then carry ``Cache-Control: private``.
        allow_form_token: Accept an ``access_token`` form field on POST
            ``application/x-www-form-urlencoded`` requests (RFC 6750 §2.2).
        max_token_length: Longest token accepted; longer ones are ``invalid_token`` before
            any parsing.
        allow_preflight: Let CORS preflight requests (``OPTIONS`` with ``Origin`` and
            ``Access-Control-Request-Method``) through unauthenticated.
        max_form_body: Largest form body buffered to look for ``access_token``. A larger
            body is passed on unread and not searched.

    Raises:
        ConfigurationError: An unusable setting.
    """

    __slots__ = (
        "_known",
        "_known_lock",
        "_probe",
        "allow_form_token",
        "allow_preflight",
        "allow_query_token",
        "exclude_paths",
        "max_form_body",
        "max_token_length",
        "optional",
        "realm",
        "verifier",
    )

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        realm: str = "api",
        exclude_paths: Iterable[str] = (),
        optional: bool = False,
        allow_query_token: bool = False,
        allow_form_token: bool = False,
        max_token_length: int = DEFAULT_MAX_TOKEN_LENGTH,
        allow_preflight: bool = False,
        max_form_body: int = DEFAULT_MAX_FORM_BODY,
    ) -> None:
        if not callable(getattr(verifier, "verify", None)) or not callable(
            getattr(verifier, "averify", None)
        ):
            raise ConfigurationError("verifier must have verify() and averify() methods")
        if isinstance(exclude_paths, str):
            raise ConfigurationError("exclude_paths must be a collection of paths, not a str")
        if isinstance(max_token_length, bool) or not isinstance(max_token_length, int):
            raise ConfigurationError("max_token_length must be an int")
        if max_token_length < 16:
            raise ConfigurationError("max_token_length must be at least 16")
        if isinstance(max_form_body, bool) or not isinstance(max_form_body, int):
            raise ConfigurationError("max_form_body must be an int")
        if max_form_body < 0:
            raise ConfigurationError("max_form_body must not be negative")
        self.verifier = verifier
        self.realm = check_realm(realm)
        self.exclude_paths: frozenset[str] = frozenset(
            _normalized_exclude(p) for p in exclude_paths
        )
        self.optional = bool(optional)
        self.allow_query_token = bool(allow_query_token)
        self.allow_form_token = bool(allow_form_token)
        self.max_token_length = max_token_length
        self.allow_preflight = bool(allow_preflight)
        self.max_form_body = max_form_body
        probe = getattr(verifier, "cached", None)
        self._probe: Callable[[str], AccessToken | None] | None = probe if callable(probe) else None
        self._known: dict[str, Credentials] = {}
        self._known_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"BearerGuard(realm={self.realm!r}, optional={self.optional}, "
            f"exclude_paths={sorted(self.exclude_paths)!r})"
        )

    def is_excluded(self, raw_path: str) -> bool:
        """True when *raw_path* (undecoded, no query) is exactly an excluded path."""
        return raw_path in self.exclude_paths

    def is_preflight(self, method: str, *, origin: bool, request_method: bool) -> bool:
        """True for a CORS preflight: ``OPTIONS`` with ``Origin`` and
        ``Access-Control-Request-Method`` (Fetch standard, CORS protocol)."""
        return method == "OPTIONS" and origin and request_method

    def skips(
        self, method: str, raw_path: str, *, origin: bool = False, request_method: bool = False
    ) -> bool:
        """True when the request is let through without looking at credentials."""
        if raw_path in self.exclude_paths:
            return True
        return self.allow_preflight and self.is_preflight(
            method, origin=origin, request_method=request_method
        )

    def wants_form_body(self, method: str, content_type: str | None, *, has_header: bool) -> bool:
        """True when the adapter must buffer the body before calling :meth:`extract`.

        The body is read when it may carry the token (form transport enabled, POST) or
        when a header token is present and a second copy in the body must be refused
        (RFC 6750 §2: one method per request).
        """
        if method not in _BODY_METHODS or not is_form_content_type(content_type):
            return False
        return has_header or (self.allow_form_token and method == "POST")

    def extract(
        self,
        *,
        authorization: Sequence[str],
        method: str,
        query_string: str = "",
        form_body: bytes | None = None,
    ) -> Credentials:
        """Find the token of a request; see :func:`scopegate._bearer.extract_token`.

        Raises:
            InvalidRequestError: 400 cases of RFC 6750 §3.1.
            InvalidTokenError: A malformed or oversized token.
        """
        if not query_string and form_body is None and len(authorization) == 1:
            # The common case, a single header and nothing else to cross-check.
            return self.header_credentials(authorization[0])
        return extract_token(
            authorization=authorization,
            method=method,
            query_string=query_string,
            form_body=form_body,
            allow_query_token=self.allow_query_token,
            allow_form_token=self.allow_form_token,
            max_token_length=self.max_token_length,
        )

    def header_credentials(self, value: str) -> Credentials:
        """Credentials of a request whose only credential is one ``Authorization`` *value*.

        Same outcome as :meth:`extract` for such a request (no query string, no form
        body). A value passed to :meth:`remember` earlier is answered from a bounded memo
        without parsing it again: its length and grammar checks depend on nothing else.

        Raises:
            InvalidTokenError: A malformed or oversized bearer token.
        """
        credentials = self._known.get(value)
        if credentials is None:
            token = parse_authorization(value, self.max_token_length)
            credentials = NO_CREDENTIALS if token is None else Credentials(token, "header")
        return credentials

    def cached_header(self, value: str) -> AccessToken | None:
        """The token of a remembered ``Authorization`` *value* from the verifier's cache.

        The fast path of async adapters for a request whose only credential is *value*:
        no parsing, no coroutine, no I/O, never raises. ``None`` means "not known or not
        cached": go through :meth:`header_credentials` and :meth:`averify`.
        """
        credentials = self._known.get(value)
        if credentials is None or self._probe is None:
            return None
        try:
            return self._probe(credentials.token)  # type: ignore[arg-type]
        except Exception:  # a probe must not fail a request; averify decides
            return None

    def remember(self, value: str, credentials: Credentials) -> None:
        """Memoise *value* -> *credentials* after the token verified (see
        :meth:`header_credentials`). Only verified values are kept, so a flood of
        well-formed garbage cannot churn the memo. A pair that is not shaped like
        ``Bearer <spaces> token`` for this very token is ignored (a cheap structural
        check instead of a second parse), so a caller's mix-up can never hand one
        request's token to another value."""
        known = self._known
        token = credentials.token
        if value in known or token is None or credentials.source != "header":
            return
        stripped = value.strip(" \t")
        size = len(token)
        if not (
            size <= self.max_token_length
            and len(stripped) > 6 + size
            and stripped[:6].lower() == "bearer"
            and stripped.endswith(token)
            and not stripped[6:-size].strip(" ")
        ):
            return
        with self._known_lock:
            if len(known) >= _KNOWN_HEADERS:
                # Insertion order: drop the oldest eighth in one pass (amortised O(1)).
                for old in list(itertools.islice(known, _KNOWN_HEADERS // 8)):
                    del known[old]
            known[value] = credentials

    def _absent(self) -> AccessToken | None:
        if not self.optional:
            raise MissingTokenError()
        return None

    def verify(self, credentials: Credentials) -> AccessToken | None:
        """Verify the extracted credentials with the verifier's sync method.

        Returns:
            The token, or ``None`` for an anonymous request in ``optional`` mode.

        Raises:
            BearerError: Missing (unless optional), invalid, or the AS is unavailable.
        """
        if credentials.token is None:
            return self._absent()
        try:
            return self.verifier.verify(credentials.token)
        except BearerError:
            raise
        except Exception as exc:
            raise _unexpected(exc) from exc

    def cached(self, credentials: Credentials) -> AccessToken | None:
        """The token from the verifier's cache, without creating a coroutine.

        A verifier may offer an optional ``cached(token) -> AccessToken | None`` method
        (a cache probe that never does I/O and never raises). Async adapters call this
        first and fall back to :meth:`averify` on ``None``.
        """
        if self._probe is None or credentials.token is None:
            return None
        try:
            return self._probe(credentials.token)
        except Exception:  # a probe must not fail a request; averify decides
            return None

    async def averify(self, credentials: Credentials) -> AccessToken | None:
        """Async twin of :meth:`verify`, using the verifier's ``averify``."""
        if credentials.token is None:
            return self._absent()
        try:
            return await self.verifier.averify(credentials.token)
        except BearerError:
            raise
        except Exception as exc:
            raise _unexpected(exc) from exc

    def authenticate(
        self,
        *,
        authorization: Sequence[str],
        method: str,
        query_string: str = "",
        form_body: bytes | None = None,
    ) -> AccessToken | None:
        """Extract and verify in one call (sync).

        Args:
            authorization: Every ``Authorization`` field value, in order.
            method: The request method, upper case.
            query_string: The raw query string.
            form_body: The buffered form body when :meth:`wants_form_body` said so.

        Returns:
            The verified token, or ``None`` (anonymous, ``optional`` mode only).

        Raises:
            BearerError: The RFC 6750 outcome to render with :meth:`error_response`.
        """
        if not query_string and form_body is None and len(authorization) == 1:
            value = authorization[0]
            credentials = self.header_credentials(value)
            token = self.verify(credentials)
            if token is not None:
                self.remember(value, credentials)
            return token
        credentials = self.extract(
            authorization=authorization,
            method=method,
            query_string=query_string,
            form_body=form_body,
        )
        return self.verify(credentials)

    async def aauthenticate(
        self,
        *,
        authorization: Sequence[str],
        method: str,
        query_string: str = "",
        form_body: bytes | None = None,
    ) -> AccessToken | None:
        """Async twin of :meth:`authenticate`."""
        if not query_string and form_body is None and len(authorization) == 1:
            value = authorization[0]
            credentials = self.header_credentials(value)
            token = self.cached(credentials)
            if token is None:
                token = await self.averify(credentials)
            if token is not None:
                self.remember(value, credentials)
            return token
        credentials = self.extract(
            authorization=authorization,
            method=method,
            query_string=query_string,
            form_body=form_body,
        )
        token = self.cached(credentials)
        return token if token is not None else await self.averify(credentials)

    def error_response(self, error: BearerError) -> ErrorResponse:
        """Render *error* for this guard's realm, with ``Vary: Authorization`` added."""
        response = error.to_response(self.realm)
        return ErrorResponse(
            response.status, (*response.headers, ("vary", "Authorization")), response.body
        )

    def asgi_error_messages(self, error: BearerError) -> tuple[dict[str, Any], dict[str, Any]]:
        """The ``http.response.start`` and ``http.response.body`` messages for *error*."""
        response = self.error_response(error)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
        start = {"type": "http.response.start", "status": response.status, "headers": headers}
        return start, {"type": "http.response.body", "body": response.body}

    def wsgi_error(self, error: BearerError) -> tuple[str, list[tuple[str, str]], bytes]:
        """The WSGI status line, header list and body for *error*."""
        response = self.error_response(error)
        status = f"{response.status} {_REASONS.get(response.status, 'Error')}"
        return status, list(response.headers), response.body


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    503: "Service Unavailable",
}


def _unexpected(exc: Exception) -> InvalidTokenError:
    # A verifier must raise only BearerError; anything else is a bug. Fail closed with a
    # 401 rather than a 500, and log only the type: messages may carry token fragments.
    logger.error("token verifier raised an unexpected %s", type(exc).__name__)
    return InvalidTokenError(reason="verifier_error")
