"""Django integration: middleware, view decorators and a class-based-view mixin.

Install with ``pip install 'scopegate[django]'``. Django REST framework is not needed.

* :class:`BearerTokenMiddleware` works for sync and async stacks (Django 5+): it verifies
  the bearer token of every request that is not excluded (sync ``verify`` under WSGI,
  ``averify`` under ASGI), sets ``request.access_token`` and
  :func:`scopegate.current_token`, adds ``Vary: Authorization``, and renders failures,
  and any :class:`~scopegate.BearerError` a view raises, as RFC 6750 §3 JSON responses.
* :func:`require_scope` / :func:`require_any_scope` / :func:`require_token` decorate sync
  or ``async def`` function views; :class:`ScopeRequiredMixin` does the same for
  class-based views. They use the middleware's token, or verify the request themselves
  when the middleware is not installed (or skipped the path).

Step-up (RFC 9470): the decorators take ``acr_values=`` and ``max_age=`` next to the
scopes (``require_token(max_age=300)`` too), and :class:`ScopeRequiredMixin` views set
``acr_values`` / ``max_age`` attributes; a token whose login is too weak or too old gets
401 ``insufficient_user_authentication`` naming what is missing.

CSRF: a bearer token is no ambient credential (a browser never attaches it by itself),
so Django's CSRF check does not apply to a request authenticated by one, as in Django
REST framework. The middleware exempts a request only once its token verified; the
decorated views and :class:`ScopeRequiredMixin` views are ``csrf_exempt`` because they
run for nothing else. A request without a valid token (a cookie-authenticated form
POST to any other view) keeps Django's CSRF protection.

Settings (all optional; without a ``SCOPEGATE`` setting everything comes from the
``SCOPEGATE_*`` environment variables, see :func:`scopegate.from_env` and
:func:`scopegate.options_from_env`)::

    SCOPEGATE = {
        "VERIFIER": "myproject.auth.verifier",  # a TokenVerifier, a dotted path to one,
                                                # or to a zero-argument factory
        "ISSUER": "https://issuer.example",     # else: these keys, named like the
        "AUDIENCE": "api://items",              # SCOPEGATE_* variables without the
        "INTROSPECTION_URI": None,              # prefix, and the environment, build the
                                                # verifier and the options (RESOURCE...)
        "RESOURCE": "https://api.example",      # RFC 9728 (text, like the variable, or
        "DPOP": "allowed",                      # a ProtectedResource / DPoPPolicy)
        "OPTIONS": None,                        # a GuardOptions (options_from_env(...)),
                                                # or a dotted path to one, instead
        "REALM": "api",                         # GuardOptions fields, upper case,
        "EXCLUDE_PATHS": ["/health"],           # applied on top: raw paths, exactly
        "OPTIONAL": False,                      # middleware lets anonymous requests in
        "ALLOW_QUERY_TOKEN": False,
        "ALLOW_FORM_TOKEN": False,
        "ALLOW_PREFLIGHT": False,
    }

RFC 9728 and DPoP: when the options describe a resource (``SCOPEGATE_RESOURCE``), every
401 and 403 carries ``resource_metadata``, and the middleware serves the metadata
document at its well-known paths; a project that uses only the decorators adds
:func:`metadata_urlpatterns` to its root URLconf instead. With DPoP
(``SCOPEGATE_DPOP``), DPoP-bound tokens are accepted with their proofs (RFC 9449); the
combined ``WWW-Authenticate`` value (``Bearer ..., DPoP ...``) is one header field.

Example::

    from scopegate.integrations.django import require_scope

    @require_scope("items:read")
    def items(request):
        return JsonResponse({"owner": request.access_token.subject})
"""

from __future__ import annotations

import dataclasses
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar, cast, overload

from scopegate._extras import missing_extra

try:
    from asgiref.sync import iscoroutinefunction, markcoroutinefunction
    from django.conf import settings
    from django.core.signals import setting_changed
    from django.http import HttpRequest, HttpResponse, HttpResponseNotFound
    from django.urls import URLPattern, re_path
    from django.utils.cache import patch_vary_headers
    from django.utils.encoding import escape_uri_path
    from django.utils.module_loading import import_string
except ImportError as exc:  # pragma: no cover - exercised by a test that hides django
    raise missing_extra(__name__, "Django") from exc

from scopegate._config import from_env, options_from_env, realm_from_env
from scopegate._errors import BearerError, ConfigurationError, HTTPResponse
from scopegate._guard import BearerGuard, GuardOptions, raw_path_from_uri
from scopegate._scopes import Requirement, scopes_requirement, validated_scopes
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier
from scopegate.integrations import _views

__all__ = [
    "BearerTokenMiddleware",
    "ScopeRequiredMixin",
    "get_guard",
    "metadata_urlpatterns",
    "render_error",
    "require_any_scope",
    "require_scope",
    "require_token",
]

V = TypeVar("V", bound=Callable[..., Any])
_Check = Callable[[AccessToken | None], AccessToken]

#: Request attribute holding the verified token (``None`` when anonymous or skipped).
REQUEST_ATTR = "access_token"

# Setting keys naming GuardOptions fields: the field name in upper case.
_OPTION_KEYS = {field.name.upper(): field.name for field in dataclasses.fields(GuardOptions)}
# Setting keys holding objects (or dotted paths to them), not SCOPEGATE_* values.
_OBJECT_KEYS = frozenset({"VERIFIER", "OPTIONS"})
# GuardOptions fields that may also be given as their SCOPEGATE_* text.
_TEXT_OR_OBJECT = frozenset({"RESOURCE", "DPOP"})

_lock = threading.Lock()
# The middleware's guard, and the decorators' twin of it (see _view_guard).
_guards: tuple[BearerGuard, BearerGuard] | None = None


def _setting(config: Mapping[str, Any], key: str, wanted: str) -> Any:
    """A setting given as the object, a dotted path to it, or a zero-argument factory."""
    value = config.get(key)
    if isinstance(value, str):
        value = import_string(value)
    if value is not None and not hasattr(value, wanted) and callable(value):
        value = value()  # a factory
    return value


def _variable(key: str, value: Any) -> bool:
    """Whether setting *key* holds a ``SCOPEGATE_*`` value rather than a GuardOptions field.
    ``RESOURCE`` and ``DPOP`` are both: text (a URL, a mode) like the variables, or the
    :class:`~scopegate.ProtectedResource` / :class:`~scopegate.DPoPPolicy` object."""
    if key in _TEXT_OR_OBJECT:
        return isinstance(value, str)
    return key not in _OPTION_KEYS and key not in _OBJECT_KEYS


def _build(config: Mapping[str, Any]) -> BearerGuard:
    """The middleware's guard: its verifier and options from *config* and the environment."""
    options = {
        _OPTION_KEYS[k]: v for k, v in config.items() if k in _OPTION_KEYS and not _variable(k, v)
    }
    env = dict(os.environ)
    for key, value in config.items():
        if _variable(key, value) and value is not None:
            env[f"SCOPEGATE_{key}"] = str(value)
    base = _setting(config, "OPTIONS", "realm")
    if base is not None and not isinstance(base, GuardOptions):
        raise ConfigurationError("the OPTIONS setting must be a GuardOptions")
    verifier: TokenVerifier | None = _setting(config, "VERIFIER", "verify")
    from_variables = verifier is None or any(
        isinstance(config.get(key), str) for key in _TEXT_OR_OBJECT
    )
    if verifier is None:
        verifier = from_env(env)
    if base is None:  # the options from the same variables (resource, DPoP...), or the realm
        base = options_from_env(env) if from_variables else GuardOptions(realm=realm_from_env(env))
    return BearerGuard(verifier, base, **options)


def get_guard() -> BearerGuard:
    """The :class:`~scopegate.BearerGuard` built from the ``SCOPEGATE`` setting (cached).

    Built on first use (so the verifier's caches are shared by every request) and rebuilt
    when the setting changes (``override_settings`` in tests).

    Raises:
        ConfigurationError: The settings or environment are incomplete or unusable.
    """
    return _get_guards()[0]


def _view_guard() -> BearerGuard:
    """The decorators' and the mixin's guard: the middleware's verifier and options, but
    no excluded paths and no anonymous requests. A protected view needs a token wherever
    it is routed, also on a path the middleware skips."""
    return _get_guards()[1]


def _get_guards() -> tuple[BearerGuard, BearerGuard]:
    global _guards
    guards = _guards
    if guards is not None:
        return guards
    with _lock:
        if _guards is None:
            config: Mapping[str, Any] = getattr(settings, "SCOPEGATE", None) or {}
            guard = _build(config)
            view_options = dataclasses.replace(guard.options, exclude_paths=(), optional=False)
            _guards = (guard, BearerGuard(guard.verifier, view_options))
        return _guards


def _reset_guard(*, setting: str, **kwargs: Any) -> None:
    global _guards
    if setting == "SCOPEGATE":
        with _lock:
            _guards = None


setting_changed.connect(_reset_guard, dispatch_uid="scopegate-reset-guard")


def render_error(error: BearerError, guard: BearerGuard | None = None) -> HttpResponse:
    """The RFC 6750 §3 JSON response for *error* (401/400/403/503 + ``WWW-Authenticate``)."""
    return _response((guard or get_guard()).render(error))


def _response(rendered: HTTPResponse) -> HttpResponse:
    return _views.framework_response(HttpResponse, rendered)


def _resource_metadata(request: HttpRequest) -> HttpResponse:
    """The RFC 9728 document of the requested well-known path, as the guard answers it."""
    document = _views.metadata_document(_view_guard(), DjangoRequest(request))
    return HttpResponseNotFound() if document is None else _response(document)


def metadata_urlpatterns() -> list[URLPattern]:
    """URL patterns serving the RFC 9728 metadata document, for decorator-only projects.

    :class:`BearerTokenMiddleware` serves the document itself; without it, add these
    patterns to the **root** URLconf (the well-known URL hangs off the host, RFC 9728
    §3.1)::

        from scopegate.integrations.django import metadata_urlpatterns

        urlpatterns = [path("items", items), *metadata_urlpatterns()]

    They match ``/.well-known/oauth-protected-resource`` and every path below it and
    answer the resource's two well-known paths (the path-inserted form and the root
    form) from the ``SCOPEGATE`` configuration at request time, so a settings change is
    seen; any other path below it, or no configured resource, is a 404.

    Returns:
        The URL patterns (one ``re_path``).
    """
    return [
        re_path(
            r"^\.well-known/oauth-protected-resource(?:/.*)?\Z",
            _resource_metadata,
            name="scopegate-resource-metadata",
        )
    ]


class DjangoRequest:
    """The guard's view of a Django ``HttpRequest`` (sync or async stack)."""

    __slots__ = ("_request", "authorization", "method", "query", "token_source")

    def __init__(self, request: HttpRequest) -> None:
        self._request = request
        self.method: str = request.method or "GET"
        self.query: str = request.META.get("QUERY_STRING", "")
        header = request.META.get("HTTP_AUTHORIZATION")
        self.authorization: tuple[str, ...] = (header,) if isinstance(header, str) else ()
        self.token_source: str | None = None

    @property
    def path(self) -> str:
        """The raw path as received when the server tells it, else the escaped path."""
        meta = self._request.META
        uri = meta.get("REQUEST_URI") or meta.get("RAW_URI")
        if isinstance(uri, str) and uri:
            return raw_path_from_uri(uri)
        scope = getattr(self._request, "scope", None)
        if isinstance(scope, dict) and isinstance(scope.get("raw_path"), bytes):
            return cast("bytes", scope["raw_path"]).split(b"?", 1)[0].decode("latin-1")
        # Test client and servers without a raw target: the decoded path, re-escaped.
        return cast("str", escape_uri_path(self._request.path))

    @property
    def scheme(self) -> str:
        """The scheme Django says the request came with."""
        return self._request.scheme or "http"

    @property
    def content_type(self) -> str | None:
        """``Content-Type``, or ``None``."""
        return self._request.META.get("CONTENT_TYPE") or None

    @property
    def content_length(self) -> str | None:
        """``Content-Length``, or ``None``."""
        return self._request.META.get("CONTENT_LENGTH") or None

    def header(self, name: str) -> list[str]:
        """The value of header *name* (lower case)."""
        value = self._request.headers.get(name)
        return [value] if value is not None else []

    def read_body(self, limit: int) -> bytes | None:
        """``request.body`` (Django keeps it for the view) when at most *limit* bytes."""
        try:
            length = int(self._request.META.get("CONTENT_LENGTH") or "")
        except ValueError:
            return None
        if not 0 <= length <= limit:
            return None
        body: bytes = self._request.body
        return body


def _accept(request: HttpRequest, token: AccessToken | None) -> None:
    setattr(request, REQUEST_ATTR, token)
    if token is not None:
        # A request authenticated by its bearer token carries no ambient credential (no
        # cookie a browser would add by itself): CSRF cannot forge it, so Django's CSRF
        # check does not apply, as in Django REST framework.
        request._dont_enforce_csrf_checks = True


class BearerTokenMiddleware:
    """Django middleware (sync and async) requiring an RFC 6750 bearer token.

    Add ``"scopegate.integrations.django.BearerTokenMiddleware"`` to ``MIDDLEWARE``.
    Requests to ``EXCLUDE_PATHS`` (and CORS preflights with ``ALLOW_PREFLIGHT``) pass
    untouched; with ``OPTIONAL`` requests without credentials pass with
    ``request.access_token = None``. Every other request needs a valid token.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        # Django builds middleware at start-up: fail there on a bad configuration,
        # not on the first request.
        get_guard()
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        token = get_guard().decide(DjangoRequest(request))
        if isinstance(token, HTTPResponse):
            return _response(token)
        _accept(request, token)
        with _views.CurrentToken(token):
            response = self.get_response(request)
        patch_vary_headers(response, ("Authorization",))
        return response

    async def __acall__(self, request: HttpRequest) -> Any:
        token = await get_guard().adecide(DjangoRequest(request))
        if isinstance(token, HTTPResponse):
            return _response(token)
        _accept(request, token)
        with _views.CurrentToken(token):
            response = await self.get_response(request)
        patch_vary_headers(response, ("Authorization",))
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        """Render a :class:`~scopegate.BearerError` raised by a view (e.g. by
        :func:`scopegate.require_scope`); leave every other exception to Django."""
        if isinstance(exception, BearerError):
            return render_error(exception)
        return None


# The decorators' and the mixin's view call: the middleware's token, or the request
# decided here (no middleware, or a path it skips), checked, then the view with it.
# Sync and async differ only by the awaits; the rest is _admitted.
def _run_view(check: _Check, request: HttpRequest, view: Callable[[], Any]) -> Any:
    token = getattr(request, REQUEST_ATTR, None)
    if token is None:
        token = _view_guard().decide(DjangoRequest(request))
    admitted = _admitted(check, request, token)
    if isinstance(admitted, HttpResponse):
        return admitted
    with _views.CurrentToken(admitted):
        return view()


async def _arun_view(
    check: _Check, request: HttpRequest, view: Callable[[], Awaitable[Any]]
) -> Any:
    token = getattr(request, REQUEST_ATTR, None)
    if token is None:
        token = await _view_guard().adecide(DjangoRequest(request))
    admitted = _admitted(check, request, token)
    if isinstance(admitted, HttpResponse):
        return admitted
    with _views.CurrentToken(admitted):
        return await view()


def _admitted(
    check: _Check, request: HttpRequest, decision: AccessToken | HTTPResponse | None
) -> AccessToken | HttpResponse:
    """The checked token, or the response that refuses the request."""
    if isinstance(decision, HTTPResponse):
        return _response(decision)
    _accept(request, decision)
    try:
        return check(decision)
    except BearerError as error:
        return render_error(error)


def _decorator(requirement: Requirement) -> Callable[[V], V]:
    check = requirement.check

    def decorate(view: V) -> V:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def async_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                return await _arun_view(
                    check, request, functools.partial(view, request, *args, **kwargs)
                )

            # Only a request with a valid bearer token reaches the view, and a bearer
            # token is no ambient credential: CSRF protection does not apply.
            async_view.csrf_exempt = True  # type: ignore[attr-defined]
            return cast("V", async_view)

        @functools.wraps(view)
        def sync_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return _run_view(check, request, functools.partial(view, request, *args, **kwargs))

        sync_view.csrf_exempt = True  # type: ignore[attr-defined]
        return cast("V", sync_view)

    return decorate


def require_scope(
    *scopes: str, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[V], V]:
    """Decorate a sync or async function view: it runs only if the token has ALL *scopes*.

    Args:
        *scopes: One or more scope names, each a single scope-token.
        acr_values: Step-up requirement (RFC 9470), as for :func:`scopegate.require_scope`.
        max_age: Step-up requirement (RFC 9470), as for :func:`scopegate.require_scope`.

    Raises:
        ConfigurationError: At decoration time, for no scopes or a malformed setting.

    A request without a valid token gets 401; a token whose authentication is too weak
    or too old 401 ``insufficient_user_authentication`` with ``acr_values`` /
    ``max_age`` (RFC 9470 §3; judged before the scopes); one lacking a scope 403
    ``insufficient_scope`` with ``scope=`` in the challenge (RFC 6750 §3.1).
    """
    return _decorator(scopes_requirement(scopes, acr_values=acr_values, max_age=max_age))


def require_any_scope(
    *scopes: str, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[V], V]:
    """Like :func:`require_scope`, but ONE of *scopes* suffices."""
    return _decorator(
        scopes_requirement(scopes, any_of=True, acr_values=acr_values, max_age=max_age)
    )


@overload
def require_token(view: V, /) -> V: ...
@overload
def require_token(
    *, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[V], V]: ...
def require_token(
    view: V | None = None,
    /,
    *,
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> V | Callable[[V], V]:
    """Decorate a function view: it runs only with a valid token, whatever its scopes.

    Use it bare (``@require_token``) or with step-up requirements
    (``@require_token(max_age=300)``: a recent login, RFC 9470).
    """
    return _views.token_decorator(_decorator, view, acr_values, max_age)


class ScopeRequiredMixin:
    """Class-based-view mixin: every handler needs a token with ``required_scopes``.

    Put it first in the bases: ``class ItemsView(ScopeRequiredMixin, View)``. Works with
    sync and async views. An empty ``required_scopes`` only requires a valid token.

    Attributes:
        required_scopes: Scope names; all are needed unless ``any_scope`` is true.
        any_scope: ``True``: one of ``required_scopes`` suffices.
        acr_values: Step-up (RFC 9470): ``acr`` values of which the token must carry
            one; empty: any.
        max_age: Step-up (RFC 9470): the largest age in seconds of the user's
            authentication (``auth_time``); ``None``: any.

    The attributes are checked when the URLconf calls :meth:`as_view` (also when
    ``as_view()`` is given them as keywords), so a mistake fails at start-up.

    Example::

        class TransferView(ScopeRequiredMixin, View):
            required_scopes = ("payments:write",)
            acr_values = ("urn:example:mfa",)
            max_age = 300
    """

    required_scopes: ClassVar[Sequence[str]] = ()
    any_scope: ClassVar[bool] = False
    acr_values: ClassVar[Sequence[str]] = ()
    max_age: ClassVar[int | None] = None
    view_is_async: ClassVar[bool]
    # Set by as_view(): the Requirement the attributes describe, built once.
    scopegate_requirement: ClassVar[Requirement | None] = None

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Callable[..., Any]:
        """The view function, exempt from Django's CSRF check like the decorated function
        views: :meth:`dispatch` lets only requests with a valid bearer token through."""
        settings_ = {
            name: initkwargs.get(name, getattr(cls, name))
            for name in ("required_scopes", "any_scope", "acr_values", "max_age")
        }
        initkwargs["scopegate_requirement"] = _mixin_requirement(cls.__name__, **settings_)
        view = cast("Callable[..., Any]", super().as_view(**initkwargs))  # type: ignore[misc]
        # CsrfViewMiddleware.process_view runs before dispatch() and reads csrf_exempt from
        # the function that as_view() returns.
        view.csrf_exempt = True  # type: ignore[attr-defined]
        return view

    def _requirement(self) -> Requirement:
        requirement = self.scopegate_requirement
        if requirement is None:  # dispatched without as_view() (a test calling it directly)
            requirement = _mixin_requirement(
                type(self).__name__,
                required_scopes=self.required_scopes,
                any_scope=self.any_scope,
                acr_values=self.acr_values,
                max_age=self.max_age,
            )
        return requirement

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        """Check the token, then hand over to the view's own ``dispatch``."""
        requirement = self._requirement()
        parent = cast("Callable[..., Any]", super().dispatch)  # type: ignore[misc]
        run = _arun_view if self.view_is_async else _run_view
        return run(requirement.check, request, functools.partial(parent, request, *args, **kwargs))


def _mixin_requirement(
    name: str, *, required_scopes: Any, any_scope: Any, acr_values: Any, max_age: Any
) -> Requirement:
    if isinstance(required_scopes, str):
        raise ConfigurationError(f"{name}.required_scopes must be a list of scopes, not a str")
    scopes = tuple(required_scopes)
    return Requirement.of(
        name,
        validated_scopes(scopes, name) if scopes else (),
        any_of=any_scope,
        acr_values=acr_values,
        max_age=max_age,
    )
