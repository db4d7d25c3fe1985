"""Flask integration: the :class:`ScopeGate` extension and view decorators.

Install with ``pip install 'scopegate[flask]'``.

The extension holds one :class:`~scopegate.BearerGuard` per application and registers an
error handler that renders every :class:`~scopegate.BearerError` as its RFC 6750 §3
response (401/400/403/503 JSON with ``WWW-Authenticate``). The decorators verify the
request's bearer token when a decorated view is called (sync verification: Flask is
WSGI), check scopes exactly (RFC 6749 §3.3), and expose the token as the context-local
:data:`current_token` (and to :func:`scopegate.current_token`). A decorated view's
result is made into its response (``app.make_response``) with ``Vary: Authorization``,
as is an error page made for an exception the view raised. Views without a decorator
never look at ``Authorization``.

Configuration comes from the constructor or, for what is not given there, from
``app.config`` keys named like the environment variables (``SCOPEGATE_ISSUER``,
``SCOPEGATE_AUDIENCE``, ``SCOPEGATE_JWKS_URI``, ``SCOPEGATE_INTROSPECTION_URI``, ...,
``SCOPEGATE_REALM``, ``SCOPEGATE_RESOURCE``, ``SCOPEGATE_DPOP``), falling back to
``os.environ``.

Step-up (RFC 9470): ``require_scope(..., acr_values=[...], max_age=300)`` and
``require_token(max_age=300)`` also require a strong or recent login; a token that falls
short gets 401 ``insufficient_user_authentication`` naming what is missing.

When the options describe a resource (RFC 9728: ``SCOPEGATE_RESOURCE``, or
``ScopeGate(app, options=scopegate.options_from_env())``), :meth:`ScopeGate.init_app`
registers URL rules for its metadata document at both well-known paths, and every 401
and 403 carries ``resource_metadata``. With DPoP (``SCOPEGATE_DPOP``), the decorated
views accept DPoP-bound tokens with their proofs (RFC 9449).

Example::

    from flask import Flask
    from scopegate.integrations.flask import ScopeGate, current_token, require_scope

    app = Flask(__name__)
    app.config.update(SCOPEGATE_ISSUER="https://issuer.example", SCOPEGATE_AUDIENCE="api://items")
    ScopeGate(app)

    @app.get("/items")
    @require_scope("items:read")
    def items():
        return [{"id": 1, "owner": current_token.subject}]
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, cast, overload

from scopegate._extras import missing_extra

try:
    from flask import (
        Flask,
        Request,
        Response,
        after_this_request,
        current_app,
        g,
        has_app_context,
        request,
    )
    from werkzeug.local import LocalProxy
except ImportError as exc:  # pragma: no cover - exercised by a test that hides flask
    raise missing_extra(__name__, "Flask") from exc

from scopegate._config import from_env, options_from_env, realm_from_env
from scopegate._context import current_token as current_token_var
from scopegate._context import reset_current_token, set_current_token
from scopegate._errors import BearerError, ConfigurationError, HTTPResponse, MissingTokenError
from scopegate._guard import BearerGuard, GuardOptions, add_vary
from scopegate._scopes import Requirement, scopes_requirement
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier
from scopegate.integrations import _views
from scopegate.wsgi import WSGIRequest

__all__ = [
    "ScopeGate",
    "current_token",
    "get_current_token",
    "require_any_scope",
    "require_scope",
    "require_token",
]

P = ParamSpec("P")
R = TypeVar("R")

EXTENSION_KEY = "scopegate"
_G_KEY = "scopegate_token"
_METADATA_ENDPOINT = "scopegate_resource_metadata"


class FlaskRequest(WSGIRequest):
    """The guard's view of a Flask request: the WSGI view, reading the body through
    Flask so the view can still read it."""

    __slots__ = ("_request",)

    def __init__(self, request: Request) -> None:
        super().__init__(request.environ)
        self._request = request

    def read_body(self, limit: int) -> bytes | None:
        """The body through ``get_data(cache=True)`` when its length is at most *limit*."""
        length = self._request.content_length
        if length is None or length > limit:
            return None
        return self._request.get_data(cache=True)


class ScopeGate:
    """Flask extension: bearer-token verification and RFC 6750 error rendering.

    Args:
        app: The application; or call :meth:`init_app` later (application factories).
        verifier: The :class:`~scopegate.TokenVerifier`; when omitted, one is built by
            :func:`scopegate.from_env` from ``SCOPEGATE_*`` keys of ``app.config``
            (overriding ``os.environ``).
        options: A :class:`~scopegate.GuardOptions` (``scopegate.options_from_env()``).
            When omitted, and the verifier is built from the configuration too, the
            options come from the same keys (:func:`scopegate.options_from_env`:
            realm, RFC 9728 resource, DPoP...); with a verifier of your own, only the
            realm does (``SCOPEGATE_REALM``, else ``"api"``).
        **settings: Any :class:`~scopegate.GuardOptions` field (``allow_query_token``,
            ``allow_form_token``, ``max_token_length``, ``resource``, ``dpop``...),
            applied on top. ``optional`` and ``exclude_paths`` do not apply: a
            decorated view always needs a token.

    Raises:
        ConfigurationError: An unusable setting, at :meth:`init_app`.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        verifier: TokenVerifier | None = None,
        options: GuardOptions | None = None,
        **settings: Any,
    ) -> None:
        self.verifier = verifier
        self.options = GuardOptions.of(options, **settings)
        if self.options.optional or self.options.exclude_paths:
            raise ConfigurationError(
                "Flask decorators always need a token: optional and exclude_paths do not apply"
            )
        self._options_given = options is not None
        self._settings = settings
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Attach to *app*: build its guard, register the error handler, and
        the RFC 9728 metadata URL rules when the options describe a resource.

        Raises:
            ConfigurationError: No verifier given and the configuration is incomplete,
                or an unusable option.
        """
        environ = {**os.environ, **_prefixed(app.config.items())}
        options = self.options
        if self.verifier is not None:
            verifier = self.verifier
            if not self._options_given:
                base = GuardOptions(realm=realm_from_env(environ))
                options = GuardOptions.of(base, **self._settings)
        else:
            verifier = from_env(environ)
            if not self._options_given:
                options = options_from_env(environ, **self._settings)
        guard = BearerGuard(verifier, options)
        app.extensions[EXTENSION_KEY] = guard
        app.register_error_handler(BearerError, _render_error)
        resource = guard.options.resource
        if resource is not None:
            # RFC 9728 §3: the document at both well-known paths; the guard answers it.
            for path in sorted(resource.paths):
                app.add_url_rule(path, _METADATA_ENDPOINT, _resource_metadata, methods=["GET"])

    @staticmethod
    def guard(app: Flask | None = None) -> BearerGuard:
        """The :class:`~scopegate.BearerGuard` of *app* (default: the current app)."""
        target = app if app is not None else current_app
        try:
            return cast("BearerGuard", target.extensions[EXTENSION_KEY])
        except KeyError:
            raise ConfigurationError(
                "ScopeGate is not initialised on this app: call ScopeGate(app) or init_app(app)"
            ) from None


def _prefixed(items: Iterable[tuple[str, Any]]) -> dict[str, str]:
    return {k: str(v) for k, v in items if k.startswith("SCOPEGATE_") and v is not None}


def _response(rendered: HTTPResponse) -> Response:
    return _views.framework_response(Response, rendered)


def _render_error(error: BearerError) -> Response:
    return _response(ScopeGate.guard().render(error))


def _resource_metadata() -> Response:
    """The RFC 9728 document of this path, as the guard answers it."""
    view = FlaskRequest(request._get_current_object())  # type: ignore[attr-defined]
    document = _views.metadata_document(ScopeGate.guard(), view)
    return Response(status=404) if document is None else _response(document)


def _add_vary(response: Response) -> Response:
    # A decorated view's response depended on the token: shared caches must key on it.
    # (Refusals get it from the guard's rendering.)
    headers = response.headers
    # getlist: werkzeug's get() raises and catches KeyError when absent (0.6 µs more).
    vary = headers.getlist("Vary")
    if not vary:
        headers.add("Vary", "Authorization")  # cheaper than set() when absent
    else:
        headers["Vary"] = add_vary(", ".join(vary))
    return response


def _varied(app: Flask, result: Any) -> Any:
    """A decorated view's result as its response, with ``Vary: Authorization``.

    Done here rather than in an ``after_request`` hook, which Flask would call for every
    request of the app: the hook cost 3.5 µs per decorated request (in-process, about
    8% of a bare Flask request); Flask leaves a response made here as it is.
    """
    return _add_vary(app.make_response(result))


def _on_view_error() -> None:
    # The view raised (abort(404), a bug): the error page Flask makes for it was still
    # served for this token, so it varies too.
    after_this_request(_add_vary)


def _authenticate(app: Flask) -> AccessToken:
    """Verify the current request's token once per request (cached on ``g``)."""
    # Each context-local proxy access costs a lookup: resolve g, request and the app once.
    ctx_g = g._get_current_object()
    cached: AccessToken | None = ctx_g.get(_G_KEY)
    if cached is not None:
        return cached
    guard = ScopeGate.guard(app)
    token = guard.authenticate(FlaskRequest(request._get_current_object()))  # type: ignore[attr-defined]
    if token is None:  # pragma: no cover - the guard is never optional here
        raise MissingTokenError()
    setattr(ctx_g, _G_KEY, token)
    return token


def _decorator(requirement: Requirement) -> Callable[[Callable[P, R]], Callable[P, R]]:
    check = requirement.check

    def decorate(view: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(view):
            async_view = cast("Callable[P, Any]", view)

            @functools.wraps(view)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                app = current_app._get_current_object()  # type: ignore[attr-defined]
                marker = set_current_token(check(_authenticate(app)))
                try:
                    result = await async_view(*args, **kwargs)
                except BaseException:
                    _on_view_error()
                    raise
                finally:
                    reset_current_token(marker)
                return _varied(app, result)

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            marker = set_current_token(check(_authenticate(app)))
            try:
                result = view(*args, **kwargs)
            except BaseException:
                _on_view_error()
                raise
            finally:
                reset_current_token(marker)
            return cast("R", _varied(app, result))

        return wrapper

    return decorate


def require_scope(
    *scopes: str, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so it runs only with a valid token granting ALL *scopes*.

    Place it below ``@app.route``. Works on sync and ``async def`` views.

    Args:
        *scopes: One or more scope names, each a single scope-token.
        acr_values: Step-up requirement (RFC 9470), as for :func:`scopegate.require_scope`.
        max_age: Step-up requirement (RFC 9470), as for :func:`scopegate.require_scope`.

    Raises:
        ConfigurationError: At decoration time, for no scopes or a malformed setting.

    At request time a :class:`~scopegate.BearerError` is raised and rendered by the
    extension's handler: 401 without a valid token, 401
    ``insufficient_user_authentication`` with ``acr_values`` / ``max_age`` (RFC 9470
    §3) when the authentication is too weak or too old (judged before the scopes),
    403 ``insufficient_scope`` with ``scope=`` (RFC 6750 §3.1) when a scope is missing.

    Example::

        @app.post("/payments")
        @require_scope("payments:write", acr_values=["urn:example:mfa"], max_age=300)
        def pay(): ...
    """
    return _decorator(scopes_requirement(scopes, acr_values=acr_values, max_age=max_age))


def require_any_scope(
    *scopes: str, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Like :func:`require_scope`, but ONE of *scopes* suffices."""
    return _decorator(
        scopes_requirement(scopes, any_of=True, acr_values=acr_values, max_age=max_age)
    )


@overload
def require_token(view: Callable[P, R], /) -> Callable[P, R]: ...
@overload
def require_token(
    *, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...
def require_token(
    view: Callable[P, R] | None = None,
    /,
    *,
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a view so it runs only with a valid token, whatever its scopes.

    Use it bare (``@require_token``) or with step-up requirements
    (``@require_token(max_age=300)``: a recent login, RFC 9470).
    """
    return _views.token_decorator(_decorator, view, acr_values, max_age)


def get_current_token() -> AccessToken | None:
    """The token verified for the current request, or ``None``.

    A decorator's token (in the view, and after it on ``g`` for the rest of the
    request), or the token :class:`scopegate.wsgi.BearerAuthMiddleware` verified when it
    wraps the app.
    """
    # Inside the decorated view (the common use), the context variable the decorator
    # set answers without resolving g (0.8 µs per access); elsewhere in the request
    # (after_request, a teardown), the token the decorator kept on g.
    token = current_token_var()
    if token is not None or not has_app_context():
        return token
    kept: AccessToken | None = g._get_current_object().get(_G_KEY)
    return kept


#: Context-local proxy to the current request's :class:`~scopegate.AccessToken`
#: (like ``flask.g``); only use it inside a decorated view.
current_token: AccessToken = cast("AccessToken", LocalProxy(get_current_token))
