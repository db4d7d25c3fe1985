"""DPoP end to end with real processes (RFC 9449).

``scopegate issuer serve`` runs from a TOML file, once with JWT access tokens and server
nonces, once with opaque tokens; each feeds one example API started with
``SCOPEGATE_DPOP=required`` (``examples/serve.py``). Clients are ``httpx`` with the
testing kit's ``DPoPAuth``, a browser login over HTTP for the public client's
authorization code (PKCE and ``dpop_jkt``), and Authlib, which has no DPoP support of its
own (authlib/authlib#315): it drives the code flow and we add the proof header.
"""

from __future__ import annotations

import contextlib
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from scopegate.issuer import create_asgi_app, create_wsgi_app
from scopegate.testing import DPoPAuth, DPoPKey
from tests.issuer.authz_support import browser_login, pkce, query_of
from tests.issuer.conftest import SECRET, make_issuer, run_waitress
from tests.servers import ROOT, free_port, run_asgi, run_process

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
DOC = ROOT / "docs" / "dpop.md"
_SNIPPET = re.compile(r"<!-- snippet: ([a-z-]+) -->\n```python\n(.*?)```", re.DOTALL)

AUDIENCE = "api://dpop-e2e"
SVC = ("svc", "svc-secret-6d1e9a0b")
RS = ("rs", "rs-secret-2c7f4e81")
CALLBACK = "http://127.0.0.1:8765/callback"
KEY = DPoPKey.generate()
OTHER = DPoPKey.generate()


def config(token_format: str, nonce: bool) -> str:
    return f"""
audience = "{AUDIENCE}"
token_format = "{token_format}"
dpop_nonce = {"true" if nonce else "false"}

[[clients]]
id = "{SVC[0]}"
secret = "{SVC[1]}"
grant_types = ["client_credentials"]
scopes = ["items:read", "items:write", "admin"]

[[clients]]
id = "spa"
token_endpoint_auth_method = "none"
grant_types = ["authorization_code", "refresh_token"]
redirect_uris = ["{CALLBACK}"]
scopes = ["items:read"]
dpop_required = true

[[clients]]
id = "{RS[0]}"
secret = "{RS[1]}"
grant_types = []
introspect = true

[[users]]
username = "alice"
password = "alice-pw"
scopes = ["items:read"]
"""


@dataclass(frozen=True)
class Stack:
    """A running issuer and the example API that trusts it."""

    issuer: str
    api: str

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"


@contextlib.contextmanager
def stack(workdir: Path, token_format: str, *, nonce: bool, example: str) -> Iterator[Stack]:
    path = workdir / f"issuer-{token_format}.toml"
    path.write_text(config(token_format, nonce))
    port = free_port()
    serve = [sys.executable, "-m", "scopegate", "issuer", "serve", "--config", str(path)]
    serve += ["--host", "127.0.0.1", "--port", str(port)]
    issuer = f"http://127.0.0.1:{port}"
    env = {
        "SCOPEGATE_ISSUER": issuer,
        "SCOPEGATE_AUDIENCE": AUDIENCE,
        "SCOPEGATE_DPOP": "required",
    }
    if token_format == "opaque":
        env["SCOPEGATE_INTROSPECTION_URI"] = f"{issuer}/introspect"
        env["SCOPEGATE_INTROSPECTION_CLIENT_ID"] = RS[0]
        env["SCOPEGATE_INTROSPECTION_CLIENT_SECRET"] = RS[1]
    api_port = free_port()
    api = [sys.executable, str(ROOT / "examples" / "serve.py"), example, "--port", str(api_port)]
    with (
        run_process(serve, port, ready_path="/.well-known/oauth-authorization-server"),
        run_process(api, api_port, env=env, ready_path="/public"),
    ):
        yield Stack(issuer, f"http://127.0.0.1:{api_port}")


@pytest.fixture(scope="module")
def jwt_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """JWT access tokens, server nonces; the plain ASGI example."""
    with stack(tmp_path_factory.mktemp("jwt"), "jwt", nonce=True, example="asgi") as running:
        yield running


@pytest.fixture(scope="module")
def opaque_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Opaque access tokens (introspection), no nonces; the plain WSGI example."""
    with stack(tmp_path_factory.mktemp("op"), "opaque", nonce=False, example="wsgi") as running:
        yield running


def check_api(api: str, token: str, key: DPoPKey = KEY) -> None:
    """The bound token with a proof: 200; as Bearer: 401 invalid_token; a proof sent
    twice: 401 invalid_dpop_proof."""
    items = f"{api}/items"
    with httpx.Client(auth=DPoPAuth(token, key), timeout=10) as client:
        assert client.get(items).status_code == 200
    bearer = httpx.get(items, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert bearer.status_code == 401
    assert 'error="invalid_token"' in bearer.headers["www-authenticate"]
    headers = {"Authorization": f"DPoP {token}", "DPoP": key.proof("GET", items, token=token)}
    assert httpx.get(items, headers=headers, timeout=10).status_code == 200
    replay = httpx.get(items, headers=headers, timeout=10)
    assert replay.status_code == 401
    assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]


def authorize_url(issuer: str, challenge: str, jkt: str) -> str:
    query = {
        "response_type": "code",
        "client_id": "spa",
        "redirect_uri": CALLBACK,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "scope": "items:read",
        "state": "s-1",
        "dpop_jkt": jkt,
    }
    return f"{issuer}/authorize?{urlencode(query)}"


def test_client_credentials_with_nonces(jwt_stack: Stack) -> None:
    """DPoPAuth at the token endpoint: the nonce round trip, a bound JWT, and the API
    accepts it only with proofs."""
    auth = DPoPAuth(None, KEY, client=SVC)
    data = {"grant_type": "client_credentials", "scope": "items:read"}
    response = httpx.post(jwt_stack.token_url, data=data, auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert auth.nonce is not None  # the first attempt got use_dpop_nonce, the retry passed
    token = response.json()["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["cnf"] == {"jkt": KEY.jkt}
    check_api(jwt_stack.api, token)


def test_public_client_code_pkce_dpop_jkt_and_refresh(jwt_stack: Stack) -> None:
    """A public client: a code bound with dpop_jkt, redeemed with the key's proof; the
    refresh token is bound (another key: invalid_grant); no proof: invalid_request."""
    verifier, challenge = pkce()
    redirect = browser_login(jwt_stack.issuer, authorize_url(jwt_stack.issuer, challenge, KEY.jkt))
    assert redirect.status_code == 303, redirect.text
    code = query_of(redirect.headers["location"])["code"]
    form = {
        "grant_type": "authorization_code",
        "client_id": "spa",
        "code": code,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
    }
    # dpop_required: a request without a proof is refused before the code is touched.
    refused = httpx.post(jwt_stack.token_url, data=form, timeout=10)
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_request")
    auth = DPoPAuth(None, KEY)
    issued = httpx.post(jwt_stack.token_url, data=form, auth=auth, timeout=10)
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"] == "DPoP"
    check_api(jwt_stack.api, issued.json()["access_token"])

    refresh = {
        "grant_type": "refresh_token",
        "client_id": "spa",
        "refresh_token": issued.json()["refresh_token"],
    }
    stolen = httpx.post(jwt_stack.token_url, data=refresh, auth=DPoPAuth(None, OTHER), timeout=10)
    assert (stolen.status_code, stolen.json()["error"]) == (400, "invalid_grant")
    renewed = httpx.post(jwt_stack.token_url, data=refresh, auth=auth, timeout=10)
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["token_type"] == "DPoP"
    check_api(jwt_stack.api, renewed.json()["access_token"])


def test_opaque_bound_token_through_introspection(opaque_stack: Stack) -> None:
    """An opaque bound token: the API learns cnf.jkt from introspection and requires the
    proof; as Bearer it is refused."""
    auth = DPoPAuth(None, KEY, client=SVC)
    data = {"grant_type": "client_credentials", "scope": "items:read"}
    response = httpx.post(opaque_stack.token_url, data=data, auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    check_api(opaque_stack.api, response.json()["access_token"])


def test_authlib_code_flow_gets_a_bound_token(opaque_stack: Stack) -> None:
    """Authlib (no DPoP support) drives the PKCE code flow; with our proof in the token
    request's headers it gets a DPoP-bound token, which DPoPAuth then uses at the API."""
    token_url = opaque_stack.token_url
    with OAuth2Client(
        client_id="spa",
        token_endpoint_auth_method="none",
        redirect_uri=CALLBACK,
        scope="items:read",
        code_challenge_method="S256",
        timeout=10,
    ) as client:
        verifier, _ = pkce()
        url, state = client.create_authorization_url(
            f"{opaque_stack.issuer}/authorize", code_verifier=verifier, dpop_jkt=KEY.jkt
        )
        redirect = browser_login(opaque_stack.issuer, url)
        assert redirect.status_code == 303, redirect.text
        token = client.fetch_token(
            token_url,
            authorization_response=redirect.headers["location"],
            code_verifier=verifier,
            headers={
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
                "DPoP": KEY.proof("POST", token_url),
            },
        )
    assert state
    assert token["token_type"] == "DPoP"
    check_api(opaque_stack.api, token["access_token"])


@pytest.mark.parametrize("name", ["issuer-dpopauth", "issuer-plain-httpx"])
def test_docs_snippets_run_as_written(jwt_stack: Stack, name: str) -> None:
    """The token-request snippets of docs/dpop.md, with this stack's addresses and
    credentials: a DPoP token (after the nonce round trip) that gets the items."""
    code = dict(_SNIPPET.findall(DOC.read_text()))[name]
    for documented, real in (
        ("http://127.0.0.1:9000", jwt_stack.issuer),
        ("http://127.0.0.1:8000", jwt_stack.api),
        ('("svc-a", "SECRET")', repr(SVC)),
    ):
        assert documented in code
        code = code.replace(documented, real)
    namespace: dict[str, object] = {}
    exec(compile(code, "docs/dpop.md", "exec"), namespace)
    response, items = namespace["response"], namespace["items"]
    assert isinstance(response, httpx.Response)
    assert isinstance(items, httpx.Response)
    assert response.json()["token_type"] == "DPoP"
    assert items.status_code == 200


@pytest.mark.parametrize(
    "kind", [pytest.param("asgi", id="uvicorn"), pytest.param("wsgi", id="waitress")]
)
def test_two_dpop_headers_are_refused_by_both_apps(kind: str) -> None:
    """Two DPoP fields reach the core joined (RFC 9110 §5.3) and are invalid_dpop_proof
    under uvicorn and waitress alike; one is a bound token."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = make_issuer(issuer=base)
    server = (
        run_asgi(create_asgi_app(issuer), port)
        if kind == "asgi"
        else run_waitress(create_wsgi_app(issuer), port)
    )
    url = f"{base}/token"
    form = {"grant_type": "client_credentials", "scope": "read"}
    with server:
        two = [("DPoP", KEY.proof("POST", url)), ("DPoP", KEY.proof("POST", url))]
        refused = httpx.post(url, data=form, auth=("svc", SECRET), headers=two, timeout=10)
        assert (refused.status_code, refused.json()["error"]) == (400, "invalid_dpop_proof")
        one = httpx.post(url, data=form, auth=("svc", SECRET), headers=two[:1], timeout=10)
        assert one.json()["token_type"] == "DPoP"
