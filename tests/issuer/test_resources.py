"""RFC 8707 resource indicators and the scope policy (strict / narrow), sans-io."""

from __future__ import annotations

import json
import warnings
from typing import Any

import jwt
import pytest

from scopegate._errors import ConfigurationError
from scopegate.issuer import Client, Issuer, IssuerConfig, SigningKeySet
from tests.issuer.conftest import (
    ALL_GRANTS,
    AUDIENCE,
    ISSUER,
    RS_KEY,
    SECRET,
    Caller,
    FakeClock,
    standard_users,
)

MCP = "http://127.0.0.1:8000/mcp"
OTHER = "https://orders.example/api"
CC = {"grant_type": "client_credentials"}
PW = {"grant_type": "password", "username": "alice", "password": "alice-pw"}


def build(token_format: str = "jwt", **settings: Any) -> Caller:
    clients = [
        Client(
            "svc",
            (SECRET,),
            grant_types=ALL_GRANTS,
            scopes=frozenset({"read", "write"}),
            resources=frozenset({MCP, OTHER}),
        ),
        Client("plain", ("plain-secret",), grant_types=ALL_GRANTS, scopes=frozenset({"read"})),
        Client(
            "reader",
            ("reader-secret",),
            scopes=frozenset({"read"}),
            scope_policy="narrow",
        ),
        Client("rs", ("rs-secret",), grant_types=frozenset(), introspect=True),
    ]
    config = IssuerConfig(
        issuer=ISSUER,
        audience=AUDIENCE,
        allow_password_grant=True,
        token_format=token_format,  # type: ignore[arg-type]
        **settings,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        issuer = Issuer(
            config,
            clients=clients,
            users=standard_users(),
            keys=SigningKeySet(current=RS_KEY),
            clock=FakeClock(),
        )
    return Caller(issuer)


def ok(response: Any) -> dict[str, Any]:
    assert response.status == 200, response.body
    return dict(json.loads(response.body))


def error_of(response: Any) -> str:
    return str(json.loads(response.body)["error"])


def aud(body: dict[str, Any]) -> Any:
    return jwt.decode(body["access_token"], options={"verify_signature": False})["aud"]


SVC = ("svc", SECRET)  # the Caller's default credentials


def test_allowed_resource_becomes_the_audience() -> None:
    """RFC 8707 §2: an allowed resource is the token's aud, compared verbatim."""
    call = build()
    assert aud(ok(call.token([*CC.items(), ("resource", MCP)], auth=SVC))) == MCP
    # The issuer audience stays allowed (it is what an omitted resource gives).
    assert aud(ok(call.token([*CC.items(), ("resource", AUDIENCE)], auth=SVC))) == AUDIENCE


def test_no_resource_gives_the_default_audience() -> None:
    """RFC 8707: no resource parameter -> the configured audience, as before."""
    assert aud(ok(build().token(CC, auth=SVC))) == AUDIENCE


@pytest.mark.parametrize(
    "resource",
    [
        pytest.param("https://evil.example/api", id="not-allowed"),
        pytest.param(MCP + "/", id="trailing-slash"),
        pytest.param(MCP.upper(), id="other-case"),
        pytest.param(MCP + "#frag", id="fragment"),
        pytest.param("/mcp", id="relative"),
        pytest.param("mcp", id="no-scheme"),
        pytest.param("http://127.0.0.1:8000/m cp", id="space"),
    ],
)
def test_refused_resource_is_invalid_target(resource: str) -> None:
    """RFC 8707 §2: a resource not allowed for the client, or malformed -> invalid_target."""
    response = build().token([*CC.items(), ("resource", resource)], auth=SVC)
    assert response.status == 400
    assert error_of(response) == "invalid_target"
    assert resource not in response.body.decode()


def test_client_without_resources_may_name_only_its_audience() -> None:
    """A client without `resources` may ask only for its default audience."""
    call = build()
    auth = ("plain", "plain-secret")
    assert aud(ok(call.token([*CC.items(), ("resource", AUDIENCE)], auth=auth))) == AUDIENCE
    assert error_of(call.token([*CC.items(), ("resource", MCP)], auth=auth)) == "invalid_target"


def test_several_resources_give_an_audience_array() -> None:
    """RFC 8707 §2 / RFC 9068 §3: several resources -> aud is an array (duplicates once)."""
    form = [*CC.items(), ("resource", MCP), ("resource", OTHER), ("resource", MCP)]
    assert aud(ok(build().token(form, auth=SVC))) == [MCP, OTHER]


def test_other_parameters_still_may_not_repeat() -> None:
    """REQ-5 still holds for every parameter except resource."""
    form = [*CC.items(), ("scope", "read"), ("scope", "read")]
    assert error_of(build().token(form, auth=SVC)) == "invalid_request"


def test_resource_on_password_grant() -> None:
    """The password grant accepts resource too."""
    call = build()
    assert aud(ok(call.token([*PW.items(), ("resource", OTHER)], auth=SVC))) == OTHER
    assert error_of(call.token([*PW.items(), ("resource", "urn:x")], auth=SVC)) == "invalid_target"


def test_refresh_keeps_or_narrows_resources_never_widens() -> None:
    """RFC 8707 §2.2: a refresh may name a subset of the grant's resources, not more."""
    call = build()
    first = ok(call.token([*PW.items(), ("resource", MCP), ("resource", OTHER)], auth=SVC))
    assert aud(first) == [MCP, OTHER]
    kept = ok(call.token({"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}))
    assert aud(kept) == [MCP, OTHER]
    narrowed = ok(
        call.token(
            [
                ("grant_type", "refresh_token"),
                ("refresh_token", kept["refresh_token"]),
                ("resource", OTHER),
            ]
        )
    )
    assert aud(narrowed) == OTHER
    # The new refresh token still carries the whole grant (like scope, RFC 6749 §6).
    again = ok(
        call.token({"grant_type": "refresh_token", "refresh_token": narrowed["refresh_token"]})
    )
    assert aud(again) == [MCP, OTHER]
    widened = call.token(
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", again["refresh_token"]),
            ("resource", AUDIENCE),
        ]
    )
    assert error_of(widened) == "invalid_target"


def test_refresh_of_single_resource_grant_cannot_add_one() -> None:
    """A grant for one resource cannot be refreshed into another allowed resource."""
    call = build()
    first = ok(call.token([*PW.items(), ("resource", MCP)], auth=SVC))
    response = call.token(
        [
            ("grant_type", "refresh_token"),
            ("refresh_token", first["refresh_token"]),
            ("resource", OTHER),
        ]
    )
    assert error_of(response) == "invalid_target"


def test_opaque_introspection_returns_the_audience() -> None:
    """RFC 7662 §2.2: introspection of an opaque token reports the granted aud."""
    call = build(token_format="opaque")
    one = ok(call.token([*CC.items(), ("resource", MCP)], auth=SVC))
    assert call.introspect(one["access_token"], auth=("rs", "rs-secret"))["aud"] == MCP
    two = ok(call.token([*CC.items(), ("resource", MCP), ("resource", OTHER)], auth=SVC))
    assert call.introspect(two["access_token"], auth=("rs", "rs-secret"))["aud"] == [MCP, OTHER]
    plain = ok(call.token(CC, auth=SVC))
    assert call.introspect(plain["access_token"], auth=("rs", "rs-secret"))["aud"] == AUDIENCE
    refreshed = ok(
        call.token(
            {
                "grant_type": "refresh_token",
                "refresh_token": ok(call.token([*PW.items(), ("resource", OTHER)], auth=SVC))[
                    "refresh_token"
                ],
            }
        )
    )
    assert call.introspect(refreshed["access_token"], auth=("rs", "rs-secret"))["aud"] == OTHER


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(["relative/path"], id="relative"),
        pytest.param(["https://x.example/#f"], id="fragment"),
        pytest.param("https://x.example", id="string-not-list"),
    ],
)
def test_client_resources_are_checked(value: Any) -> None:
    """Configured resources must be absolute URIs without fragment."""
    with pytest.raises(ConfigurationError, match="resources"):
        Client("c", ("s",), resources=value)


# -- scope policy ----------------------------------------------------------------------


def test_strict_policy_refuses_a_wider_request() -> None:
    """SC-3 default: asking for a scope the client may not have -> invalid_scope."""
    response = build().token({**CC, "scope": "read admin"}, auth=SVC)
    assert error_of(response) == "invalid_scope"


def test_narrow_policy_grants_the_allowed_part() -> None:
    """RFC 6749 §3.3: the narrow policy grants the allowed subset and says so in scope."""
    call = build(scope_policy="narrow")
    body = ok(call.token({**CC, "scope": "read admin"}, auth=SVC))
    assert body["scope"] == "read"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["scope"] == "read"
    assert error_of(call.token({**CC, "scope": "admin"}, auth=SVC)) == "invalid_scope"
    assert error_of(call.token({**CC, "scope": 'read "x'}, auth=SVC)) == "invalid_scope"


def test_client_policy_overrides_the_issuer() -> None:
    """A client's scope_policy wins over the issuer's."""
    call = build()  # issuer strict, "reader" narrow
    body = ok(call.token({**CC, "scope": "read write"}, auth=("reader", "reader-secret")))
    assert body["scope"] == "read"
    strict_client = Client("s", ("s-secret",), scopes=frozenset({"read"}), scope_policy="strict")
    narrow = build(scope_policy="narrow")
    narrow.issuer._clients._clients["s"] = strict_client  # type: ignore[attr-defined]
    assert error_of(narrow.token({**CC, "scope": "read write"}, auth=("s", "s-secret"))) == (
        "invalid_scope"
    )


def test_narrow_policy_for_users_and_refresh() -> None:
    """Narrow applies to the password grant (client ∩ user scopes) and to refreshes."""
    call = build(scope_policy="narrow")
    body = ok(call.token({**PW, "scope": "read write admin"}, auth=SVC))
    assert body["scope"] == "read write"
    refreshed = ok(
        call.token(
            {
                "grant_type": "refresh_token",
                "refresh_token": body["refresh_token"],
                "scope": "read admin",
            }
        )
    )
    assert refreshed["scope"] == "read"


def test_scope_policy_is_type_checked() -> None:
    """scope_policy accepts only "strict" or "narrow"."""
    with pytest.raises(ConfigurationError, match="scope_policy"):
        IssuerConfig(issuer=ISSUER, audience=AUDIENCE, scope_policy="lenient")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="scope_policy"):
        Client("c", ("s",), scope_policy="lenient")  # type: ignore[arg-type]
