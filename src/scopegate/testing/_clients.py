"""Framework test clients that send a bearer token with every request.

Each framework is imported inside its function, so importing :mod:`scopegate.testing`
(or loading the pytest plugin) never needs Starlette, Flask or Django installed.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["client_for", "django_client", "flask_client", "starlette_client"]


def _authorization(token: str | None) -> dict[str, str]:
    return {} if token is None else {"Authorization": f"Bearer {token}"}


def starlette_client(app: Any, token: str | None = None, **kwargs: Any) -> Any:
    """A ``starlette.testclient.TestClient`` for a Starlette or FastAPI app.

    Args:
        app: The ASGI application (any ASGI app works).
        token: Sent as ``Authorization: Bearer <token>`` on every request; ``None`` for
            an anonymous client.
        **kwargs: Passed to ``TestClient`` (``base_url``, ``raise_server_exceptions``...).
    """
    with warnings.catch_warnings():
        # Starlette >= 1.x prefers the httpx2 package for its test client and warns when
        # it falls back to httpx; that choice is the test environment's, not a defect.
        warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient`")
        from starlette.testclient import TestClient

    headers = {**_authorization(token), **kwargs.pop("headers", {})}
    return TestClient(app, headers=headers, **kwargs)


def flask_client(app: Any, token: str | None = None) -> Any:
    """``app.test_client()`` with the token in the default WSGI environ.

    Args:
        app: The Flask application.
        token: Sent as ``Authorization: Bearer <token>``; ``None`` for anonymous.
    """
    client = app.test_client()
    if token is not None:
        client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def django_client(token: str | None = None, **kwargs: Any) -> Any:
    """A ``django.test.Client`` sending the token (Django settings must be configured).

    Args:
        token: Sent as ``Authorization: Bearer <token>``; ``None`` for anonymous.
        **kwargs: Passed to ``django.test.Client``.
    """
    from django.test import Client

    headers = {**_authorization(token), **kwargs.pop("headers", {})}
    return Client(headers=headers, **kwargs)


def client_for(app: Any, token: str | None = None) -> Any:
    """Pick the right test client for *app*: Flask, Django (``None`` or a WSGIHandler) or ASGI.

    Args:
        app: A Flask app, a Starlette/FastAPI (or any ASGI) app, or ``None`` / a Django
            ``WSGIHandler`` for the configured Django project.
        token: Sent as ``Authorization: Bearer <token>``.

    Raises:
        TypeError: *app* is none of those.
    """
    if app is None:
        return django_client(token)
    module = type(app).__module__
    if module.startswith("flask") or hasattr(app, "test_client"):
        return flask_client(app, token)
    if module.startswith("django"):
        return django_client(token)
    if callable(app):
        return starlette_client(app, token)
    raise TypeError("client_for() needs a Flask, Django, Starlette/FastAPI or ASGI app")
