"""RFC 9728 metadata and DPoP (RFC 9449) in all six examples, configured only through the
environment, as real processes.

* ``SCOPEGATE_RESOURCE=http://127.0.0.1:PORT`` (the example's own URL), against the
  companion issuer: the example serves the metadata document at both well-known paths
  and every 401 and 403 challenge points at it. The API keeps accepting the issuer's
  audience (``SCOPEGATE_AUDIENCE`` lists both), since the companion issuer mints for one.
* ``SCOPEGATE_DPOP``, against the companion issuer, which binds the tokens it issues to
  the key of the token request's DPoP proof (``DPoPAuth`` at its token endpoint, RFC
  9449 §5): two processes of each example serve one API at one public URL and share a
  replay store through ``SCOPEGATE_REDIS_URL``. The first (``allowed``) names that URL
  as its ``SCOPEGATE_RESOURCE``; the second (``required``) as its
  ``SCOPEGATE_PUBLIC_URL``. A proof used at the first is refused by the second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from scopegate.testing import DPoPAuth, DPoPKey
from tests.conformance._stack import (
    AUDIENCE,
    EXAMPLES,
    SERVICE_CLIENT,
    Issuer,
    Issuers,
    fetch_token,
    run_example,
)
from tests.core.test_resource import validate_metadata
from tests.servers import RedisServer, free_port

SCOPES = "items:read items:write admin"
WELL_KNOWN = "/.well-known/oauth-protected-resource"
KEY = DPoPKey.generate()


def single_challenge(response: httpx.Response) -> str:
    """The one WWW-Authenticate field of *response*."""
    fields = response.headers.get_list("www-authenticate")
    assert len(fields) == 1, fields
    return fields[0]


# -- RFC 9728 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceDeployment:
    """An example started with SCOPEGATE_RESOURCE set to its own URL."""

    name: str
    url: str
    issuer: Issuer


@pytest.fixture(scope="module", params=EXAMPLES)
def resource_app(request: pytest.FixtureRequest, issuers: Issuers) -> Iterator[ResourceDeployment]:
    """Example NAME with SCOPEGATE_RESOURCE, trusting the companion issuer (JWT mode)."""
    issuer = issuers.get("jwt")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        "SCOPEGATE_RESOURCE": url,
        "SCOPEGATE_AUDIENCE": f"{AUDIENCE},{url}",
        "SCOPEGATE_SCOPES_SUPPORTED": SCOPES,
        "SCOPEGATE_RESOURCE_NAME": "Conformance items",
    }
    with run_example(request.param, issuer, port=port, env=env):
        yield ResourceDeployment(request.param, url, issuer)


def test_metadata_document(resource_app: ResourceDeployment) -> None:
    """Both well-known paths (the same, for a resource without a path) answer the RFC 9728
    document: the resource, the issuer, the scopes, the name; public and cacheable."""
    response = httpx.get(resource_app.url + WELL_KNOWN, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"].startswith("public")
    document = response.json()
    validate_metadata(document, resource_app.url)
    assert document["authorization_servers"] == [resource_app.issuer.url]
    assert document["scopes_supported"] == SCOPES.split()
    assert document["resource_name"] == "Conformance items"
    assert document["bearer_methods_supported"] == ["header"]
    assert "dpop_signing_alg_values_supported" not in document  # SCOPEGATE_DPOP is off


def test_challenges_point_at_the_metadata(resource_app: ResourceDeployment) -> None:
    """No token (401) and a token without the scope (403) carry resource_metadata; a
    token with the scope still gets the items."""
    metadata = f'resource_metadata="{resource_app.url}{WELL_KNOWN}"'
    tokens = resource_app.issuer.tokens
    missing = httpx.get(resource_app.url + "/items", timeout=10)
    refused = httpx.get(
        resource_app.url + "/items",
        headers={"Authorization": f"Bearer {tokens['write']}"},
        timeout=10,
    )
    assert (missing.status_code, refused.status_code) == (401, 403)
    for response in (missing, refused):
        value = single_challenge(response)
        assert value.startswith('Bearer realm="api"')
        assert metadata in value
    ok = httpx.get(
        resource_app.url + "/items",
        headers={"Authorization": f"Bearer {tokens['read']}"},
        timeout=10,
    )
    assert ok.status_code == 200


# -- DPoP ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    """One redis-server shared by the examples' replay stores."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class DPoPPair:
    """Two processes of one example serving one API at ``public`` (the first's address)."""

    name: str
    public: str
    second: str
    issuer: Issuer

    def token(self, scopes: str = "items:read", *, bound: bool = True) -> str:
        """A client_credentials token from the companion issuer, bound to KEY (a DPoP
        proof on the token request) or a plain Bearer token."""
        if not bound:
            return fetch_token(self.issuer, scopes)
        response = httpx.post(
            str(self.issuer.metadata["token_endpoint"]),
            data={"grant_type": "client_credentials", "scope": scopes},
            auth=DPoPAuth(None, KEY, client=SERVICE_CLIENT),
            timeout=10,
        )
        response.raise_for_status()
        assert response.json()["token_type"] == "DPoP"
        return str(response.json()["access_token"])


@pytest.fixture(scope="module", params=EXAMPLES)
def dpop_pair(
    request: pytest.FixtureRequest, issuers: Issuers, redis: RedisServer
) -> Iterator[DPoPPair]:
    """Example NAME twice, trusting the companion issuer (JWT mode): SCOPEGATE_DPOP=allowed
    with SCOPEGATE_RESOURCE, and SCOPEGATE_DPOP=required with SCOPEGATE_PUBLIC_URL, one
    Redis replay store."""
    issuer = issuers.get("jwt")
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    common = {"SCOPEGATE_REDIS_URL": redis.url}
    first = {
        **common,
        "SCOPEGATE_DPOP": "allowed",
        "SCOPEGATE_RESOURCE": public,
        "SCOPEGATE_AUDIENCE": f"{AUDIENCE},{public}",
    }
    second = {**common, "SCOPEGATE_DPOP": "required", "SCOPEGATE_PUBLIC_URL": public}
    with contextlib.ExitStack() as stack:
        stack.enter_context(run_example(request.param, issuer, port=port, env=first))
        other = stack.enter_context(run_example(request.param, issuer, env=second))
        yield DPoPPair(request.param, public, other, issuer)


@pytest.mark.redis
def test_dpop_bound_token_gets_the_items(dpop_pair: DPoPPair) -> None:
    """httpx with DPoPAuth: a fresh proof per request, 200 on GET /items each time."""
    with httpx.Client(auth=DPoPAuth(dpop_pair.token(), KEY), timeout=10) as client:
        for _ in range(2):
            response = client.get(dpop_pair.public + "/items")
            assert response.status_code == 200, response.headers.get("www-authenticate")
            assert isinstance(response.json(), list)


@pytest.mark.redis
def test_bound_token_as_bearer_is_refused(dpop_pair: DPoPPair) -> None:
    """The bound token as Bearer: 401 invalid_token, with both challenges (allowed) or
    only the DPoP one (required); a plain Bearer token is refused where DPoP is required."""
    bearer = {"Authorization": f"Bearer {dpop_pair.token()}"}
    allowed = httpx.get(dpop_pair.public + "/items", headers=bearer, timeout=10)
    assert allowed.status_code == 401
    value = single_challenge(allowed)
    assert value.startswith('Bearer realm="api", error="invalid_token"')
    assert 'DPoP realm="api", algs="' in value
    assert f'resource_metadata="{dpop_pair.public}{WELL_KNOWN}"' in value
    plain = {"Authorization": f"Bearer {dpop_pair.token(bound=False)}"}
    for headers in (bearer, plain):
        required = httpx.get(dpop_pair.second + "/items", headers=headers, timeout=10)
        assert required.status_code == 401
        value = single_challenge(required)
        assert value.startswith('DPoP realm="api", error="invalid_token"')
        assert "Bearer" not in value


@pytest.mark.redis
def test_proof_replayed_at_the_second_process_is_refused(dpop_pair: DPoPPair) -> None:
    """A proof used at the first process is a replay at the second (shared Redis); a fresh
    proof for the same URL is accepted there, so the refusal was the replay."""
    token = dpop_pair.token()
    url = dpop_pair.public + "/items"

    def send(base: str, proof: str) -> httpx.Response:
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        return httpx.get(base + "/items", headers=headers, timeout=10)

    proof = KEY.proof("GET", url, token=token)
    assert send(dpop_pair.public, proof).status_code == 200
    replay = send(dpop_pair.second, proof)
    assert replay.status_code == 401
    assert 'error="invalid_dpop_proof"' in single_challenge(replay)
    assert send(dpop_pair.second, KEY.proof("GET", url, token=token)).status_code == 200
