"""require_scope / require_any_scope / current_token on sync and async callables."""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from scopegate._context import current_token, reset_current_token, set_current_token
from scopegate._errors import ConfigurationError, InsufficientScopeError, MissingTokenError
from scopegate._scopes import check_scopes, require_any_scope, require_scope
from scopegate._token import AccessToken
from tests.core.test_attacks_support import make_token

READER = make_token("r", "items:read")
ADMIN = make_token("a", "items:read", "admin")


def run_with(token: AccessToken | None, fn: Callable[[], Any]) -> Any:
    """Call fn with *token* as the current token."""
    marker = set_current_token(token)
    try:
        return fn()
    finally:
        reset_current_token(marker)


@require_scope("items:read", "admin")
def admin_view(x: int) -> int:
    return x + 1


@require_any_scope("admin", "items:read")
def any_view() -> str:
    return "ok"


@require_scope("items:read")
async def async_view() -> str:
    return "async"


def test_all_of_sync() -> None:
    """require_scope needs every scope (F-4) and preserves the return value."""
    assert run_with(ADMIN, lambda: admin_view(1)) == 2
    with pytest.raises(InsufficientScopeError) as info:
        run_with(READER, lambda: admin_view(1))
    assert info.value.required == ("items:read", "admin")
    assert 'scope="items:read admin"' in info.value.challenge("api")


def test_any_of_sync() -> None:
    """require_any_scope needs one of the scopes."""
    assert run_with(READER, any_view) == "ok"
    with pytest.raises(InsufficientScopeError):
        run_with(make_token("w", "items:write"), any_view)


def test_no_token_is_missing_token() -> None:
    """Without a token the decorators raise MissingTokenError (401, no error code)."""
    with pytest.raises(MissingTokenError):
        admin_view(1)
    with pytest.raises(MissingTokenError):
        any_view()


@pytest.mark.parametrize(
    "granted",
    [
        pytest.param(("ITEMS:READ",), id="uppercase"),
        pytest.param(("items:readonly",), id="prefix"),
        pytest.param(("items",), id="substring"),
        pytest.param(("items:read:all",), id="longer"),
        pytest.param((), id="none"),
    ],
)
def test_matching_is_exact(granted: tuple[str, ...]) -> None:
    """Scopes match exactly and case-sensitively (F-2, F-3, F-5)."""
    with pytest.raises(InsufficientScopeError):
        check_scopes(make_token("t", *granted), ("items:read",))


@pytest.mark.anyio
async def test_async_function() -> None:
    """The decorator keeps coroutine functions async and checks at call time."""
    assert inspect.iscoroutinefunction(async_view)
    marker = set_current_token(READER)
    try:
        assert await async_view() == "async"
    finally:
        reset_current_token(marker)
    with pytest.raises(MissingTokenError):
        await async_view()


def test_metadata_is_preserved() -> None:
    """functools.wraps keeps the name and docstring."""
    assert admin_view.__name__ == "admin_view"
    assert async_view.__wrapped__.__name__ == "async_view"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "scopes",
    [
        pytest.param((), id="none"),
        pytest.param(("items:read admin",), id="space"),
        pytest.param(("",), id="empty"),
        pytest.param(('a"b',), id="quote"),
        pytest.param((3,), id="not-a-string"),
    ],
)
def test_bad_scopes_fail_at_decoration(scopes: tuple[Any, ...]) -> None:
    """Malformed scope arguments are a ConfigurationError when decorating."""
    with pytest.raises(ConfigurationError):
        require_scope(*scopes)
    with pytest.raises(ConfigurationError):
        require_any_scope(*scopes)


@pytest.mark.anyio
async def test_context_reaches_anyio_worker_threads() -> None:
    """current_token() propagates into anyio.to_thread.run_sync for sync handlers."""
    marker = set_current_token(ADMIN)
    try:
        assert await anyio.to_thread.run_sync(admin_view, 1) == 2
        assert await anyio.to_thread.run_sync(current_token) is ADMIN
    finally:
        reset_current_token(marker)


@pytest.mark.anyio
async def test_context_reaches_starlette_threadpool() -> None:
    """Under starlette.concurrency.run_in_threadpool sync endpoints see the token too."""
    from starlette.concurrency import run_in_threadpool

    marker = set_current_token(READER)
    try:
        assert await run_in_threadpool(any_view) == "ok"
        with pytest.raises(InsufficientScopeError):
            await run_in_threadpool(admin_view, 1)
    finally:
        reset_current_token(marker)


def test_current_token_isolated_per_context() -> None:
    """A token set in one context is invisible in a fresh one."""
    marker = set_current_token(READER)
    try:
        assert contextvars.Context().run(current_token) is None
    finally:
        reset_current_token(marker)
    assert current_token() is None


# -- reading scope claims ------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"scope": "a b"}, {"a", "b"}),
        ({"scope": " a  b "}, {"a", "b"}),  # empty tokens from extra spaces are dropped
        ({"scope": ""}, set()),
        ({}, set()),
        ({"scope": "a", "scp": ["b", "c d"]}, {"a", "b"}),  # a list item with a space: none
    ],
)
def test_scope_claims_are_read(claims: dict[str, Any], expected: set[str]) -> None:
    from scopegate._token import ScopeMapping

    assert ScopeMapping(["scope", "scp"]).scopes(claims) == expected


@pytest.mark.parametrize(
    "claims",
    [
        {"scope": 'a "b"'},
        {"scope": "a\\b"},
        {"scope": "caf\u00e9"},
        {"scope": "a\tb"},
        {"scp": ["ok", 'no"']},
        {"scope": ["a"]},  # scope itself must be a string (RFC 8693 §4.2)
        {"scp": 3},
    ],
)
def test_bad_scope_claims_are_refused(claims: dict[str, Any]) -> None:
    """RFC 6749 §3.3 characters only, for JWTs and introspection answers alike."""
    from scopegate._errors import InvalidTokenError
    from scopegate._token import ScopeMapping

    with pytest.raises(InvalidTokenError) as info:
        ScopeMapping(["scope", "scp"]).scopes(claims)
    assert info.value.reason == "bad_scope_claim"


def test_large_scope_strings_are_not_memoised() -> None:
    """A set of hundreds of scopes is not pinned in the verifier's memo (memory churn)."""
    from scopegate.testing import LocalIssuer

    issuer = LocalIssuer()
    verifier = issuer.verifier(cache_verified=False)
    small = verifier.verify(issuer.make_token("a b"))
    assert verifier.verify(issuer.make_token("a b")).scopes is small.scopes
    many = " ".join(f"scope{i}" for i in range(300))
    first = verifier.verify(issuer.make_token(many))
    second = verifier.verify(issuer.make_token(many))
    assert first.scopes == second.scopes
    assert first.scopes is not second.scopes
