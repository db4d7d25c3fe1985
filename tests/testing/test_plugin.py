"""The pytest plugin, loaded through its entry point in a user's own pytest session."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from scopegate.testing import client_for, flask_client


def run_session(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run pytest in a fresh directory holding *files*; the plugin comes from the entry point."""
    for name, code in files.items():
        (tmp_path / name).write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


FIXTURE_TESTS = """
    import httpx
    import pytest

    from scopegate._config import from_env
    from scopegate._errors import InvalidTokenError


    def test_make_token_and_verifier(make_token, token_factory, scopegate_verifier):
        assert scopegate_verifier.verify(make_token(["a"], sub="alice")).subject == "alice"
        assert scopegate_verifier.verify(token_factory("b")).scopes == {"b"}
        with pytest.raises(InvalidTokenError):
            scopegate_verifier.verify(make_token(expires_in=-3600))


    def test_issuer_is_fresh_per_test_but_key_is_shared(scopegate_issuer, scopegate_signing_key):
        assert scopegate_issuer.key is scopegate_signing_key
        assert scopegate_issuer.extra_keys == []


    def test_server_fixture(scopegate_issuer_server):
        meta = httpx.get(scopegate_issuer_server.issuer + "/.well-known/openid-configuration")
        assert meta.json()["jwks_uri"] == scopegate_issuer_server.jwks_uri


    def test_env_fixture_feeds_from_env(scopegate_env):
        verifier = from_env()
        try:
            token = verifier.verify(scopegate_env.make_token(["items:read"]))
        finally:
            verifier.close()
        assert token.has_scopes("items:read")


    def test_client_factory_anonymous_and_explicit_token(scopegate_client, make_token):
        async def app(scope, receive, send):
            headers = dict(scope["headers"])
            body = headers.get(b"authorization", b"-")
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})

        assert scopegate_client(app, anonymous=True).get("/").text == "-"
        assert scopegate_client(app, token="abc").get("/").text == "Bearer abc"
        assert scopegate_client(app, ["x"]).get("/").text.startswith("Bearer ey")
"""


def test_fixtures_work_in_a_user_session(tmp_path: Path) -> None:
    """Every fixture is available through the entry point and behaves as documented."""
    result = run_session(tmp_path, {"test_fixtures.py": FIXTURE_TESTS})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 passed" in result.stdout


DJANGO_CONFTEST = """
    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="test-only",
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF="urls",
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        SCOPEGATE={},
    )
    django.setup()
"""

DJANGO_URLS = """
    from django.http import JsonResponse
    from django.urls import path

    from scopegate.integrations.django import require_scope


    @require_scope("items:read")
    def items(request):
        return JsonResponse({"owner": request.access_token.subject})


    urlpatterns = [path("items", items)]
"""

DJANGO_TESTS = """
    from django.test import override_settings


    def test_django_items(scopegate_client, scopegate_verifier):
        with override_settings(SCOPEGATE={"VERIFIER": scopegate_verifier}):
            client = scopegate_client(scopes=["items:read"], sub="carol")
            assert client.get("/items").json() == {"owner": "carol"}
            assert scopegate_client(scopes=["other"]).get("/items").status_code == 403
            assert scopegate_client(anonymous=True).get("/items").status_code == 401
"""


def test_django_client_in_a_user_session(tmp_path: Path) -> None:
    """scopegate_client() with no app gives a Django test client carrying the token."""
    result = run_session(
        tmp_path,
        {"conftest.py": DJANGO_CONFTEST, "urls.py": DJANGO_URLS, "test_django.py": DJANGO_TESTS},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_flask_client_helper_sets_the_header() -> None:
    """flask_client() puts the bearer token into every request's environ."""
    from flask import Flask, request

    app = Flask(__name__)

    @app.get("/")
    def echo() -> str:
        return request.headers.get("Authorization", "-")

    assert flask_client(app, "abc").get("/").text == "Bearer abc"
    assert flask_client(app).get("/").text == "-"
    assert client_for(app, "xyz").get("/").text == "Bearer xyz"


def test_client_for_rejects_unknown_apps() -> None:
    """client_for() explains what it accepts instead of guessing."""
    import pytest

    with pytest.raises(TypeError):
        client_for(42, "abc")
