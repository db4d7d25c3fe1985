"""Issuer metadata discovery (RFC 8414 / OIDC) against a real server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from scopegate._discovery import ServerMetadata, check_endpoint_url, discovery_urls
from scopegate._errors import (
    ConfigurationError,
    IntrospectionUnavailableError,
    KeySetUnavailableError,
)
from scopegate._flow import HTTPRunner
from scopegate._jwt import JWTVerifier
from tests.core.jwks_server import JWKSServer
from tests.core.tokens import AUDIENCE, RSA_KEY, mint

OAUTH = "/.well-known/oauth-authorization-server"
OIDC = "/.well-known/openid-configuration"


class Clock:
    """A settable clock."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def _running() -> Iterator[JWKSServer]:
    with JWKSServer.running(keys=[RSA_KEY]) as server:
        yield server


@pytest.fixture
def server(_running: JWKSServer) -> JWKSServer:
    """The module's discovery + JWKS server, reset."""
    _running.reset()
    return _running


_CREATED: list[Any] = []


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    """Close verifiers and runners created by a test."""
    yield
    while _CREATED:
        _CREATED.pop().close()


def verifier_for(server: JWKSServer, path: str = "", **kwargs: Any) -> JWTVerifier:
    options: dict[str, Any] = {
        "issuer": server.url + path,
        "audience": AUDIENCE,
        "http_timeout": 0.5,
    }
    options.update(kwargs)
    verifier = JWTVerifier(**options)
    _CREATED.append(verifier)
    return verifier


def token_for(server: JWKSServer, path: str = "") -> str:
    return mint(iss=server.url + path)


def unavailable_reason(verifier: JWTVerifier, token: str) -> str:
    with pytest.raises(KeySetUnavailableError) as info:
        verifier.verify(token)
    return info.value.reason


# -- URL construction ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "kind", "expected"),
    [
        pytest.param(
            "https://as.example", "oauth", [f"https://as.example{OAUTH}"], id="oauth-root"
        ),
        pytest.param(
            "https://as.example/tenant/1",
            "oauth",
            [f"https://as.example{OAUTH}/tenant/1"],
            id="oauth-path-insertion",
        ),
        pytest.param(
            "https://as.example/", "oidc", [f"https://as.example{OIDC}"], id="oidc-trailing-slash"
        ),
        pytest.param(
            "https://as.example/realms/x",
            "oidc",
            [f"https://as.example/realms/x{OIDC}"],
            id="oidc-path-append",
        ),
        pytest.param(
            "https://as.example",
            "auto",
            [f"https://as.example{OAUTH}", f"https://as.example{OIDC}"],
            id="auto-both",
        ),
    ],
)
def test_discovery_urls(issuer: str, kind: Any, expected: list[str]) -> None:
    """RFC 8414 §3.1 inserts the well-known path; OIDC appends it."""
    assert discovery_urls(issuer, kind) == expected


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        pytest.param("https://as.example/jwks", True, id="https"),
        pytest.param("http://127.0.0.1:8080/jwks", True, id="http-loopback-v4"),
        pytest.param("http://127.5.6.7/jwks", True, id="http-loopback-range"),
        pytest.param("http://[::1]:80/jwks", True, id="http-loopback-v6"),
        pytest.param("http://localhost/jwks", True, id="http-localhost"),
        pytest.param("http://as.example/jwks", False, id="http-remote"),
        pytest.param("http://10.0.0.1/jwks", False, id="http-private-ip"),
        pytest.param("file:///etc/passwd", False, id="file-scheme"),
        pytest.param("https:///jwks", False, id="no-host"),
        pytest.param("https://as.example/jwks#x", False, id="fragment"),
        pytest.param("https://as.example:99999/", False, id="bad-port"),
        pytest.param("https://as.example/a b", False, id="space"),
        pytest.param(42, False, id="not-a-string"),
    ],
)
def test_endpoint_url_policy(url: Any, ok: bool) -> None:
    """Endpoints must be https; plain http only on loopback."""
    assert check_endpoint_url(url) is ok


def test_issuer_with_query_is_refused() -> None:
    """An issuer with a query string cannot be discovered."""
    with pytest.raises(ConfigurationError):
        discovery_urls("https://as.example/?x=1")


# -- discovery through JWTVerifier -----------------------------------------------------


def test_oauth_metadata_first(server: JWKSServer) -> None:
    """auto reads RFC 8414 metadata, then the JWKS it names."""
    verifier = verifier_for(server)
    assert verifier.verify(token_for(server)).subject == "alice"
    assert server.hits[OAUTH] == 1
    assert server.hits[OIDC] == 0
    assert server.hits["/jwks"] == 1


@pytest.mark.anyio
async def test_oauth_metadata_first_async(server: JWKSServer) -> None:
    """The async path discovers the same way."""
    verifier = verifier_for(server)
    assert (await verifier.averify(token_for(server))).subject == "alice"
    assert server.hits[OAUTH] == 1
    await verifier.aclose()


def test_falls_back_to_oidc_on_404(server: JWKSServer) -> None:
    """Without RFC 8414 metadata (404), OIDC discovery is used."""
    server.oauth_enabled = False
    verifier = verifier_for(server)
    assert verifier.verify(token_for(server)).subject == "alice"
    assert server.hits[OIDC] == 1


def test_oidc_only(server: JWKSServer) -> None:
    """discovery='oidc' never asks for RFC 8414 metadata."""
    verifier = verifier_for(server, discovery="oidc")
    assert verifier.verify(token_for(server)).subject == "alice"
    assert server.hits[OAUTH] == 0


def test_oauth_only_without_document_is_503(server: JWKSServer) -> None:
    """discovery='oauth' with no RFC 8414 document is an outage (503)."""
    server.oauth_enabled = False
    assert unavailable_reason(verifier_for(server, discovery="oauth"), token_for(server)) == (
        "discovery_http_status"
    )


def test_issuer_with_path(server: JWKSServer) -> None:
    """A path issuer uses path insertion (RFC 8414 §3.1) and must match exactly."""
    verifier = verifier_for(server, "/tenant/a")
    assert verifier.verify(token_for(server, "/tenant/a")).subject == "alice"
    assert server.hits[OAUTH + "/tenant/a"] == 1


def test_issuer_mismatch_is_503(server: JWKSServer) -> None:
    """Metadata naming another issuer is refused (RFC 8414 §3.3) as a 503."""
    server.metadata_issuer = server.url + "/"
    assert unavailable_reason(verifier_for(server), token_for(server)) == (
        "discovery_issuer_mismatch"
    )
    assert server.hits["/jwks"] == 0


def test_issuer_mismatch_does_not_fall_back_to_oidc(server: JWKSServer) -> None:
    """A mismatching RFC 8414 document is not papered over by the OIDC one."""
    server.metadata_issuer = "https://evil.example"
    unavailable_reason(verifier_for(server), token_for(server))
    assert server.hits[OIDC] == 0


@pytest.mark.parametrize(
    "jwks_uri",
    [
        pytest.param("http://evil.example/jwks", id="http-remote"),
        pytest.param("file:///etc/passwd", id="file-scheme"),
        pytest.param(None, id="missing"),
        pytest.param(["https://as.example/jwks"], id="not-a-string"),
    ],
)
def test_bad_jwks_uri_in_metadata_is_503(server: JWKSServer, jwks_uri: Any) -> None:
    """G-3: a jwks_uri we may not fetch is a 503 and is never requested."""
    server.metadata_extra = {"jwks_uri": jwks_uri}
    assert unavailable_reason(verifier_for(server), token_for(server)) == "discovery_bad_endpoint"


@pytest.mark.parametrize(
    "mode",
    [
        pytest.param("error", id="503"),
        pytest.param("garbage", id="not-json"),
        pytest.param("html", id="wrong-content-type"),
        pytest.param("not_object", id="json-array"),
        pytest.param("redirect", id="redirect"),
        pytest.param("huge", id="too-big"),
        pytest.param("slow", id="timeout"),
    ],
)
def test_discovery_failures_are_503(server: JWKSServer, mode: str) -> None:
    """Every discovery failure is KeySetUnavailableError, never invalid_token."""
    server.discovery_mode = mode
    verifier = verifier_for(server)
    with pytest.raises(KeySetUnavailableError):
        verifier.verify(token_for(server))
    assert server.hits[OIDC] == 0  # only a 4xx moves on to OIDC


def test_metadata_is_cached_across_jwks_refreshes(server: JWKSServer) -> None:
    """JWKS TTL refreshes reuse the cached metadata document."""
    clock = Clock()
    verifier = verifier_for(server, clock=clock, timer=clock, jwks_ttl=60)
    verifier.verify(token_for(server))
    clock.now += 61
    verifier.verify(mint(iss=server.url, jti="2", iat=int(clock.now), exp=int(clock.now) + 60))
    assert server.hits["/jwks"] == 2
    assert server.hits[OAUTH] == 1


# -- ServerMetadata for other components (introspection) -------------------------------


def test_server_metadata_endpoint(server: JWKSServer) -> None:
    """endpoint() returns a checked URL from the cached document."""
    runner = HTTPRunner(timeout=10)
    _CREATED.append(runner)
    metadata = ServerMetadata(server.url, runner=runner, error=IntrospectionUnavailableError)
    assert metadata.endpoint("introspection_endpoint") == server.url + "/introspect"
    assert metadata.endpoint("token_endpoint") == server.url + "/token"
    assert server.hits[OAUTH] == 1
    with pytest.raises(IntrospectionUnavailableError):
        metadata.endpoint("revocation_endpoint")


@pytest.mark.anyio
async def test_server_metadata_endpoint_async(server: JWKSServer) -> None:
    """aendpoint() is the async twin."""
    runner = HTTPRunner(timeout=10)
    metadata = ServerMetadata(server.url, runner=runner, error=IntrospectionUnavailableError)
    assert await metadata.aendpoint("introspection_endpoint") == server.url + "/introspect"
    assert (await metadata.aget())["issuer"] == server.url
    assert server.hits[OAUTH] == 1
    await runner.aclose()


def test_server_metadata_uses_its_error_class(server: JWKSServer) -> None:
    """Failures raise the configured 503 class (introspection's own here)."""
    server.discovery_mode = "error"
    runner = HTTPRunner(timeout=10)
    _CREATED.append(runner)
    metadata = ServerMetadata(server.url, runner=runner, error=IntrospectionUnavailableError)
    with pytest.raises(IntrospectionUnavailableError):
        metadata.get()


def test_server_metadata_serves_stale_document(server: JWKSServer) -> None:
    """A failed refresh keeps the previous document; retries wait retry_interval."""
    clock = Clock()
    runner = HTTPRunner(timeout=10)
    _CREATED.append(runner)
    metadata = ServerMetadata(server.url, runner=runner, ttl=60, timer=clock)
    metadata.get()
    server.discovery_mode = "error"
    clock.now += 61
    assert metadata.get()["issuer"] == server.url
    assert metadata.get()["issuer"] == server.url
    assert server.hits[OAUTH] == 2
    metadata.invalidate()
    clock.now += 6
    server.discovery_mode = "ok"
    metadata.get()
    assert server.hits[OAUTH] == 3


def test_server_metadata_throttles_failures_without_document(server: JWKSServer) -> None:
    """With no document yet, failures are not retried before retry_interval."""
    clock = Clock()
    server.discovery_mode = "error"
    runner = HTTPRunner(timeout=10)
    _CREATED.append(runner)
    metadata = ServerMetadata(server.url, runner=runner, timer=clock)
    for _ in range(3):
        with pytest.raises(KeySetUnavailableError):
            metadata.get()
    assert server.hits[OAUTH] == 1
    assert "ServerMetadata" in repr(metadata)
