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
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar, cast

from scopegate import _observe
from scopegate._context import current_token
from scopegate._errors import (
    BearerError,
    ConfigurationError,
    InsufficientScopeError,
    InsufficientUserAuthenticationError,
    MissingTokenError,
)
from scopegate._jose import is_numeric_date, is_scope_token
from scopegate._settings import boolean, whole
from scopegate._token import AccessToken

__all__ = [
    "Requirement",
    "check_scopes",
    "require_any_scope",
    "require_scope",
    "scopes_requirement",
    "validated_scopes",
]

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


def _checked(
    name: str, scopes: Any, any_of: Any, acr_values: Any, max_age: Any
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """*scopes* and *acr_values* as tuples, once every value of a requirement is usable."""
    for what, values in (("scopes", scopes), ("acr_values", acr_values)):
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise ConfigurationError(f"{name}(): {what} must be a list of values, not a str")
    checked = tuple(scopes)
    for scope in checked:
        if not is_scope_token(scope):
            raise ConfigurationError(f"{name}(): {scope!r} is not a single RFC 6749 scope-token")
    acrs = tuple(acr_values)
    for acr in acrs:
        # RFC 9470 §3: acr_values is a space-separated list in a quoted-string.
        if not is_scope_token(acr):
            raise ConfigurationError(f"{name}(): {acr!r} is not a usable acr value")
    boolean("any_of", any_of)
    if max_age is not None:
        whole("max_age", max_age)
    return checked, acrs


@dataclass(frozen=True, slots=True)
class Requirement:
    """What a route requires of the token: scopes and authentication strength.

    The one definition of a route's rule: every adapter's decorator, dependency or
    mixin builds a ``Requirement`` once (at decoration time) and calls :meth:`check`
    per request. Building one checks every value.

    Attributes:
        scopes: Scope names, matched exactly (RFC 6749 §3.3).
        any_of: ``False``: every scope is needed; ``True``: one of them suffices.
        acr_values: Authentication context classes accepted (RFC 9470): the token's
            ``acr`` must be one of them. Empty: any.
        max_age: Largest age, in seconds, of the user's authentication (``now -
            auth_time``, RFC 9470). ``None``: any.

    Raises:
        ConfigurationError: A scope or acr value that is not a single RFC 6749
            scope-token (or a lone ``str`` where a list belongs), a ``max_age`` that is
            not a whole number of seconds.

    Example:
        >>> payments = Requirement(("payments:write",), acr_values=("urn:mfa",), max_age=300)
        >>> payments.step_up
        True
    """

    scopes: tuple[str, ...] = ()
    any_of: bool = False
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None

    def __post_init__(self) -> None:
        scopes, acrs = _checked(
            "Requirement", self.scopes, self.any_of, self.acr_values, self.max_age
        )
        object.__setattr__(self, "scopes", scopes)
        object.__setattr__(self, "acr_values", acrs)

    @classmethod
    def of(
        cls,
        name: str,
        scopes: Iterable[str],
        *,
        any_of: bool = False,
        acr_values: Iterable[str] | None = None,
        max_age: int | None = None,
    ) -> Requirement:
        """A checked requirement for the decorator *name* (errors name it).

        Raises:
            ConfigurationError: A malformed scope, acr value or max_age.
        """
        checked, acrs = _checked(name, scopes, any_of, acr_values or (), max_age)
        return cls(checked, any_of, acrs, max_age)

    @property
    def step_up(self) -> bool:
        """Whether authentication strength is required (``acr_values`` or ``max_age``)."""
        return bool(self.acr_values) or self.max_age is not None

    def check(self, token: AccessToken | None) -> AccessToken:
        """Return *token* when it meets the requirement, else raise the matching error
        (logged on ``scopegate.rejections`` and reported as a ``decision`` record of
        stage ``endpoint``).

        Authentication strength is judged before scopes: a stronger login may also bring
        the scopes, while the scopes cannot make up for a weak login.

        Raises:
            MissingTokenError: *token* is ``None`` (401, naming the scopes).
            InsufficientUserAuthenticationError: ``acr`` or ``auth_time`` falls short
                (401 with ``acr_values`` / ``max_age``, RFC 9470 §3).
            InsufficientScopeError: The scopes are not granted (403, RFC 6750 §3.1).
        """
        try:
            return self._check(token)
        except BearerError as error:
            if token is not None and token.jkt is not None:
                # A DPoP-bound token only passes the guard with its proof: the request
                # used DPoP, so the error goes in the DPoP challenge (RFC 9449 §7.1).
                error.scheme = "DPoP"
            _observe.refused(error, token)
            raise

    def _check(self, token: AccessToken | None) -> AccessToken:
        if token is None:
            raise MissingTokenError(scopes=self.scopes)
        if self.acr_values or self.max_age is not None:
            claims = token.claims
            acr = claims.get("acr")
            auth_time: Any = claims.get("auth_time")
            if (self.acr_values and acr not in self.acr_values) or (
                self.max_age is not None
                and (not is_numeric_date(auth_time) or time.time() - auth_time > self.max_age)
            ):
                raise InsufficientUserAuthenticationError(
                    acr_values=self.acr_values, max_age=self.max_age
                )
        if self.scopes:
            scopes = token.scopes
            if self.any_of:
                granted = not scopes.isdisjoint(self.scopes)
            else:
                granted = scopes.issuperset(self.scopes)
            if not granted:
                raise InsufficientScopeError(self.scopes, reason="insufficient_scope")
        return token


def check_scopes(
    token: AccessToken | None, required: tuple[str, ...], *, any_of: bool = False
) -> AccessToken:
    """Return *token* when it grants *required* (see :meth:`Requirement.check`)."""
    return Requirement(required, any_of).check(token)


def scopes_requirement(
    scopes: tuple[str, ...],
    *,
    any_of: bool = False,
    acr_values: Iterable[str] | None = None,
    max_age: int | None = None,
) -> Requirement:
    """The requirement ``require_scope(*scopes)`` describes (``require_any_scope`` with
    *any_of*): these decorators and their Flask and Django twins build theirs with it.

    Raises:
        ConfigurationError: No scope, or a malformed scope or setting (the message names
            the decorator).
    """
    name = "require_any_scope" if any_of else "require_scope"
    return Requirement.of(
        name,
        validated_scopes(scopes, name),
        any_of=any_of,
        acr_values=acr_values,
        max_age=max_age,
    )


def _decorator(requirement: Requirement) -> Callable[[Callable[P, R]], Callable[P, R]]:
    check = requirement.check

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(fn):
            async_fn = cast("Callable[P, Awaitable[Any]]", fn)

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                check(current_token())
                return await async_fn(*args, **kwargs)

            return cast("Callable[P, R]", async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            check(current_token())
            return fn(*args, **kwargs)

        return wrapper

    return decorate


def require_scope(
    *scopes: str, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a sync or async handler so it runs only if the token has ALL *scopes*.

    Args:
        *scopes: One or more scope names, each a single scope-token (no spaces).
        acr_values: Step-up (RFC 9470): the user must have authenticated with one of
            these ``acr`` values.
        max_age: Step-up (RFC 9470): the user's authentication (``auth_time``) must be
            at most this many seconds old.

    Raises:
        ConfigurationError: At decoration time, for no scopes or a malformed setting.
        MissingTokenError: At call time, when the request has no token (401).
        InsufficientUserAuthenticationError: At call time, when the authentication is
            too weak or too old (401 ``insufficient_user_authentication``).
        InsufficientScopeError: At call time, when a scope is missing (403).

    Example:
        >>> @require_scope("items:read", "admin")
        ... def admin_view(environ, start_response): ...
    """
    return _decorator(scopes_requirement(scopes, acr_values=acr_values, max_age=max_age))


def require_any_scope(
    *scopes: str, acr_values: Iterable[str] | None = None, max_age: int | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a handler so it runs if the token has AT LEAST ONE of *scopes*.

    On failure the 403 challenge lists every candidate in its ``scope`` attribute.

    Args:
        *scopes: One or more scope names, each a single scope-token (no spaces).
        acr_values: Step-up requirement, as for :func:`require_scope`.
        max_age: Step-up requirement, as for :func:`require_scope`.

    Raises:
        ConfigurationError: At decoration time, for no scopes or a malformed scope.
        MissingTokenError: At call time, when the request has no token (401).
        InsufficientScopeError: At call time, when no candidate is granted (403).
    """
    return _decorator(
        scopes_requirement(scopes, any_of=True, acr_values=acr_values, max_age=max_age)
    )
