"""Property tests for the issuer's form parsing and client authentication.

Requests of every shape (method, content type, query, body bytes, repeated and empty
parameters, Basic credentials with bad base64, no colon, bad percent-escapes, non-UTF-8)
reach the sans-io :meth:`Issuer.handle`, as do token requests with hostile DPoP proofs
(validly signed, any JSON inside). Each answer is a documented RFC 6749 §5.2 / RFC 9449 /
RFC 7662 / RFC 7009 outcome with the no-store headers; never a 500, never a secret,
password or refresh token in the body, a header or a log record.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import time
import warnings
from typing import Any
from urllib.parse import quote_plus, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate._jose import encode_compact
from scopegate.issuer import Client, Issuer, IssuerConfig, User
from scopegate.issuer._endpoints import HTTPRequest, HTTPResponse
from scopegate.testing import DPoPKey
from tests.fuzz.profile import count, fuzz_settings
from tests.fuzz.strategies import header_text, json_values

ISSUER_URL = "https://issuer.fuzz.test"
SECRET = "ClientSecretCanary-9d1"
POST_SECRET = "PostSecretCanary-51c"
COLON_SECRET = "s+cret x%"
PASSWORD = "PasswordCanary-77e"
ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",  # RFC 8707 §2: a resource the client may not ask for
    "temporarily_unavailable",
    "invalid_dpop_proof",  # RFC 9449 §5
}
_addresses = itertools.count()


def _issuer(*, password: bool) -> Issuer:
    clients = [
        Client(
            "svc",
            (SECRET,),
            grant_types=frozenset({"client_credentials"}),
            scopes=frozenset({"items:read", "items:write"}),
        ),
        Client(
            "post",
            (POST_SECRET,),
            auth_method="client_secret_post",
            grant_types=frozenset({"client_credentials", "refresh_token", "password"}),
            scopes=frozenset({"items:read"}),
        ),
        Client("id:with:colon", (COLON_SECRET,), scopes=frozenset({"items:read"}), introspect=True),
    ]
    users = [User("u-1", "alice", PASSWORD, scopes=frozenset({"items:read"}))]
    config = IssuerConfig(issuer=ISSUER_URL, audience="api://fuzz", allow_password_grant=password)
    with warnings.catch_warnings():
        # The password grant warns at construction (RFC 9700 §2.4); expected here.
        warnings.simplefilter("ignore")
        return Issuer(config, clients=clients, users=users if password else None)


ISSUER = _issuer(password=False)
SECRETS = (SECRET, POST_SECRET, PASSWORD, "RefreshCanary")


def basic(user: str, password: str, *, encode: bool = True) -> str:
    """An RFC 6749 §2.3.1 Basic header (form-encoding first when *encode*)."""
    if encode:
        user, password = quote_plus(user), quote_plus(password)
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


authorizations = st.one_of(
    st.none(),
    st.just(basic("svc", SECRET)),
    st.just(basic("id:with:colon", COLON_SECRET)),
    st.just(basic("svc", "wrong")),
    st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=40)),
    st.builds(lambda t: "Basic " + t, st.text(max_size=30)),
    st.sampled_from(
        [
            "Basic",
            "Basic ",
            "Basic !!!",
            "Basic " + base64.b64encode(b"%zz:x").decode(),
            "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
            "Bearer abc",
            "basic " + "A" * 5000,
        ]
    ),
)
param_names = st.sampled_from(
    [
        "grant_type",
        "scope",
        "client_id",
        "client_secret",
        "username",
        "password",
        "refresh_token",
        "token",
        "token_type_hint",
        "extra",
    ]
)
param_values = st.one_of(
    st.sampled_from(
        [
            "client_credentials",
            "refresh_token",
            "password",
            "authorization_code",
            "",
            "items:read",
            "items:read items:write",
            "admin",
            'bad"scope',
            "svc",
            "post",
            POST_SECRET,
            SECRET,
            "RefreshCanary",
            "access_token",
            "refresh_token",
        ]
    ),
    st.text(max_size=20),
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Form bodies: encoded pairs (with repeats) or raw bytes."""
    if draw(st.integers(0, 5)) == 0:
        return draw(st.binary(max_size=120))
    pairs = draw(st.lists(st.tuples(param_names, param_values), max_size=6))
    if draw(st.booleans()):
        pairs.insert(0, ("grant_type", "client_credentials"))
    return urlencode(pairs).encode()


requests_ = st.fixed_dictionaries(
    {
        "method": st.sampled_from(["POST", "POST", "POST", "GET", "PUT"]),
        "path": st.sampled_from(["/token", "/token", "/introspect", "/revoke"]),
        "content_type": st.sampled_from(
            [
                "application/x-www-form-urlencoded",
                "application/x-www-form-urlencoded; charset=utf-8",
                "APPLICATION/X-WWW-FORM-URLENCODED",
                "application/x-www-form-urlencoded; charset=latin-1",
                "application/json",
                "multipart/form-data",
                "",
            ]
        ),
        "query": st.sampled_from(["", "", "", "grant_type=client_credentials", "client_secret=x"]),
        "authorization": authorizations,
        "body": bodies(),
    }
)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every log record at DEBUG."""
    caplog.set_level(logging.DEBUG)


def _address() -> str:
    """A fresh client address per request, so address throttling never mixes examples."""
    n = next(_addresses)
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def _send(issuer: Issuer, request: dict[str, Any]) -> HTTPResponse:
    headers = {"content-type": request["content_type"]} if request["content_type"] else {}
    if request["authorization"] is not None:
        headers["authorization"] = request["authorization"]
    if request.get("dpop") is not None:
        headers["dpop"] = request["dpop"]
    return issuer.handle(
        HTTPRequest(
            method=request["method"],
            path=request["path"],
            query=request["query"],
            headers=headers,
            body=request["body"],
            client_address=_address(),
        )
    )


def check_response(response: HTTPResponse, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """The invariants of every issuer answer; returns the JSON body."""
    assert response.status in (200, 400, 401, 413, 429), response.body
    headers = dict(response.headers)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["pragma"] == "no-cache"
    body = json.loads(response.body)
    assert isinstance(body, dict)
    if response.status != 200:
        assert body["error"] in ERRORS
        assert isinstance(body["error_description"], str)
    if response.status == 401:
        assert headers["www-authenticate"].startswith("Basic realm=")
    blob = response.body.decode() + repr(response.headers) + caplog.text
    for secret in SECRETS:
        assert secret not in blob
    assert "unexpected error" not in caplog.text
    return body


@fuzz_settings(dev=600, ci=6000)
@given(request=requests_)
def test_endpoints_total(request: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """Every request gets a documented OAuth answer with no-store headers and no secret."""
    count("issuer.endpoints")
    caplog.clear()
    body = check_response(_send(ISSUER, request), caplog)
    if "access_token" in body:
        assert body["token_type"] == "Bearer"
        assert type(body["expires_in"]) is int
        assert "refresh_token" not in body  # client_credentials never gets one (RFC 6749 §4.4.3)


@fuzz_settings(dev=200, ci=2000)
@given(
    scope=st.one_of(
        st.none(),
        st.sampled_from(["items:read", "items:write items:read", "admin", ""]),
        st.text(max_size=12),
    ),
    extra=st.lists(
        st.tuples(
            st.sampled_from(["foo", "audience", "resource"]),
            st.one_of(st.text(max_size=8), st.just("api://fuzz")),
        ),
        max_size=2,
    ),
)
def test_valid_client_credentials(
    scope: str | None, extra: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Correct Basic credentials get a token exactly when the scope is allowed (RFC 6749 §3.3)."""
    count("issuer.valid_client_credentials")
    caplog.clear()
    pairs = [("grant_type", "client_credentials"), *extra]
    if scope is not None:
        pairs.append(("scope", scope))
    names = [n for n, _ in pairs]
    response = _send(
        ISSUER,
        {
            "method": "POST",
            "path": "/token",
            "content_type": "application/x-www-form-urlencoded",
            "query": "",
            "authorization": basic("svc", SECRET),
            "body": urlencode(pairs).encode(),
        },
    )
    body = check_response(response, caplog)
    requested = set((scope or "").split(" ")) - {""}
    singles = [n for n in names if n != "resource"]  # resource may repeat (RFC 8707 §2)
    resources = {v for n, v in pairs if n == "resource" and v}
    if len(singles) != len(set(singles)):
        assert body["error"] == "invalid_request"
    elif resources - {"api://fuzz"} and (
        not scope or (requested and requested <= {"items:read", "items:write"})
    ):
        # Only the client's default audience may be named (no `resources` configured).
        assert body["error"] == "invalid_target"
    elif scope and not requested:
        # Only spaces: not empty (so not "absent", RFC 6749 §3.2) yet no scope-token;
        # the default scope or invalid_scope are both defensible.
        assert response.status == 200 or body["error"] == "invalid_scope"
    elif requested <= {"items:read", "items:write"}:
        assert response.status == 200, body
        granted = set(body["scope"].split(" "))
        assert granted == (requested or {"items:read", "items:write"})
    else:
        assert body["error"] == "invalid_scope"


@fuzz_settings(dev=200, ci=1500)
@given(
    user=st.text(max_size=12) | st.sampled_from(["svc", "id:with:colon", "a%3Ab", "%zz", "+"]),
    password=st.text(max_size=12) | st.just(SECRET),
    encode=st.booleans(),
)
def test_basic_credentials_parsing(
    user: str, password: str, encode: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Any Basic user/password pair authenticates only as the registered client with its secret."""
    count("issuer.basic_parsing")
    caplog.clear()
    try:
        header = basic(user, password, encode=encode)
    except UnicodeEncodeError:
        return
    response = _send(
        ISSUER,
        {
            "method": "POST",
            "path": "/token",
            "content_type": "application/x-www-form-urlencoded",
            "query": "",
            "authorization": header,
            "body": b"grant_type=client_credentials",
        },
    )
    body = check_response(response, caplog)
    good = (
        user == "svc"
        and password == SECRET
        and (encode or ("%" not in password and "+" not in password))
    )
    if good:
        assert response.status == 200, body
    else:
        assert response.status in (400, 401, 429)


PASSWORD_ISSUER = _issuer(password=True)


@fuzz_settings(dev=8, ci=40)
@given(
    username=st.sampled_from(["alice", "ALICE", "bob", "", "alice\u0301"]) | st.text(max_size=8),
    password=st.sampled_from([PASSWORD, "", "x" * 5000]) | st.text(max_size=8),
)
def test_password_grant(username: str, password: str, caplog: pytest.LogCaptureFixture) -> None:
    """The password grant gives a token or invalid_grant/invalid_request; no password leaks."""
    count("issuer.password_grant")
    caplog.clear()
    form = urlencode(
        [
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
            ("client_id", "post"),
            ("client_secret", POST_SECRET),
        ]
    ).encode()
    response = _send(
        PASSWORD_ISSUER,
        {
            "method": "POST",
            "path": "/token",
            "content_type": "application/x-www-form-urlencoded",
            "query": "",
            "authorization": None,
            "body": form,
        },
    )
    body = check_response(response, caplog)
    if response.status == 200:
        assert password == PASSWORD
        assert body["refresh_token"] not in caplog.text
    elif username and password:
        assert body["error"] in ("invalid_grant", "temporarily_unavailable")


# -- DPoP proofs at the token endpoint (RFC 9449 §4.3, §5) ---------------------------------

DPOP_KEY = DPoPKey.generate()
PUBLIC_JWK = {k: v for k, v in DPOP_KEY.key.public_jwk().items() if k in ("kty", "crv", "x", "y")}
TOKEN_URL = ISSUER_URL + "/token"
_HEADER_MEMBERS = ("typ", "alg", "jwk")
_CLAIM_MEMBERS = ("jti", "htm", "htu", "iat", "nonce", "ath")
_DELETE = object()
member_values = st.one_of(
    st.sampled_from([_DELETE, 10**400, -(10**400), 1e308, -1, 0, True, "", "POST", TOKEN_URL]),
    json_values,
)


@st.composite
def proofs(draw: st.DrawFn) -> str:
    """A DPoP header: junk text, a valid proof with a few characters changed, or a proof
    validly signed by the key in its header with members replaced by any JSON."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(header_text)
    valid = DPOP_KEY.proof("POST", TOKEN_URL)
    if kind == 1:
        where = draw(st.integers(0, len(valid) - 1))
        return valid[:where] + draw(st.text(max_size=3)) + valid[where + 1 :]
    header: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": PUBLIC_JWK}
    claims: dict[str, Any] = {
        "jti": draw(st.text(min_size=1, max_size=12)),
        "htm": "POST",
        "htu": TOKEN_URL,
        "iat": int(time.time()),
    }
    names = draw(st.lists(st.sampled_from(_HEADER_MEMBERS + _CLAIM_MEMBERS), max_size=3))
    for name in names:
        target = header if name in _HEADER_MEMBERS else claims
        value = draw(member_values)
        if value is _DELETE:
            target.pop(name, None)
        else:
            target[name] = value
    return encode_compact(header, claims, DPOP_KEY.key.signature)


#: Its own issuer: the other targets' failed client logins put the shared one's (single)
#: client address in backoff, and a 429 here depended on which ran just before.
DPOP_ISSUER = _issuer(password=False)


@fuzz_settings(dev=300, ci=3000)
@given(proof=proofs())
def test_dpop_proofs_total(proof: str, caplog: pytest.LogCaptureFixture) -> None:
    """Any DPoP header gets a bound token or 400 invalid_dpop_proof; never a 500, never
    the proof in a log record."""
    count("issuer.dpop_proofs")
    caplog.clear()
    form = urlencode([("grant_type", "client_credentials"), ("scope", "items:read")]).encode()
    response = _send(
        DPOP_ISSUER,
        {
            "method": "POST",
            "path": "/token",
            "content_type": "application/x-www-form-urlencoded",
            "query": "",
            "authorization": basic("svc", SECRET),
            "body": form,
            "dpop": proof,
        },
    )
    body = check_response(response, caplog)
    if response.status == 200:
        assert body["token_type"] == "DPoP"
    else:
        assert (response.status, body["error"]) == (400, "invalid_dpop_proof")
    assert len(proof) < 20 or proof not in caplog.text
