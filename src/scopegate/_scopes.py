"""Scope decorators for handlers: ``require_scope`` (all-of) and ``require_any_scope``.

Scopes are matched exactly and case-sensitively (RFC 6749 §3.3): ``read`` is not granted by
``READ``, ``readonly`` or ``read:all``. The decorators read the token that the middleware put
in the request context (:func:`scopegate.current_token`), so they work on plain ASGI and
WSGI handlers, on framework endpoints, and on sync functions run in a thread pool.

A failure raises a :class:`~scopegate.BearerError` that the middleware (or integration)
renders: no token gives 401 (RFC 6750 §3.1, no ``error``), a token without the scopes gives
403 ``insufficient_scope`` with the required scopes in the challenge's ``scope`` attribute.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast

from scopegate._context import current_token
from scopegate._errors import ConfigurationError, InsufficientScopeError, MissingTokenError
from scopegate._jose import is_scope_token
from scopegate._token import AccessToken

__all__ = ["check_scopes", "require_any_scope", "require_scope", "validated_scopes"]

P = ParamSpec("P")
R = TypeVar("R")


def validated_scopes(scopes: tuple[str, ...], name: str) -> tuple[str, ...]:
    """*scopes* if each is one RFC 6749 §3.3 scope-token (a decorator's arguments).

    Raises:
        ConfigurationError: No scope, or one that is not a single scope-token (a space
            would silently turn one scope into two).
    """
    if not scopes:
        raise ConfigurationError(f"{name}() needs at least one scope")
    for scope in scopes:
        if not is_scope_token(scope):
            raise ConfigurationError(
                f"{name}(): {scope!r} is not a single RFC 6749 scope-token; "
                "pass several scopes as separate arguments"
            )
    return scopes


def check_scopes(
    token: AccessToken | None, required: tuple[str, ...], *, any_of: bool = False
) -> AccessToken:
    """Return *token* when it grants *required*, else raise the matching error.

    Args:
        token: The verified token, or ``None`` for an anonymous request.
        required: Scope names, matched exactly.
        any_of: ``False``: every scope is needed; ``True``: one of them suffices.

    Raises:
        MissingTokenError: *token* is ``None`` (401).
        InsufficientScopeError: The scopes are not granted (403, RFC 6750 §3.1).
    """
    if token is None:
        raise MissingTokenError(scopes=required)
    granted = token.has_any_scope(*required) if any_of else token.has_scopes(*required)
    if not granted:
        error = InsufficientScopeError(required, reason="insufficient_scope")
        if token.jkt is not None:
            # A DPoP-bound token only passes the guard with its proof: the request used
            # DPoP, so the error goes in the DPoP challenge (RFC 9449 §7.1).
            error.scheme = "DPoP"
        raise error
    return token


def _decorator(
    required: tuple[str, ...], any_of: bool
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            async_fn = cast("Callable[P, Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                check_scopes(current_token(), required, any_of=any_of)
                return await async_fn(*args, **kwargs)

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            check_scopes(current_token(), required, any_of=any_of)
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def require_scope(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async handler so it runs only if the token has ALL *scopes*.

    Args:
        *scopes: One or more scope names, each a single scope-token (no spaces).

    Raises:
        ConfigurationError: At decoration time, for no scopes or a malformed scope.
        MissingTokenError: At call time, when the request has no token (401).
        InsufficientScopeError: At call time, when a scope is missing (403).

    Example:
        >>> @require_scope("items:read", "admin")
        ... def admin_view(environ, start_response): ...
    """
    return _decorator(validated_scopes(scopes, "require_scope"), any_of=False)


def require_any_scope(*scopes: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a handler so it runs if the token has AT LEAST ONE of *scopes*.

    On failure the 403 challenge lists every candidate in its ``scope`` attribute.

    Args:
        *scopes: One or more scope names, each a single scope-token (no spaces).

    Raises:
        ConfigurationError: At decoration time, for no scopes or a malformed scope.
        MissingTokenError: At call time, when the request has no token (401).
        InsufficientScopeError: At call time, when no candidate is granted (403).
    """
    return _decorator(validated_scopes(scopes, "require_any_scope"), any_of=True)
