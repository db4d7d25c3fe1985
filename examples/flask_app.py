"""The examples contract as a Flask application (application-factory style).

Run it with ``python examples/serve.py flask --port 8000`` after setting
``SCOPEGATE_ISSUER`` and ``SCOPEGATE_AUDIENCE`` (see examples/README.md).

The ``ScopeGate`` extension reads the ``SCOPEGATE_*`` settings (``app.config``, then the
environment: the verifier, and the options with ``SCOPEGATE_RESOURCE`` and
``SCOPEGATE_DPOP``) and renders RFC 6750 errors; each view states what it needs with a
decorator, so views without one (``/public``) never look at ``Authorization``. With a
resource, ``init_app`` also routes the RFC 9728 metadata.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, request

from scopegate.integrations.flask import ScopeGate, current_token, require_scope, require_token

ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]

gate = ScopeGate()
api = Blueprint("api", __name__)


@api.get("/public")
def public() -> dict[str, Any]:
    return {"ok": True}


@api.get("/me")
@require_token
def me() -> dict[str, Any]:
    return {
        "sub": current_token.subject,
        "client_id": current_token.client_id,
        "scopes": sorted(current_token.scopes),
    }


@api.get("/items")
@require_scope("items:read")
def list_items() -> Any:
    return ITEMS


@api.post("/items")
@require_scope("items:write")
def create_item() -> Any:
    item = request.get_json(silent=True)
    if not isinstance(item, dict):
        return {
            "error": "invalid_request",
            "error_description": "The body must be a JSON object",
        }, 400
    return item, 201


@api.get("/admin")
@require_scope("items:read", "admin")
def admin() -> dict[str, Any]:
    return {"admin": True, "sub": current_token.subject}


def create_app() -> Flask:
    """Build the protected app; settings come from SCOPEGATE_* (config, then environment)."""
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    gate.init_app(app)
    app.register_blueprint(api)
    return app
