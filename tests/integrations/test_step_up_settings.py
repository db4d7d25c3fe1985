"""Step-up (RFC 9470) settings on each adapter: one ``Requirement``, checked when built.

The behaviour on real servers is the table of ``test_step_up.py``; these tests cover
what it does not: ``require_token(max_age=...)`` on Flask and Django, the Django mixin
and FastAPI's ``Security`` scopes refused at start-up when malformed, FastAPI's stepped
dependency sharing its guard, and MCP tools with a step-up requirement.
"""

from __future__ import annotations

import json
import time
from typing import Any

import django
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

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import override_settings
from django.urls import path as django_path
from django.views import View

from scopegate import AccessToken, ConfigurationError, Requirement
from scopegate.testing import LocalIssuer, django_client, flask_client

ISSUER = LocalIssuer(alg="ES256")


def recent(**claims: Any) -> str:
    """A token whose user logged in ten seconds ago."""
    return ISSUER.make_token("items:read", auth_time=int(time.time()) - 10, **claims)


def stale(**claims: Any) -> str:
    """A token whose user logged in an hour ago."""
    return ISSUER.make_token("items:read", auth_time=int(time.time()) - 3600, **claims)


# -- the one rule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"scopes": ("two words",)}, id="scope-with-space"),
        pytest.param({"scopes": "items:read"}, id="scopes-str"),
        pytest.param({"acr_values": "urn:mfa"}, id="acr-values-str"),
        pytest.param({"acr_values": ('urn:"mfa"',)}, id="acr-with-quote"),
        pytest.param({"max_age": "300"}, id="max-age-str"),
        pytest.param({"max_age": True}, id="max-age-bool"),
        pytest.param({"max_age": -1}, id="max-age-negative"),
        pytest.param({"any_of": 1}, id="any-of-int"),
    ],
)
def test_requirement_refuses_unusable_values(kwargs: dict[str, Any]) -> None:
    """A Requirement checks every value when built (the same checks for every adapter)."""
    with pytest.raises(ConfigurationError):
        Requirement(**kwargs)


def test_requirement_normalises_to_tuples() -> None:
    """Lists become tuples, so a requirement is hashable and immutable."""
    requirement = Requirement(["a"], acr_values=["urn:mfa"], max_age=60)  # type: ignore[arg-type]
    assert requirement == Requirement(("a",), acr_values=("urn:mfa",), max_age=60)
    assert requirement.step_up
    assert not Requirement(("a",)).step_up


# -- Flask ---------------------------------------------------------------------------------


def test_flask_require_token_with_max_age() -> None:
    """@require_token(max_age=...) needs a recent login; bare @require_token does not."""
    from flask import Flask

    from scopegate.integrations.flask import ScopeGate, require_token

    app = Flask(__name__)
    ScopeGate(app, verifier=ISSUER.verifier())

    @app.get("/recent")
    @require_token(max_age=300)
    def recent_view() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/any")
    @require_token
    def any_view() -> dict[str, bool]:
        return {"ok": True}

    assert flask_client(app, recent()).get("/recent").status_code == 200
    refused = flask_client(app, stale()).get("/recent")
    assert refused.status_code == 401
    assert 'error="insufficient_user_authentication"' in refused.headers["WWW-Authenticate"]
    assert 'max_age="300"' in refused.headers["WWW-Authenticate"]
    assert flask_client(app, stale()).get("/any").status_code == 200
    with pytest.raises(ConfigurationError):
        require_token(acr_values="urn:mfa")  # type: ignore[call-overload]


# -- Django --------------------------------------------------------------------------------


def _ok(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"ok": True})


def test_django_require_token_and_mixin_settings() -> None:
    """@require_token(acr_values=...) refuses a token without the acr; a mixin view with
    a malformed acr value fails at as_view(), when the URLconf is loaded."""
    from scopegate.integrations.django import ScopeRequiredMixin, require_token

    class URLs:
        urlpatterns = [
            django_path("mfa", require_token(acr_values=["urn:mfa"])(_ok)),
            django_path("plain", require_token(_ok)),
        ]

    with override_settings(
        ROOT_URLCONF=URLs, MIDDLEWARE=[], SCOPEGATE={"VERIFIER": ISSUER.verifier()}
    ):
        assert django_client(recent(acr="urn:mfa")).get("/mfa").status_code == 200
        refused = django_client(recent()).get("/mfa")
        assert refused.status_code == 401
        assert 'acr_values="urn:mfa"' in refused.headers["WWW-Authenticate"]
        assert django_client(recent()).get("/plain").status_code == 200

    class Broken(ScopeRequiredMixin, View):
        acr_values = ("urn mfa",)

    with pytest.raises(ConfigurationError):
        Broken.as_view()

    class Fine(ScopeRequiredMixin, View):
        max_age = 300

    Fine.as_view()
    with pytest.raises(ConfigurationError):
        Fine.as_view(max_age="300")


# -- FastAPI -------------------------------------------------------------------------------


def test_fastapi_step_up_shares_the_guard_and_the_openapi_scheme() -> None:
    """auth.step_up() is the same dependency with a stronger requirement: one guard, one
    security scheme in OpenAPI; a malformed setting fails when it is called."""
    from fastapi import FastAPI, Security

    from scopegate.integrations.fastapi import BearerAuth, install

    auth = BearerAuth(ISSUER.verifier(), token_url="https://issuer.example/token")
    mfa = auth.step_up(acr_values=["urn:mfa"], max_age=300)
    assert mfa.guard is auth.guard
    assert mfa.requirement(["items:read"]) == Requirement(
        ("items:read",), acr_values=("urn:mfa",), max_age=300
    )
    assert auth.requirement(["items:read"]) == Requirement(("items:read",))
    with pytest.raises(ConfigurationError):
        auth.step_up(acr_values="urn:mfa")

    app = FastAPI()
    install(app)

    @app.get("/plain")
    async def plain(token: AccessToken = Security(auth, scopes=["items:read"])) -> dict[str, Any]:  # noqa: B008
        return {"sub": token.subject}

    @app.get("/mfa")
    async def strong(token: AccessToken = Security(mfa, scopes=["items:read"])) -> dict[str, Any]:  # noqa: B008
        return {"sub": token.subject}

    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert list(schemes) == ["OAuth2ClientCredentials"]
        headers = {"Authorization": f"Bearer {stale(acr='urn:mfa')}"}
        assert client.get("/plain", headers=headers).status_code == 200
        refused = client.get("/mfa", headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"] == "insufficient_user_authentication"


def test_fastapi_malformed_security_scope_fails_at_start_up() -> None:
    """A scope that is no RFC 6749 scope-token in Security(...) stops the app at start-up
    instead of answering 500s."""
    from fastapi import FastAPI, Security
    from fastapi.testclient import TestClient

    from scopegate.integrations.fastapi import BearerAuth, install

    auth = BearerAuth(ISSUER.verifier(), token_url="https://issuer.example/token")
    app = FastAPI()
    install(app)

    @app.get("/bad")
    async def bad(token: AccessToken = Security(auth, scopes=["two words"])) -> None:  # noqa: B008
        return None

    with pytest.raises(ConfigurationError), TestClient(app):
        pass


# -- MCP -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_mcp_tool_with_a_step_up_requirement() -> None:
    """A tool whose tool_scopes entry is a Requirement: too weak a login is 401
    insufficient_user_authentication with a JSON-RPC error body (before the scopes are
    judged), a strong one without the scope 403, a strong one with it runs."""
    pytest.importorskip("mcp")
    from scopegate import GuardOptions, ProtectedResource
    from scopegate.integrations.mcp import INSUFFICIENT_SCOPE_CODE, MCPGate
    from tests.integrations._mcp_support import (
        RESOURCE,
        call,
        challenge,
        client_for,
        items_server,
        sse_messages,
    )

    issuer = LocalIssuer(audience=RESOURCE, alg="ES256")
    gate = MCPGate(
        items_server().streamable_http_app(),
        verifier=issuer.verifier(),
        options=GuardOptions(
            resource=ProtectedResource(resource=RESOURCE), required_scopes=["items:read"]
        ),
        tool_scopes={
            "list_items": ["items:read"],
            "create_item": Requirement(("items:write",), acr_values=("urn:mfa",), max_age=300),
        },
    )
    now = int(time.time())
    weak = issuer.make_token("items:read", auth_time=now)
    reader = issuer.make_token("items:read", acr="urn:mfa", auth_time=now)
    writer = issuer.make_token("items:read items:write", acr="urn:mfa", auth_time=now)
    async with client_for(gate) as client:
        refused = await call(client, weak, "create_item", {"name": "x"})
        assert refused.status_code == 401
        value = challenge(refused)
        assert 'error="insufficient_user_authentication"' in value
        assert 'acr_values="urn:mfa", max_age="300"' in value
        body = refused.json()
        assert body["error"]["code"] == INSUFFICIENT_SCOPE_CODE
        assert body["error"]["data"]["error"] == "insufficient_user_authentication"
        assert (await call(client, weak, "list_items")).status_code == 200
        assert (await call(client, reader, "create_item", {"name": "x"})).status_code == 403
        ran = await call(client, writer, "create_item", {"name": "drill"})
        assert ran.status_code == 200
        (message,) = sse_messages(ran)
        assert message["result"]["structuredContent"] == {"name": "drill"}


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(Requirement(("a", "b"), any_of=True), id="any-of"),
        pytest.param(Requirement(acr_values=("urn:mfa",)), id="no-scope"),
    ],
)
def test_mcp_tool_requirement_settings(entry: Requirement) -> None:
    """A tool needs all its scopes, and at least one."""
    pytest.importorskip("mcp")
    from scopegate import GuardOptions, ProtectedResource
    from scopegate.integrations.mcp import MCPGate
    from tests.integrations._mcp_support import RESOURCE, items_server

    with pytest.raises(ConfigurationError):
        MCPGate(
            items_server().streamable_http_app(),
            verifier=ISSUER.verifier(),
            options=GuardOptions(resource=ProtectedResource(resource=RESOURCE)),
            tool_scopes={"create_item": entry},
        )


def test_jsonrpc_error_message_names_the_refusal() -> None:
    """The JSON-RPC message says what the client must do: a scope, or a new login."""
    pytest.importorskip("mcp")
    from scopegate import InsufficientUserAuthenticationError
    from scopegate.integrations.mcp import jsonrpc_error

    rendered = InsufficientUserAuthenticationError(max_age=60).to_response("api")
    message = json.loads(jsonrpc_error(3, rendered, ["items:write"]))["error"]["message"]
    assert message.startswith("insufficient_user_authentication")
