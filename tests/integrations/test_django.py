"""Django integration: sync (waitress/WSGI) and async (uvicorn/ASGI) stacks, real servers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
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
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
    )
    django.setup()

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.views import View

from scopegate import GuardOptions, ProtectedResource
from scopegate._context import current_token
from scopegate._errors import ConfigurationError
from scopegate._scopes import require_scope as core_require_scope
from scopegate.integrations.django import (
    ScopeRequiredMixin,
    get_guard,
    metadata_urlpatterns,
    require_any_scope,
    require_scope,
    require_token,
)
from tests.integrations._fakes import OUTAGE_TOKEN, FakeVerifier, bearer
from tests.servers import run_asgi, run_wsgi

MIDDLEWARE = ["scopegate.integrations.django.BearerTokenMiddleware"]


def _sub(request: HttpRequest) -> str | None:
    token = getattr(request, "access_token", None)
    return token.subject if token is not None else None


def public(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


async def me(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": _sub(request)})


@require_scope("items:read")
def sync_items(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": _sub(request), "kind": "sync"})


@require_scope("items:read")
async def async_items(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": _sub(request), "kind": "async"})


@require_any_scope("admin", "items:write")
def any_of(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@require_token
def token_only(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": _sub(request)})


def context(request: HttpRequest) -> HttpResponse:
    token = current_token()
    return JsonResponse({"sub": token.subject if token else None})


@core_require_scope("admin")
def core(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@core_require_scope("items:read")
def excluded_core(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@require_scope("items:read")
def excluded_verified(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"sub": _sub(request)})


@require_scope("items:write")
def create(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"posted": request.body.decode()}, status=201)


@core_require_scope("items:write")
def core_create(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"posted": request.body.decode()}, status=201)


def plain_form(request: HttpRequest) -> HttpResponse:
    """A view that knows nothing of scopegate (think: a cookie-authenticated form)."""
    return JsonResponse({"ok": True}, status=201)


class SyncCreate(ScopeRequiredMixin, View):
    required_scopes = ("items:write",)

    def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"kind": "sync-cbv"}, status=201)


class AsyncCreate(ScopeRequiredMixin, View):
    required_scopes = ("items:write",)

    async def post(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"kind": "async-cbv"}, status=201)


class SyncAdmin(ScopeRequiredMixin, View):
    required_scopes = ("items:read", "admin")

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"kind": "sync-cbv"})


class AsyncAdmin(ScopeRequiredMixin, View):
    required_scopes = ("items:read", "admin")

    async def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"kind": "async-cbv"})


class AnyWrite(ScopeRequiredMixin, View):
    required_scopes = ("admin", "items:write")
    any_scope = True

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse({"ok": True})


urlpatterns = [
    path("public", public),
    path("me", me),
    path("sync-items", sync_items),
    path("async-items", async_items),
    path("any", any_of),
    path("token-only", token_only),
    path("context", context),
    path("core", core),
    path("sync-admin", SyncAdmin.as_view()),
    path("async-admin", AsyncAdmin.as_view()),
    path("any-cbv", AnyWrite.as_view()),
    path("excluded-core", excluded_core),
    path("excluded-verified", excluded_verified),
    path("create", create),
    path("core-create", core_create),
    path("sync-create", SyncCreate.as_view()),
    path("async-create", AsyncCreate.as_view()),
    path("plain-form", plain_form),
]

#: Paths the middleware lets through unauthenticated.
EXCLUDED = ["/public", "/excluded-core", "/excluded-verified", "/plain-form"]


@pytest.fixture(scope="module")
def verifier() -> FakeVerifier:
    """The module's fake verifier."""
    return FakeVerifier()


def _settings(verifier: Any, middleware: list[str]) -> override_settings:
    return override_settings(
        ROOT_URLCONF=__name__,
        MIDDLEWARE=middleware,
        ALLOWED_HOSTS=["127.0.0.1", "testserver"],
        SCOPEGATE={"VERIFIER": verifier, "EXCLUDE_PATHS": EXCLUDED},
    )


@pytest.fixture(scope="module", params=["wsgi", "asgi"])
def base_url(request: pytest.FixtureRequest, verifier: FakeVerifier) -> Iterator[str]:
    """The test project behind the middleware, under waitress (WSGI) and uvicorn (ASGI)."""
    with _settings(verifier, MIDDLEWARE):
        if request.param == "wsgi":
            with run_wsgi(WSGIHandler()) as url:
                yield url
        else:
            with run_asgi(ASGIHandler()) as url:
                yield url


def get(base_url: str, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(base_url + path, headers=bearer(token) if token else None, timeout=10)


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        pytest.param("/public", None, 200, id="public"),
        pytest.param("/public", "garbage", 200, id="public-ignores-authorization"),
        pytest.param("/me", None, 401, id="middleware-no-token"),
        pytest.param("/me", "nope", 401, id="middleware-invalid-token"),
        pytest.param("/me", OUTAGE_TOKEN, 503, id="middleware-outage"),
        pytest.param("/sync-items", "tok-read", 200, id="sync-view"),
        pytest.param("/sync-items", "tok-write", 403, id="sync-view-missing-scope"),
        pytest.param("/async-items", "tok-read", 200, id="async-view"),
        pytest.param("/async-items", "tok-write", 403, id="async-view-missing-scope"),
        pytest.param("/any", "tok-write", 200, id="any-of"),
        pytest.param("/any", "tok-read", 403, id="any-of-none"),
        pytest.param("/token-only", "tok-none", 200, id="require-token"),
        pytest.param("/core", "tok-admin", 200, id="core-decorator"),
        pytest.param("/core", "tok-read", 403, id="core-decorator-process-exception"),
        pytest.param("/sync-admin", "tok-read-admin", 200, id="sync-cbv"),
        pytest.param("/sync-admin", "tok-read", 403, id="sync-cbv-missing-scope"),
        pytest.param("/async-admin", "tok-read-admin", 200, id="async-cbv"),
        pytest.param("/async-admin", "tok-admin", 403, id="async-cbv-missing-scope"),
        pytest.param("/any-cbv", "tok-admin", 200, id="cbv-any-of"),
        pytest.param("/any-cbv", "tok-read", 403, id="cbv-any-of-none"),
    ],
)
def test_middleware_and_decorators(
    base_url: str, path: str, token: str | None, status: int
) -> None:
    """Middleware, decorators and mixin give the RFC 6750 status, sync and async."""
    assert get(base_url, path, token).status_code == status


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        pytest.param("/excluded-core", None, 401, id="core-decorator-no-token"),
        pytest.param("/excluded-core", "tok-read", 401, id="core-decorator-token-ignored"),
        pytest.param("/excluded-verified", None, 401, id="django-decorator-no-token"),
        pytest.param("/excluded-verified", "tok-write", 403, id="django-decorator-missing-scope"),
        pytest.param("/excluded-verified", "tok-read", 200, id="django-decorator-verifies"),
    ],
)
def test_decorators_on_excluded_paths(
    base_url: str, path: str, token: str | None, status: int
) -> None:
    """On an excluded path the core decorator's error is rendered (401, not 500); the
    Django decorators verify the token themselves there."""
    response = get(base_url, path, token)
    assert response.status_code == status
    if status == 401:
        # A decorator names the scopes it needs in the challenge (RFC 6750 §3).
        assert response.headers["www-authenticate"].startswith('Bearer realm="api"')
        assert "error=" not in response.headers["www-authenticate"]
        assert response.json()["error"] == "unauthorized"
    if status == 403:
        assert 'scope="items:read"' in response.headers["www-authenticate"]


def test_views_see_the_token(base_url: str) -> None:
    """request.access_token and scopegate.current_token() reach sync and async views."""
    assert get(base_url, "/me", "tok-read").json() == {"sub": "user-tok-read"}
    assert get(base_url, "/async-items", "tok-read").json()["sub"] == "user-tok-read"
    assert get(base_url, "/context", "tok-read").json() == {"sub": "user-tok-read"}


def test_error_response_format(base_url: str) -> None:
    """Errors are RFC 6750 JSON with the challenge; successes carry Vary: Authorization."""
    refused = get(base_url, "/sync-admin", "tok-read")
    assert refused.headers["content-type"] == "application/json"
    assert 'scope="items:read admin"' in refused.headers["www-authenticate"]
    assert refused.json()["error"] == "insufficient_scope"
    missing = get(base_url, "/me")
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
    assert "Authorization" in get(base_url, "/me", "tok-read").headers["vary"]


def test_path_tricks_do_not_skip_auth(base_url: str) -> None:
    """/public/ and /%70ublic are not the excluded /public: they need a token."""
    for trick in ("/public/", "/%70ublic", "//public"):
        assert get(base_url, trick).status_code == 401


def test_decorators_without_middleware(verifier: FakeVerifier) -> None:
    """Without the middleware, decorators and the mixin verify the request themselves."""
    with _settings(verifier, []):
        client = Client()
        assert client.get("/sync-items", headers=bearer("tok-read")).status_code == 200
        assert client.get("/sync-items").status_code == 401
        assert client.get("/sync-admin", headers=bearer("tok-read-admin")).status_code == 200
        assert client.get("/public", headers=bearer("garbage")).status_code == 200


@pytest.mark.anyio
async def test_async_decorators_without_middleware(verifier: FakeVerifier) -> None:
    """Async views and async CBVs verify with averify when no middleware ran."""
    before = verifier.async_calls
    with _settings(verifier, []):
        client = AsyncClient()
        ok = await client.get("/async-items", headers=bearer("tok-read"))
        cbv = await client.get("/async-admin", headers=bearer("tok-read"))
    assert (ok.status_code, cbv.status_code) == (200, 403)
    assert verifier.async_calls == before + 2


def make_verifier() -> FakeVerifier:
    """A factory referenced by dotted path from the SCOPEGATE setting."""
    return FakeVerifier()


def test_settings_dotted_path_factory() -> None:
    """SCOPEGATE['VERIFIER'] may be a dotted path to a factory."""
    with override_settings(SCOPEGATE={"VERIFIER": f"{__name__}.make_verifier", "REALM": "shop"}):
        guard = get_guard()
        assert isinstance(guard.verifier, FakeVerifier)
        assert guard.realm == "shop"


def test_settings_build_jwt_verifier() -> None:
    """Issuer settings without a VERIFIER build a JWTVerifier via from_env."""
    config = {
        "ISSUER": "https://issuer.example",
        "AUDIENCE": "api://items",
        "JWKS_URI": "https://issuer.example/jwks.json",
        "OPTIONAL": True,
    }
    with override_settings(SCOPEGATE=config):
        guard = get_guard()
        assert type(guard.verifier).__name__ == "JWTVerifier"
        assert guard.options.optional is True


def test_settings_incomplete(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing issuer configuration is a ConfigurationError naming the variable."""
    monkeypatch.delenv("SCOPEGATE_ISSUER", raising=False)
    with (
        override_settings(SCOPEGATE={"AUDIENCE": "api://items"}),
        pytest.raises(ConfigurationError, match="SCOPEGATE_ISSUER"),
    ):
        get_guard()


def test_import_without_django_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the integration without Django says which extra to install."""
    for name in list(sys.modules):
        if name == "django" or name.startswith("django."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "scopegate.integrations.django")
    with pytest.raises(ImportError, match=r"pip install 'scopegate\[django\]'"):
        importlib.import_module("scopegate.integrations.django")


def test_token_in_header_and_form_body_is_400(base_url: str) -> None:
    """A token sent in the header and in a form body is invalid_request (RFC 6750 §2)."""
    response = httpx.post(
        base_url + "/me",
        data={"access_token": "tok-read"},
        headers=bearer("tok-read"),
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_other_exceptions_are_left_to_django(verifier: FakeVerifier) -> None:
    """process_exception only renders BearerError; anything else stays Django's."""
    from scopegate.integrations.django import BearerTokenMiddleware

    with _settings(verifier, MIDDLEWARE):
        middleware = BearerTokenMiddleware(lambda request: HttpResponse())
        assert middleware.process_exception(HttpRequest(), ValueError("boom")) is None


# -- CSRF: a stock project, CsrfViewMiddleware on -------------------------------------

#: The MIDDLEWARE of `django-admin startproject` that need no installed app or database.
STOCK = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(("wsgi", True), id="wsgi-middleware"),
        pytest.param(("asgi", True), id="asgi-middleware"),
        pytest.param(("wsgi", False), id="wsgi-decorators-only"),
        pytest.param(("asgi", False), id="asgi-decorators-only"),
    ],
)
def csrf_url(request: pytest.FixtureRequest, verifier: FakeVerifier) -> Iterator[str]:
    """A stock project with CsrfViewMiddleware, with and without BearerTokenMiddleware,
    under waitress and uvicorn (real servers: Django's test client skips CSRF checks)."""
    kind, with_middleware = request.param
    with _settings(verifier, STOCK + MIDDLEWARE if with_middleware else STOCK):
        handler = WSGIHandler() if kind == "wsgi" else ASGIHandler()
        with (run_wsgi if kind == "wsgi" else run_asgi)(handler) as url:
            yield url


def post(base_url: str, path: str, token: str | None = None) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    return httpx.post(base_url + path, content=b'{"name":"x"}', headers=headers, timeout=10)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/create", id="decorated-view"),
        pytest.param("/sync-create", id="sync-cbv"),
        pytest.param("/async-create", id="async-cbv"),
    ],
)
def test_bearer_post_passes_csrf(csrf_url: str, path: str) -> None:
    """A bearer-authenticated POST without any CSRF cookie or token is served: 201."""
    response = post(csrf_url, path, "tok-write")
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        pytest.param("/create", None, 401, id="decorated-no-token"),
        pytest.param("/create", "nope", 401, id="decorated-invalid-token"),
        pytest.param("/sync-create", "nope", 401, id="cbv-invalid-token"),
        pytest.param("/create", "tok-read", 403, id="decorated-missing-scope"),
    ],
)
def test_exempt_views_still_need_a_token(
    csrf_url: str, path: str, token: str | None, status: int
) -> None:
    """The CSRF exemption of scopegate views never lets a request without a valid token in."""
    response = post(csrf_url, path, token)
    assert response.status_code == status
    assert response.headers["www-authenticate"].startswith('Bearer realm="api"')


def test_plain_view_keeps_csrf(csrf_url: str) -> None:
    """A view without scopegate still refuses a cookieless POST (CSRF 403), also when an
    Authorization header is sent to it unverified (its path is excluded)."""
    for token in (None, "tok-write"):
        response = post(csrf_url, "/plain-form", token)
        assert response.status_code == 403
        assert "CSRF" in response.text


@pytest.mark.parametrize(
    "middleware", [pytest.param(True, id="middleware"), pytest.param(False, id="decorators-only")]
)
def test_core_decorator_post_with_middleware(verifier: FakeVerifier, middleware: bool) -> None:
    """The core decorator is not csrf_exempt: its POST passes CSRF only because the
    middleware verified the token (and is a CSRF 403 without the middleware)."""
    with (
        _settings(verifier, STOCK + MIDDLEWARE if middleware else STOCK),
        run_wsgi(WSGIHandler()) as url,
    ):
        status = post(url, "/core-create", "tok-write").status_code
    assert status == (201 if middleware else 403)


#: A GuardOptions referenced by dotted path from the SCOPEGATE setting.
RESOURCE_OPTIONS = GuardOptions(
    resource=ProtectedResource(resource="https://api.example/v1"), realm="items"
)


def test_settings_resource_and_dpop_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """RESOURCE and DPOP as text are read like the variables, with the others (the
    environment included): the options describe the resource and accept DPoP."""
    monkeypatch.setenv("SCOPEGATE_SCOPES_SUPPORTED", "items:read")
    config = {
        "ISSUER": "https://issuer.example",
        "JWKS_URI": "https://issuer.example/jwks.json",
        "RESOURCE": "https://api.example/v1",
        "DPOP": "allowed",
        "EXCLUDE_PATHS": ["/health"],
    }
    with override_settings(SCOPEGATE=config):
        guard = get_guard()
        resource = guard.options.resource
        assert resource is not None
        assert resource.resource == "https://api.example/v1"
        assert resource.scopes_supported == ("items:read",)
        assert guard.options.dpop is not None
        assert guard.options.dpop.mode == "allowed"
        assert guard.options.exclude_paths == {"/health"}


def test_settings_options_object_by_dotted_path(verifier: FakeVerifier) -> None:
    """OPTIONS may name a GuardOptions; option keys still apply on top of it."""
    config = {
        "VERIFIER": verifier,
        "OPTIONS": f"{__name__}.RESOURCE_OPTIONS",
        "EXCLUDE_PATHS": ["/public"],
    }
    with override_settings(SCOPEGATE=config):
        guard = get_guard()
        assert guard.options.resource == RESOURCE_OPTIONS.resource
        assert guard.realm == "items"
        assert guard.options.exclude_paths == {"/public"}
    with (
        override_settings(SCOPEGATE={"VERIFIER": verifier, "OPTIONS": {"realm": "x"}}),
        pytest.raises(ConfigurationError, match="OPTIONS"),
    ):
        get_guard()


def test_metadata_urlpatterns_without_middleware(verifier: FakeVerifier) -> None:
    """metadata_urlpatterns() answers the resource's two well-known paths; any other path
    below the prefix, or a configuration without a resource, is a 404."""
    with override_settings(
        ROOT_URLCONF=MetadataURLs,
        MIDDLEWARE=[],
        SCOPEGATE={"VERIFIER": verifier, "OPTIONS": RESOURCE_OPTIONS},
    ):
        client = Client()
        for path in (
            "/.well-known/oauth-protected-resource/v1",
            "/.well-known/oauth-protected-resource",
        ):
            response = client.get(path)
            assert response.status_code == 200
            assert response.json()["resource"] == "https://api.example/v1"
        assert client.get("/.well-known/oauth-protected-resource/v2").status_code == 404
        refused = client.get("/sync-items")
        assert "resource_metadata=" in refused.headers["WWW-Authenticate"]
    with override_settings(
        ROOT_URLCONF=MetadataURLs, MIDDLEWARE=[], SCOPEGATE={"VERIFIER": verifier}
    ):
        assert Client().get("/.well-known/oauth-protected-resource").status_code == 404


class MetadataURLs:
    """A decorator-only project's URLconf (Django takes any object with urlpatterns)."""

    urlpatterns = [*urlpatterns, *metadata_urlpatterns()]
