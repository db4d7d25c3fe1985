"""Flask extension fast path (one proxy hop, HTTP_AUTHORIZATION read directly), real waitress."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask, abort

from scopegate.integrations.flask import ScopeGate, current_token, get_current_token, require_scope
from tests.core.tokens import mint, static_verifier
from tests.servers import run_wsgi

# Minted at import: valid for a day, however late in the session the tests run.
TOKEN = mint(scope="items:read items:write", exp=int(time.time()) + 86400)


def build_app() -> Flask:
    app = Flask(__name__)
    ScopeGate(app, verifier=static_verifier())

    @app.route("/items", methods=["GET", "PUT"])
    @require_scope("items:read")
    def items() -> Any:
        return {"sub": current_token.subject}

    @app.get("/negotiated")
    @require_scope("items:read")
    def negotiated() -> Any:
        return {"sub": current_token.subject}, 200, {"Vary": "Accept"}

    @app.get("/missing/<int:item>")
    @require_scope("items:read")
    def missing(item: int) -> Any:
        abort(404)

    @app.get("/stacked")
    @require_scope("items:write")
    @require_scope("items:read")
    async def stacked() -> Any:
        return "both"

    @app.get("/public")
    def public() -> Any:
        return "open"

    @app.after_request
    def seen_after(response: Any) -> Any:
        # After the view, the token comes from g (the view's context variable is reset).
        token = get_current_token()
        response.headers["X-Seen-Sub"] = token.subject if token is not None else "-"
        return response

    return app


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    """A JWT-protected Flask app served by waitress."""
    with run_wsgi(build_app()) as url:
        yield url


def test_repeated_token_is_accepted(base_url: str) -> None:
    """The same real JWT works on every request (memo and verified-token cache)."""
    for _ in range(3):
        response = httpx.get(
            base_url + "/items", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )
        assert response.json() == {"sub": "alice"}
        assert response.headers["vary"] == "Authorization"


def test_header_and_query_token_is_400(base_url: str) -> None:
    """A token in the header and in the query is invalid_request, even for a known header."""
    response = httpx.get(
        base_url + f"/items?access_token={TOKEN}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_header_and_form_token_on_put_is_400(base_url: str) -> None:
    """A form body repeating the header's token is read and refused on PUT too."""
    response = httpx.put(
        base_url + "/items",
        data={"access_token": TOKEN},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 400


def test_existing_vary_is_extended(base_url: str) -> None:
    """A view's own Vary is kept and Authorization appended."""
    response = httpx.get(
        base_url + "/negotiated", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.headers["vary"] == "Accept, Authorization"


def test_unauthenticated_response_varies_too(base_url: str) -> None:
    """A 401 from a decorated view also carries Vary: Authorization."""
    response = httpx.get(base_url + "/items", timeout=10)
    assert response.status_code == 401
    assert "Authorization" in response.headers["vary"]


def test_get_current_token_in_app_context_without_request() -> None:
    """Inside an app context but before any decorator ran, the token is None."""
    app = build_app()
    with app.app_context():
        assert get_current_token() is None


def test_error_raised_by_a_decorated_view_varies(base_url: str) -> None:
    """abort(404) inside a decorated view: the page was served for this token, so it varies."""
    response = httpx.get(
        base_url + "/missing/7", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 404
    assert response.headers["vary"] == "Authorization"


def test_stacked_async_decorators_name_authorization_once(base_url: str) -> None:
    """Two decorators on an async view: one Vary value, Authorization once."""
    response = httpx.get(
        base_url + "/stacked", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.text == "both"
    assert response.headers.get_list("vary") == ["Authorization"]


def test_undecorated_view_does_not_vary(base_url: str) -> None:
    """A view without a decorator never read the token: no Vary of ours."""
    response = httpx.get(
        base_url + "/public", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.text == "open"
    assert "vary" not in response.headers
    assert response.headers["x-seen-sub"] == "-"


def test_token_is_known_after_the_view(base_url: str) -> None:
    """after_request hooks still see the decorator's token (kept on g)."""
    response = httpx.get(
        base_url + "/items", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.headers["x-seen-sub"] == "alice"
