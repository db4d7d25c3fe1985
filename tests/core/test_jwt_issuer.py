"""JWTVerifier against the real companion issuer served by uvicorn on 127.0.0.1.

Discovery (RFC 8414), JWKS and a client_credentials token all come from the issuer over
HTTP; the verifier must accept its RFC 9068 tokens and refuse tampered ones.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from scopegate._errors import InvalidTokenError
from scopegate._jwt import JWTVerifier
from tests.servers import free_port, run_asgi

AUDIENCE = "api://issuer-test"


@pytest.fixture(scope="module")
def issuer_url() -> Iterator[str]:
    """A running companion issuer with one client_credentials client."""
    from scopegate.issuer import Client, Issuer, IssuerConfig
    from scopegate.issuer._asgi import create_asgi_app

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    issuer = Issuer(
        IssuerConfig(issuer=url, audience=AUDIENCE),
        clients=[
            Client(
                "svc-a",
                ("a-long-random-client-secret",),
                scopes=frozenset({"items:read", "admin"}),
            )
        ],
    )
    with run_asgi(create_asgi_app(issuer), port=port):
        yield url


def fetch_token(issuer_url: str, scope: str = "items:read") -> str:
    """A client_credentials access token from the issuer's advertised token endpoint."""
    meta = httpx.get(issuer_url + "/.well-known/oauth-authorization-server").json()
    response = httpx.post(
        meta["token_endpoint"],
        data={"grant_type": "client_credentials", "scope": scope},
        auth=("svc-a", "a-long-random-client-secret"),
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_issuer_token_verifies_through_discovery(issuer_url: str) -> None:
    """A token from the real issuer verifies with keys found by RFC 8414 discovery."""
    verifier = JWTVerifier(issuer=issuer_url, audience=AUDIENCE)
    try:
        result = verifier.verify(fetch_token(issuer_url, "items:read admin"))
    finally:
        verifier.close()
    assert result.client_id == "svc-a"
    assert result.issuer == issuer_url
    assert result.has_scopes("items:read", "admin")


@pytest.mark.anyio
async def test_issuer_token_verifies_async(issuer_url: str) -> None:
    """The async path verifies the issuer's token the same way."""
    verifier = JWTVerifier(issuer=issuer_url, audience=AUDIENCE)
    try:
        result = await verifier.averify(fetch_token(issuer_url))
    finally:
        await verifier.aclose()
    assert result.scopes == {"items:read"}


def test_issuer_token_for_another_audience_is_refused(issuer_url: str) -> None:
    """The issuer's token is not accepted by a resource server with another audience."""
    verifier = JWTVerifier(issuer=issuer_url, audience="api://someone-else")
    try:
        with pytest.raises(InvalidTokenError) as info:
            verifier.verify(fetch_token(issuer_url))
    finally:
        verifier.close()
    assert info.value.reason == "wrong_audience"


def test_tampered_issuer_token_is_refused(issuer_url: str) -> None:
    """Changing the payload of an issuer token breaks its signature."""
    import base64
    import json

    header, payload, signature = fetch_token(issuer_url).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "items:read admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    jwks_uri = httpx.get(issuer_url + "/.well-known/oauth-authorization-server").json()["jwks_uri"]
    verifier = JWTVerifier(issuer=issuer_url, audience=AUDIENCE, jwks_uri=jwks_uri)
    try:
        with pytest.raises(InvalidTokenError) as info:
            verifier.verify(f"{header}.{forged}.{signature}")
    finally:
        verifier.close()
    assert info.value.reason == "bad_signature"
