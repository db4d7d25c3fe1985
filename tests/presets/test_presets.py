"""Provider presets against tokens built to each provider's real shape."""

from __future__ import annotations

import time
from typing import Any

import pytest

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate.presets import auth0, cognito, entra, keycloak, okta
from scopegate.testing import OMIT, IssuerServer, LocalIssuer, SigningKey

TENANT = "8eaef023-2b34-4da1-9baa-8bc8c9d6a490"
NOW = time.time()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The provider's signing key (stands in for its JWKS)."""
    return SigningKey.generate("RS256", kid="provider-key-1")


def provider(key: SigningKey, issuer: str) -> LocalIssuer:
    """A fake of the provider: its issuer URL, our key."""
    return LocalIssuer(issuer=issuer, key=key)


def mint(issuer: LocalIssuer, claims: dict[str, Any], header: dict[str, Any]) -> str:
    """Sign exactly *claims* (no defaults) with the provider's header shape."""
    now = int(NOW)
    body = {"iat": now, "exp": now + 3600, **claims}
    return issuer.key.sign({k: v for k, v in body.items() if v is not OMIT}, header)


JWT_HEADER = {"typ": "JWT"}
NO_TYP = {"typ": None}

# --------------------------------------------------------------------------- Auth0

AUTH0_ISS = "https://example.eu.auth0.com/"
AUTH0_AUD = "https://api.example.com"


def auth0_user_token(issuer: LocalIssuer, **changes: Any) -> str:
    """An Auth0 access token for a user, RBAC on (permissions), as Auth0 issues it."""
    claims = {
        "iss": AUTH0_ISS,
        "sub": "auth0|65f1c2",
        "aud": [AUTH0_AUD, "https://example.eu.auth0.com/userinfo"],
        "azp": "kD4Xy1spaClient",
        "scope": "openid profile email",
        "permissions": ["read:items", "write:items"],
        **changes,
    }
    return mint(issuer, claims, JWT_HEADER)


def test_auth0_accepts_user_token_with_permissions(key: SigningKey) -> None:
    """Auth0: permissions and scope both become scopes; azp is the client."""
    issuer = provider(key, AUTH0_ISS)
    verifier = auth0("example.eu.auth0.com", AUTH0_AUD, keys=issuer.jwks())
    token = verifier.verify(auth0_user_token(issuer))
    assert token.client_id == "kD4Xy1spaClient"
    assert token.subject == "auth0|65f1c2"
    assert token.has_scopes("read:items", "write:items", "openid")


def test_auth0_accepts_machine_token(key: SigningKey) -> None:
    """Auth0 client-credentials token: sub '<client>@clients', gty, no permissions."""
    issuer = provider(key, AUTH0_ISS)
    verifier = auth0("https://example.eu.auth0.com/", AUTH0_AUD, keys=issuer.jwks())
    raw = mint(
        issuer,
        {
            "iss": AUTH0_ISS,
            "sub": "svcA@clients",
            "aud": AUTH0_AUD,
            "azp": "svcA",
            "gty": "client-credentials",
            "scope": "read:items",
        },
        JWT_HEADER,
    )
    token = verifier.verify(raw)
    assert token.client_id == "svcA"
    assert token.scopes == frozenset({"read:items"})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"aud": "kD4Xy1spaClient", "nonce": "n"}, "wrong_audience", id="id-token"),
        pytest.param(
            {"iss": "https://example.eu.auth0.com"}, "wrong_issuer", id="iss-without-trailing-slash"
        ),
        pytest.param({"iss": "https://evil.eu.auth0.com/"}, "wrong_issuer", id="other-tenant"),
        pytest.param({"exp": int(NOW) - 600}, "expired", id="expired"),
        pytest.param({"permissions": "read:items"}, None, id="permissions-string-ok"),
    ],
)
def test_auth0_rejections(key: SigningKey, changes: dict[str, Any], reason: str | None) -> None:
    """Auth0 preset keeps the audience, issuer and expiry checks."""
    issuer = provider(key, AUTH0_ISS)
    verifier = auth0("example.eu.auth0.com", AUTH0_AUD, keys=issuer.jwks())
    token = auth0_user_token(issuer, **changes)
    if reason is None:
        assert verifier.verify(token).has_scopes("read:items")
        return
    with pytest.raises(InvalidTokenError) as exc:
        verifier.verify(token)
    assert exc.value.reason == reason


# --------------------------------------------------------------------------- Keycloak

KC_ISS = "https://sso.example.com/realms/demo"


def keycloak_token(issuer: LocalIssuer, **changes: Any) -> str:
    """A Keycloak access token with realm and client roles."""
    claims = {
        "jti": "onrtac:7f3c",
        "iss": KC_ISS,
        "aud": ["orders-api", "account"],
        "sub": "f5c1e2a4-3b0d-4d6b-9a57-0f1f5c3f2d11",
        "typ": "Bearer",
        "azp": "web-app",
        "sid": "0c9f",
        "scope": "openid email profile",
        "realm_access": {"roles": ["offline_access", "user"]},
        "resource_access": {
            "orders-api": {"roles": ["orders:admin"]},
            "account": {"roles": ["manage-account"]},
        },
        "preferred_username": "alice",
        **changes,
    }
    return mint(issuer, claims, JWT_HEADER)


def test_keycloak_reads_realm_and_client_roles(key: SigningKey) -> None:
    """Keycloak: scope + realm roles + the named client's roles, azp is the client."""
    issuer = provider(key, KC_ISS)
    verifier = keycloak(
        "https://sso.example.com/",
        "demo",
        "orders-api",
        client_roles="orders-api",
        keys=issuer.jwks(),
    )
    token = verifier.verify(keycloak_token(issuer))
    assert token.client_id == "web-app"
    assert token.scopes == frozenset(
        {"openid", "email", "profile", "offline_access", "user", "orders:admin"}
    )
    assert "manage-account" not in token.scopes


def test_keycloak_without_realm_roles(key: SigningKey) -> None:
    """realm_roles=False ignores realm_access.roles."""
    issuer = provider(key, KC_ISS)
    verifier = keycloak(
        "https://sso.example.com", "demo", "orders-api", realm_roles=False, keys=issuer.jwks()
    )
    assert verifier.verify(keycloak_token(issuer)).scopes == frozenset(
        {"openid", "email", "profile"}
    )


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"typ": "ID", "aud": "orders-api"}, "wrong_token_type", id="id-token"),
        pytest.param(
            {"typ": "Refresh", "aud": "orders-api"}, "wrong_token_type", id="refresh-token"
        ),
        pytest.param({"aud": "account"}, "wrong_audience", id="default-account-audience"),
        pytest.param(
            {"iss": "https://sso.example.com/realms/other"}, "wrong_issuer", id="other-realm"
        ),
        pytest.param({"realm_access": {"roles": "user"}}, None, id="roles-as-string-ok"),
        pytest.param({"realm_access": {"roles": 5}}, "bad_scope_claim", id="roles-wrong-type"),
    ],
)
def test_keycloak_rejections(key: SigningKey, changes: dict[str, Any], reason: str | None) -> None:
    """Keycloak preset refuses ID/refresh tokens (typ claim), other realms, wrong audiences."""
    issuer = provider(key, KC_ISS)
    verifier = keycloak("https://sso.example.com", "demo", "orders-api", keys=issuer.jwks())
    token = keycloak_token(issuer, **changes)
    if reason is None:
        verifier.verify(token)
        return
    with pytest.raises(InvalidTokenError) as exc:
        verifier.verify(token)
    assert exc.value.reason == reason


# --------------------------------------------------------------------------- Entra ID

V2_ISS = f"https://login.microsoftonline.com/{TENANT}/v2.0"
V1_ISS = f"https://sts.windows.net/{TENANT}/"
API_APP_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


def entra_v2_token(issuer: LocalIssuer, **changes: Any) -> str:
    """An Entra ID v2 delegated access token for our API."""
    claims = {
        "aud": API_APP_ID,
        "iss": V2_ISS,
        "nbf": int(NOW),
        "azp": "a1b2c3d4-client",
        "azpacr": "0",
        "name": "Alice",
        "oid": "00000000-0000-0000-66f3-3332eca7ea81",
        "preferred_username": "alice@contoso.com",
        "rh": "0.ARoA",
        "scp": "Items.Read Items.Write",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": TENANT,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0",
        **changes,
    }
    return mint(issuer, claims, JWT_HEADER)


def test_entra_v2_delegated_token(key: SigningKey) -> None:
    """Entra v2: scp string becomes scopes, azp is the client, no jti needed."""
    issuer = provider(key, V2_ISS)
    verifier = entra(TENANT, API_APP_ID, keys=issuer.jwks())
    token = verifier.verify(entra_v2_token(issuer))
    assert token.scopes == frozenset({"Items.Read", "Items.Write"})
    assert token.client_id == "a1b2c3d4-client"


def test_entra_v2_application_token_roles(key: SigningKey) -> None:
    """Entra app-only token: roles array becomes scopes."""
    issuer = provider(key, V2_ISS)
    verifier = entra(TENANT, API_APP_ID, keys=issuer.jwks())
    token = verifier.verify(entra_v2_token(issuer, scp=OMIT, roles=["Items.ReadAll"]))
    assert token.scopes == frozenset({"Items.ReadAll"})


def test_entra_v1_token(key: SigningKey) -> None:
    """Entra v1: sts.windows.net issuer, appid client, App ID URI audience."""
    issuer = provider(key, V1_ISS)
    verifier = entra(TENANT, "api://my-api", version=1, keys=issuer.jwks())
    raw = mint(
        issuer,
        {
            "aud": "api://my-api",
            "iss": V1_ISS,
            "appid": "legacy-client",
            "scp": "user_impersonation",
            "sub": "s1",
            "tid": TENANT,
            "ver": "1.0",
        },
        JWT_HEADER,
    )
    token = verifier.verify(raw)
    assert token.client_id == "legacy-client"
    assert token.scopes == frozenset({"user_impersonation"})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param({"iss": V1_ISS, "ver": "1.0"}, "wrong_issuer", id="v1-token-to-v2"),
        pytest.param({"ver": "1.0"}, "wrong_token_version", id="ver-mismatch"),
        pytest.param(
            {"aud": "00000003-0000-0000-c000-000000000000"}, "wrong_audience", id="graph-token"
        ),
        pytest.param(
            {"iss": "https://login.microsoftonline.com/other-tenant/v2.0"},
            "wrong_issuer",
            id="other-tenant",
        ),
        pytest.param({"nbf": int(NOW) + 3600}, "not_yet_valid", id="nbf-future"),
    ],
)
def test_entra_rejections(key: SigningKey, changes: dict[str, Any], reason: str) -> None:
    """Entra preset refuses v1/v2 mix-ups, Graph tokens and other tenants."""
    issuer = provider(key, V2_ISS)
    verifier = entra(TENANT, API_APP_ID, keys=issuer.jwks())
    with pytest.raises(InvalidTokenError) as exc:
        verifier.verify(entra_v2_token(issuer, **changes))
    assert exc.value.reason == reason


# --------------------------------------------------------------------------- Okta

OKTA_ISS = "https://dev-123456.okta.com/oauth2/default"


def okta_token(issuer: LocalIssuer, **changes: Any) -> str:
    """An Okta custom-authorization-server access token (no typ header)."""
    claims = {
        "ver": 1,
        "jti": "AT.pHnrbt5Qk0f5W2x7m0",
        "iss": OKTA_ISS,
        "aud": "api://default",
        "cid": "0oa1b2c3d4",
        "uid": "00u1b2c3d4",
        "scp": ["openid", "items:read"],
        "auth_time": int(NOW) - 60,
        "sub": "alice@example.com",
        **changes,
    }
    return mint(issuer, claims, NO_TYP)


def test_okta_custom_authorization_server(key: SigningKey) -> None:
    """Okta: scp array becomes scopes, cid is the client, missing typ accepted."""
    issuer = provider(key, OKTA_ISS)
    verifier = okta("dev-123456.okta.com", "api://default", keys=issuer.jwks())
    token = verifier.verify(okta_token(issuer))
    assert token.client_id == "0oa1b2c3d4"
    assert token.scopes == frozenset({"openid", "items:read"})


def test_okta_org_authorization_server(key: SigningKey) -> None:
    """authorization_server=None uses the org issuer."""
    issuer = provider(key, "https://dev-123456.okta.com")
    verifier = okta(
        "dev-123456.okta.com", "api://default", authorization_server=None, keys=issuer.jwks()
    )
    verifier.verify(okta_token(issuer, iss="https://dev-123456.okta.com"))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param(
            {"iss": "https://dev-123456.okta.com/oauth2/other"},
            "wrong_issuer",
            id="other-auth-server",
        ),
        pytest.param({"jti": OMIT}, "missing_claim", id="missing-jti"),
        pytest.param({"scp": [1]}, "bad_scope_claim", id="scp-wrong-type"),
        pytest.param({"aud": "0oa1b2c3d4"}, "wrong_audience", id="id-token-audience"),
    ],
)
def test_okta_rejections(key: SigningKey, changes: dict[str, Any], reason: str) -> None:
    """Okta preset keeps issuer, jti, scope-type and audience checks."""
    issuer = provider(key, OKTA_ISS)
    verifier = okta("dev-123456.okta.com", "api://default", keys=issuer.jwks())
    with pytest.raises(InvalidTokenError) as exc:
        verifier.verify(okta_token(issuer, **changes))
    assert exc.value.reason == reason


# --------------------------------------------------------------------------- Cognito

COGNITO_ISS = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf123"


def cognito_token(issuer: LocalIssuer, **changes: Any) -> str:
    """A Cognito user-pool access token: no aud, client_id, token_use access."""
    claims = {
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["admins"],
        "iss": COGNITO_ISS,
        "version": 2,
        "client_id": "3n4b5urk1ft4fl3mg5e62d9ado",
        "origin_jti": "b3c4",
        "event_id": "e1",
        "token_use": "access",
        "scope": "aws.cognito.signin.user.admin items/read",
        "auth_time": int(NOW) - 60,
        "jti": "5f2e",
        "username": "alice",
        **changes,
    }
    return mint(issuer, claims, NO_TYP)


def test_cognito_access_token(key: SigningKey) -> None:
    """Cognito: no aud needed; scope and groups become scopes; client_id checked."""
    issuer = provider(key, COGNITO_ISS)
    verifier = cognito(
        "eu-west-1", "eu-west-1_AbCdEf123", "3n4b5urk1ft4fl3mg5e62d9ado", keys=issuer.jwks()
    )
    token = verifier.verify(cognito_token(issuer))
    assert token.client_id == "3n4b5urk1ft4fl3mg5e62d9ado"
    assert token.scopes == frozenset({"aws.cognito.signin.user.admin", "items/read", "admins"})


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        pytest.param(
            {"token_use": "id", "aud": "3n4b5urk1ft4fl3mg5e62d9ado", "client_id": OMIT},
            "missing_claim",
            id="id-token",
        ),
        pytest.param({"token_use": "id"}, "wrong_token_use", id="token-use-id"),
        pytest.param({"token_use": OMIT}, "wrong_token_use", id="token-use-missing"),
        pytest.param({"client_id": "someone-else"}, "wrong_client", id="other-app-client"),
        pytest.param(
            {"iss": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Other"},
            "wrong_issuer",
            id="other-pool",
        ),
    ],
)
def test_cognito_rejections(key: SigningKey, changes: dict[str, Any], reason: str) -> None:
    """Cognito preset refuses ID tokens, other app clients and other pools."""
    issuer = provider(key, COGNITO_ISS)
    verifier = cognito(
        "eu-west-1", "eu-west-1_AbCdEf123", ["3n4b5urk1ft4fl3mg5e62d9ado"], keys=issuer.jwks()
    )
    with pytest.raises(InvalidTokenError) as exc:
        verifier.verify(cognito_token(issuer, **changes))
    assert exc.value.reason == reason


# --------------------------------------------------------------------------- shared


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(
            lambda: auth0("t.auth0.com", "a"),
            "https://t.auth0.com/.well-known/jwks.json",
            id="auth0",
        ),
        pytest.param(
            lambda: keycloak("https://kc.example", "r", "a"),
            "https://kc.example/realms/r/protocol/openid-connect/certs",
            id="keycloak",
        ),
        pytest.param(
            lambda: entra(TENANT, "a"),
            f"https://login.microsoftonline.com/{TENANT}/discovery/v2.0/keys",
            id="entra-v2",
        ),
        pytest.param(
            lambda: entra(TENANT, "a", version=1),
            f"https://login.microsoftonline.com/{TENANT}/discovery/keys",
            id="entra-v1",
        ),
        pytest.param(
            lambda: okta("o.okta.com", "a"), "https://o.okta.com/oauth2/default/v1/keys", id="okta"
        ),
        pytest.param(
            lambda: okta("o.okta.com", "a", authorization_server=None),
            "https://o.okta.com/oauth2/v1/keys",
            id="okta-org",
        ),
        pytest.param(
            lambda: cognito("us-east-1", "us-east-1_X", "c"),
            "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_X/.well-known/jwks.json",
            id="cognito",
        ),
    ],
)
def test_presets_point_at_provider_jwks(make: Any, expected: str) -> None:
    """Without overrides each preset fetches keys from the provider's JWKS URL (lazily)."""
    verifier = make()
    try:
        assert expected in repr(verifier.key_source)
        assert verifier.typ == "lenient"
    finally:
        verifier.close()


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: auth0("https://x/../evil", "a"), id="auth0-bad-domain"),
        pytest.param(lambda: okta("o.okta.com/x", "a"), id="okta-path-in-domain"),
        pytest.param(
            lambda: okta("o.okta.com", "a", authorization_server="a/b"), id="okta-bad-server"
        ),
        pytest.param(lambda: entra("common", "a"), id="entra-common"),
        pytest.param(lambda: entra(TENANT, "a", version=3), id="entra-version"),
        pytest.param(lambda: keycloak("sso.example.com", "r", "a"), id="keycloak-no-scheme"),
        pytest.param(lambda: keycloak("https://kc", "r/x", "a"), id="keycloak-bad-realm"),
        pytest.param(
            lambda: keycloak("https://kc", "r", "a", client_roles="a.b"),
            id="keycloak-dotted-client",
        ),
        pytest.param(lambda: cognito("eu-west-1", "p", []), id="cognito-no-client"),
    ],
)
def test_presets_refuse_bad_configuration(make: Any) -> None:
    """Malformed provider settings fail at construction, never per request."""
    with pytest.raises(ConfigurationError):
        make()


def test_preset_user_claims_validator_runs_after_the_preset_one(key: SigningKey) -> None:
    """A user claims_validator is chained after the preset's own checks."""
    issuer = provider(key, COGNITO_ISS)
    seen: list[str] = []

    def only_admins(claims: Any) -> None:
        seen.append("called")
        if "admins" not in claims.get("cognito:groups", []):
            raise InvalidTokenError(reason="not_admin")

    verifier = cognito(
        "eu-west-1",
        "eu-west-1_AbCdEf123",
        "3n4b5urk1ft4fl3mg5e62d9ado",
        keys=issuer.jwks(),
        claims_validator=only_admins,
    )
    verifier.verify(cognito_token(issuer))
    with pytest.raises(InvalidTokenError) as exc:
        verifier.verify(cognito_token(issuer, **{"cognito:groups": ["users"]}))
    assert exc.value.reason == "not_admin"
    with pytest.raises(InvalidTokenError) as wrong_use:
        verifier.verify(cognito_token(issuer, token_use="id"))
    assert wrong_use.value.reason == "wrong_token_use"
    assert seen == ["called", "called"]


def test_preset_with_real_jwks_server(key: SigningKey) -> None:
    """jwks_uri= override: an Okta-shaped token verified with keys fetched over HTTP."""
    with IssuerServer(key=key) as server:
        issuer = provider(key, OKTA_ISS)
        verifier = okta("dev-123456.okta.com", "api://default", jwks_uri=server.jwks_uri)
        try:
            assert verifier.verify(okta_token(issuer)).has_scopes("items:read")
        finally:
            verifier.close()
        assert server.hits["/jwks.json"] == 1


def test_providers_doc_example_runs() -> None:
    """The 'Testing against a preset' example of docs/providers.md runs as written."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "providers.md").read_text()
    section = doc.split("## Testing against a preset", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None
    exec(compile(code.group(1), "docs/providers.md", "exec"), {})
