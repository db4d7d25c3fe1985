"""AccessToken and the scope mapping."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import pytest

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._token import AccessToken, ScopeMapping


def make(token: str = "secret-token-value", **kw: Any) -> AccessToken:
    return AccessToken(
        subject="alice", client_id="app", scopes=frozenset({"a", "b"}), expires_at=10,
        claims=MappingProxyType({"sub": "alice"}), token=token, **kw,
    )


def test_repr_hides_raw_token() -> None:
    """The raw token never appears in repr, so logging the object is safe."""
    assert "secret-token-value" not in repr(make())


def test_has_scopes_all_of_and_any_of() -> None:
    """has_scopes is all-of, has_any_scope is any-of, both exact."""
    token = make()
    assert token.has_scopes("a", "b")
    assert not token.has_scopes("a", "c")
    assert token.has_any_scope("c", "b")
    assert not token.has_any_scope("A")


def test_equality_uses_token_and_claims() -> None:
    """Tokens compare by raw value and claims."""
    assert make() == make()
    assert make() != make(token="other")


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        pytest.param({"scope": "a b  c"}, {"a", "b", "c"}, id="space-delimited"),
        pytest.param({"scp": ["x", "y"]}, {"x", "y"}, id="scp-list"),
        pytest.param({"scp": "x y"}, {"x", "y"}, id="scp-string"),
        pytest.param({"permissions": ["read:items"]}, {"read:items"}, id="auth0-permissions"),
        pytest.param({}, set(), id="none"),
        pytest.param({"scope": "a", "scp": ["b"]}, {"a", "b"}, id="union"),
    ],
)
def test_default_scope_claims(claims: dict[str, Any], expected: set[str]) -> None:
    """Scopes come from scope, scp and permissions."""
    assert ScopeMapping().scopes(claims) == expected


def test_nested_claim_path() -> None:
    """A dotted path reads nested claims (Keycloak realm roles)."""
    mapping = ScopeMapping(["realm_access.roles"])
    assert mapping.scopes({"realm_access": {"roles": ["admin"]}}) == {"admin"}
    assert mapping.scopes({"realm_access": "not-an-object"}) == frozenset()


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"scope": ["a", "b"]}, id="scope-list"),
        pytest.param({"scope": 1}, id="scope-number"),
        pytest.param({"scp": [1, 2]}, id="scp-numbers"),
        pytest.param({"scp": {"a": 1}}, id="scp-object"),
        pytest.param({"permissions": True}, id="permissions-bool"),
    ],
)
def test_wrong_scope_types_are_invalid_tokens(claims: dict[str, Any]) -> None:
    """A scope claim of the wrong JSON type is a malformed token, not a crash."""
    with pytest.raises(InvalidTokenError):
        ScopeMapping().scopes(claims)


@pytest.mark.parametrize("path", ["", "a..b", ".a"])
def test_bad_claim_paths_are_configuration_errors(path: str) -> None:
    """Malformed claim paths are refused when the mapping is built."""
    with pytest.raises(ConfigurationError):
        ScopeMapping([path])
