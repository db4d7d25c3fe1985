"""RFC 9728 metadata and DPoP (RFC 9449) through every adapter, each on its real server.

One table: the plain ASGI and WSGI middleware, Starlette, FastAPI, Flask, and Django
under WSGI and ASGI with its middleware and under WSGI with decorators only (and
``metadata_urlpatterns()``). uvicorn serves the ASGI apps, waitress the WSGI ones. Each
app protects ``GET /items`` (``items:read``) and is built in three configurations:

* ``allowed``: a resource (``http://127.0.0.1:PORT/api``) and DPoP allowed;
* ``required``: the same resource and DPoP required;
* ``host``: DPoP allowed and no resource nor ``public_url``, so a proof's ``htu`` is
  checked against the scheme and ``Host`` the adapter's request view reports.

The adapters only translate; these tests show that each one serves the guard's document,
keeps its one combined ``WWW-Authenticate`` field intact, and hands the guard the
``DPoP`` header, the scheme and the host.
"""

import contextlib
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Annotated, Any

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

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import override_settings
from django.urls import path as django_path

from scopegate import DPoPPolicy, GuardOptions, ProtectedResource, current_token, require_scope
from scopegate._token import AccessToken
from scopegate.integrations.django import metadata_urlpatterns
from scopegate.integrations.django import require_scope as django_require_scope
from scopegate.testing import DPoPAuth, DPoPKey, LocalIssuer
from tests.core.test_resource import validate_metadata
from tests.servers import free_port, run_asgi, run_wsgi

SCOPES = ["items:read", "items:write"]
KEY = DPoPKey.generate()
ISSUER = "https://issuer.example"


# -- one app per adapter, protecting GET /items with items:read ---------------------------


def _asgi(verifier: Any, options: GuardOptions) -> Any:
    from scopegate.asgi import BearerAuthMiddleware

    @require_scope("items:read")
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = json.dumps({"sub": current_token().subject}).encode()  # type: ignore[union-attr]
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return BearerAuthMiddleware(app, verifier=verifier, options=options)


def _wsgi(verifier: Any, options: GuardOptions) -> Any:
    from scopegate.wsgi import BearerAuthMiddleware

    @require_scope("items:read")
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/json")])
        return [json.dumps({"sub": environ["scopegate.token"].subject}).encode()]

    return BearerAuthMiddleware(app, verifier=verifier, options=options)


def _starlette(verifier: Any, options: GuardOptions) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from scopegate.integrations.starlette import BearerAuthMiddleware
    from scopegate.integrations.starlette import require_scope as starlette_require_scope

    @starlette_require_scope("items:read")
    async def items(request: Any) -> JSONResponse:
        return JSONResponse({"sub": request.user.identity})

    middleware = [Middleware(BearerAuthMiddleware, verifier=verifier, options=options)]
    return Starlette(routes=[Route("/items", items)], middleware=middleware)


def _fastapi(verifier: Any, options: GuardOptions) -> Any:
    from fastapi import FastAPI, Security

    from scopegate.integrations.fastapi import BearerAuth, install

    auth = BearerAuth(verifier, token_url=ISSUER + "/token", options=options)
    app = FastAPI()
    install(app)  # before the routes, as in the example: they are found at start-up

    @app.get("/items")
    async def items(
        token: Annotated[AccessToken, Security(auth, scopes=["items:read"])],
    ) -> dict[str, Any]:
        return {"sub": token.subject}

    return app


def _flask(verifier: Any, options: GuardOptions) -> Any:
    from flask import Flask

    from scopegate.integrations.flask import ScopeGate
    from scopegate.integrations.flask import current_token as flask_token
    from scopegate.integrations.flask import require_scope as flask_require_scope

    app = Flask(__name__)
    ScopeGate(app, verifier=verifier, options=options)

    @app.get("/items")
    @flask_require_scope("items:read")
    def items() -> dict[str, Any]:
        return {"sub": flask_token.subject}

    return app


def _django_items(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": request.access_token.subject})  # type: ignore[attr-defined]


class _DjangoURLs:
    """A URLconf (Django takes any hashable object with ``urlpatterns``)."""

    urlpatterns = [django_path("items", django_require_scope("items:read")(_django_items))]


class _DjangoURLsWithMetadata:
    """The same, plus the metadata patterns of a decorator-only project."""

    urlpatterns = [*_DjangoURLs.urlpatterns, *metadata_urlpatterns()]


@contextlib.contextmanager
def _django(
    verifier: Any, options: GuardOptions, port: int, *, kind: str, middleware: bool
) -> Iterator[str]:
    middlewares = ["scopegate.integrations.django.BearerTokenMiddleware"] if middleware else []
    with override_settings(
        ROOT_URLCONF=_DjangoURLs if middleware else _DjangoURLsWithMetadata,
        MIDDLEWARE=middlewares,
        ALLOWED_HOSTS=["127.0.0.1"],
        SCOPEGATE={"VERIFIER": verifier, "OPTIONS": options},
    ):
        if kind == "wsgi":
            with run_wsgi(WSGIHandler(), port) as url:
                yield url
        else:
            with run_asgi(ASGIHandler(), port) as url:
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
    "django-wsgi": lambda v, o, p: _django(v, o, p, kind="wsgi", middleware=True),
    "django-asgi": lambda v, o, p: _django(v, o, p, kind="asgi", middleware=True),
    "django-decorators": lambda v, o, p: _django(v, o, p, kind="wsgi", middleware=False),
}
MODES = ("allowed", "required", "host")


@dataclass(frozen=True)
class Server:
    """One adapter's app on its real server, and how it was configured."""

    adapter: str
    mode: str
    url: str
    issuer: LocalIssuer
    resource: ProtectedResource | None

    @property
    def items(self) -> str:
        return self.url + "/items"

    def token(self, scopes: str = "items:read", *, bound: bool = True) -> str:
        """A token for this API, bound to KEY unless *bound* is false."""
        if bound:
            return self.issuer.make_token(scopes, cnf={"jkt": KEY.jkt})
        return self.issuer.make_token(scopes)


@pytest.fixture(
    scope="module",
    params=[pytest.param((a, m), id=f"{a}-{m}") for a in ADAPTERS for m in MODES],
)
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The adapter's app on a port chosen first, so the resource can be its real URL."""
    adapter, mode = request.param
    port = free_port()
    resource = None
    audience = f"http://127.0.0.1:{port}/api"
    if mode != "host":
        resource = ProtectedResource(
            resource=audience, authorization_servers=[ISSUER], scopes_supported=SCOPES
        )
    issuer = LocalIssuer(issuer=ISSUER, audience=audience, alg="ES256")
    options = GuardOptions(
        resource=resource, dpop=DPoPPolicy(mode="required" if mode == "required" else "allowed")
    )
    with ADAPTERS[adapter](issuer.verifier(), options, port) as url:
        yield Server(adapter, mode, url, issuer, resource)


def challenge(response: httpx.Response) -> str:
    """The one WWW-Authenticate field (several fields would be a translation bug)."""
    fields = response.headers.get_list("www-authenticate")
    assert len(fields) == 1, fields
    return fields[0]


def _algs(value: str) -> None:
    assert 'DPoP realm="api", ' in value
    assert 'algs="ES256 EdDSA PS256 RS256"' in value


# -- RFC 9728 ----------------------------------------------------------------------------


def test_metadata_is_served_at_both_well_known_paths(server: Server) -> None:
    """GET of the path-inserted and the root well-known path: the RFC 9728 document,
    public and cacheable, describing the resource and what the guard accepts."""
    if server.resource is None:
        # No resource, no document: a protected path (middleware) or an unknown one.
        for path in (
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/api",
        ):
            assert httpx.get(server.url + path, timeout=10).status_code in (401, 404)
        return
    assert server.resource.paths == {
        "/.well-known/oauth-protected-resource/api",
        "/.well-known/oauth-protected-resource",
    }
    for path in sorted(server.resource.paths):
        response = httpx.get(server.url + path, timeout=10)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "application/json"
        assert response.headers["cache-control"].startswith("public")
        document = response.json()
        validate_metadata(document, server.resource.resource)
        assert document["authorization_servers"] == [ISSUER]
        assert document["scopes_supported"] == SCOPES
        assert document["dpop_signing_alg_values_supported"] == [
            "ES256",
            "EdDSA",
            "PS256",
            "RS256",
        ]
        required = document.get("dpop_bound_access_tokens_required", False)
        assert required is (server.mode == "required")


def test_401_and_403_point_at_the_metadata(server: Server) -> None:
    """No token: 401; a token without the scope: 403; both challenges of the one field
    carry resource_metadata (RFC 9728 §5.1) when a resource is configured."""
    missing = httpx.get(server.items, timeout=10)
    assert missing.status_code == 401
    refused = httpx.get(server.items, auth=DPoPAuth(server.token("items:write"), KEY), timeout=10)
    assert refused.status_code == 403
    # RFC 9449 §7.1: the error goes in the challenge of the scheme the request used.
    assert 'DPoP realm="api", error="insufficient_scope"' in challenge(refused)
    assert 'scope="items:read"' in challenge(refused)
    for response in (missing, refused):
        value = challenge(response)
        _algs(value)
        if server.resource is None:
            assert "resource_metadata" not in value
        else:
            expected = f'resource_metadata="{server.resource.metadata_url}"'
            # One per challenge: Bearer and DPoP, or DPoP alone when it is required.
            assert value.count(expected) == (1 if server.mode == "required" else 2)


# -- DPoP ----------------------------------------------------------------------------------


def test_dpop_bound_token_with_its_proofs(server: Server) -> None:
    """httpx with DPoPAuth: a fresh proof per request, each accepted."""
    with httpx.Client(auth=DPoPAuth(server.token(), KEY), timeout=10) as client:
        for _ in range(3):
            response = client.get(server.items)
            assert response.status_code == 200, response.headers.get("www-authenticate")
            assert response.json() == {"sub": "test-user"}


def test_bound_token_as_bearer_is_refused(server: Server) -> None:
    """The DPoP-bound token sent as Bearer: 401 invalid_token. With DPoP allowed the one
    field holds both challenges, the error in the Bearer one; with DPoP required only the
    DPoP challenge is sent."""
    response = httpx.get(
        server.items, headers={"Authorization": f"Bearer {server.token()}"}, timeout=10
    )
    assert response.status_code == 401
    value = challenge(response)
    assert 'error="invalid_token"' in value
    _algs(value)
    if server.mode == "required":
        assert value.startswith('DPoP realm="api", error="invalid_token"')
        assert "Bearer" not in value
    else:
        assert value.startswith('Bearer realm="api", error="invalid_token"')
        assert value.index("error=") < value.index("DPoP realm=")


def test_unbound_bearer_token(server: Server) -> None:
    """A plain Bearer token: accepted when DPoP is allowed; refused with only the DPoP
    challenge when it is required."""
    response = httpx.get(
        server.items,
        headers={"Authorization": f"Bearer {server.token(bound=False)}"},
        timeout=10,
    )
    if server.mode == "required":
        assert response.status_code == 401
        value = challenge(response)
        assert value.startswith("DPoP ")
        assert "Bearer" not in value
    else:
        assert response.status_code == 200


def test_replayed_proof_is_refused(server: Server) -> None:
    """The same proof twice: the second is 401 invalid_dpop_proof in the DPoP challenge."""
    token = server.token()
    proof = KEY.proof("GET", server.items, token=token)
    headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
    assert httpx.get(server.items, headers=headers, timeout=10).status_code == 200
    replay = httpx.get(server.items, headers=headers, timeout=10)
    assert replay.status_code == 401
    value = challenge(replay)
    assert 'DPoP realm="api", error="invalid_dpop_proof"' in value


def test_proof_for_another_host_is_refused(server: Server) -> None:
    """A proof whose htu names another origin: refused. Under ``host`` the origin is
    the request's scheme and Host, as the adapter's view reports them."""
    token = server.token()
    other = server.items.replace("127.0.0.1", "localhost")
    headers = {"Authorization": f"DPoP {token}", "DPoP": KEY.proof("GET", other, token=token)}
    response = httpx.get(server.items, headers=headers, timeout=10)
    assert response.status_code == 401
    assert 'error="invalid_dpop_proof"' in challenge(response)
