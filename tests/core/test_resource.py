"""RFC 9728 protected-resource metadata and the challenges that point at it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from scopegate import (
    AccessToken,
    ConfigurationError,
    GuardOptions,
    HTTPResponse,
    ProtectedResource,
    options_from_env,
)
from scopegate._guard import BearerGuard
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware
from tests.core.test_attacks_support import GOOD, FakeVerifier
from tests.core.tokens import AUDIENCE, ISSUER, mint, static_verifier
from tests.core.views import FakeRequest, bearer
from tests.servers import run_asgi, run_wsgi

RESOURCE = "http://127.0.0.1:8000/mcp"
METADATA = "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp"

# RFC 9728 §2: the members a document may carry, and their JSON types.
MEMBER_TYPES: dict[str, type] = {
    "resource": str,
    "authorization_servers": list,
    "jwks_uri": str,
    "scopes_supported": list,
    "bearer_methods_supported": list,
    "resource_signing_alg_values_supported": list,
    "resource_name": str,
    "resource_documentation": str,
    "resource_policy_uri": str,
    "resource_tos_uri": str,
    "tls_client_certificate_bound_access_tokens": bool,
    "authorization_details_types_supported": list,
    "dpop_signing_alg_values_supported": list,
    "dpop_bound_access_tokens_required": bool,
}


def validate_metadata(document: dict[str, Any], resource: str) -> None:
    """RFC 9728 §2 and §3.3: ``resource`` present and equal to the identifier; known
    members well-typed; ``bearer_methods_supported`` from the defined values."""
    assert document["resource"] == resource
    for name, value in document.items():
        if name in MEMBER_TYPES:
            assert isinstance(value, MEMBER_TYPES[name]), name
    assert set(document.get("bearer_methods_supported", [])) <= {"header", "body", "query"}


def answer(guard: BearerGuard, request: FakeRequest) -> HTTPResponse:
    """The response the guard decides for *request* (asserting it is one)."""
    outcome = guard.decide(request)
    assert isinstance(outcome, HTTPResponse)
    return outcome


def challenge(guard: BearerGuard, request: FakeRequest) -> str:
    """The WWW-Authenticate value of the guard's answer."""
    return dict(answer(guard, request).headers)["www-authenticate"]


def resource(**fields: Any) -> ProtectedResource:
    fields.setdefault("resource", RESOURCE)
    fields.setdefault("authorization_servers", [ISSUER])
    return ProtectedResource(**fields)


def test_metadata_url_inserts_the_well_known_segment() -> None:
    """RFC 9728 §3.1: the segment goes between the host and the resource's path."""
    assert resource().metadata_url == METADATA
    root = resource(resource="https://api.example")
    assert root.metadata_url == "https://api.example/.well-known/oauth-protected-resource"
    assert resource().paths == {
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    }


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"resource": "http://api.example/x"}, id="http-not-loopback"),
        pytest.param({"resource": "https://api.example/x#frag"}, id="fragment"),
        pytest.param({"resource": "https://api.example/x?q=1"}, id="query"),
        pytest.param({"authorization_servers": "https://as.example"}, id="servers-str"),
        pytest.param({"scopes_supported": ["a b"]}, id="bad-scope"),
        pytest.param({"max_age": "60"}, id="max-age-str"),
        pytest.param({"dpop_bound_access_tokens_required": "false"}, id="bool-str"),
    ],
)
def test_bad_resource_descriptions_are_refused(fields: dict[str, Any]) -> None:
    """Every field is checked when the description is built."""
    with pytest.raises(ConfigurationError):
        resource(**fields)


def test_audience_must_include_the_resource() -> None:
    """A resource the verifier's tokens are not issued for is a start-up error."""
    with pytest.raises(ConfigurationError):
        BearerGuard(static_verifier(), resource=resource())
    BearerGuard(static_verifier(audience=[AUDIENCE, RESOURCE]), resource=resource())


def test_guard_serves_the_document_and_points_challenges_at_it() -> None:
    """GET of either well-known path is the document; 401 and 403 carry resource_metadata."""
    guard = BearerGuard(
        FakeVerifier(), resource=resource(scopes_supported=["items:read"]), allow_form_token=True
    )
    for path in sorted(resource().paths):
        response = answer(guard, FakeRequest(path=path))
        headers = dict(response.headers)
        assert response.status == 200
        assert headers["content-type"] == "application/json"
        assert headers["cache-control"] == "public, max-age=3600"
        document = json.loads(response.body)
        validate_metadata(document, RESOURCE)
        assert document["bearer_methods_supported"] == ["header", "body"]
    assert f'resource_metadata="{METADATA}"' in challenge(guard, FakeRequest())
    assert f'resource_metadata="{METADATA}"' in challenge(guard, bearer("nope"))
    post = FakeRequest(method="POST", path="/.well-known/oauth-protected-resource")
    assert answer(guard, post).status == 400


def test_required_scopes_are_announced_and_enforced() -> None:
    """required_scopes: a 401 names them in scope=, a token without them is a 403."""
    guard = BearerGuard(FakeVerifier(), required_scopes=["items:read"])
    missing = challenge(guard, FakeRequest())
    assert 'scope="items:read"' in missing
    assert "error=" not in missing
    invalid = challenge(guard, bearer("nope"))
    assert 'error="invalid_token"' in invalid
    assert 'scope="items:read"' in invalid
    token = guard.decide(bearer(GOOD))
    assert isinstance(token, AccessToken)
    assert token.scopes == {"items:read"}
    for _ in range(2):  # first sighting and the remembered fast path
        refused = answer(guard, bearer("write-token"))
        assert refused.status == 403
        assert 'scope="items:read"' in dict(refused.headers)["www-authenticate"]


def test_options_from_env_describe_the_resource() -> None:
    """SCOPEGATE_RESOURCE builds the resource; the audience defaults to it."""
    env = {
        "SCOPEGATE_ISSUER": ISSUER,
        "SCOPEGATE_RESOURCE": RESOURCE,
        "SCOPEGATE_SCOPES_SUPPORTED": "items:read items:write",
        "SCOPEGATE_RESOURCE_NAME": "Items",
    }
    options = options_from_env(env, exclude_paths=["/public"])
    assert isinstance(options, GuardOptions)
    assert options.resource is not None
    document = options.resource.document()
    validate_metadata(document, RESOURCE)
    assert document["authorization_servers"] == [ISSUER]
    assert document["scopes_supported"] == ["items:read", "items:write"]
    assert document["resource_name"] == "Items"
    from scopegate import settings_from_env

    assert settings_from_env(env).audience == RESOURCE


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def test_middlewares_serve_the_metadata_through_real_servers() -> None:
    """uvicorn and waitress: both well-known paths answer the document; a 401 points at it."""
    verifier = static_verifier(audience=[AUDIENCE, RESOURCE])
    options = GuardOptions(resource=resource(scopes_supported=["items:read"]))
    asgi = ASGIMiddleware(_app, verifier=verifier, options=options)
    wsgi = WSGIMiddleware(_wsgi, verifier=verifier, options=options)
    with run_asgi(asgi) as asgi_url, run_wsgi(wsgi) as wsgi_url:
        for base in (asgi_url, wsgi_url):
            for path in sorted(resource().paths):
                response = httpx.get(base + path)
                assert response.status_code == 200
                assert response.headers["cache-control"].startswith("public")
                validate_metadata(response.json(), RESOURCE)
            refused = httpx.get(base + "/mcp")
            assert refused.status_code == 401
            assert f'resource_metadata="{METADATA}"' in refused.headers["www-authenticate"]
            ok = httpx.get(base + "/mcp", headers={"Authorization": f"Bearer {mint(aud=RESOURCE)}"})
            assert ok.status_code == 200
            # A browser client's CORS preflight for the document (MCP inspectors send
            # their own headers): 204 with the allow headers, no token needed.
            preflight = httpx.request(
                "OPTIONS",
                base + METADATA.removeprefix("http://127.0.0.1:8000"),
                headers={
                    "Origin": "https://inspector.example",
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "mcp-protocol-version",
                },
            )
            assert preflight.status_code == 204
            assert preflight.headers["access-control-allow-origin"] == "*"
            assert "GET" in preflight.headers["access-control-allow-methods"]
            assert preflight.headers["access-control-allow-headers"] == "*"
            posted = httpx.post(base + sorted(resource().paths)[0])
            assert posted.status_code == 400
