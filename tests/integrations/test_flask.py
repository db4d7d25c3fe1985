"""Flask integration, through a real waitress server on 127.0.0.1."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, g

from scopegate._context import current_token as core_current_token
from scopegate._errors import ConfigurationError
from scopegate._scopes import require_scope as core_require_scope
from scopegate.integrations.flask import (
    ScopeGate,
    current_token,
    get_current_token,
    require_any_scope,
    require_scope,
    require_token,
)
from tests.integrations._fakes import OUTAGE_TOKEN, FakeVerifier, bearer
from tests.servers import run_wsgi


def build_app(verifier: FakeVerifier) -> Flask:
    app = Flask(__name__)
    gate = ScopeGate(verifier=verifier, allow_form_token=True)
    gate.init_app(app)

    @app.get("/public")
    def public() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/me")
    @require_token
    def me() -> dict[str, Any]:
        return {"sub": current_token.subject, "scopes": sorted(current_token.scopes)}

    @app.route("/items", methods=["GET", "POST"])
    @require_scope("items:read")
    def items() -> Any:
        return ["widget"]

    @app.get("/admin")
    @require_scope("items:read", "admin")
    def admin() -> dict[str, Any]:
        return {"admin": True}

    @app.get("/any")
    @require_any_scope("admin", "items:write")
    def any_of() -> dict[str, Any]:
        return {"ok": True}

    @app.get("/async")
    @require_scope("items:read")
    async def async_view() -> dict[str, Any]:
        token = get_current_token()
        return {"sub": token.subject if token else None}

    @app.get("/core")
    @require_token
    @core_require_scope("admin")
    def core() -> dict[str, Any]:
        token = core_current_token()
        return {"sub": token.subject if token else None, "g": g.scopegate_token is token}

    @app.post("/form")
    @require_scope("items:write")
    def form() -> dict[str, Any]:
        return {"sub": current_token.subject}

    return app


@pytest.fixture(scope="module")
def verifier() -> FakeVerifier:
    """The module's fake verifier."""
    return FakeVerifier()


@pytest.fixture(scope="module")
def base_url(verifier: FakeVerifier) -> Iterator[str]:
    """The test application served by waitress for the whole module."""
    with run_wsgi(build_app(verifier)) as url:
        yield url


def get(base_url: str, path: str, token: str | None = None) -> httpx.Response:
    return httpx.get(base_url + path, headers=bearer(token) if token else None, timeout=10)


@pytest.mark.parametrize(
    ("path", "token", "status"),
    [
        pytest.param("/public", None, 200, id="public"),
        pytest.param("/public", "garbage", 200, id="public-ignores-authorization"),
        pytest.param("/me", "tok-none", 200, id="any-token"),
        pytest.param("/me", None, 401, id="no-token"),
        pytest.param("/items", "tok-read", 200, id="granted"),
        pytest.param("/items", "tok-write", 403, id="missing-scope"),
        pytest.param("/items", "nope", 401, id="invalid-token"),
        pytest.param("/items", OUTAGE_TOKEN, 503, id="outage"),
        pytest.param("/admin", "tok-read-admin", 200, id="all-of"),
        pytest.param("/admin", "tok-read", 403, id="all-of-partial"),
        pytest.param("/any", "tok-admin", 200, id="any-of"),
        pytest.param("/any", "tok-read", 403, id="any-of-none"),
        pytest.param("/async", "tok-read", 200, id="async-view"),
        pytest.param("/async", "tok-write", 403, id="async-view-missing-scope"),
        pytest.param("/core", "tok-admin", 200, id="core-decorator"),
        pytest.param("/core", "tok-read", 403, id="core-decorator-missing-scope"),
    ],
)
def test_decorators(base_url: str, path: str, token: str | None, status: int) -> None:
    """Each decorator gives the RFC 6750 status for each case."""
    assert get(base_url, path, token).status_code == status


def test_error_responses_are_rfc6750(base_url: str) -> None:
    """The registered handler renders status, challenge, JSON body and Vary."""
    missing = get(base_url, "/items")
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
    refused = get(base_url, "/admin", "tok-read")
    assert refused.status_code == 403
    assert 'scope="items:read admin"' in refused.headers["www-authenticate"]
    assert refused.json() == {
        "error": "insufficient_scope",
        "error_description": "The access token lacks the required scope",
        "scope": "items:read admin",
    }
    assert refused.headers["content-type"] == "application/json"
    outage = get(base_url, "/items", OUTAGE_TOKEN)
    assert outage.headers["retry-after"]


def test_current_token_proxies(base_url: str) -> None:
    """current_token (LocalProxy), get_current_token() and scopegate.current_token()."""
    assert get(base_url, "/me", "tok-read").json() == {
        "sub": "user-tok-read",
        "scopes": ["items:read"],
    }
    assert get(base_url, "/async", "tok-read").json() == {"sub": "user-tok-read"}
    assert get(base_url, "/core", "tok-admin").json() == {"sub": "user-tok-admin", "g": True}


def test_vary_on_protected_responses_only(base_url: str) -> None:
    """Token-dependent responses carry Vary: Authorization; /public does not."""
    assert get(base_url, "/items", "tok-read").headers["vary"] == "Authorization"
    assert "authorization" not in get(base_url, "/public").headers.get("vary", "").lower()


def test_head_and_options(base_url: str) -> None:
    """HEAD runs the decorator (401); Flask's automatic OPTIONS leaks no data."""
    head = httpx.head(base_url + "/items", timeout=10)
    assert head.status_code == 401
    options = httpx.options(base_url + "/items", timeout=10)
    assert b"widget" not in options.content


def test_form_token_when_enabled(base_url: str) -> None:
    """allow_form_token accepts an access_token form field; two methods are a 400."""
    ok = httpx.post(base_url + "/form", data={"access_token": "tok-write"}, timeout=10)
    assert ok.json() == {"sub": "user-tok-write"}
    both = httpx.post(
        base_url + "/form",
        data={"access_token": "tok-write"},
        headers=bearer("tok-write"),
        timeout=10,
    )
    assert both.status_code == 400
    assert both.json()["error"] == "invalid_request"


def test_verified_once_per_request(verifier: FakeVerifier, base_url: str) -> None:
    """Stacked decorators reuse the token verified for the request."""
    before = verifier.calls
    get(base_url, "/core", "tok-admin")
    assert verifier.calls == before + 1


def test_init_app_reads_config() -> None:
    """Without a verifier, init_app builds one from SCOPEGATE_* keys of app.config."""
    app = Flask(__name__)
    app.config.update(
        SCOPEGATE_ISSUER="https://issuer.example",
        SCOPEGATE_AUDIENCE="api://items",
        SCOPEGATE_JWKS_URI="https://issuer.example/jwks.json",
        SCOPEGATE_REALM="shop",
    )
    ScopeGate(app)
    guard = ScopeGate.guard(app)
    assert guard.realm == "shop"
    assert type(guard.verifier).__name__ == "JWTVerifier"


def test_init_app_incomplete_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing issuer settings fail at init_app with ConfigurationError."""
    monkeypatch.delenv("SCOPEGATE_ISSUER", raising=False)
    with pytest.raises(ConfigurationError, match="SCOPEGATE_ISSUER"):
        ScopeGate(Flask(__name__))


def test_decorator_without_extension_is_an_error() -> None:
    """A decorated view on an app without ScopeGate fails loudly, never lets through."""
    app = Flask(__name__)

    @app.get("/x")
    @require_token
    def view() -> str:
        return "secret"

    app.config["PROPAGATE_EXCEPTIONS"] = True
    with pytest.raises(ConfigurationError, match="init_app"):
        app.test_client().get("/x", headers=bearer("tok-read"))


def test_current_token_outside_request_is_none() -> None:
    """get_current_token() outside an app context is None, not an exception."""
    assert get_current_token() is None


def test_bad_scope_names_rejected_at_decoration() -> None:
    """A space-separated string is refused when decorating, not per request."""
    with pytest.raises(ConfigurationError):
        require_scope("items:read admin")


def test_import_without_flask_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Importing the integration without Flask says which extra to install."""
    for name in list(sys.modules):
        if name == "flask" or name.startswith("flask."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "scopegate.integrations.flask")
    with pytest.raises(ImportError, match=r"pip install 'scopegate\[flask\]'"):
        importlib.import_module("scopegate.integrations.flask")


def test_resource_and_dpop_from_app_config() -> None:
    """SCOPEGATE_RESOURCE and SCOPEGATE_DPOP in app.config (no verifier given): the
    options come from the same keys, and init_app adds the metadata URL rules."""
    app = Flask(__name__)
    app.config.update(
        SCOPEGATE_ISSUER="https://issuer.example",
        SCOPEGATE_JWKS_URI="https://issuer.example/jwks.json",
        SCOPEGATE_RESOURCE="https://api.example/v1",
        SCOPEGATE_DPOP="required",
        SCOPEGATE_REALM="shop",
    )
    ScopeGate(app, max_token_length=4096)
    guard = ScopeGate.guard(app)
    assert guard.realm == "shop"
    assert guard.max_token_length == 4096
    assert guard.options.dpop is not None
    assert guard.options.dpop.mode == "required"
    client = app.test_client()
    for path in (
        "/.well-known/oauth-protected-resource/v1",
        "/.well-known/oauth-protected-resource",
    ):
        response = client.get(path)
        assert response.status_code == 200
        document = response.get_json()
        assert document["resource"] == "https://api.example/v1"
        assert document["authorization_servers"] == ["https://issuer.example"]
        assert document["dpop_bound_access_tokens_required"] is True
        assert "Vary" not in response.headers
    assert client.post("/.well-known/oauth-protected-resource").status_code == 405


def test_explicit_verifier_takes_only_the_realm_from_config() -> None:
    """With a verifier of your own, resource and DPoP come from options=, not app.config:
    no metadata rules appear."""
    app = Flask(__name__)
    app.config.update(SCOPEGATE_RESOURCE="https://api.example", SCOPEGATE_REALM="shop")
    ScopeGate(app, verifier=FakeVerifier())
    guard = ScopeGate.guard(app)
    assert (guard.realm, guard.options.resource) == ("shop", None)
    assert app.test_client().get("/.well-known/oauth-protected-resource").status_code == 404


def test_metadata_under_a_script_name_prefix_is_not_found() -> None:
    """Mounted under a prefix the raw path is not the well-known path: 404, never a 401."""
    from scopegate import GuardOptions, ProtectedResource

    app = Flask(__name__)
    resource = ProtectedResource(resource="https://api.example")
    ScopeGate(app, verifier=FakeVerifier(), options=GuardOptions(resource=resource))
    response = app.test_client().get(
        "/.well-known/oauth-protected-resource",
        environ_overrides={"REQUEST_URI": "/api/.well-known/oauth-protected-resource"},
    )
    assert response.status_code == 404
