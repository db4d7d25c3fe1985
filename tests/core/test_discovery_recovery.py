"""A metadata document with an unusable endpoint is retried after retry_interval (BUGS A-1)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from scopegate._discovery import ServerMetadata
from scopegate._errors import IntrospectionUnavailableError, KeySetUnavailableError
from scopegate._flow import HTTPRunner
from scopegate._jwt import JWTVerifier
from tests.core.jwks_server import JWKSServer
from tests.core.tokens import AUDIENCE, RSA_KEY, mint

OAUTH = "/.well-known/oauth-authorization-server"


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


def test_fixed_jwks_uri_is_picked_up_after_retry_interval(server: JWKSServer) -> None:
    """A refused jwks_uri is a 503 whose Retry-After is honoured: the fixed document is
    fetched once the retry interval has passed, not after the metadata TTL."""
    clock = Clock()
    verifier = JWTVerifier(
        issuer=server.url,
        audience=AUDIENCE,
        http_timeout=10,
        jwks_cooldown=2,
        cache_verified=False,
        clock=clock,
        timer=clock,
    )
    token = mint(iss=server.url)
    server.metadata_extra = {"jwks_uri": "http://203.0.113.9/jwks"}
    with pytest.raises(KeySetUnavailableError) as info:
        verifier.verify(token)
    assert info.value.reason == "discovery_bad_endpoint"
    server.metadata_extra = {}
    with pytest.raises(KeySetUnavailableError):
        verifier.verify(token)  # within the retry interval: no new fetch
    assert server.hits[OAUTH] == 1
    clock.now += info.value.retry_after + 0.5
    assert verifier.verify(token).subject == "alice"
    assert server.hits[OAUTH] == 2
    verifier.close()


def test_missing_endpoint_is_not_refetched_per_call(server: JWKSServer) -> None:
    """Callers asking for a missing endpoint cause at most one fetch per retry interval."""
    clock = Clock()
    runner = HTTPRunner(timeout=10)
    metadata = ServerMetadata(
        server.url,
        runner=runner,
        timer=clock,
        retry_interval=5,
        error=IntrospectionUnavailableError,
    )
    for _ in range(3):
        with pytest.raises(IntrospectionUnavailableError) as info:
            metadata.endpoint("revocation_endpoint")
        assert info.value.retry_after == 5
    assert server.hits[OAUTH] == 1
    # Other endpoints of the same document keep working meanwhile.
    assert metadata.endpoint("introspection_endpoint") == server.url + "/introspect"
    clock.now += 6
    metadata.endpoint("introspection_endpoint")
    assert server.hits[OAUTH] == 2
    runner.close()
