"""The sans-io request guard: the one place where a request's token is decided.

Every adapter (ASGI, WSGI, Starlette, FastAPI, Flask, Django) does the same three
things and nothing else::

    request = <a RequestView of the framework's request>
    outcome = guard.decide(request)                  # or: await guard.adecide(request)
    if isinstance(outcome, HTTPResponse):
        <send outcome>                               # an RFC 6750 §3 error
    else:
        <call the application with the token>       # None: anonymous or excluded

and renders a :class:`~scopegate.BearerError` raised by the application (a scope
decorator) with :meth:`BearerGuard.render`.

:class:`BearerGuard` owns the decision: excluded paths, CORS preflights, extraction
(RFC 6750 §2), the remembered-header fast path, verification, the sender-constraint
check, and rendering. Its options live in one :class:`GuardOptions` object that every
adapter accepts whole, so a new option is one edit here.

The decision is written once, as a flow (:mod:`scopegate._flow`): reading a form body
and verifying a token are its only waits, performed by the sync driver for WSGI and by
the async driver for ASGI. A request whose remembered ``Authorization`` value has a
cached token is decided without creating the flow at all.

Excluded paths are compared **exactly** with the raw request path as it was received
(ASGI ``raw_path``, WSGI ``REQUEST_URI``/``RAW_URI``), without the query string and
without any decoding or normalisation. ``/public/``, ``//public``, ``/public/../items``
or ``/%70ublic`` are therefore *not* ``/public`` and need a token: an unusual spelling
can only ever cost the client a 401, never skip authentication for a route it reaches.
List each spelling you want public.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import urlsplit

from scopegate import _observe
from scopegate._bearer import (
    NO_CREDENTIALS,
    Credentials,
    Scheme,
    extract_token,
    is_form_content_type,
    parse_credentials,
)
from scopegate._cache import BoundedDict
from scopegate._dpop import DPoPPolicy, ProofVerifier, check_binding
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    HTTPResponse,
    InsufficientScopeError,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    check_realm,
)
from scopegate._flow import Call, Flow, arun, run
from scopegate._jose import MAX_TOKEN_LENGTH
from scopegate._resource import ProtectedResource
from scopegate._scopes import validated_scopes
from scopegate._settings import boolean, whole
from scopegate._token import AccessToken
from scopegate._verifier import CachedVerifier, FlowVerifier, TokenVerifier

__all__ = [
    "DEFAULT_MAX_FORM_BODY",
    "BearerGuard",
    "GuardOptions",
    "GuardedApp",
    "Pending",
    "RequestView",
    "add_vary",
    "check_binding",
    "raw_path_from_uri",
]

logger = logging.getLogger("scopegate")
_timer = _observe.timer  # a module global: read once per request with hooks
# The record of a request let through without a token (an excluded path), built once.
_ANONYMOUS = _observe.decision_parts("anonymous", 200, None, "none", "none", False)

#: Largest form body buffered to look for an ``access_token`` form field (RFC 6750 §2.2).
DEFAULT_MAX_FORM_BODY = 64 * 1024

# Methods whose body can carry a form; GET/HEAD/OPTIONS bodies have no defined meaning.
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Printable ASCII without whitespace, '?', '#': a path as it appears on the wire.
_PATH_CHARS = re.compile(r"/[\x21\x24-\x3e\x40-\x7e]*")
# Authorization values whose token verified, remembered so that a repeated request skips
# the grammar check and hashes its token only once (the memo hands back the same str
# object the verifier cached, whose hash is stored in it).
_KNOWN_HEADERS = 2048


def _exclude_path(path: object) -> str:
    if not isinstance(path, str) or not _PATH_CHARS.fullmatch(path):
        raise ConfigurationError(
            f"exclude path {path!r} must start with '/' and be printable ASCII without "
            "spaces, '?' or '#'"
        )
    if "//" in path or any(s in {".", ".."} for s in path.split("/")[1:]):
        raise ConfigurationError(
            f"exclude path {path!r} must not contain empty, '.' or '..' segments"
        )
    return path


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardOptions:
    """How a guard treats requests; every adapter accepts these, by keyword or whole.

    Attributes:
        realm: The ``realm`` of every challenge (RFC 6750 §3).
        exclude_paths: Raw paths served without authentication, matched exactly (see
            the module docstring).
        optional: Let requests *without* credentials through anonymously (token
            ``None``). A presented token that fails is still a 401.
        allow_query_token: Accept ``?access_token=`` on GET (RFC 6750 §2.3;
            discouraged). Responses then carry ``Cache-Control: private``.
        allow_form_token: Accept an ``access_token`` form field on POST
            ``application/x-www-form-urlencoded`` requests (RFC 6750 §2.2).
        max_token_length: Longest token accepted, before any parsing; by default the
            verifier's own limit (``max_token_length``), else 8192.
        allow_preflight: Let CORS preflight requests (``OPTIONS`` with ``Origin`` and
            ``Access-Control-Request-Method``) through unauthenticated.
        max_form_body: Largest form body buffered to look for ``access_token``; a
            larger body is passed on unread and not searched.
        resource: This API's RFC 9728 description (:class:`~scopegate.ProtectedResource`).
            The guard then serves the metadata document at its well-known URLs, and
            every 401 and 403 challenge carries ``resource_metadata``. The verifier's
            audience must include the resource identifier.
        required_scopes: Scopes every request through this guard needs (checked after
            the token, 403 ``insufficient_scope``) and that every 401 announces in its
            ``scope`` attribute, so a client knows what to ask for (MCP servers).
        dpop: Accept DPoP-bound tokens with proofs (RFC 9449), as a
            :class:`~scopegate.DPoPPolicy` (``mode="allowed"`` or ``"required"``);
            ``None`` (the default): Bearer only, and a DPoP-bound token is refused.
        public_url: The origin clients use to reach this API (``https://api.example``),
            against which a DPoP proof's ``htu`` is checked; by default the resource's
            origin, else the request's own scheme and ``Host``.
        trust_forwarded: Build that origin from ``Forwarded`` / ``X-Forwarded-Proto`` and
            ``X-Forwarded-Host`` (only behind a proxy that sets them; never otherwise).

    Raises:
        ConfigurationError: A mistyped or unusable value (a string where a boolean
            belongs is an error, never "truthy").
    """

    realm: str = "api"
    exclude_paths: Iterable[str] = frozenset()
    optional: bool = False
    allow_query_token: bool = False
    allow_form_token: bool = False
    max_token_length: int | None = None
    allow_preflight: bool = False
    max_form_body: int = DEFAULT_MAX_FORM_BODY
    resource: ProtectedResource | None = None
    required_scopes: Sequence[str] = ()
    dpop: DPoPPolicy | None = None
    public_url: str | None = None
    trust_forwarded: bool = False

    def __post_init__(self) -> None:
        check_realm(self.realm)
        if isinstance(self.exclude_paths, str):
            raise ConfigurationError("exclude_paths must be a collection of paths, not a str")
        object.__setattr__(
            self, "exclude_paths", frozenset(_exclude_path(p) for p in self.exclude_paths)
        )
        for name in ("optional", "allow_query_token", "allow_form_token", "allow_preflight"):
            boolean(name, getattr(self, name))
        if self.max_token_length is not None:
            whole("max_token_length", self.max_token_length, low=16)
        whole("max_form_body", self.max_form_body)
        if self.resource is not None and not isinstance(self.resource, ProtectedResource):
            raise ConfigurationError("resource must be a ProtectedResource")
        if isinstance(self.required_scopes, str):
            raise ConfigurationError("required_scopes must be a collection of scopes, not a str")
        if self.dpop is not None and not isinstance(self.dpop, DPoPPolicy):
            raise ConfigurationError("dpop must be a DPoPPolicy")
        boolean("trust_forwarded", self.trust_forwarded)
        if self.public_url is not None:
            parts = urlsplit(self.public_url) if isinstance(self.public_url, str) else None
            if (
                parts is None
                or parts.scheme not in ("http", "https")
                or not parts.netloc
                or (parts.path not in ("", "/") or parts.query or parts.fragment)
            ):
                raise ConfigurationError("public_url must be an origin like https://api.example")
        object.__setattr__(
            self,
            "required_scopes",
            validated_scopes(tuple(self.required_scopes), "required_scopes")
            if self.required_scopes
            else (),
        )

    @classmethod
    def of(cls, options: GuardOptions | None = None, **settings: Any) -> GuardOptions:
        """*options* with *settings* applied (what adapters call with their keywords).

        Raises:
            ConfigurationError: An unknown setting name, or a bad value.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ConfigurationError(
                f"unknown option(s) {', '.join(unknown)}; "
                f"the options are {', '.join(sorted(names))}"
            )
        base = options if options is not None else cls()
        return dataclasses.replace(base, **settings) if settings else base


class BodyReader(Protocol):
    """Reads at most *limit* bytes of the request body; ``None`` when it is larger.

    A WSGI view's reader returns the bytes; an ASGI view's reader may return an
    awaitable. The adapter keeps what was read for the application.
    """

    def __call__(self, limit: int) -> bytes | Awaitable[bytes | None] | None: ...


@runtime_checkable
class RequestView(Protocol):
    """What the guard needs to know about a request; each adapter provides one.

    Attributes:
        method: The request method, upper case (``GET`` for a WebSocket handshake).
        scheme: The scheme the server received the request with (``http``, ``https``,
            ``ws``, ``wss``).
        path: The raw path as received (no query, no decoding).
        query: The raw query string, still percent-encoded (``""`` when none).
        authorization: Every ``Authorization`` field value, in order.
        content_type: The ``Content-Type`` value, or ``None``.
        content_length: The ``Content-Length`` value, or ``None``.
        token_source: Set by the guard: where the token was found (``"header"``,
            ``"query"``, ``"form"``), for the adapter's response headers (a response
            to a query-string token is ``Cache-Control: private``, RFC 6750 §2.3).
    """

    token_source: str | None

    @property
    def method(self) -> str: ...
    @property
    def scheme(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def authorization(self) -> Sequence[str]: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def content_length(self) -> str | None: ...

    def header(self, name: str) -> list[str]:
        """Every value of the header *name* (lower case)."""
        ...

    def read_body(self, limit: int) -> Any:
        """See :class:`BodyReader`."""
        ...


def raw_path_from_uri(uri: str) -> str:
    """Path part of a raw request-target (``/a/b?x`` or ``http://host/a/b?x``)."""
    if "?" not in uri and "#" not in uri and uri[:1] == "/":
        return uri  # the common target, in 0.05 µs instead of 0.12
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


class _ReadBody:
    """The guard's wait for a form body, as a flow effect."""

    __slots__ = ("limit", "request")

    def __init__(self, request: RequestView, limit: int) -> None:
        self.request = request
        self.limit = limit

    def run(self) -> bytes | None:
        body: bytes | None = self.request.read_body(self.limit)
        return body

    async def arun(self) -> bytes | None:
        # An async stack may still read a body synchronously (Django buffers it).
        body = self.request.read_body(self.limit)
        if inspect.isawaitable(body):
            body = await body
        return body  # type: ignore[no-any-return]


# What _now returns when the decision needs the flow.
PENDING: Any = object()


class Pending:
    """A decision that must wait, as :meth:`BearerGuard.decide_now` returns it: the
    decision's flow, suspended at the first effect it yielded."""

    __slots__ = ("flow", "step")

    def __init__(self, flow: Flow[AccessToken | None], step: Any) -> None:
        self.flow = flow
        self.step = step

    def __repr__(self) -> str:
        return f"Pending({type(self.step).__name__})"


class BearerGuard:
    """The framework-free RFC 6750 guard: request in, token or answer out.

    Args:
        verifier: A :class:`~scopegate.TokenVerifier` (``JWTVerifier``,
            ``IntrospectionVerifier``, ``HybridVerifier``...).
        options: A :class:`GuardOptions`; keyword *settings* override its fields
            (``BearerGuard(verifier, exclude_paths=["/health"])``).

    Raises:
        ConfigurationError: An unusable verifier or setting.
    """

    __slots__ = (
        "_accepted",
        "_bearer",
        "_challenge",
        "_documents",
        "_dpop",
        "_excluded",
        "_fast_probe",
        "_known",
        "_origin_fixed",
        "_probe",
        "_required",
        "_verify_flow",
        "max_token_length",
        "options",
        "realm",
        "verifier",
    )

    def __init__(
        self, verifier: TokenVerifier, options: GuardOptions | None = None, **settings: Any
    ) -> None:
        if not callable(getattr(verifier, "verify", None)) or not callable(
            getattr(verifier, "averify", None)
        ):
            raise ConfigurationError("verifier must have verify() and averify() methods")
        self.verifier = verifier
        self.options = GuardOptions.of(options, **settings)
        self.realm = self.options.realm
        limit = self.options.max_token_length
        if limit is None:
            limit = getattr(verifier, "max_token_length", MAX_TOKEN_LENGTH)
            limit = limit if type(limit) is int else MAX_TOKEN_LENGTH
        self.max_token_length: int = limit
        self._excluded: frozenset[str] = frozenset(self.options.exclude_paths)
        self._probe: Callable[[str], AccessToken | None] | None = (
            verifier.cached if isinstance(verifier, CachedVerifier) else None
        )
        # A library verifier's flow runs inside the decision's own flow (FlowVerifier).
        self._verify_flow: Callable[[str], Flow[AccessToken]] | None = (
            verifier.verify_flow if isinstance(verifier, FlowVerifier) else None
        )
        self._known: BoundedDict[str, Credentials] = BoundedDict(_KNOWN_HEADERS)
        # The decision record's parts per remembered header (filled only with hooks).
        self._accepted: BoundedDict[str, _observe.Parts] = BoundedDict(_KNOWN_HEADERS)
        self._required = frozenset(self.options.required_scopes)
        dpop = self.options.dpop
        self._dpop = ProofVerifier(dpop) if dpop is not None else None
        # Bearer is accepted unless DPoP is required.
        self._bearer = dpop is None or dpop.mode != "required"
        # The remembered-header fast path needs a cache probe and Bearer accepted.
        self._fast_probe = self._probe if self._bearer else None
        resource = self.options.resource
        public_url = self.options.public_url
        # The origin a client addresses, when configured rather than read from requests.
        self._origin_fixed: str | None = (
            public_url.rstrip("/")
            if public_url is not None
            else resource.origin
            if resource is not None
            else None
        )
        self._documents: dict[str, HTTPResponse] = {}
        self._challenge: tuple[tuple[str, str], ...] = ()
        if resource is not None:
            _check_audience(verifier, resource.resource)
            if not resource.authorization_servers:
                # RFC 9728 §2: list the issuers this API trusts (every one, when routed).
                resource = dataclasses.replace(
                    resource, authorization_servers=_issuers_of(verifier)
                )
            document = resource.response(
                self._bearer_methods(),
                dpop_algorithms=dpop.algorithms if dpop is not None else (),
                dpop_required=not self._bearer,
            )
            self._documents = dict.fromkeys(resource.paths, document)
            self._challenge = (("resource_metadata", resource.metadata_url),)

    def _bearer_methods(self) -> tuple[str, ...]:
        # RFC 9728 §2 bearer_methods_supported: the transports this guard accepts.
        methods = ["header"]
        if self.options.allow_form_token:
            methods.append("body")
        if self.options.allow_query_token:
            methods.append("query")
        return tuple(methods)

    def __repr__(self) -> str:
        return f"BearerGuard({self.verifier!r}, {self.options!r})"

    # -- the decision ------------------------------------------------------------------

    def decide(self, request: RequestView) -> AccessToken | HTTPResponse | None:
        """Decide *request* in the calling thread (WSGI, sync frameworks).

        Returns:
            The verified token; ``None`` for a request let through anonymously (an
            excluded path, a preflight, ``optional`` mode without credentials); or the
            :class:`~scopegate.Response` to send instead (400, 401, 403 or 503).
        """
        outcome = self.decide_now(request)
        if type(outcome) is Pending:
            return self.decide_pending(outcome)
        return outcome  # type: ignore[return-value]

    async def adecide(self, request: RequestView) -> AccessToken | HTTPResponse | None:
        """Async twin of :meth:`decide` (ASGI); never blocks the event loop."""
        outcome = self.decide_now(request)
        if type(outcome) is Pending:
            return await self.adecide_pending(outcome)
        return outcome  # type: ignore[return-value]

    def decide_now(self, request: RequestView) -> AccessToken | HTTPResponse | Pending | None:
        """Decide *request* as far as it goes without waiting.

        Returns the decision, or a :class:`Pending` decision when it must wait (for a
        form body, a key fetch, an introspection call): ``await adecide_pending(it)``
        (ASGI) or ``decide_pending(it)`` (threads) finishes it. Most requests, repeated
        or not, need no wait at all and are decided without creating a coroutine: on a
        cache miss this saves 0.5 µs of the guard's 3.7 µs around an RS256 verification
        (RESULTS.md).
        """
        if self._documents and request.path in self._documents:
            return self._document(request)
        if _observe.HOOKS:
            start = _timer()
            token = self._now(request)
            if token is not PENDING:
                return self._reported(request, token, start)
            flow = self._observed(request, start)
        else:
            token = self._now(request)
            if token is not PENDING:
                return token  # type: ignore[no-any-return]
            flow = self._flow(request)
        try:
            step = next(flow)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        except BearerError as error:
            return self.render(error)
        return Pending(flow, step)

    async def adecide_pending(self, pending: Pending) -> AccessToken | HTTPResponse | None:
        """Finish a :class:`Pending` decision on the running event loop."""
        try:
            return await arun(pending.flow, first=pending.step)
        except BearerError as error:
            return self.render(error)

    def decide_pending(self, pending: Pending) -> AccessToken | HTTPResponse | None:
        """Finish a :class:`Pending` decision in the calling thread."""
        try:
            return run(pending.flow, first=pending.step)
        except BearerError as error:
            return self.render(error)

    def authenticate(self, request: RequestView) -> AccessToken | None:
        """Like :meth:`decide`, but raise the :class:`~scopegate.BearerError` instead."""
        if _observe.HOOKS:
            start = _timer()
            token = self._now(request)
            if token is not PENDING:
                return self._reported(request, token, start)
            return run(self._observed(request, start))
        token = self._now(request)
        return token if token is not PENDING else run(self._flow(request))

    async def aauthenticate(self, request: RequestView) -> AccessToken | None:
        """Async twin of :meth:`authenticate`."""
        if _observe.HOOKS:
            start = _timer()
            token = self._now(request)
            if token is not PENDING:
                return self._reported(request, token, start)
            return await arun(self._observed(request, start))
        token = self._now(request)
        return token if token is not PENDING else await arun(self._flow(request))

    def _reported(
        self, request: RequestView, token: AccessToken | None, start: float
    ) -> AccessToken | None:
        """A decision made without waiting (a skip or a remembered cached token),
        reported (hooks only). Kept out of the flow: with a metrics hook this is the
        common request, and creating and driving a generator cost about 1 µs here."""
        if token is None:
            _observe.emit_parts(_ANONYMOUS, _timer() - start)
            return None
        # The record's parts for a remembered header, memoised: counting the dots of a
        # JWT alone costs 0.3 µs, building the attributes 0.2 µs; a probe of this map
        # costs 0.04 µs (the header's hash is cached in the str).
        header = request.authorization[0]
        parts = self._accepted.get(header)
        if parts is None:
            parts = _observe.decision_parts(
                "accepted",
                200,
                None,
                _observe.token_kind(token.token),
                "bearer",  # the no-wait path takes only tokens that are not DPoP-bound
                True,
                token.issuer,
                token.client_id,
            )
            self._accepted.put(header, parts)
        _observe.emit_parts(parts, _timer() - start)
        return token

    def _observed(self, request: RequestView, start: float) -> Flow[AccessToken | None]:
        """The waiting decision, timed and reported as a ``decision`` record (hooks only)."""
        note: dict[str, Any] = {"cached": False}
        try:
            token = yield from self._flow(request, note)
        except BearerError as error:
            _observe.emit_parts(
                _observe.decision_parts(
                    _observe.refusal(error.status),
                    error.status,
                    error.reason,
                    note.get("kind", "none"),
                    _scheme(request.token_source),
                    note["cached"],
                ),
                _timer() - start,
            )
            raise
        if token is None:
            _observe.emit_parts(_ANONYMOUS, _timer() - start)
        else:
            _observe.emit_parts(
                _observe.decision_parts(
                    "accepted",
                    200,
                    None,
                    note.get("kind") or _observe.token_kind(token.token),
                    "bearer" if token.jkt is None else "dpop",
                    note["cached"],
                    token.issuer,
                    token.client_id,
                ),
                _timer() - start,
            )
        return token

    def _document(self, request: RequestView) -> HTTPResponse | None:
        """The RFC 9728 metadata document for GET/HEAD of its well-known path, and the
        answer to a CORS preflight for it (browser-based clients, such as MCP
        inspectors, fetch it cross-origin with their own headers)."""
        method = request.method
        if method in ("GET", "HEAD"):
            response = self._documents[request.path]
        elif method == "OPTIONS":
            response = _DOCUMENT_PREFLIGHT
        else:
            response = self.render(InvalidRequestError(reason="method_not_allowed"))
            _observe.log_rejection(400, "invalid_request", "method_not_allowed", "guard")
        if _observe.HOOKS:
            _observe.emit_parts(
                _observe.decision_parts(
                    "document" if response.status < 400 else "rejected",
                    response.status,
                    None if response.status < 400 else "method_not_allowed",
                    "none",
                    "none",
                    True,
                ),
                0.0,
            )
        return response

    def _now(self, request: RequestView) -> Any:
        """The decision when it needs no waiting: a skip, or a remembered cached token.

        The slow path's outcome exactly, for the one request shape it covers: a single
        ``Authorization`` header remembered by :meth:`_remember`, no query string, no
        form body to cross-check, a cached token without ``cnf`` that has the guard's
        required scopes. Anything else is :data:`PENDING` and goes the whole way.
        """
        if self._excluded and request.path in self._excluded:
            return None
        authorization = request.authorization
        probe = self._fast_probe
        if probe is None or len(authorization) != 1 or request.query:
            return PENDING
        credentials = self._known.get(authorization[0])
        if (
            credentials is None
            or credentials.scheme != "bearer"
            or (request.method in _BODY_METHODS and self._wants_body(request, True))
        ):
            return PENDING
        try:
            token = probe(credentials.token)  # type: ignore[arg-type]
        except Exception:  # a probe must not fail a request; verification decides
            return PENDING
        if (
            token is None
            or "cnf" in token.claims  # sender-constrained: the binding is checked slowly
            or (self._required and not token.scopes >= self._required)
        ):
            return PENDING
        return token

    def _flow(
        self, request: RequestView, note: dict[str, Any] | None = None
    ) -> Flow[AccessToken | None]:
        try:
            token = yield from self._decide_flow(request, note)
        except BearerError as error:
            if request.token_source == "dpop":  # noqa: S105 - a scheme name
                error.scheme = "DPoP"  # the answer goes in the DPoP challenge
            _observe.log_rejection(error.status, error.error or "-", error.reason, "guard")
            raise
        return token

    def _decide_flow(
        self, request: RequestView, note: dict[str, Any] | None
    ) -> Flow[AccessToken | None]:
        method = request.method
        # The method tests here, not in the helpers: a GET is neither, without two calls.
        if method == "OPTIONS" and self.options.allow_preflight and self._is_preflight(request):
            return None
        authorization = request.authorization
        body: bytes | None = None
        if method in _BODY_METHODS and self._wants_body(request, bool(authorization)):
            body = yield _ReadBody(request, self.options.max_form_body)
        if not request.query and body is None and len(authorization) == 1:
            # The common request: one header, nothing to cross-check.
            value = authorization[0]
            # The memo is filled from cache hits only: without a cache probe it stays
            # empty, and a lookup would hash a fresh 800-character header for nothing.
            known = self._known.get(value) if self._probe is not None else None
            credentials = known or self._header_credentials(value)
        else:
            credentials = extract_token(
                authorization=authorization,
                method=method,
                query_string=request.query,
                form_body=body,
                allow_query_token=self.options.allow_query_token,
                allow_form_token=self.options.allow_form_token,
                max_token_length=self.max_token_length,
                dpop=self._dpop is not None,
            )
        dpop = credentials.scheme == "dpop"
        request.token_source = "dpop" if dpop else credentials.source
        raw = credentials.token
        if raw is None:
            if self.options.optional:
                return None
            raise MissingTokenError(scopes=self.options.required_scopes)
        if note is not None:
            note["kind"] = _observe.token_kind(raw)
        proof_text = None
        if dpop:
            # RFC 9449 §7.1: exactly one proof.
            proofs = request.header("dpop")
            if len(proofs) != 1:
                raise InvalidDPoPProofError(reason="dpop_multiple" if proofs else "dpop_missing")
            proof_text = proofs[0]
        elif not self._bearer:
            raise InvalidTokenError(reason="dpop_required")
        token = None
        probe = self._probe  # the verifier's cached answer, without I/O
        if probe is not None:
            try:
                token = probe(raw)
            except Exception:  # a probe must not fail a request; verification decides
                token = None
        if note is not None:
            note["cached"] = token is not None
        remember = token is not None  # seen twice: worth a place in the header memo
        if token is None:
            verifier = self.verifier
            try:
                if self._verify_flow is not None:
                    token = yield from self._verify_flow(raw)
                else:
                    token = yield Call(verifier.verify, verifier.averify, raw)
            except BearerError:
                raise
            except Exception as exc:
                raise _unexpected(exc) from exc
        if proof_text is None:
            check_binding(token)  # a DPoP-bound token is no bearer token
        else:
            assert self._dpop is not None
            # The proof after the token, and its signature and claims only once its key
            # is the one the token is bound to: no one but the holder of a valid bound
            # token (and its key) makes this guard read a proof's claims, which anyone
            # can sign with a key of their own (a crafted proof cost about 12 times a
            # bad token signature to read; tests/core/test_hostile_tokens.py).
            now = time.time()
            proof = self._dpop.check(
                proof_text,
                method=method,
                url=self._url(request),
                token=raw,
                now=now,
                bound=token,  # its key checked against the token's cnf.jkt
            )
            # Recorded only now: only the holder of a valid bound token writes to the
            # replay store, for as long as the proof could be replayed.
            yield from self._dpop.record_flow(proof, now)
        if self._required and not token.scopes >= self._required:
            raise InsufficientScopeError(self.options.required_scopes, reason="insufficient_scope")
        if remember and credentials.source == "header" and len(authorization) == 1:
            # DPoP headers too: the parse is skipped next time; the fast path still
            # leaves them to this flow (their proof is new on every request).
            self._remember(authorization[0], raw, token, credentials.scheme)
        return token

    def _is_preflight(self, request: RequestView) -> bool:
        # Fetch standard, CORS protocol: OPTIONS (the caller's test) with Origin and
        # Access-Control-Request-Method.
        return bool(request.header("origin")) and bool(
            request.header("access-control-request-method")
        )

    def _wants_body(self, request: RequestView, has_header: bool) -> bool:
        """Whether the form body must be read: it may carry the token (form transport,
        POST), or a header token is present and a second copy in the body must be
        refused (RFC 6750 §2: one method per request). The caller has checked that the
        method is one of _BODY_METHODS."""
        if not is_form_content_type(request.content_type):
            return False
        return has_header or (self.options.allow_form_token and request.method == "POST")

    def _header_credentials(self, value: str) -> Credentials:
        credentials = parse_credentials(value, self.max_token_length, dpop=self._dpop is not None)
        return NO_CREDENTIALS if credentials is None else credentials

    def _url(self, request: RequestView) -> str:
        """The request's URL as its client addressed it (for a DPoP proof's ``htu``)."""
        return self._origin(request) + request.path

    def _origin(self, request: RequestView) -> str:
        if self._origin_fixed is not None:
            return self._origin_fixed
        options = self.options
        scheme, host = request.scheme, None
        if options.trust_forwarded:
            scheme, host = _forwarded(request, scheme)
        if host is None:
            hosts = request.header("host")
            host = hosts[0] if hosts else ""
        return f"{scheme}://{host}"

    def _remember(self, value: str, raw: str, token: AccessToken, scheme: Scheme) -> None:
        # Only values whose token was verified and then seen again (a verifier cache hit)
        # are kept: neither garbage nor a stream of one-use tokens churns the memo. The
        # memo keeps the very str the verifier cached (token.token) when it is the same
        # token, so the cache lookup of a remembered request compares by identity.
        if value not in self._known:
            cached = token.token
            self._known.put(value, Credentials(cached if cached == raw else raw, "header", scheme))

    # -- rendering -------------------------------------------------------------------

    def render(self, error: BearerError) -> HTTPResponse:
        """The response for *error*, with this guard's realm and ``Vary: Authorization``.

        A 401 announces the guard's ``required_scopes`` when the error names none; every
        challenge points at the RFC 9728 metadata when a resource is configured.
        """
        extra = self._challenge
        if error.status == 401 and not error.scopes and self.options.required_scopes:
            extra = (("scope", " ".join(self.options.required_scopes)), *extra)
        dpop = self.options.dpop
        response = error.to_response(
            self.realm,
            extra,
            dpop_algs=dpop.algs if dpop is not None else None,
            bearer=self._bearer,
        )
        return HTTPResponse(
            response.status, (*response.headers, ("vary", "Authorization")), response.body
        )


# The metadata document is public and sent without credentials: any origin may read
# it, with any request headers (Fetch standard, CORS protocol).
_DOCUMENT_PREFLIGHT = HTTPResponse(
    204,
    (
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "GET, HEAD"),
        ("access-control-allow-headers", "*"),
        ("access-control-max-age", "86400"),
    ),
    b"",
)


AppT = TypeVar("AppT")


class GuardedApp(Generic[AppT]):
    """What the ASGI and the WSGI middleware share: the app they wrap and its guard.

    Raises:
        ConfigurationError: Both a guard and verifier/options, neither, or a bad setting.
    """

    def __init__(
        self,
        app: AppT,
        *,
        verifier: TokenVerifier | None = None,
        options: GuardOptions | None = None,
        guard: BearerGuard | None = None,
        **settings: Any,
    ) -> None:
        if guard is not None:
            if verifier is not None or options is not None or settings:
                raise ConfigurationError("give either guard= or verifier= and options, not both")
        elif verifier is None:
            raise ConfigurationError("a verifier (or a guard) is required")
        else:
            guard = BearerGuard(verifier, options, **settings)
        self.app = app
        self.guard = guard


def _forwarded(request: RequestView, scheme: str) -> tuple[str, str | None]:
    """Scheme and host from ``Forwarded`` (RFC 7239) or ``X-Forwarded-*``: the first
    (client-facing) entry, as the trusted proxy set it."""
    host: str | None = None
    forwarded = request.header("forwarded")
    if forwarded:
        for pair in forwarded[0].split(",")[0].split(";"):
            name, _, value = pair.strip().partition("=")
            value = value.strip('"')
            if name.lower() == "proto" and value in ("http", "https"):
                scheme = value
            elif name.lower() == "host" and value:
                host = value
        return scheme, host
    proto = request.header("x-forwarded-proto")
    if proto and proto[0].split(",")[0].strip() in ("http", "https"):
        scheme = proto[0].split(",")[0].strip()
    hosts = request.header("x-forwarded-host")
    if hosts:
        host = hosts[0].split(",")[0].strip() or None
    return scheme, host


def _issuers_of(verifier: TokenVerifier) -> tuple[str, ...]:
    """The issuers a verifier trusts: an IssuerRouter's, a JWT or hybrid verifier's one."""
    issuers = getattr(verifier, "issuers", None)
    if isinstance(issuers, tuple):
        return issuers
    for part in (
        verifier,
        getattr(verifier, "jwt", None),
        getattr(verifier, "introspection", None),
    ):
        issuer = getattr(part, "issuer", None)
        if isinstance(issuer, str) and issuer:
            return (issuer,)
    return ()


def _check_audience(verifier: TokenVerifier, resource: str) -> None:
    """A resource the verifier's tokens are not for is a start-up error (RFC 8707)."""
    for part in (
        verifier,
        getattr(verifier, "jwt", None),
        getattr(verifier, "introspection", None),
    ):
        audiences = getattr(part, "audiences", getattr(part, "audience", None))
        if isinstance(audiences, frozenset) and resource not in audiences:
            raise ConfigurationError(
                "the verifier's audience does not include the resource identifier "
                f"{resource!r}: tokens issued for this API would be refused"
            )


def _scheme(source: str | None) -> str:
    """The scheme word of a record: ``dpop``, ``bearer`` or ``none`` (no credentials)."""
    if source is None:
        return "none"
    return "dpop" if source == "dpop" else "bearer"


def _unexpected(exc: Exception) -> InvalidTokenError:
    # A verifier must raise only BearerError; anything else is a bug. Fail closed with a
    # 401 rather than a 500, and log only the type: messages may carry token fragments.
    logger.error("token verifier raised an unexpected %s", type(exc).__name__)
    return InvalidTokenError(reason="verifier_error")
