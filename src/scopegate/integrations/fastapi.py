"""FastAPI integration: a security dependency that verifies bearer tokens and checks scopes.

Install with ``pip install 'scopegate[fastapi]'``.

:class:`BearerAuth` is a FastAPI security scheme (a ``fastapi.security.base.SecurityBase``):
used with ``Security(auth, scopes=[...])`` it verifies the request's bearer token with the
verifier's async method (the event loop is never blocked), checks that **every** scope
FastAPI collected for the route is granted (RFC 6749 §3.3, exact match), and returns the
:class:`~scopegate.AccessToken`. It declares an OAuth 2.0 client-credentials flow with its
token URL and scope descriptions, so the OpenAPI document and ``/docs`` show the lock and
each route's scopes.

Step-up (RFC 9470): ``Security(auth.step_up(acr_values=[...], max_age=300), scopes=[...])``
also requires a strong or recent login (:meth:`BearerAuth.step_up`); a token that falls
short gets 401 ``insufficient_user_authentication`` naming what is missing.

Failures raise :class:`BearerHTTPException`, an ``HTTPException`` that already carries the
RFC 6750 §3 status and ``WWW-Authenticate`` challenge.

Call :func:`install` once on the application (``add_exception_handlers`` is the same
call under its older name). It renders those exceptions, and a ``BearerError`` raised by
:func:`scopegate.require_scope` in an endpoint, as RFC 6750 JSON, refuses WebSocket
handshakes properly, and makes every route protected by a :class:`BearerAuth` dependency
authenticate **before FastAPI reads the request body**, and answer with
``Vary: Authorization``.

Example::

    from typing import Annotated
    from fastapi import FastAPI, Security
    from scopegate import AccessToken, from_env
    from scopegate.integrations.fastapi import BearerAuth, install

    auth = BearerAuth(from_env(), token_url="https://issuer.example/token",
                      scopes={"items:read": "Read items"})
    app = FastAPI()
    install(app)

    @app.get("/items")
    async def items(token: Annotated[AccessToken, Security(auth, scopes=["items:read"])]):
        return [{"id": 1}]

Why a route class. FastAPI's request handler reads and validates the body *before* it
solves the dependencies, so a dependency alone answers an unauthenticated ``POST`` with
broken JSON with 422 and no challenge, and reads a 10 MB body before its 401. The token
must be judged earlier, and only the route knows which dependencies guard it: the
middleware runs before routing, and the body is read inside the route's handler.
:class:`BearerRoute` is an ``APIRoute`` (FastAPI's documented extension point) whose
``handle`` finds the :class:`BearerAuth` dependencies of the route (in
``route.dependant``, with the scopes ``Security`` gives each, skipping
``app.dependency_overrides``), calls them exactly as FastAPI would, and only then hands
the request to FastAPI. The dependency's own call later reuses the token
(``scope["scopegate.token"]``), so a token is verified once; its errors go through the
same exception handlers. :func:`install` makes every route of the app a
:class:`BearerRoute`: those already registered, those registered later on the app, and
those of routers included later (they are converted when the app starts serving). A
route class of your own is left alone: derive it from :class:`BearerRoute`.

RFC 9728 and DPoP. A :class:`BearerAuth` whose options describe the API as a
:class:`~scopegate.ProtectedResource` (``options=scopegate.options_from_env()`` with
``SCOPEGATE_RESOURCE`` set, or ``resource=...``) answers with ``resource_metadata`` in
every 401 and 403 challenge; :func:`install` then also serves the metadata document at
the resource's well-known paths (a dependency alone cannot: no route depends on it).
With a :class:`~scopegate.DPoPPolicy` (``dpop=``, ``SCOPEGATE_DPOP``) the dependency
accepts ``Authorization: DPoP`` with its proof (RFC 9449); a route verifies the token
once per request, so a proof is recorded once.

A token already verified by :class:`scopegate.asgi.BearerAuthMiddleware` for the same
request (``scope["scopegate.token"]``) is reused rather than verified twice. Tokens in
form bodies (RFC 6750 §2.2) are not read: a dependency must not consume the body; put the
ASGI middleware in front with ``allow_form_token=True`` if you need them.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from scopegate._extras import missing_extra

try:
    from fastapi import FastAPI
    from fastapi.exceptions import HTTPException
    from fastapi.openapi.models import OAuth2 as OAuth2Model
    from fastapi.openapi.models import OAuthFlowClientCredentials, OAuthFlows
    from fastapi.routing import APIRoute, APIRouter
    from fastapi.security import SecurityScopes
    from fastapi.security.base import SecurityBase
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute, Route
    from starlette.websockets import WebSocket
except ImportError as exc:  # pragma: no cover - exercised by a test that hides fastapi
    raise missing_extra(__name__, "FastAPI") from exc

from scopegate._errors import BearerError, HTTPResponse, check_realm
from scopegate._guard import BearerGuard, GuardOptions
from scopegate._scopes import Requirement
from scopegate._token import AccessToken
from scopegate._verifier import TokenVerifier
from scopegate.asgi import ASGIRequest, Message, Receive, Scope, Send, _patch_headers

__all__ = [
    "BearerAuth",
    "BearerHTTPException",
    "BearerRoute",
    "add_exception_handlers",
    "bearer_exception_handler",
    "install",
]

#: Where the ASGI middleware and this dependency keep the verified token.
SCOPE_KEY = "scopegate.token"
# OpenAPI has no DPoP scheme: the OAuth 2.0 flow still says where tokens come from, and
# the description says how they are presented (Swagger UI itself only sends Bearer).
_DPOP_DESCRIPTION = {
    "allowed": "Bearer tokens, or DPoP-bound tokens (RFC 9449) sent as "
    "`Authorization: DPoP <token>` with a `DPoP` proof header.",
    "required": "DPoP-bound tokens only (RFC 9449): `Authorization: DPoP <token>` with a "
    "`DPoP` proof header; Bearer tokens are refused.",
}
# RFC 6455 §7.4.1: 1008 = policy violation, the close code for a refused handshake.
WS_POLICY_VIOLATION = 1008


class BearerHTTPException(HTTPException):
    """An ``HTTPException`` for an RFC 6750 outcome.

    FastAPI's default handler already sends its status and ``WWW-Authenticate`` header
    (with a ``{"detail": ...}`` body); :func:`bearer_exception_handler` sends the
    rendered RFC 6750 JSON body instead.

    Attributes:
        error: The :class:`~scopegate.BearerError` behind it.
        response: Its rendered :class:`~scopegate.HTTPResponse`.
    """

    def __init__(self, error: BearerError, response: HTTPResponse) -> None:
        self.error = error
        self.response = response
        headers = {k: v for k, v in response.headers if k not in {"content-type", "content-length"}}
        super().__init__(status_code=response.status, detail=error.description, headers=headers)


class BearerAuth(SecurityBase):
    """FastAPI security dependency: RFC 6750 bearer tokens, scopes from ``Security``.

    Args:
        verifier: The :class:`~scopegate.TokenVerifier` (its ``averify`` is awaited).
        token_url: The authorization server's token endpoint, shown in OpenAPI as the
            client-credentials flow's ``tokenUrl``.
        scopes: Scope name to description, advertised in OpenAPI.
        scheme_name: Name of the security scheme in the OpenAPI document.
        description: Description of the security scheme.
        auto_error: ``False`` returns ``None`` for requests without bearer credentials
            (a presented token that fails is still a 401).
        options: A :class:`~scopegate.GuardOptions` (``scopegate.options_from_env()``):
            with a ``resource`` the challenges point at the RFC 9728 metadata, which
            :func:`install` serves; with ``dpop``, DPoP-bound tokens are accepted.
        **settings: Any :class:`~scopegate.GuardOptions` field (``realm``,
            ``allow_query_token``, ``max_token_length``, ``resource``, ``dpop``...).
            Form-body tokens are not read: a dependency must not consume the body.

    The OpenAPI description defaults to how DPoP tokens are sent when DPoP is accepted.

    Raises:
        ConfigurationError: An unusable setting.

    Calling it (FastAPI does) returns the :class:`~scopegate.AccessToken`, or raises
    :class:`BearerHTTPException` (401 / 400 / 403 ``insufficient_scope`` / 503).
    """

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        token_url: str,
        scopes: Mapping[str, str] | None = None,
        scheme_name: str = "OAuth2ClientCredentials",
        description: str | None = None,
        auto_error: bool = True,
        options: GuardOptions | None = None,
        **settings: Any,
    ) -> None:
        settings.setdefault("optional", not auto_error)
        self.guard = BearerGuard(verifier, options, **settings)
        dpop = self.guard.options.dpop
        if description is None and dpop is not None:
            description = _DPOP_DESCRIPTION[dpop.mode]
        flows = OAuthFlows(
            clientCredentials=OAuthFlowClientCredentials(
                tokenUrl=token_url, scopes=dict(scopes or {})
            )
        )
        self.model = OAuth2Model(flows=flows, description=description)
        self.scheme_name = scheme_name
        self.auto_error = auto_error
        self._strength = Requirement()
        self._requirements: dict[tuple[str, ...], Requirement] = {}

    def step_up(
        self, *, acr_values: Iterable[str] | None = None, max_age: int | None = None
    ) -> BearerAuth:
        """This dependency, also requiring a strong or recent authentication (RFC 9470).

        The copy shares this dependency's guard (its caches, options and OpenAPI
        scheme); use it where ``Security`` names the route's scopes::

            mfa = auth.step_up(acr_values=["urn:example:mfa"], max_age=300)

            @app.post("/payments")
            async def pay(token: Annotated[AccessToken, Security(mfa, scopes=["pay"])]): ...

        A token whose ``acr`` is not one of *acr_values*, or whose ``auth_time`` is
        missing or more than *max_age* seconds old, gets 401
        ``insufficient_user_authentication`` naming them (RFC 9470 §3), before its
        scopes are judged.

        Args:
            acr_values: Authentication context classes of which the token needs one.
            max_age: Largest age in seconds of the user's authentication.

        Raises:
            ConfigurationError: A malformed acr value or max_age.
        """
        strength = Requirement.of("step_up", (), acr_values=acr_values, max_age=max_age)
        stepped = copy.copy(self)
        stepped._strength = strength
        stepped._requirements = {}
        return stepped

    def requirement(self, scopes: Sequence[str]) -> Requirement:
        """The :class:`~scopegate.Requirement` a route with these ``Security`` scopes
        puts on the token: all of them, and this dependency's step-up (built once).

        Raises:
            ConfigurationError: A scope that is not a single RFC 6749 scope-token.
        """
        key = tuple(scopes)
        requirement = self._requirements.get(key)
        if requirement is None:
            strength = self._strength
            requirement = Requirement.of(
                "Security", key, acr_values=strength.acr_values, max_age=strength.max_age
            )
            self._requirements[key] = requirement
        return requirement

    def _raise(self, error: BearerError) -> BearerHTTPException:
        return BearerHTTPException(error, self.guard.render(error))

    async def __call__(
        self, request: HTTPConnection, security_scopes: SecurityScopes
    ) -> AccessToken | None:
        """Verify the request's token and check the route's requirement: every scope
        ``Security`` collected and the step-up (:meth:`step_up`)."""
        token: AccessToken | None = request.scope.get(SCOPE_KEY)
        try:
            requirement = self.requirement(security_scopes.scopes)
            if token is None:
                token = await self.guard.aauthenticate(_DependencyRequest(request))
                if token is None:
                    if self.auto_error and (requirement.scopes or requirement.step_up):
                        # An excluded path: its Authorization header was ignored, and a
                        # route that needs scopes or strength never runs anonymously.
                        requirement.check(None)
                    return None  # anonymous: auto_error=False, or an excluded path
                request.scope[SCOPE_KEY] = token
            requirement.check(token)
        except BearerError as exc:
            raise self._raise(exc) from None
        return token


class _DependencyRequest(ASGIRequest):
    """The ASGI view of the request, which never reads the body (FastAPI reads it)."""

    __slots__ = ()

    def __init__(self, request: HTTPConnection) -> None:
        # A WebSocket handshake is a GET (RFC 6455 §4.1).
        super().__init__(request.scope, _no_receive, request.scope.get("method", "GET"))

    async def read_body(self, limit: int) -> bytes | None:
        return None


async def _no_receive() -> dict[str, Any]:  # pragma: no cover - never called
    raise RuntimeError("the dependency does not read the body")


async def bearer_exception_handler(conn: HTTPConnection, exc: Exception) -> Response | None:
    """Render a :class:`BearerHTTPException` (or a bare ``BearerError``) per RFC 6750 §3.

    A WebSocket handshake gets the same HTTP response when the server supports the ASGI
    denial-response extension, and is otherwise closed with code 1008 before accept.
    """
    if isinstance(exc, BearerHTTPException):
        rendered = exc.response
    elif isinstance(exc, BearerError):
        state = getattr(conn.scope.get("app"), "state", None)
        guard: BearerGuard | None = getattr(state, "scopegate_guard", None)
        if guard is not None:  # the app's resource: resource_metadata and DPoP challenges
            rendered = guard.render(exc)
        else:
            rendered = exc.to_response(getattr(state, "scopegate_realm", "api"))
    else:  # pragma: no cover - only registered for the two types above
        raise exc
    headers = {**dict(rendered.headers), "vary": "Authorization"}
    response = Response(rendered.body, status_code=rendered.status, headers=headers)
    if isinstance(conn, WebSocket) and "websocket.http.response" not in conn.scope.get(
        "extensions", {}
    ):
        await conn.close(code=WS_POLICY_VIOLATION)
        return None
    return response


class BearerRoute(APIRoute):
    """An ``APIRoute`` that runs its :class:`BearerAuth` dependencies before the body is read.

    Use it through :func:`install`, or as ``APIRouter(route_class=BearerRoute)``. For an
    ``http`` request whose method the route serves, each :class:`BearerAuth` dependency
    of the route is called with the scopes ``Security`` declared for it, in FastAPI's
    order; the first failure raises its :class:`BearerHTTPException` before FastAPI
    reads the body, and the application's exception handlers answer it. Responses of a
    route with such a dependency carry ``Vary: Authorization``.
    """

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, then let FastAPI handle the request (body, validation, endpoint)."""
        requirements = _requirements(self, scope) if scope["type"] == "http" else ()
        if not requirements:
            await super().handle(scope, receive, send)
            return
        if not self.methods or scope["method"] in self.methods:
            # A 405 stays FastAPI's answer: only a request the route serves is judged.
            connection = HTTPConnection(scope)
            for auth, scopes in requirements:
                await auth(connection, SecurityScopes(scopes=scopes))

        def send_with_vary(message: Message) -> Any:
            if message["type"] == "http.response.start":
                # The answer depends on the Authorization header: shared caches must key on it.
                message = _patch_headers(message, private=False)
            return send(message)

        await super().handle(scope, receive, send_with_vary)


def _requirements(route: APIRoute, scope: Scope) -> list[tuple[BearerAuth, list[str]]]:
    """The route's :class:`BearerAuth` dependencies with their scopes, in solving order."""
    dependant: Any = route.dependant
    provider = route.dependency_overrides_provider
    # FastAPI >= 0.16x serves an included router's route through an "effective route
    # context" (the route plus the include's prefix and dependencies), which
    # APIRoute.handle finds in scope["fastapi"] exactly like this. Older versions copy
    # the route on include, so its own dependant is complete.
    context = scope.get("fastapi", {}).get("effective_route_context")
    if context is not None and getattr(context, "original_route", None) is route:
        dependant = context.dependant
        provider = getattr(context, "dependency_overrides_provider", provider)
    overrides = getattr(provider, "dependency_overrides", None) or {}
    return list(_bearer_dependencies(dependant, overrides))


def _bearer_dependencies(
    dependant: Any, overrides: Mapping[Any, Any]
) -> Iterator[tuple[BearerAuth, list[str]]]:
    for sub in dependant.dependencies:
        if sub.call in overrides:
            continue  # replaced (a test's fake token): FastAPI will not call it
        # FastAPI solves a dependency's own dependencies before calling it.
        yield from _bearer_dependencies(sub, overrides)
        if isinstance(sub.call, BearerAuth):
            yield sub.call, _security_scopes(sub)


def _security_scopes(dependant: Any) -> list[str]:
    """The scopes FastAPI passes as ``SecurityScopes`` to *dependant*: its parents' and
    its own (``Security(auth, scopes=[...])``), in order, without repeats."""
    own = getattr(dependant, "own_oauth_scopes", None)
    parent = getattr(dependant, "parent_oauth_scopes", None)
    if own is None and parent is None:
        # FastAPI < 0.12x keeps the accumulated list in one field.
        return list(getattr(dependant, "security_scopes", None) or [])
    scopes = list(parent or [])
    for scope in own or []:
        if scope not in scopes:
            scopes.append(scope)
    return scopes


def _upgrade(router: APIRouter) -> None:
    """Make every plain ``APIRoute`` of *router* (and of the routers it includes) a
    :class:`BearerRoute`; other route classes are left alone."""
    for route in router.routes:
        if type(route) is APIRoute:
            # Same attributes, one overridden method: the route needs no rebuilding.
            route.__class__ = BearerRoute
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x includes
        if isinstance(included, APIRouter):
            _upgrade(included)


class _MetadataRoute(Route):
    """A well-known path of an RFC 9728 metadata document, answered by its guard."""

    def __init__(self, path: str, guard: BearerGuard) -> None:
        async def metadata(request: Request) -> Response:
            view = _DependencyRequest(request)
            if view.path != path:  # under a root_path: not a well-known path
                return Response(status_code=404)
            # The guard serves its document from adecide(), as behind the ASGI middleware.
            outcome = await guard.adecide(view)
            assert isinstance(outcome, HTTPResponse)
            return Response(outcome.body, outcome.status, headers=dict(outcome.headers))

        super().__init__(path, metadata, methods=["GET"], include_in_schema=False)


def _dependants(routes: list[BaseRoute]) -> Iterator[Any]:
    """The dependency trees of *routes*, included routers' routes with their include's
    dependencies (FastAPI >= 0.16x; older versions copy routes on include)."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            for context in contexts():
                if getattr(context, "dependant", None) is not None:
                    yield context.dependant
        elif getattr(route, "dependant", None) is not None:
            yield route.dependant  # type: ignore[attr-defined]


def _serve_metadata(router: APIRouter, state: Any) -> None:
    """Route the well-known paths of every resource the app's :class:`BearerAuth`
    dependencies describe to their guard (the first dependency to claim a path wins),
    and render bare ``BearerError`` with the first such guard. Each dependency's
    requirement is built here, so a malformed ``Security`` scope fails at start-up."""
    served = {route.path for route in router.routes if isinstance(route, _MetadataRoute)}
    guards: dict[str, BearerGuard] = {}
    for dependant in _dependants(router.routes):
        for auth, scopes in _bearer_dependencies(dependant, {}):
            auth.requirement(scopes)  # a malformed scope fails at start-up, not per request
            resource = auth.guard.options.resource
            if resource is None:
                continue
            if getattr(state, "scopegate_guard", None) is None:
                state.scopegate_guard = auth.guard
            for path in sorted(resource.paths):
                guards.setdefault(path, auth.guard)
    # In front: the well-known paths are specific, and a catch-all route must not hide them.
    router.routes[:0] = [
        _MetadataRoute(path, guard) for path, guard in guards.items() if path not in served
    ]


def _upgrade_on_start(app: Any, router: APIRouter, state: Any) -> Any:
    # A middleware factory that returns the app unchanged: Starlette calls it once, when
    # it builds the middleware stack on the first ASGI call, after the application
    # module has included its routers. No per-request cost.
    _upgrade(router)
    _serve_metadata(router, state)
    return app


def install(app: FastAPI, *, realm: str = "api") -> None:
    """Set up *app* for :class:`BearerAuth`: RFC 6750 errors, authentication before the
    body is read, and ``Vary: Authorization``.

    * Registers :func:`bearer_exception_handler` for :class:`BearerHTTPException` and
      :class:`~scopegate.BearerError` (raised by ``scopegate.require_scope`` in
      endpoints).
    * Makes every plain route of the app a :class:`BearerRoute`: those registered before
      this call, those registered on the app after it, and those of routers included
      before the app starts serving.
    * When the app's :class:`BearerAuth` dependencies describe a resource (RFC 9728),
      serves its metadata document at both well-known paths (``resource.paths``:
      ``/.well-known/oauth-protected-resource`` with the resource's path inserted, and
      the root form), ``GET`` only, outside the OpenAPI document; and renders a bare
      ``BearerError`` with that dependency's guard, so its challenge carries
      ``resource_metadata`` too. The routes are found when the app starts serving.

    Calling it again does nothing more.

    Args:
        app: The FastAPI application.
        realm: Realm used to render a bare ``BearerError`` (a ``BearerHTTPException``
            already carries its dependency's realm) when no dependency describes a
            resource.
    """
    app.state.scopegate_realm = check_realm(realm)
    handler: Any = bearer_exception_handler
    app.add_exception_handler(BearerHTTPException, handler)
    app.add_exception_handler(BearerError, handler)
    if getattr(app.state, "scopegate_installed", False):
        return
    app.state.scopegate_installed = True
    if app.router.route_class is APIRoute:
        app.router.route_class = BearerRoute
    _upgrade(app.router)
    if app.middleware_stack is None:
        app.add_middleware(_upgrade_on_start, router=app.router, state=app.state)
    else:  # already serving: its routes are all there
        _serve_metadata(app.router, app.state)


#: The setup call under its first name; it does everything :func:`install` does.
add_exception_handlers = install
