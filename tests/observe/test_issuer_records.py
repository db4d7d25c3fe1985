"""The companion issuer's records: grants, failures, throttling and refresh-token reuse,
through its real WSGI app."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import httpx
import pytest

from scopegate.issuer import Client, Issuer, IssuerConfig, User, create_wsgi_app
from tests.observe.stack import Records

SECRET = "issuer-client-secret-0b1c"
PASSWORD = "alice-password-77e2"


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    """An HTTP client for a fresh issuer's WSGI app (password grant on, low thresholds)."""
    config = IssuerConfig(
        issuer="https://issuer.test",
        audience="api://test",
        allow_password_grant=True,
        user_max_failures=1,
        address_max_failures=3,
        backoff_base=60,
    )
    clients = [
        Client(
            "app",
            (SECRET,),
            grant_types=frozenset({"password", "refresh_token", "client_credentials"}),
            scopes=frozenset({"items:read"}),
        ),
    ]
    users = [User("u-1", "alice", PASSWORD, scopes=frozenset({"items:read"}))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the password grant's start-up warning
        issuer = Issuer(config, clients=clients, users=users)
    transport = httpx.WSGITransport(create_wsgi_app(issuer))
    with httpx.Client(transport=transport, base_url="https://issuer.test") as client:
        yield client


def token(
    http: httpx.Client, auth: tuple[str, str] = ("app", SECRET), **form: str
) -> httpx.Response:
    return http.post("/token", data=form, auth=auth)


def test_grants_failures_throttling_and_reuse_are_recorded(http: httpx.Client) -> None:
    """Each decision point of the issuer emits its record, with bounded attributes."""
    with Records() as records:
        assert token(http, grant_type="client_credentials").status_code == 200
        first = token(http, grant_type="password", username="alice", password=PASSWORD)
        assert first.status_code == 200
        refresh = first.json()["refresh_token"]
        assert token(http, grant_type="refresh_token", refresh_token=refresh).status_code == 200
        reused = token(http, grant_type="refresh_token", refresh_token=refresh)
        assert reused.status_code == 400
        wrong = token(http, grant_type="password", username="alice", password="nope")
        assert wrong.json()["error"] == "invalid_grant"
        locked = token(http, grant_type="password", username="alice", password="nope")
        assert locked.json()["error"] == "invalid_grant"
        assert http.post("/introspect", data={"token": "x"}).status_code == 401
        statuses = [
            token(http, ("app", "bad-secret"), grant_type="client_credentials").status_code
            for _ in range(4)
        ]
        assert statuses[-1] == 429
    grants = [(r.outcome, r.attributes["grant_type"]) for r in records.named("issuer_grant")]
    assert grants == [
        ("issued", "client_credentials"),
        ("issued", "password"),
        ("issued", "refresh_token"),
        ("invalid_grant", "refresh_token"),
        ("invalid_grant", "password"),
        ("invalid_grant", "password"),
    ]
    (reuse,) = records.named("issuer_refresh_reuse")
    assert (reuse.outcome, reuse.attributes["client_id"]) == ("revoked", "app")
    limits = [r.attributes["limit"] for r in records.named("issuer_throttled")]
    assert "user" in limits
    assert "addr" in limits
    failures = [(r.outcome, r.attributes["endpoint"]) for r in records.named("issuer_failure")]
    assert ("invalid_grant", "token") in failures
    assert ("invalid_client", "token") in failures
    assert ("temporarily_unavailable", "token") in failures  # the 429
    assert ("invalid_client", "introspection") in failures
    text = repr(records.all)
    for secret in (SECRET, PASSWORD, refresh, "bad-secret", "nope"):
        assert secret not in text
