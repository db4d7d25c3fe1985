"""Pieces shared by the examples.

Data and JSON helpers for the framework-free examples (asgi_app.py, wsgi_app.py), each
of which shows its own middleware set-up; and :func:`with_metrics`, which serve.py
applies to every example (``SCOPEGATE_METRICS``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from scopegate import (
    AccessToken,
    ConfigurationError,
    GuardOptions,
    TokenVerifier,
    from_env,
    options_from_env,
)

#: The items served by GET /items.
ITEMS: list[dict[str, Any]] = [
    {"id": 1, "name": "hammer"},
    {"id": 2, "name": "screwdriver"},
]

#: Largest request body the examples read (POST /items).
MAX_BODY = 1 << 20

#: Paths that never need a token; the middleware ignores any Authorization header there.
PUBLIC_PATHS = ["/public"]


def configured() -> tuple[TokenVerifier, GuardOptions]:
    """The verifier and the middleware's options the ``SCOPEGATE_*`` environment variables
    describe: realm, ``SCOPEGATE_RESOURCE`` (RFC 9728), ``SCOPEGATE_DPOP`` (RFC 9449),
    ``SCOPEGATE_PUBLIC_URL``..., with the public paths excluded."""
    return from_env(os.environ), options_from_env(os.environ, exclude_paths=PUBLIC_PATHS)


async def aclose(verifier: TokenVerifier, options: GuardOptions) -> None:
    """Close the verifier's and the DPoP replay store's clients (on the serving loop)."""
    for resource in (verifier, options.dpop.replay if options.dpop else None):
        close = getattr(resource, "aclose", None)
        if close is not None:
            await close()


def dumps(data: Any) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(data, separators=(",", ":")).encode()


def me(token: AccessToken | None) -> dict[str, Any]:
    """The body of GET /me."""
    assert token is not None  # the middleware lets no anonymous request reach /me
    return {"sub": token.subject, "client_id": token.client_id, "scopes": sorted(token.scopes)}


def error(code: str, description: str) -> dict[str, str]:
    """A JSON error body shaped like the library's."""
    return {"error": code, "error_description": description}


NOT_FOUND = error("not_found", "No such resource")
METHOD_NOT_ALLOWED = error("method_not_allowed", "Method not allowed")
BAD_JSON = error("invalid_request", "The body must be a JSON object")
TOO_LARGE = error("invalid_request", "The body is too large")


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    """The JSON object in *body*, or ``None`` when it is not one."""
    try:
        data = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        return None
    except RecursionError:
        return None
    return data if isinstance(data, dict) else None


def with_metrics(app: Any, kind: str) -> Any:
    """*app*, serving Prometheus metrics at ``GET /metrics`` when ``SCOPEGATE_METRICS`` is
    ``prometheus`` (*kind*: ``"asgi"`` or ``"wsgi"``).

    The metrics are mounted in front of the app, so a scrape needs no token. Unset (or
    empty) means no metrics; any other value stops the example at start-up.

    Raises:
        ConfigurationError: ``SCOPEGATE_METRICS`` has another value.
    """
    value = os.environ.get("SCOPEGATE_METRICS", "")
    if not value:
        return app
    if value != "prometheus":
        raise ConfigurationError(f"SCOPEGATE_METRICS must be 'prometheus' or unset, not {value!r}")
    import scopegate.prometheus

    scopegate.prometheus.instrument()
    if kind == "asgi":
        return scopegate.prometheus.mount_asgi(app)
    return scopegate.prometheus.mount_wsgi(app)
