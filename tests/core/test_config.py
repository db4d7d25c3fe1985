"""settings_from_env / from_env: SCOPEGATE_* environment configuration."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from scopegate._config import EnvSettings, from_env, settings_from_env
from scopegate._errors import ConfigurationError
from scopegate._jwt import JWTVerifier
from scopegate._verifier import HybridVerifier
from tests.core.tokens import AUDIENCE, ISSUER, RSA_KEY, mint
from tests.servers import run_wsgi

BASE = {"SCOPEGATE_ISSUER": "https://issuer.example", "SCOPEGATE_AUDIENCE": "api://items"}


def test_minimal_settings() -> None:
    """Issuer and audience are enough; everything else has a default."""
    settings = settings_from_env(BASE)
    assert settings == EnvSettings(issuer="https://issuer.example", audience="api://items")
    assert settings.realm == "api"
    assert settings.jwt_options() == {
        "issuer": "https://issuer.example",
        "audience": "api://items",
        "jwks_uri": None,
    }


def test_all_settings() -> None:
    """Every documented variable is read and parsed."""
    env = {
        **BASE,
        "SCOPEGATE_AUDIENCE": "api://a, api://b",
        "SCOPEGATE_JWKS_URI": "https://issuer.example/jwks",
        "SCOPEGATE_ALGORITHMS": "RS256, ES256",
        "SCOPEGATE_LEEWAY": "30",
        "SCOPEGATE_TYP": "Lenient",
        "SCOPEGATE_REALM": "items",
        "SCOPEGATE_INTROSPECTION_URI": "https://issuer.example/introspect",
        "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
        "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "s3cret-value",
        "SCOPEGATE_REDIS_URL": "redis://:pw@127.0.0.1:6379/0",
    }
    settings = settings_from_env(env)
    assert settings.audience == ("api://a", "api://b")
    assert settings.algorithms == ("RS256", "ES256")
    assert settings.leeway == 30.0
    assert settings.typ == "lenient"
    assert settings.realm == "items"
    assert settings.introspection_client_id == "rs"
    assert settings.jwt_options()["typ"] == "lenient"
    # Secrets stay out of the repr (logs, tracebacks).
    assert "s3cret-value" not in repr(settings)
    assert "pw@" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({}, "SCOPEGATE_ISSUER", id="no-issuer"),
        pytest.param({"SCOPEGATE_ISSUER": "https://i"}, "SCOPEGATE_AUDIENCE", id="no-audience"),
        pytest.param({**BASE, "SCOPEGATE_ISSUER": "  "}, "SCOPEGATE_ISSUER", id="blank-issuer"),
        pytest.param(
            {**BASE, "SCOPEGATE_AUDIENCE": ","}, "SCOPEGATE_AUDIENCE", id="empty-audience"
        ),
        pytest.param({**BASE, "SCOPEGATE_LEEWAY": "soon"}, "SCOPEGATE_LEEWAY", id="bad-leeway"),
        pytest.param({**BASE, "SCOPEGATE_LEEWAY": "nan"}, "SCOPEGATE_LEEWAY", id="nan-leeway"),
        pytest.param({**BASE, "SCOPEGATE_LEEWAY": "-1"}, "SCOPEGATE_LEEWAY", id="negative-leeway"),
        pytest.param({**BASE, "SCOPEGATE_TYP": "loose"}, "SCOPEGATE_TYP", id="bad-typ"),
        pytest.param(
            {**BASE, "SCOPEGATE_ALGORITHMS": " , "}, "SCOPEGATE_ALGORITHMS", id="empty-algorithms"
        ),
        pytest.param(
            {**BASE, "SCOPEGATE_INTROSPECTION_URI": "https://i/x"},
            "SCOPEGATE_INTROSPECTION_CLIENT_ID",
            id="introspection-no-client",
        ),
        pytest.param(
            {
                **BASE,
                "SCOPEGATE_INTROSPECTION_URI": "https://i/x",
                "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
            },
            "SCOPEGATE_INTROSPECTION_CLIENT_SECRET",
            id="introspection-no-secret",
        ),
    ],
)
def test_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    """A missing or malformed variable is a ConfigurationError naming it."""
    with pytest.raises(ConfigurationError, match=variable):
        settings_from_env(env)


@pytest.mark.parametrize(
    ("variable", "choices"),
    [
        ("SCOPEGATE_TYP", "strict, lenient"),
        ("SCOPEGATE_DPOP", "off, allowed, required"),
        ("SCOPEGATE_INTROSPECTION_AUTH_METHOD", "client_secret_basic, client_secret_post"),
    ],
)
def test_choice_variables_share_one_rule(variable: str, choices: str) -> None:
    """Every choice variable takes any case and refuses anything else, listing the choices
    (never echoing the value)."""
    first = choices.split(", ")[0]
    settings = settings_from_env({**BASE, variable: first.upper()})
    field = variable.removeprefix("SCOPEGATE_").lower()
    assert getattr(settings, field) == first
    with pytest.raises(
        ConfigurationError, match=f"{variable} must be one of: {choices}$"
    ) as caught:
        settings_from_env({**BASE, variable: "bogus-value"})
    assert "bogus-value" not in str(caught.value)


def test_from_env_builds_a_jwt_verifier() -> None:
    """Without introspection variables from_env returns a JWTVerifier."""
    verifier = from_env({**BASE, "SCOPEGATE_JWKS_URI": "https://issuer.example/jwks"})
    assert isinstance(verifier, JWTVerifier)


def test_from_env_unsafe_jwks_uri_is_refused() -> None:
    """A non-https, non-loopback JWKS URI is refused at construction."""
    with pytest.raises(ConfigurationError):
        from_env({**BASE, "SCOPEGATE_JWKS_URI": "http://evil.example/jwks"})


def test_from_env_builds_a_hybrid_verifier() -> None:
    """With introspection variables from_env returns a HybridVerifier."""
    env = {
        **BASE,
        "SCOPEGATE_INTROSPECTION_URI": "https://issuer.example/introspect",
        "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
        "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "secret",
    }
    verifier = from_env(env)
    assert isinstance(verifier, HybridVerifier)
    assert isinstance(verifier.jwt, JWTVerifier)
    assert verifier.introspection is not None


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no argument the process environment is read."""
    for key, value in BASE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SCOPEGATE_INTROSPECTION_URI", raising=False)
    assert settings_from_env().issuer == "https://issuer.example"
    assert isinstance(from_env(), JWTVerifier)


def _jwks_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = httpx.Response(200, json={"keys": [RSA_KEY.jwk()]}).content
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def test_from_env_verifies_tokens_against_a_real_jwks_server() -> None:
    """The configured verifier fetches keys from a real JWKS endpoint and verifies."""
    with run_wsgi(_jwks_app) as base:
        verifier = from_env(
            {
                "SCOPEGATE_ISSUER": ISSUER,
                "SCOPEGATE_AUDIENCE": AUDIENCE,
                "SCOPEGATE_JWKS_URI": f"{base}/jwks.json",
                "SCOPEGATE_LEEWAY": "0",
            }
        )
        try:
            token = verifier.verify(mint(scope="items:read"))
        finally:
            verifier.close()  # type: ignore[attr-defined]
    assert token.has_scopes("items:read")
