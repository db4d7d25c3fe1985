"""Bad input never yields a 500 (property-based, sans-io core)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scopegate.issuer import HTTPRequest
from tests.issuer.conftest import make_issuer

ISSUER = make_issuer(address_max_failures=10**9)
PATHS = [
    "/token",
    "/introspect",
    "/revoke",
    "/jwks.json",
    "/.well-known/oauth-authorization-server",
    "/other",
]
FIELDS = st.sampled_from(
    [
        "grant_type",
        "scope",
        "username",
        "password",
        "refresh_token",
        "client_id",
        "client_secret",
        "token",
        "token_type_hint",
        "x",
    ]
)
VALUES = st.one_of(
    st.sampled_from(
        [
            "client_credentials",
            "password",
            "refresh_token",
            "read",
            "svc",
            "alice",
            "alice-pw",
            "",
            "%ff",
            "a.b.c",
            "%00",
        ]
    ),
    st.text(max_size=40),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    pairs = draw(st.lists(st.tuples(FIELDS, VALUES), max_size=6))
    return "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(PATHS),
    method=st.sampled_from(["POST", "GET", "HEAD", "PUT"]),
    body=bodies(),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/x-www-form-urlencoded; charset=x",
            "application/json",
            "",
            "application/x-www-form-urlencoded;;;=",
        ]
    ),
    authorization=st.one_of(
        st.none(),
        st.text(max_size=60),
        st.sampled_from(["Basic c3ZjOnMzY3JldC1WYWx1ZV9_Lg==", "Basic !!", "Basic Og==", "Basic"]),
    ),
    query=st.sampled_from(["", "a=b", "%ff"]),
)
def test_no_input_yields_500(
    path: str, method: str, body: bytes, content_type: str, authorization: str | None, query: str
) -> None:
    """Arbitrary methods, bodies, content types and credentials never produce a 5xx."""
    headers = {"content-type": content_type}
    if authorization is not None:
        headers["authorization"] = authorization
    response = ISSUER.handle(HTTPRequest(method, path, query, headers, body, "192.0.2.9"))
    assert response.status in {200, 400, 401, 404, 405, 413, 429}
