"""Property tests for the lead's core: scope reading and error rendering."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scopegate._errors import (
    BearerError,
    InsufficientScopeError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    ServiceUnavailableError,
)
from scopegate._token import ScopeMapping
from tests.fuzz.profile import attempt, count, fuzz_settings
from tests.fuzz.strategies import json_values

# RFC 6750 §3: what a challenge may carry once quoted (no CR/LF, latin-1, printable).
_SAFE = set(map(chr, range(0x20, 0x7F)))
_MAPPING = ScopeMapping(["scope", "scp", "permissions", "realm_access.roles"])


@fuzz_settings(dev=300, ci=2000)
@given(
    claims=st.dictionaries(
        st.sampled_from(["scope", "scp", "permissions", "realm_access", "x"]), json_values
    )
)
def test_scope_mapping_total(claims: dict[str, Any]) -> None:
    """Any claim set yields a set of scope tokens or invalid_token, nothing else."""
    count("core.scope_mapping")
    scopes, exc = attempt(lambda: _MAPPING.scopes(claims), InvalidTokenError)
    if exc is not None:
        assert isinstance(exc, InvalidTokenError)
        assert exc.status == 401
    else:
        assert scopes is not None
        assert all(s and " " not in s for s in scopes)


@fuzz_settings(dev=300, ci=2000)
@given(
    cls=st.sampled_from(
        [
            BearerError,
            MissingTokenError,
            InvalidRequestError,
            InvalidTokenError,
            ServiceUnavailableError,
        ]
    ),
    description=st.text(max_size=80),
    reason=st.text(max_size=40),
)
def test_error_rendering_never_reflects(
    cls: type[BearerError], description: str, reason: str
) -> None:
    """Whatever text reaches an error, its response headers stay printable ASCII and JSON parses."""
    count("core.error_rendering")
    response = cls(description, reason=reason).to_response("api")
    for name, value in response.headers:
        assert set(name) <= _SAFE
        assert set(value) <= _SAFE
    body = json.loads(response.body)
    assert set(body["error_description"]) <= _SAFE - {'"', "\\"}


@fuzz_settings(dev=200, ci=1500)
@given(required=st.lists(st.text(max_size=20), max_size=4), description=st.text(max_size=80))
def test_insufficient_scope_rendering(required: list[str], description: str) -> None:
    """Scope names outside RFC 6749 §3.3 never reach the 403 challenge."""
    count("core.insufficient_scope")
    response = InsufficientScopeError(required, description).to_response("api")
    assert response.status == 403
    for _, value in response.headers:
        assert set(value) <= _SAFE
