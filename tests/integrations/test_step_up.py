"""Step-up authentication (RFC 9470) through every adapter, each on its real server.

One table of cases, one app per adapter: the plain ASGI and WSGI middleware with the
core decorators, Starlette, FastAPI (``BearerAuth.step_up``), Flask, and Django under
WSGI and under ASGI (function decorators, sync and async, and ``ScopeRequiredMixin``
views, sync and async). uvicorn serves the ASGI apps, waitress the WSGI ones. Every app
has the same routes:

* ``/acr``: ``items:read`` and an ``acr`` of :data:`ACRS`;
* ``/fresh``: ``items:read`` and a login at most :data:`MAX_AGE` seconds old;
* ``/both``: ``items:read``, an ``acr`` of :data:`ACRS` and a recent login;
* ``/admin``: ``admin`` and an ``acr`` of :data:`ACRS` (strength is judged first);
* ``/public-acr``: like ``/acr``, on a path the middleware excludes (Flask has no
  middleware, so there it is an ordinary decorated view).

The API trusts two issuers through an :class:`~scopegate.IssuerRouter`: a local one
minting the synthetic tokens, and the companion issuer (``scopegate.issuer``) served
over HTTP, whose password grant puts ``acr`` and ``auth_time`` in its tokens and whose
client_credentials tokens have neither. The options describe an RFC 9728 resource and
allow DPoP, so every challenge carries ``resource_metadata`` and a DPoP-bound token's
error goes in the DPoP challenge.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import django
import httpx
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only-not-secret",
        ALLOWED_HOSTS=["127.0.0.1", "testserver"],
        INSTALLED_APPS=[],
        ROOT_URLCONF="tests.integrations.test_django",
        MIDDLEWARE=[],
    )
    django.setup()

import argon2
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import override_settings
from django.urls import path as django_path
from django.views import View

from scopegate import (
    AccessToken,
    DPoPPolicy,
    GuardOptions,
    IssuerRouter,
    JWTVerifier,
    ProtectedResource,
    current_token,
    require_scope,
)
from scopegate.integrations import django as sg_django
from scopegate.issuer import Client, Issuer, IssuerConfig, User, create_asgi_app
from scopegate.testing import DPoPAuth, DPoPKey, LocalIssuer
from tests.servers import free_port, run_asgi, run_wsgi

RESOURCE = "https://api.example/stepup"
ACRS = ("urn:example:mfa", "urn:scopegate:pwd")
MFA, WEAK = "urn:example:mfa", "urn:example:weak"
MAX_AGE = 300
EXCLUDED = "/public-acr"
KEY = DPoPKey.generate()
LOCAL = LocalIssuer(issuer="https://stepup.example", audience=RESOURCE, alg="ES256")
SVC = ("svc-stepup", "svc-secret-0c4f1e9a7b2d")
ALICE = ("alice", "alice-pw-6d1b")
#: The adapters whose decorators verify the token themselves (no middleware skips it).
SELF_VERIFYING = frozenset({"flask", "django-wsgi", "django-asgi"})


def _body(token: AccessToken | None) -> bytes:
    assert token is not None
    return json.dumps({"sub": token.subject}).encode()


# -- one app per adapter ---------------------------------------------------------------


def _asgi(verifier: Any, options: GuardOptions) -> Any:
    from scopegate.asgi import BearerAuthMiddleware

    def route(**requirement: Any) -> Any:
        @require_scope(*requirement.pop("scopes", ("items:read",)), **requirement)
        async def endpoint(scope: dict[str, Any], receive: Any, send: Any) -> None:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": _body(current_token())})

        return endpoint

    routes = _routes(route)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await routes[scope["path"]](scope, receive, send)

    return BearerAuthMiddleware(app, verifier=verifier, options=options)


def _wsgi(verifier: Any, options: GuardOptions) -> Any:
    from scopegate.wsgi import BearerAuthMiddleware

    def route(**requirement: Any) -> Any:
        @require_scope(*requirement.pop("scopes", ("items:read",)), **requirement)
        def endpoint(environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "application/json")])
            return [_body(current_token())]

        return endpoint

    routes = _routes(route)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return routes[environ["PATH_INFO"]](environ, start_response)

    return BearerAuthMiddleware(app, verifier=verifier, options=options)


def _starlette(verifier: Any, options: GuardOptions) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import Response
    from starlette.routing import Route

    from scopegate.integrations.starlette import BearerAuthMiddleware
    from scopegate.integrations.starlette import require_scope as starlette_require_scope

    def route(**requirement: Any) -> Any:
        @starlette_require_scope(*requirement.pop("scopes", ("items:read",)), **requirement)
        async def endpoint(request: Any) -> Response:
            return Response(_body(request.user.token), media_type="application/json")

        return endpoint

    routes = [Route(path, endpoint) for path, endpoint in _routes(route).items()]
    middleware = [Middleware(BearerAuthMiddleware, verifier=verifier, options=options)]
    return Starlette(routes=routes, middleware=middleware)


def _fastapi(verifier: Any, options: GuardOptions) -> Any:
    from fastapi import FastAPI, Security

    from scopegate.integrations.fastapi import BearerAuth, install

    auth = BearerAuth(verifier, token_url="https://stepup.example/token", options=options)
    app = FastAPI()
    install(app)

    def route(**requirement: Any) -> Any:
        scopes = list(requirement.pop("scopes", ("items:read",)))
        dependency = auth.step_up(**requirement)

        # A default, not Annotated: postponed annotations cannot see these locals.
        async def endpoint(
            token: AccessToken = Security(dependency, scopes=scopes),  # noqa: B008
        ) -> dict[str, Any]:
            return {"sub": token.subject}

        return endpoint

    for path, endpoint in _routes(route).items():
        app.get(path)(endpoint)
    return app


def _flask(verifier: Any, options: GuardOptions) -> Any:
    from flask import Flask

    from scopegate.integrations.flask import ScopeGate
    from scopegate.integrations.flask import current_token as flask_token
    from scopegate.integrations.flask import require_scope as flask_require_scope

    app = Flask(__name__)
    ScopeGate(app, verifier=verifier, options=dataclasses.replace(options, exclude_paths=()))

    def route(**requirement: Any) -> Any:
        @flask_require_scope(*requirement.pop("scopes", ("items:read",)), **requirement)
        def endpoint() -> dict[str, Any]:
            return {"sub": flask_token.subject}

        return endpoint

    for path, endpoint in _routes(route).items():
        app.add_url_rule(path, path, endpoint)
    return app


def _routes(route: Callable[..., Any]) -> dict[str, Any]:
    """The table's routes, each built by the adapter's *route* from its requirement."""
    return {
        "/acr": route(acr_values=ACRS),
        "/fresh": route(max_age=MAX_AGE),
        "/both": route(acr_values=ACRS, max_age=MAX_AGE),
        "/admin": route(scopes=("admin",), acr_values=ACRS),
        EXCLUDED: route(acr_values=ACRS),
    }


def _django_sub(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": request.access_token.subject})  # type: ignore[attr-defined]


async def _django_async_sub(request: HttpRequest) -> HttpResponse:
    return _django_sub(request)


class _BothView(sg_django.ScopeRequiredMixin, View):
    required_scopes = ("items:read",)
    acr_values = ACRS
    max_age = MAX_AGE

    def get(self, request: HttpRequest) -> HttpResponse:
        return _django_sub(request)


class _AdminView(sg_django.ScopeRequiredMixin, View):
    """An async view: the mixin's async dispatch."""

    required_scopes = ("admin",)

    async def get(self, request: HttpRequest) -> HttpResponse:
        return _django_sub(request)


class _DjangoURLs:
    """Function views (sync and async) and class-based views with the mixin."""

    urlpatterns = [
        django_path("acr", sg_django.require_scope("items:read", acr_values=ACRS)(_django_sub)),
        django_path(
            "fresh",
            sg_django.require_scope("items:read", max_age=MAX_AGE)(_django_async_sub),
        ),
        django_path("both", _BothView.as_view()),
        # The step-up given to as_view(), as a URLconf may do.
        django_path("admin", _AdminView.as_view(acr_values=ACRS)),
        django_path(
            EXCLUDED[1:], sg_django.require_scope("items:read", acr_values=ACRS)(_django_sub)
        ),
    ]


@contextlib.contextmanager
def _django(verifier: Any, options: GuardOptions, port: int, *, kind: str) -> Iterator[str]:
    with override_settings(
        ROOT_URLCONF=_DjangoURLs,
        MIDDLEWARE=["scopegate.integrations.django.BearerTokenMiddleware"],
        ALLOWED_HOSTS=["127.0.0.1"],
        SCOPEGATE={"VERIFIER": verifier, "OPTIONS": options},
    ):
        server = run_wsgi(WSGIHandler(), port) if kind == "wsgi" else run_asgi(ASGIHandler(), port)
        with server as url:
            yield url


def _served(
    build: Callable[[Any, GuardOptions], Any], serve: Callable[..., AbstractContextManager[str]]
) -> Callable[[Any, GuardOptions, int], AbstractContextManager[str]]:
    return lambda verifier, options, port: serve(build(verifier, options), port)


ADAPTERS: dict[str, Callable[[Any, GuardOptions, int], AbstractContextManager[str]]] = {
    "asgi": _served(_asgi, run_asgi),
    "wsgi": _served(_wsgi, run_wsgi),
    "starlette": _served(_starlette, run_asgi),
    "fastapi": _served(_fastapi, run_asgi),
    "flask": _served(_flask, run_wsgi),
    "django-wsgi": lambda v, o, p: _django(v, o, p, kind="wsgi"),
    "django-asgi": lambda v, o, p: _django(v, o, p, kind="asgi"),
}


# -- the companion issuer and its tokens ---------------------------------------------------


@dataclass(frozen=True)
class Companion:
    """The companion issuer on its real server, and two tokens it issued."""

    url: str
    jwks: dict[str, Any]
    password_token: str
    service_token: str


@pytest.fixture(scope="module")
def companion() -> Iterator[Companion]:
    """``scopegate.issuer`` over HTTP: a password-grant token (``acr``, ``auth_time``) and
    a client_credentials token (neither), both for this API."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the password grant warns that it is legacy
        issuer = Issuer(
            IssuerConfig(issuer=url, audience=RESOURCE, allow_password_grant=True),
            clients=[
                Client(
                    SVC[0],
                    (SVC[1],),
                    grant_types=frozenset({"client_credentials", "password"}),
                    scopes=frozenset({"items:read", "admin"}),
                    refresh_tokens=False,
                )
            ],
            users=[
                User("user-alice", ALICE[0], cheap.hash(ALICE[1]), scopes=frozenset({"items:read"}))
            ],
        )
    with run_asgi(create_asgi_app(issuer), port):
        form = {"grant_type": "password", "username": ALICE[0], "password": ALICE[1]}
        password = httpx.post(url + "/token", data={**form, "scope": "items:read"}, auth=SVC)
        service = httpx.post(
            url + "/token",
            data={"grant_type": "client_credentials", "scope": "items:read"},
            auth=SVC,
        )
        assert password.status_code == service.status_code == 200, password.text + service.text
        jwks = httpx.get(url + "/jwks.json", timeout=10).json()
        yield Companion(url, jwks, password.json()["access_token"], service.json()["access_token"])


# -- the servers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Server:
    adapter: str
    url: str
    resource: ProtectedResource
    companion: Companion


@pytest.fixture(scope="module", params=list(ADAPTERS))
def server(request: pytest.FixtureRequest, companion: Companion) -> Iterator[Server]:
    """One adapter's app on its port, trusting the local and the companion issuer."""
    adapter = request.param
    port = free_port()
    resource = ProtectedResource(resource=RESOURCE, scopes_supported=["items:read", "admin"])
    options = GuardOptions(
        resource=resource,
        dpop=DPoPPolicy(mode="allowed"),
        public_url=f"http://127.0.0.1:{port}",
        exclude_paths=[EXCLUDED],
    )
    # The companion's published keys, fetched once: no HTTP client outlives its server.
    verifier = IssuerRouter(
        [
            LOCAL.verifier(),
            JWTVerifier(issuer=companion.url, audience=RESOURCE, keys=companion.jwks),
        ]
    )
    with ADAPTERS[adapter](verifier, options, port) as url:
        yield Server(adapter, url, resource, companion)


# -- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Local:
    """A factory of a local token; ``auth_time`` is given relative to now; a *bound*
    token carries ``cnf.jkt`` of :data:`KEY` and is sent with DPoP proofs."""

    scopes: str
    bound: bool
    claims: dict[str, Any]

    def __call__(self, server: Server) -> str:
        extra = dict(self.claims)
        if isinstance(extra.get("auth_time"), int):
            extra["auth_time"] += int(time.time())
        if self.bound:
            extra["cnf"] = {"jkt": KEY.jkt}
        return LOCAL.make_token(self.scopes, **extra)


def _local(scopes: str = "items:read", *, bound: bool = False, **claims: Any) -> _Local:
    return _Local(scopes, bound, claims)


RECENT, OLD = -10, -3600


@dataclass(frozen=True)
class Expect:
    """The answer: 200, or 401/403 with the challenge's error and step-up attributes."""

    status: int
    error: str | None = None
    acr: bool = False
    age: bool = False

    @classmethod
    def step_up(cls, *, acr: bool = False, age: bool = False) -> Expect:
        return cls(401, "insufficient_user_authentication", acr, age)


OK = Expect(200)
STEP_ACR = Expect.step_up(acr=True)
STEP_AGE = Expect.step_up(age=True)
STEP_BOTH = Expect.step_up(acr=True, age=True)
ANONYMOUS = Expect(401)  # the bare challenge: no error, the header was not looked at

# (token factory, path, expected answer, expected on the excluded path where the
# middleware skips it, and how the token is sent)
CASES = [
    pytest.param(_local(), "/acr", STEP_ACR, id="acr-missing"),
    pytest.param(_local(acr=WEAK), "/acr", STEP_ACR, id="acr-not-listed"),
    pytest.param(_local(acr=MFA), "/acr", OK, id="acr-listed"),
    pytest.param(_local(acr="urn:scopegate:pwd"), "/acr", OK, id="acr-second-listed"),
    pytest.param(_local(acr=MFA), "/fresh", STEP_AGE, id="auth-time-missing"),
    pytest.param(_local(auth_time=OLD), "/fresh", STEP_AGE, id="auth-time-too-old"),
    pytest.param(_local(auth_time="recent"), "/fresh", STEP_AGE, id="auth-time-not-a-number"),
    pytest.param(_local(auth_time=RECENT), "/fresh", OK, id="fresh"),
    pytest.param(_local(acr=MFA, auth_time=RECENT), "/both", OK, id="both-met"),
    pytest.param(_local(acr=MFA, auth_time=OLD), "/both", STEP_BOTH, id="both-too-old"),
    pytest.param(_local(acr=WEAK, auth_time=RECENT), "/both", STEP_BOTH, id="both-weak"),
    pytest.param(_local(acr=WEAK), "/admin", STEP_ACR, id="strength-before-scope"),
    pytest.param(
        _local(acr=MFA), "/admin", Expect(403, "insufficient_scope"), id="strong-lacks-scope"
    ),
    pytest.param(_local("items:read admin", acr=MFA), "/admin", OK, id="strong-with-scope"),
    pytest.param(_local(acr=WEAK, bound=True), "/acr", STEP_ACR, id="dpop-bound-weak"),
    pytest.param(_local(acr=MFA, bound=True), "/acr", OK, id="dpop-bound-strong"),
    pytest.param(lambda s: s.companion.password_token, "/both", OK, id="issuer-password-grant"),
    pytest.param(
        lambda s: s.companion.service_token, "/acr", STEP_ACR, id="issuer-client-credentials"
    ),
    pytest.param(lambda s: s.companion.service_token, "/fresh", STEP_AGE, id="issuer-cc-fresh"),
    pytest.param(_local(acr=MFA), EXCLUDED, OK, id="excluded-path-strong"),
    pytest.param(_local(acr=WEAK), EXCLUDED, STEP_ACR, id="excluded-path-weak"),
]


def _challenge(response: httpx.Response) -> str:
    fields = response.headers.get_list("www-authenticate")
    assert len(fields) == 1, fields  # Bearer and DPoP in one field
    return fields[0]


@pytest.mark.parametrize(("make", "path", "expected"), CASES)
def test_step_up(
    server: Server, make: Callable[[Server], str], path: str, expected: Expect
) -> None:
    """Each case answers the same on every adapter: the RFC 9470 401 naming what is
    missing (with realm and resource_metadata; in the DPoP challenge for a bound
    token), 403 for a strong token without the scope, 200 otherwise."""
    token = make(server)
    bound = getattr(make, "bound", False)
    if path == EXCLUDED and server.adapter not in SELF_VERIFYING:
        # The middleware skips the path, so the decorator sees no token: 401, never 200.
        expected = ANONYMOUS
    auth: httpx.Auth | None = DPoPAuth(token, KEY) if bound else None
    headers = {} if bound else {"Authorization": f"Bearer {token}"}
    response = httpx.get(server.url + path, headers=headers, auth=auth, timeout=10)
    assert response.status_code == expected.status, (response.status_code, response.text)
    assert token not in response.text
    if expected.status == 200:
        assert response.json()["sub"] in ("test-user", "user-alice")
        return
    value = _challenge(response)
    metadata = f'resource_metadata="{server.resource.metadata_url}"'
    assert 'Bearer realm="api"' in value
    assert metadata in value
    assert 'DPoP realm="api"' in value
    if expected.error is None:
        assert "error=" not in value
        return
    scheme = "DPoP" if bound else "Bearer"
    # The error sits in the challenge of the scheme the request used (RFC 9449 §7.1).
    own = value[value.index(f'{scheme} realm="api"') :]
    if scheme == "Bearer":
        own = own[: own.index('DPoP realm="api"')]
    assert f'error="{expected.error}"' in own
    assert response.json()["error"] == expected.error
    assert ('acr_values="urn:example:mfa urn:scopegate:pwd"' in own) is expected.acr
    assert (f'max_age="{MAX_AGE}"' in own) is expected.age
    assert ("scope=" in own) is (expected.status == 403)
