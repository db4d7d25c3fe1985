"""Token endpoint request rules, client authentication, scopes and errors (sans-io core)."""

from __future__ import annotations

import base64
import json
import re

import jwt
import pytest

from scopegate.issuer import Client, Issuer
from scopegate.issuer._passwords import generate_client_secret
from tests.issuer.conftest import AUDIENCE, FORM, ISSUER, RS_KEY, SECRET, Caller, make_issuer

CC = {"grant_type": "client_credentials"}
_DESC_CHARS = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]*")


def error_of(response) -> str:  # type: ignore[no-untyped-def]
    body = json.loads(response.body)
    assert set(body) <= {"error", "error_description", "error_uri"}
    assert _DESC_CHARS.fullmatch(body["error_description"])
    return str(body["error"])


def assert_no_store(response) -> None:  # type: ignore[no-untyped-def]
    headers = dict(response.headers)
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "no-store"
    assert headers["pragma"] == "no-cache"


def test_client_credentials_golden(call: Caller) -> None:
    """CC-5/RS-1/RS-2: 200 with access_token, Bearer, integer expires_in and scope."""
    response = call.token({**CC, "scope": "read"})
    assert response.status == 200
    assert_no_store(response)
    body = json.loads(response.body)
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert isinstance(body["expires_in"], int)
    assert body["scope"] == "read"


def test_client_credentials_has_no_refresh_token(call: Caller) -> None:
    """RS-4/CC-2: client_credentials never returns a refresh token."""
    body = json.loads(call.token(CC).body)
    assert "refresh_token" not in body
    refresh = call.token({"grant_type": "refresh_token", "refresh_token": body["access_token"]})
    assert error_of(refresh) == "invalid_grant"


@pytest.mark.parametrize(
    ("method"),
    [
        pytest.param("GET", id="get"),
        pytest.param("PUT", id="put"),
        pytest.param("DELETE", id="delete"),
    ],
)
def test_non_post_is_invalid_request(call: Caller, method: str) -> None:
    """REQ-2: any method but POST -> 400 invalid_request with no-store headers."""
    response = call.token(CC, method=method)
    assert response.status == 400
    assert error_of(response) == "invalid_request"
    assert_no_store(response)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", json.dumps(CC), id="json"),
        pytest.param("multipart/form-data; boundary=x", "--x--", id="multipart"),
        pytest.param(None, "grant_type=client_credentials", id="missing"),
        pytest.param(
            "application/x-www-form-urlencoded; charset=latin-1",
            "grant_type=client_credentials",
            id="other-charset",
        ),
    ],
)
def test_wrong_content_type_is_rejected(call: Caller, content_type: str | None, body: str) -> None:
    """REQ-3: only form bodies are accepted."""
    response = call.token(body, content_type=content_type)
    assert response.status == 400
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param(f"application/json, {FORM}", id="json-then-form"),
        pytest.param(f"{FORM}, application/json", id="form-then-json"),
        pytest.param(f"{FORM}, {FORM}", id="form-twice"),
        pytest.param(f"{FORM}; charset=utf-8, {FORM}", id="charset-then-form"),
        pytest.param(f"{FORM}; x=y, application/json", id="parameter-then-json"),
    ],
)
@pytest.mark.parametrize("path", ["/token", "/introspect", "/revoke"])
def test_repeated_content_type_is_invalid_request(
    call: Caller, path: str, content_type: str
) -> None:
    """REQ-3: Content-Type fields joined by the server (a repeat) -> 400, never "one wins"."""
    response = call.request(path, {**CC, "token": "t"}, content_type=content_type)
    assert response.status == 400
    assert error_of(response) == "invalid_request"


def test_form_charset_utf8_is_tolerated(call: Caller) -> None:
    """REQ-3: a charset=utf-8 parameter is accepted."""
    response = call.token(CC, content_type="application/x-www-form-urlencoded; charset=UTF-8")
    assert response.status == 200


@pytest.mark.parametrize(
    ("query", "form"),
    [
        pytest.param("grant_type=client_credentials", {}, id="grant-in-query"),
        pytest.param("client_secret=x", CC, id="secret-in-query"),
    ],
)
def test_query_parameters_are_refused(call: Caller, query: str, form: dict[str, str]) -> None:
    """REQ-4: any query string on a token POST -> 400 invalid_request."""
    response = call.token(form, query=query)
    assert response.status == 400
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("grant_type=client_credentials&grant_type=client_credentials", id="grant"),
        pytest.param("grant_type=client_credentials&scope=read&scope=write", id="scope"),
        pytest.param("grant_type=client_credentials&scope=&scope=read", id="empty-repeat"),
        pytest.param("grant_type=password&username=a&username=b&password=x", id="username"),
        pytest.param("grant_type=password&username=a&password=x&password=y", id="password"),
        pytest.param("grant_type=refresh_token&refresh_token=a&refresh_token=b", id="refresh"),
        pytest.param("grant_type=client_credentials&client_id=svc&client_id=svc", id="client-id"),
    ],
)
def test_repeated_parameters_are_refused(call: Caller, body: str) -> None:
    """REQ-5: a repeated parameter -> 400 invalid_request, for every name."""
    response = call.token(body)
    assert response.status == 400
    assert error_of(response) == "invalid_request"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param("/introspect", "token=a&token=b", id="introspect-token"),
        pytest.param("/revoke", "token=a&token_type_hint=x&token_type_hint=y", id="revoke-hint"),
        pytest.param("/introspect", "token=a&client_secret=x&client_secret=y", id="secret"),
    ],
)
def test_repeated_parameters_refused_at_all_endpoints(call: Caller, path: str, body: str) -> None:
    """REQ-5: duplicates are refused at introspection and revocation too."""
    response = call.request(path, body)
    assert response.status == 400
    assert error_of(response) == "invalid_request"


def test_empty_scope_means_default(call: Caller) -> None:
    """REQ-6/SC-2: scope= behaves like an omitted scope (the client's default)."""
    body = json.loads(call.token("grant_type=client_credentials&scope=").body)
    assert body["scope"] == "read write"


def test_unknown_parameters_are_ignored(call: Caller) -> None:
    """REQ-7: unrecognised parameters do not fail the request."""
    assert call.token({**CC, "foo": "bar"}).status == 200


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"%ff%fe=1&grant_type=client_credentials", id="bad-utf8-escape"),
        pytest.param(b"grant_type=client_credentials&x=\xff", id="raw-non-ascii"),
        pytest.param(b"&".join(b"f%d=1" % i for i in range(100)), id="too-many-fields"),
    ],
)
def test_malformed_bodies_are_invalid_request(call: Caller, body: bytes) -> None:
    """REQ-8: invalid UTF-8 and field-count overflow -> 400 invalid_request."""
    response = call.token(body)
    assert response.status == 400
    assert error_of(response) == "invalid_request"


def test_oversized_body_is_rejected(call: Caller) -> None:
    """REQ-8: a 1 MiB body -> 413."""
    response = call.token(b"grant_type=client_credentials&x=" + b"a" * (1 << 20))
    assert response.status == 413
    assert_no_store(response)


@pytest.mark.parametrize(
    ("form", "auth", "expected"),
    [
        pytest.param({}, ("svc", SECRET), "invalid_request", id="missing-grant"),
        pytest.param(
            {"grant_type": "foo"}, ("svc", SECRET), "unsupported_grant_type", id="unknown-grant"
        ),
        pytest.param(
            {"grant_type": "urn:ietf:params:oauth:grant-type:device_code"},
            ("svc", SECRET),
            "unsupported_grant_type",
            id="unsupported-grant",
        ),
        pytest.param(
            {"grant_type": "refresh_token", "refresh_token": "x"},
            ("cconly", "cc-secret"),
            "unauthorized_client",
            id="grant-not-registered",
        ),
        pytest.param(CC, ("rs", "rs-secret"), "unauthorized_client", id="rs-cannot-get-tokens"),
    ],
)
def test_grant_type_errors(
    call: Caller, form: dict[str, str], auth: tuple[str, str], expected: str
) -> None:
    """REQ-9: missing, unknown/disabled and not-registered grant types."""
    assert error_of(call.token(form, auth=auth)) == expected


def test_password_grant_disabled_by_default() -> None:
    """PW-1/REQ-9: with the server default, grant_type=password is unsupported."""
    caller = Caller(make_issuer(password=False))
    form = {"grant_type": "password", "username": "alice", "password": "alice-pw"}
    assert error_of(caller.token(form)) == "unsupported_grant_type"
    assert "password" not in caller.issuer.metadata["grant_types_supported"]


def test_basic_credentials_are_form_decoded() -> None:
    """CA-1: Basic halves are form-urlencoding-decoded ('+' -> space, %3A -> ':')."""
    client = Client("id:with:colon", ("s+cret x",), scopes=frozenset({"read"}))
    caller = Caller(make_issuer(password=False))
    caller.issuer._clients._clients[client.client_id] = client  # type: ignore[attr-defined]
    raw = base64.b64encode(b"id%3Awith%3Acolon:s%2Bcret+x").decode()
    response = caller.token(CC, auth=None, headers={"authorization": "Basic " + raw})
    assert response.status == 200, response.body


def test_generated_secrets_use_unreserved_characters() -> None:
    """CA-2/CA-10: generated secrets are >= 43 unreserved characters (256 bits)."""
    for _ in range(200):
        assert re.fullmatch(r"[A-Za-z0-9._~-]{43,}", generate_client_secret())


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic !!!", id="bad-base64"),
        pytest.param("Basic " + base64.b64encode(b"no-colon").decode(), id="no-colon"),
        pytest.param("Basic " + base64.b64encode(b"svc:%zz").decode(), id="bad-escape"),
        pytest.param("Basic " + base64.b64encode(b"svc:%ff%fe").decode(), id="non-utf8"),
        pytest.param("Bearer abc", id="other-scheme"),
        pytest.param("Basic", id="empty"),
    ],
)
def test_malformed_basic_is_invalid_client(call: Caller, header: str) -> None:
    """CA-3/ER-3: malformed Basic credentials -> 401 with a Basic challenge."""
    response = call.token(CC, auth=None, headers={"authorization": header})
    assert response.status == 401
    assert error_of(response) == "invalid_client"
    assert dict(response.headers)["www-authenticate"] == (
        f'Basic realm="{ISSUER}", charset="UTF-8"'
    )
    assert_no_store(response)


def test_client_secret_post(call: Caller) -> None:
    """CA-4: a client registered for client_secret_post authenticates in the body."""
    form = {**CC, "client_id": "post", "client_secret": "post-secret"}
    assert call.token(form, auth=None).status == 200


def test_post_refused_for_basic_client(call: Caller) -> None:
    """CA-4: a client restricted to client_secret_basic that sends post credentials -> 401."""
    form = {**CC, "client_id": "basic", "client_secret": "basic-secret"}
    response = call.token(form, auth=None)
    assert response.status == 401
    assert "www-authenticate" in dict(response.headers)
    assert call.token(CC, auth=("basic", "basic-secret")).status == 200


def test_default_client_accepts_both_methods(call: Caller) -> None:
    """Issue 14: a client without auth_methods may use either advertised method (not both)."""
    assert call.issuer.metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "none",  # public clients of the authorization-code grant
    ]
    form = {**CC, "client_id": "svc", "client_secret": SECRET}
    assert call.token(form, auth=None).status == 200
    assert call.token(CC).status == 200
    assert call.token(form).status == 400  # Basic and post in one request (RFC 6749 §2.3)


def test_basic_refused_for_post_client(call: Caller) -> None:
    """CA-6: a client registered for client_secret_post that uses Basic -> 401."""
    assert call.token(CC, auth=("post", "post-secret")).status == 401


@pytest.mark.parametrize(
    ("extra", "status", "expected"),
    [
        pytest.param({"client_secret": SECRET}, 400, "invalid_request", id="basic-plus-secret"),
        pytest.param({"client_id": "other"}, 400, "invalid_request", id="basic-plus-other-id"),
        pytest.param({"client_id": "svc"}, 200, None, id="basic-plus-same-id"),
    ],
)
def test_two_authentication_methods(
    call: Caller, extra: dict[str, str], status: int, expected: str | None
) -> None:
    """CA-5: Basic plus body secret or a different body id -> 400; same id is fine."""
    response = call.token({**CC, **extra})
    assert response.status == status
    if expected:
        assert error_of(response) == expected


def test_invalid_client_bodies_are_identical(call: Caller) -> None:
    """CA-7: unknown client, wrong secret, wrong method and disabled look the same."""
    issuer = call.issuer
    issuer._clients._clients["off"] = Client(  # type: ignore[attr-defined]
        "off", ("off-secret",), scopes=frozenset({"read"}), disabled=True
    )
    responses = [
        call.token(CC, auth=("nobody", "x")),
        call.token(CC, auth=("svc", "wrong")),
        call.token(CC, auth=("post", "post-secret")),
        call.token(CC, auth=("off", "off-secret")),
        call.token({**CC, "client_id": "svc"}, auth=None),
    ]
    assert {(r.status, r.body, r.headers) for r in responses} == {
        (responses[0].status, responses[0].body, responses[0].headers)
    }


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("é" * 10, id="non-ascii"),
        pytest.param("\u0000", id="nul"),
        pytest.param("x" * 5000, id="too-long"),
    ],
)
def test_odd_secrets_never_crash(call: Caller, secret: str) -> None:
    """CA-8: non-ASCII or huge secrets -> 401 invalid_client, never 500."""
    assert call.token(CC, auth=("svc", secret)).status == 401
    assert call.token({**CC, "client_id": "post", "client_secret": secret}, auth=None).status == 401


def test_secret_rotation_with_several_secrets() -> None:
    """CA-9: two active secrets both authenticate; plaintext is not kept in memory."""
    client = Client("rot", ("old-secret", "new-secret"), scopes=frozenset({"read"}))
    assert all(s.startswith("$hmac-sha256$") for s in client.secret_hashes)
    assert "old-secret" not in repr(client)
    caller = Caller(make_issuer(password=False))
    caller.issuer._clients._clients["rot"] = client  # type: ignore[attr-defined]
    assert caller.token(CC, auth=("rot", "old-secret")).status == 200
    assert caller.token(CC, auth=("rot", "new-secret")).status == 200
    assert caller.token(CC, auth=("rot", "third")).status == 401


def test_failed_client_auth_is_throttled_per_address(call: Caller) -> None:
    """CA-11: repeated failures from one address -> 429 with Retry-After."""
    other = Caller(call.issuer, address="198.51.100.7")
    assert other.token(CC).status == 200  # svc's own address: exempt from svc's delay
    statuses = [call.token(CC, auth=("svc", "wrong")).status for _ in range(25)]
    assert statuses[0] == 401
    assert statuses[-1] == 429
    blocked = call.token(CC)
    assert blocked.status == 429
    assert int(dict(blocked.headers)["retry-after"]) >= 1
    assert_no_store(blocked)
    assert other.token(CC).status == 200


def test_client_id_without_secret_is_invalid_client(call: Caller) -> None:
    """CA-12: client_id alone (method none) -> 401 invalid_client."""
    response = call.token({**CC, "client_id": "svc"}, auth=None)
    assert response.status == 401
    assert error_of(response) == "invalid_client"


def test_no_authentication_at_all(call: Caller) -> None:
    """ER-3: no credentials -> 401 with a Basic challenge."""
    response = call.token(CC, auth=None)
    assert response.status == 401
    assert dict(response.headers)["www-authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        pytest.param("read%22", "invalid_scope", id="quote"),
        pytest.param("read%5C", "invalid_scope", id="backslash"),
        pytest.param("read%01", "invalid_scope", id="control"),
        pytest.param("r%C3%A9ad", "invalid_scope", id="non-ascii"),
        pytest.param("READ", "invalid_scope", id="case-sensitive"),
        pytest.param("read:all", "invalid_scope", id="no-prefix-match"),
        pytest.param("read+admin", "invalid_scope", id="not-allowed"),
    ],
)
def test_scope_errors(call: Caller, scope: str, expected: str) -> None:
    """SC-1/SC-3/SC-4: bad grammar, case, prefixes and disallowed scopes -> invalid_scope."""
    response = call.token(f"grant_type=client_credentials&scope={scope}")
    assert error_of(response) == expected


def test_duplicate_scope_tokens_collapse(call: Caller) -> None:
    """SC-1: repeated scope tokens inside one value are collapsed."""
    body = json.loads(call.token("grant_type=client_credentials&scope=read+read").body)
    assert body["scope"] == "read"


def test_scope_order_does_not_matter(call: Caller) -> None:
    """RS-2: scope is always returned, space-joined."""
    body = json.loads(call.token({**CC, "scope": "write read"}).body)
    assert body["scope"] == "read write"


def test_no_default_scope_means_invalid_scope(call: Caller) -> None:
    """SC-2: a client without default scopes must ask for a scope."""
    assert error_of(call.token(CC, auth=("nodefault", "nd-secret"))) == "invalid_scope"
    ok = call.token({**CC, "scope": "read"}, auth=("nodefault", "nd-secret"))
    assert ok.status == 200


def test_error_description_never_reflects_input(call: Caller) -> None:
    """ER-2: request bytes never appear in error_description."""
    response = call.token("grant_type=%22%0d%0aX-Evil&scope=%22%0d%0aY")
    description = json.loads(response.body)["error_description"]
    assert "Evil" not in description
    assert "\r" not in description


def test_storage_failure_is_generic_500(issuer: Issuer, call: Caller) -> None:
    """ER-4: an unexpected exception -> 500 server_error without exception text."""

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    issuer.store.read_attempts = boom  # type: ignore[method-assign]
    response = call.token(CC)
    assert response.status == 500
    assert error_of(response) == "server_error"
    assert b"internals" not in response.body
    assert_no_store(response)


def test_store_outage_is_503(issuer: Issuer, call: Caller) -> None:
    """ER-4/RV-8: a store outage -> 503 temporarily_unavailable with Retry-After."""
    from scopegate.issuer import StoreUnavailableError

    def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailableError("down")

    issuer.store.read_attempts = down  # type: ignore[method-assign]
    for response in (call.token(CC), call.revoke("x"), call.request("/introspect", {"token": "x"})):
        assert response.status == 503
        assert error_of(response) == "temporarily_unavailable"
        assert "retry-after" in dict(response.headers)


def test_client_subject_is_namespaced(call: Caller) -> None:
    """CC-3/AT-4/SEC-5: a client's sub is prefixed so it never equals a user id."""
    token = json.loads(call.token(CC).body)["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["sub"] == "client:svc"
    assert claims["client_id"] == "svc"
    assert "auth_time" not in claims


def test_client_audience_override() -> None:
    """CC-4/AT-5: aud is the client's configured resource, else the issuer audience."""
    caller = Caller(make_issuer(password=False))
    caller.issuer._clients._clients["aud"] = Client(  # type: ignore[attr-defined]
        "aud", ("aud-secret",), scopes=frozenset({"read"}), audience="api://other"
    )
    token = json.loads(caller.token(CC, auth=("aud", "aud-secret")).body)["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "api://other"
    token = json.loads(caller.token(CC).body)["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == AUDIENCE


def test_jwt_access_token_format(call: Caller) -> None:
    """AT-1/AT-2/AT-3: typ at+jwt, kid in JWKS, all RFC 9068 claims, exp-iat=expires_in."""
    body = json.loads(call.token({**CC, "scope": "read write"}).body)
    header = jwt.get_unverified_header(body["access_token"])
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": RS_KEY.kid}
    jwks = json.loads(call.request("/jwks.json", method="GET").body)
    assert header["kid"] in {k["kid"] for k in jwks["keys"]}
    claims = jwt.decode(
        body["access_token"],
        RS_KEY.private_key.public_key(),
        algorithms=["RS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
    )
    assert {"iss", "exp", "aud", "sub", "client_id", "iat", "jti", "scope"} <= set(claims)
    assert isinstance(claims["scope"], str)
    assert claims["scope"] == "read write"
    assert all(isinstance(claims[c], int) for c in ("exp", "iat"))
    assert claims["exp"] - claims["iat"] == body["expires_in"]


def test_jti_is_unique(call: Caller) -> None:
    """AT-6: jti values do not repeat (sampled)."""
    jtis = {
        jwt.decode(
            json.loads(call.token(CC).body)["access_token"], options={"verify_signature": False}
        )["jti"]
        for _ in range(2000)
    }
    assert len(jtis) == 2000


def test_not_found_path(call: Caller) -> None:
    """Unknown paths answer 404, never 500."""
    assert call.request("/nope", method="GET").status == 404


def test_repeated_authorization_header_is_invalid_request(call: Caller) -> None:
    """CA-5: two Authorization fields (joined by the server) are ambiguous -> 400."""
    from tests.issuer.conftest import basic

    joined = f"{basic('svc', SECRET)}, {basic('other', 'other-secret')}"
    response = call.token(CC, auth=None, headers={"authorization": joined})
    assert response.status == 400
    assert error_of(response) == "invalid_request"
