"""The examples contract as a single-file Django project (settings, views and URLs).

Run it with ``python examples/serve.py django --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_AUDIENCE`` (see examples/README.md).

``BearerTokenMiddleware`` verifies every request except ``/public`` and sets
``request.access_token`` (and serves the RFC 9728 metadata when ``SCOPEGATE_RESOURCE``
is set); function views use ``@require_scope``, ``/me`` is an
``async def`` view (Django runs it under WSGI too), and ``/admin`` is a class-based view
with ``ScopeRequiredMixin``. Errors are RFC 6750 JSON responses.
"""

from __future__ import annotations

import json
import os
import secrets
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.views import View
from django.views.decorators.http import require_GET, require_http_methods

from scopegate import options_from_env
from scopegate.integrations.django import ScopeRequiredMixin, require_scope, require_token

ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]


@require_GET
def public(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


@require_GET
@require_token
async def me(request: HttpRequest) -> HttpResponse:
    token = request.access_token  # type: ignore[attr-defined]
    return JsonResponse(
        {"sub": token.subject, "client_id": token.client_id, "scopes": sorted(token.scopes)}
    )


@require_scope("items:read")
def list_items(request: HttpRequest) -> HttpResponse:
    return JsonResponse(ITEMS, safe=False)


@require_scope("items:write")
def create_item(request: HttpRequest) -> HttpResponse:
    try:
        item: Any = json.loads(request.body)
    except (ValueError, RecursionError):
        item = None
    if not isinstance(item, dict):
        return JsonResponse(
            {"error": "invalid_request", "error_description": "The body must be a JSON object"},
            status=400,
        )
    return JsonResponse(item, status=201)


@require_http_methods(["GET", "POST"])
def items(request: HttpRequest) -> HttpResponse:
    # One URL, one scope per method: hand over to the view decorated for the method.
    return create_item(request) if request.method == "POST" else list_items(request)


class AdminView(ScopeRequiredMixin, View):
    required_scopes = ("items:read", "admin")

    def get(self, request: HttpRequest) -> HttpResponse:
        token = request.access_token  # type: ignore[attr-defined]
        return JsonResponse({"admin": True, "sub": token.subject})


urlpatterns = [
    path("public", public),
    path("me", me),
    path("items", items),
    path("admin", AdminView.as_view()),
]


def create_app() -> Any:
    """Configure Django for this one-file project and return its WSGI application."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            # Nothing here is signed with it; a fresh key per process is enough.
            SECRET_KEY=secrets.token_urlsafe(32),
            ALLOWED_HOSTS=["127.0.0.1", "localhost"],
            ROOT_URLCONF=__name__,
            INSTALLED_APPS=[],
            MIDDLEWARE=["scopegate.integrations.django.BearerTokenMiddleware"],
            DATA_UPLOAD_MAX_MEMORY_SIZE=1 << 20,
            # The verifier and the options come from the SCOPEGATE_* environment variables
            # (realm, SCOPEGATE_RESOURCE, SCOPEGATE_DPOP, SCOPEGATE_PUBLIC_URL...).
            SCOPEGATE={"OPTIONS": options_from_env(os.environ, exclude_paths=["/public"])},
        )
        django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    return WSGIHandler()
