"""A plain WSGI API (no framework) protected by scopegate's WSGI middleware.

Routes (see shared/contract/EXAMPLES.md): ``GET /public``, ``GET /me``, ``GET /items``
(``items:read``), ``POST /items`` (``items:write``) and ``GET /admin`` (``items:read`` and
``admin``).

Run it with ``python examples/serve.py wsgi --port 8000`` (waitress, multi-threaded)
after setting ``SCOPEGATE_ISSUER`` and ``SCOPEGATE_AUDIENCE``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from _common import (
    BAD_JSON,
    ITEMS,
    MAX_BODY,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    configured,
    dumps,
    me,
    parse_json_object,
)

from scopegate import current_token, require_scope
from scopegate.wsgi import BearerAuthMiddleware

Environ = dict[str, Any]
Handler = Callable[[Environ], tuple[int, Any]]

REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
}


def read_body(environ: Environ) -> bytes | None:
    """The request body, or ``None`` when it exceeds MAX_BODY."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > MAX_BODY:
        return None
    return environ["wsgi.input"].read(length) if length > 0 else b""


def public(environ: Environ) -> tuple[int, Any]:
    return 200, {"ok": True}


def get_me(environ: Environ) -> tuple[int, Any]:
    # The token is also in environ["scopegate.token"].
    return 200, me(current_token())


@require_scope("items:read")
def list_items(environ: Environ) -> tuple[int, Any]:
    return 200, ITEMS


@require_scope("items:write")
def create_item(environ: Environ) -> tuple[int, Any]:
    body = read_body(environ)
    if body is None:
        return 413, TOO_LARGE
    item = parse_json_object(body)
    if item is None:
        return 400, BAD_JSON
    return 201, item


@require_scope("items:read", "admin")
def admin(environ: Environ) -> tuple[int, Any]:
    return 200, {"admin": True, "sub": environ["scopegate.token"].subject}


ROUTES: dict[str, dict[str, Handler]] = {
    "/public": {"GET": public},
    "/me": {"GET": get_me},
    "/items": {"GET": list_items, "POST": create_item},
    "/admin": {"GET": admin},
}


def app(environ: Environ, start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The unprotected WSGI application."""
    headers: list[tuple[str, str]] = []
    methods = ROUTES.get(environ.get("PATH_INFO", ""))
    if methods is None:
        status, data = 404, NOT_FOUND
    elif (handler := methods.get(environ["REQUEST_METHOD"])) is None:
        status, data = 405, METHOD_NOT_ALLOWED
        headers.append(("Allow", ", ".join(sorted(methods))))
    else:
        # A BearerError raised by @require_scope is rendered by the middleware (401/403).
        status, data = handler(environ)
    body = dumps(data)
    headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    start_response(f"{status} {REASONS.get(status, 'Error')}", headers)
    return [body]


def create_app() -> BearerAuthMiddleware:
    """Build the protected WSGI app from the SCOPEGATE_* environment."""
    verifier, options = configured()
    return BearerAuthMiddleware(app, verifier=verifier, options=options)
