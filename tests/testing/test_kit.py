"""scopegate.testing: keys, the in-process issuer and the real local issuer server."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import jwt
import pytest

from scopegate._errors import ConfigurationError, InvalidTokenError, KeySetUnavailableError
from scopegate.testing import (
    DEFAULT_AUDIENCE,
    DEFAULT_ISSUER,
    OMIT,
    DPoPAuth,
    DPoPKey,
    IssuerServer,
    LocalIssuer,
    SigningKey,
)

PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "k"}


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    """One RSA key for the module (generation is the slow part)."""
    return SigningKey.generate("RS256", kid="kit-key")


@pytest.mark.parametrize(
    "alg",
    [pytest.param(a, id=a.lower()) for a in ("RS256", "PS256", "ES256", "EdDSA")],
)
def test_signing_key_round_trips_with_pyjwt(alg: Any) -> None:
    """Tokens signed by each algorithm verify with PyJWT against the published JWK."""
    key = SigningKey.generate(alg)
    jwk = key.public_jwk()
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert jwk["kid"] == key.kid
    assert not PRIVATE_MEMBERS & jwk.keys()
    token = key.sign({"hello": "world"})
    assert jwt.get_unverified_header(token) == {"alg": alg, "kid": key.kid, "typ": "at+jwt"}
    assert jwt.decode(token, jwt.PyJWK(jwk), algorithms=[alg]) == {"hello": "world"}


def test_signing_key_from_pem_uses_thumbprint_kid(rsa_key: SigningKey) -> None:
    """A PEM reloads to the same public key, with the RFC 7638 thumbprint as kid."""
    loaded = SigningKey.from_pem(rsa_key.private_pem())
    assert loaded.kid == rsa_key.thumbprint()
    assert loaded.alg == "RS256"
    assert loaded.public_pem() == rsa_key.public_pem()
    assert SigningKey.from_pem(SigningKey.generate("ES256").private_pem()).alg == "ES256"


def test_signing_key_refuses_bad_input(rsa_key: SigningKey) -> None:
    """A non-PEM text, or a key that does not fit the algorithm, is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(b"not a key")
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(rsa_key.private_pem(), alg="ES256")
    with pytest.raises(ConfigurationError):
        SigningKey.generate("HS256")  # type: ignore[arg-type]


def test_signing_key_repr_hides_material(rsa_key: SigningKey) -> None:
    """repr names the algorithm and kid, never key material."""
    assert repr(rsa_key) == "SigningKey(alg='RS256', kid='kit-key')"


def test_make_token_builds_rfc9068_claims(rsa_key: SigningKey) -> None:
    """Defaults carry every RFC 9068 §2.2 claim; scopes become one space-delimited string."""
    issuer = LocalIssuer(key=rsa_key, clock=lambda: 1_000_000)
    claims = jwt.decode(
        issuer.make_token(["a", "b"], sub="alice", expires_in=60, tenant="acme"),
        options={"verify_signature": False},
    )
    assert claims["iss"] == DEFAULT_ISSUER
    assert claims["aud"] == DEFAULT_AUDIENCE
    assert claims["sub"] == "alice"
    assert claims["client_id"] == "test-client"
    assert claims["scope"] == "a b"
    assert claims["iat"] == 1_000_000
    assert claims["exp"] == 1_000_060
    assert claims["tenant"] == "acme"
    assert isinstance(claims["jti"], str)
    assert len(claims["jti"]) >= 22


def test_make_token_omit_and_headers(rsa_key: SigningKey) -> None:
    """OMIT drops a claim, headers=... adds or removes header members, scopes=None no scope."""
    issuer = LocalIssuer(key=rsa_key)
    token = issuer.make_token(None, jti=OMIT, audience=OMIT, headers={"typ": None, "x": 1})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert "jti" not in claims
    assert "aud" not in claims
    assert "scope" not in claims
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "kit-key", "x": 1}
    assert repr(OMIT) == "OMIT"


def test_verifier_accepts_tokens_and_rejects_others(rsa_key: SigningKey) -> None:
    """issuer.verifier() accepts the issuer's tokens and rejects foreign or expired ones."""
    issuer = LocalIssuer(key=rsa_key)
    verifier = issuer.verifier()
    token = verifier.verify(issuer.make_token(["items:read"], sub="alice"))
    assert token.subject == "alice"
    assert token.client_id == "test-client"
    assert token.scopes == frozenset({"items:read"})
    stranger = LocalIssuer(key=SigningKey.generate("ES256", kid="kit-key"))
    with pytest.raises(InvalidTokenError) as bad_signature:
        verifier.verify(stranger.make_token(["items:read"]))
    assert bad_signature.value.reason in {"bad_signature", "key_alg_mismatch"}
    with pytest.raises(InvalidTokenError) as expired:
        verifier.verify(issuer.make_token(expires_in=-3600))
    assert expired.value.reason == "expired"
    assert issuer.authorization(["x"]).startswith("Bearer ey")


def test_verifier_accepts_options(rsa_key: SigningKey) -> None:
    """verifier(**options) passes JWTVerifier keywords through (here: lenient typ)."""
    issuer = LocalIssuer(key=rsa_key)
    token = issuer.make_token(headers={"typ": "JWT"})
    with pytest.raises(InvalidTokenError):
        issuer.verifier().verify(token)
    assert issuer.verifier(typ="lenient").verify(token).subject == "test-user"


@pytest.mark.anyio
async def test_verifier_async(rsa_key: SigningKey) -> None:
    """averify works with the in-process verifier too."""
    issuer = LocalIssuer(key=rsa_key)
    token = await issuer.verifier().averify(issuer.make_token(["a"]))
    assert token.has_scopes("a")


def test_rotate_key_keeps_old_key_published(rsa_key: SigningKey) -> None:
    """After rotate_key both keys are in the JWKS; old tokens verify until it is dropped."""
    issuer = LocalIssuer(key=rsa_key)
    old_token = issuer.make_token(["a"])
    old = issuer.rotate_key()
    assert old is rsa_key
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [issuer.key.kid, rsa_key.kid]
    verifier = issuer.verifier()
    verifier.verify(old_token)
    verifier.verify(issuer.make_token(["a"]))
    issuer.extra_keys.clear()
    with pytest.raises(InvalidTokenError):
        issuer.verifier().verify(old_token)


def test_issuer_server_serves_discovery_and_jwks(rsa_key: SigningKey) -> None:
    """The server answers RFC 8414 and OIDC discovery and the JWKS over real HTTP."""
    with IssuerServer(key=rsa_key) as server:
        assert server.issuer == f"http://127.0.0.1:{server.port}"
        for path in (
            "/.well-known/oauth-authorization-server",
            "/.well-known/openid-configuration",
        ):
            meta = httpx.get(server.issuer + path).json()
            assert meta["issuer"] == server.issuer
            assert meta["jwks_uri"] == server.jwks_uri
        assert httpx.get(server.jwks_uri).json() == server.jwks()
        assert httpx.get(server.issuer + "/nope").status_code == 404
        assert server.env() == {
            "SCOPEGATE_ISSUER": server.issuer,
            "SCOPEGATE_AUDIENCE": DEFAULT_AUDIENCE,
            "SCOPEGATE_JWKS_URI": server.jwks_uri,
        }


def test_issuer_server_end_to_end_with_discovery(rsa_key: SigningKey) -> None:
    """A JWTVerifier finds the keys by discovery over HTTP, once, and verifies tokens."""
    with IssuerServer(key=rsa_key) as server:
        verifier = server.verifier()
        try:
            for _ in range(3):
                verifier.verify(server.make_token(["read"]))
        finally:
            verifier.close()
        assert server.hits["/.well-known/oauth-authorization-server"] == 1
        assert server.hits["/jwks.json"] == 1


@pytest.mark.anyio
async def test_issuer_server_async_and_outage(rsa_key: SigningKey) -> None:
    """An unavailable issuer on a cold cache gives 503 (KeySetUnavailableError), not 401."""
    with IssuerServer(key=rsa_key) as server:
        server.available = False
        verifier = server.verifier(jwks_uri=server.jwks_uri)
        try:
            with pytest.raises(KeySetUnavailableError) as exc:
                await verifier.averify(server.make_token(["read"]))
            assert exc.value.status == 503
            server.available = True
            fresh = server.verifier(jwks_uri=server.jwks_uri)
            assert (await fresh.averify(server.make_token(["read"]))).has_scopes("read")
            await fresh.aclose()
        finally:
            await verifier.aclose()
        assert server.hits["/jwks.json"] >= 2


def test_issuer_server_stop_releases_port(rsa_key: SigningKey) -> None:
    """stop() shuts the server down; the port no longer answers."""
    server = IssuerServer(key=rsa_key).start()
    url = server.jwks_uri
    assert httpx.get(url).status_code == 200
    server.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)


def test_testing_import_pulls_no_framework() -> None:
    """Importing the kit and its pytest plugin loads no web framework."""
    code = (
        "import sys, scopegate.testing, scopegate.testing._plugin, scopegate.presets;"
        "bad = [m for m in ('starlette', 'fastapi', 'flask', 'django') if m in sys.modules];"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_public_api_is_sorted() -> None:
    """scopegate.testing exports an isort-sorted __all__ (as ruff RUF022) of existing names."""
    import scopegate.testing as kit

    def order(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert kit.__all__ == sorted(kit.__all__, key=order)
    for name in kit.__all__:
        assert hasattr(kit, name)


# -- DPoPAuth at a token endpoint ----------------------------------------------------------


def _decoded(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(proof), jwt.decode(proof, options={"verify_signature": False})


def test_dpop_auth_for_a_token_request() -> None:
    """token=None: a proof for POST to the token URL without ath, Basic client auth
    (form-urlencoded halves), no Authorization: DPoP."""
    key = DPoPKey.generate()
    seen: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.headers))
        return httpx.Response(200, json={"access_token": "t", "token_type": "DPoP"})

    auth = DPoPAuth(None, key, client=("svc a", "p:w"))
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.post("https://as.example/token?x=1", data={"grant_type": "x"}, auth=auth)
    header, claims = _decoded(seen[0]["dpop"])
    assert header["typ"] == "dpop+jwt"
    assert (claims["htm"], claims["htu"]) == ("POST", "https://as.example/token")
    assert "ath" not in claims
    assert seen[0]["authorization"] == "Basic c3ZjK2E6cCUzQXc="
    assert "p:w" not in repr(auth)


@pytest.mark.parametrize(
    ("status", "error", "retried"),
    [
        pytest.param(400, "use_dpop_nonce", True, id="as-nonce"),
        pytest.param(400, "invalid_grant", False, id="as-other-error"),
        pytest.param(200, None, False, id="success"),
    ],
)
def test_dpop_auth_retries_once_on_an_authorization_server_nonce(
    status: int, error: str | None, retried: bool
) -> None:
    """RFC 9449 §8: a 400 use_dpop_nonce (JSON body) is retried once with the nonce; any
    other answer with a DPoP-Nonce is not retried (a code must not be sent twice), but
    its nonce is kept for the next request."""
    key = DPoPKey.generate()
    proofs: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        proofs.append(request.headers["dpop"])
        if len(proofs) == 1:
            body = {"error": error} if error else {"access_token": "t"}
            return httpx.Response(status, json=body, headers={"DPoP-Nonce": "n-1"})
        return httpx.Response(200, json={"access_token": "t"})

    auth = DPoPAuth(None, key)
    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        client.post("https://as.example/token", data={"grant_type": "x"}, auth=auth)
        assert len(proofs) == (2 if retried else 1)
        client.post("https://as.example/token", data={"grant_type": "x"}, auth=auth)
    assert "nonce" not in _decoded(proofs[0])[1]
    assert [_decoded(p)[1]["nonce"] for p in proofs[1:]] == ["n-1"] * (len(proofs) - 1)
