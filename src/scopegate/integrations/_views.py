"""What the Flask and Django integrations share: protecting a view.

Both offer the same decorator trio (``require_scope``, ``require_any_scope``,
``require_token``), run a protected view with its verified token as
:func:`scopegate.current_token`, and serve the RFC 9728 metadata document from a URL rule
of their own. The rules of those steps live here once (the scopes requirement in
:mod:`scopegate._scopes`, with the core decorators); each integration keeps only what
its framework decides (the request view, the response class, where the token is kept).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from scopegate._context import reset_current_token, set_current_token
from scopegate._errors import HTTPResponse
from scopegate._guard import BearerGuard, RequestView
from scopegate._scopes import Requirement
from scopegate._token import AccessToken

__all__ = [
    "CurrentToken",
    "framework_response",
    "metadata_document",
    "token_decorator",
]

T = TypeVar("T")


def token_decorator(
    decorator: Callable[[Requirement], Callable[[T], T]],
    view: T | None,
    acr_values: Iterable[str] | None,
    max_age: int | None,
) -> T | Callable[[T], T]:
    """``require_token`` used bare (``@require_token``: *view*) or called with step-up
    requirements (``@require_token(max_age=300)``), built with the integration's
    *decorator*."""
    if view is not None:
        return decorator(Requirement())(view)
    return decorator(Requirement.of("require_token", (), acr_values=acr_values, max_age=max_age))


class CurrentToken:
    """``with CurrentToken(token):`` the view runs with *token* as
    :func:`scopegate.current_token`, reset afterwards (a reused thread or task never sees
    a stale token)."""

    __slots__ = ("_marker", "_token")

    def __init__(self, token: AccessToken | None) -> None:
        self._token = token

    def __enter__(self) -> None:
        self._marker = set_current_token(self._token)

    def __exit__(self, *exc_info: object) -> None:
        reset_current_token(self._marker)


def metadata_document(guard: BearerGuard, request: RequestView) -> HTTPResponse | None:
    """The guard's RFC 9728 document for *request*, or ``None`` (a 404) when its raw path
    is not one of the resource's well-known paths (under a ``SCRIPT_NAME`` prefix it is
    not: that document is not ours to answer)."""
    resource = guard.options.resource
    if resource is None or request.path not in resource.paths:
        return None
    outcome = guard.decide(request)
    assert isinstance(outcome, HTTPResponse)  # the guard's document for this path
    return outcome


class _Headers(Protocol):
    def __setitem__(self, name: str, value: str, /) -> None: ...


class _Response(Protocol):
    @property
    def headers(self) -> _Headers: ...


_R = TypeVar("_R", bound=_Response)


def framework_response(response_class: Callable[..., _R], rendered: HTTPResponse) -> _R:
    """*rendered* as a response of the framework's *response_class* (Flask's
    ``Response``, Django's ``HttpResponse``): its status, body and headers, except
    ``Content-Length``, which the framework sets from the body it sends."""
    response = response_class(rendered.body, status=rendered.status)
    for name, value in rendered.headers:
        if name != "content-length":
            response.headers[name] = value
    return response
