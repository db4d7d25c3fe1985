"""The issuer as real servers (uvicorn/Starlette, waitress/WSGI, the CLI process) driven by
real OAuth clients (Authlib, requests-oauthlib) and checked by real JWT validators."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import requests
from oauthlib.oauth2 import BackendApplicationClient, LegacyApplicationClient
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from scopegate.issuer import (
    Client,
    Issuer,
    IssuerConfig,
    SigningKey,
    SigningKeySet,
    User,
    create_wsgi_app,
)
from tests.issuer.conftest import ALICE_HASH, ALL_GRANTS, run_waitress
from tests.servers import free_port, run_asgi, run_process

with warnings.catch_warnings():
    # Authlib announces a future module move on import; not our concern here.
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import OAuth2Client

pytestmark = pytest.mark.filterwarnings("ignore:The httpx module is deprecated")
AUDIENCE = "api://demo"
WELL_KNOWN = "/.well-known/oauth-authorization-server"


def build_issuer(base: str, *, alg: str = "RS256", token_format: str = "jwt") -> Issuer:
    config = IssuerConfig(
        issuer=base, audience=AUDIENCE, allow_password_grant=True, token_format=token_format
    )  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            config,
            clients=[
                Client(
                    "svc",
                    ("svc-secret",),
                    grant_types=ALL_GRANTS,
                    scopes=frozenset({"items:read", "items:write"}),
                ),
                Client("rs", ("rs-secret",), grant_types=frozenset(), introspect=True),
                Client(
                    "basic-only",
                    ("basic-secret",),
                    scopes=frozenset({"items:read"}),
                    auth_methods=frozenset({"client_secret_basic"}),
                ),
            ],
            users=[
                User("user-1", "alice", ALICE_HASH, scopes=frozenset({"items:read", "items:write"}))
            ],
            keys=SigningKeySet(current=SigningKey.generate(alg)),
        )


@contextlib.contextmanager
def serve(kind: str, **kwargs: str) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = build_issuer(base, **kwargs)
    if kind == "asgi":
        from scopegate.issuer import create_asgi_app

        with run_asgi(create_asgi_app(issuer), port=port) as url:
            yield url
    else:
        with run_waitress(create_wsgi_app(issuer), port=port) as url:
            yield url


@pytest.fixture(
    params=[pytest.param("asgi", id="starlette-uvicorn"), pytest.param("wsgi", id="wsgi-waitress")]
)
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The issuer served for real, by the Starlette app and by the WSGI app."""
    with serve(request.param) as url:
        yield url


def test_authlib_client_full_cycle(server: str) -> None:
    """Authlib's httpx OAuth2Client obtains, refreshes, introspects and revokes tokens."""
    with OAuth2Client("svc", "svc-secret", scope="items:read items:write") as client:
        token = client.fetch_token(f"{server}/token", grant_type="client_credentials")
        assert token["token_type"] == "Bearer"
        assert "refresh_token" not in token
        user = client.fetch_token(
            f"{server}/token", grant_type="password", username="alice", password="alice-pw"
        )
        refreshed = client.refresh_token(f"{server}/token", refresh_token=user["refresh_token"])
        assert refreshed["refresh_token"] != user["refresh_token"]
        info = client.introspect_token(f"{server}/introspect", token=refreshed["access_token"])
        assert info.json()["active"] is True
        revoked = client.revoke_token(
            f"{server}/revoke", token=refreshed["refresh_token"], token_type_hint="refresh_token"
        )
        assert revoked.status_code == 200
        info = client.introspect_token(f"{server}/introspect", token=refreshed["access_token"])
        assert info.json() == {"active": False}


def test_authlib_client_secret_post_is_refused_for_basic_client(server: str) -> None:
    """CA-4 against a real server: a client restricted to Basic that uses post gets 401."""
    with OAuth2Client(
        "basic-only", "basic-secret", token_endpoint_auth_method="client_secret_post"
    ) as client:
        response = client.request(
            "POST",
            f"{server}/token",
            data={
                "grant_type": "client_credentials",
                "client_id": "basic-only",
                "client_secret": "basic-secret",
            },
            withhold_token=True,
        )
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic realm=")


def test_requests_oauthlib_backend_and_legacy(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """requests-oauthlib BackendApplicationClient and LegacyApplicationClient work."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    with OAuth2Session(client=BackendApplicationClient(client_id="svc")) as backend:
        token = backend.fetch_token(
            f"{server}/token", client_id="svc", client_secret="svc-secret", scope=["items:read"]
        )
        assert token["scope"] == ["items:read"]
        introspected = backend.post(
            f"{server}/introspect",
            data={"token": token["access_token"]},
            auth=HTTPBasicAuth("rs", "rs-secret"),
        ).json()
        assert introspected["active"] is True
        assert introspected["client_id"] == "svc"
    with OAuth2Session(client=LegacyApplicationClient(client_id="svc")) as legacy:
        user = legacy.fetch_token(
            f"{server}/token",
            username="alice",
            password="alice-pw",
            client_id="svc",
            client_secret="svc-secret",
        )
        assert user["refresh_token"]
        refreshed = legacy.refresh_token(
            f"{server}/token",
            refresh_token=user["refresh_token"],
            auth=HTTPBasicAuth("svc", "svc-secret"),
        )
        assert refreshed["access_token"] != user["access_token"]
    with requests.Session() as session:
        reused = session.post(
            f"{server}/token",
            data={"grant_type": "refresh_token", "refresh_token": user["refresh_token"]},
            auth=("svc", "svc-secret"),
            timeout=10,
        )
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        introspected = session.post(
            f"{server}/introspect",
            data={"token": refreshed["access_token"]},
            auth=("rs", "rs-secret"),
            timeout=10,
        ).json()
        assert introspected == {"active": False}  # reuse revoked the family
        revoked = session.post(
            f"{server}/revoke", data={"token": "unknown"}, auth=("svc", "svc-secret"), timeout=10
        )
        assert revoked.status_code == 200


def test_real_server_protocol_errors(server: str) -> None:
    """REQ-2/REQ-4/RS-3/REQ-8 over real HTTP."""
    get = httpx.get(f"{server}/token")
    assert get.status_code == 400
    assert get.json()["error"] == "invalid_request"
    assert get.headers["cache-control"] == "no-store"
    assert get.headers["pragma"] == "no-cache"
    query = httpx.post(
        f"{server}/token?client_secret=x",
        data={"grant_type": "client_credentials"},
        auth=("svc", "svc-secret"),
    )
    assert query.status_code == 400
    big = httpx.post(
        f"{server}/token",
        content=b"a=" + b"b" * (1 << 20),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert big.status_code == 413
    assert httpx.get(f"{server}/missing").status_code == 404
    twice = httpx.post(
        f"{server}/token",
        data={"grant_type": "client_credentials"},
        headers=[
            ("authorization", "Basic c3ZjOnN2Yy1zZWNyZXQ="),
            ("authorization", "Basic c3ZjOnN2Yy1zZWNyZXQ="),
        ],
    )
    assert twice.status_code == 400
    assert twice.json()["error"] == "invalid_request"
    once = httpx.post(
        f"{server}/token",
        data={"grant_type": "client_credentials"},
        headers={"authorization": "Basic c3ZjOnN2Yy1zZWNyZXQ="},
    )
    assert once.status_code == 200
    head = httpx.head(f"{server}{WELL_KNOWN}")
    assert head.status_code == 200


_GOOD = "Basic c3ZjOnN2Yy1zZWNyZXQ="  # svc:svc-secret
_WRONG = "Basic cnM6d3Jvbmc="  # rs:wrong
_FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param([("authorization", _GOOD), ("authorization", _WRONG)], id="good-then-wrong"),
        pytest.param([("authorization", _WRONG), ("authorization", _GOOD)], id="wrong-then-good"),
        pytest.param([("authorization", _GOOD), ("authorization", "")], id="good-then-empty"),
        pytest.param(
            [("authorization", _GOOD), ("content-type", "application/json")], id="json-then-form"
        ),
        pytest.param(
            [("authorization", _GOOD), ("content-type", f"{_FORM}; x=y")], id="form-twice"
        ),
    ],
)
@pytest.mark.parametrize("path", ["/token", "/introspect"])
def test_real_server_repeated_singleton_fields(
    server: str, path: str, fields: list[tuple[str, str]]
) -> None:
    """CA-5/REQ-3: a repeated Authorization or Content-Type field is 400 over real HTTP.

    Whichever order the fields arrive in, neither value may win: a proxy reading the first
    and the issuer reading the last would disagree on the caller (RFC 9110 §5.3).
    """
    content_types = [value for name, value in fields if name == "content-type"]
    headers = [("content-type", ct) for ct in content_types] + [("content-type", _FORM)]
    headers += [(name, value) for name, value in fields if name != "content-type"]
    response = httpx.post(
        f"{server}{path}",
        content=b"grant_type=client_credentials&token=t",
        headers=headers,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"


def test_concurrent_refresh_against_real_server(server: str) -> None:
    """RT-7: 16 parallel refreshes of one token over HTTP: exactly one 200."""
    first = httpx.post(
        f"{server}/token",
        data={"grant_type": "password", "username": "alice", "password": "alice-pw"},
        auth=("svc", "svc-secret"),
    ).json()
    barrier = threading.Barrier(16)
    statuses: list[int] = []

    def worker() -> None:
        with httpx.Client() as client:
            barrier.wait()
            statuses.append(
                client.post(
                    f"{server}/token",
                    data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
                    auth=("svc", "svc-secret"),
                ).status_code
            )

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses.count(200) == 1
    assert set(statuses) == {200, 400}


@pytest.mark.parametrize(
    "alg",
    [
        pytest.param("RS256", id="rs256"),
        pytest.param("ES256", id="es256"),
        pytest.param("EdDSA", id="eddsa"),
    ],
)
def test_tokens_pass_pyjwt_joserfc_and_scopegate(alg: str) -> None:
    """AT-1/KEY-1/KEY-2: issued JWTs validate with PyJWT (JWKS), joserfc and JWTVerifier."""
    from joserfc import jwt as jose_jwt
    from joserfc.errors import SecurityWarning
    from joserfc.jwk import KeySet as JoseKeySet

    from scopegate._jwt import JWTVerifier

    with serve("asgi", alg=alg) as base:
        metadata = httpx.get(f"{base}{WELL_KNOWN}").json()
        assert metadata["issuer"] == base
        jwks_response = httpx.get(metadata["jwks_uri"])
        assert jwks_response.headers["cache-control"].startswith("public, max-age=")
        jwks = jwks_response.json()
        for jwk in jwks["keys"]:
            assert {"kty", "kid", "use", "alg"} <= set(jwk)
            assert not {"d", "p", "q", "dp", "dq", "qi", "k", "oth"} & set(jwk)
            assert jwk["alg"] == alg
            assert jwk["use"] == "sig"
        token = httpx.post(
            metadata["token_endpoint"],
            data={"grant_type": "client_credentials", "scope": "items:read"},
            auth=("svc", "svc-secret"),
        ).json()["access_token"]

        signing_key = jwt.PyJWKClient(metadata["jwks_uri"]).get_signing_key_from_jwt(token)
        claims = jwt.decode(
            token,
            signing_key.key,
            algorithms=[alg],
            audience=AUDIENCE,
            issuer=base,
            options={"require": ["iss", "exp", "aud", "sub", "client_id", "iat", "jti"]},
        )
        assert claims["scope"] == "items:read"

        with warnings.catch_warnings():
            # joserfc flags the "EdDSA" name as deprecated by RFC 9864 (now "Ed25519").
            warnings.simplefilter("ignore", SecurityWarning)
            decoded = jose_jwt.decode(token, JoseKeySet.import_key_set(jwks), algorithms=[alg])
        assert decoded.header["typ"] == "at+jwt"
        jose_jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": base},
            aud={"essential": True, "value": AUDIENCE},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(decoded.claims)

        verifier = JWTVerifier(issuer=base, audience=AUDIENCE)
        try:
            access = verifier.verify(token)
        finally:
            verifier.close()
        assert access.client_id == "svc"
        assert access.subject == "client:svc"
        assert access.scopes == frozenset({"items:read"})


def test_opaque_tokens_pass_introspection_verifier() -> None:
    """Opaque tokens are accepted by scopegate's IntrospectionVerifier via discovery."""
    from scopegate._introspection import IntrospectionVerifier

    with serve("wsgi", token_format="opaque") as base:
        token = httpx.post(
            f"{base}/token", data={"grant_type": "client_credentials"}, auth=("svc", "svc-secret")
        ).json()["access_token"]
        assert "." not in token
        with contextlib.ExitStack() as stack:
            # Closed even when an assertion fails: a leaked client socket would surface
            # as a ResourceWarning (an error under filterwarnings) in a later test.
            verifier = IntrospectionVerifier(
                introspection_uri=f"{base}/introspect",
                client_id="rs",
                client_secret="rs-secret",
                audience=AUDIENCE,
            )
            stack.callback(verifier.close)
            discovering = IntrospectionVerifier(
                issuer=base, client_id="rs", client_secret="rs-secret", audience=AUDIENCE
            )
            stack.callback(discovering.close)
            access = verifier.verify(token)
            assert discovering.verify(token).client_id == "svc"
        assert access.client_id == "svc"
        assert access.scopes == frozenset({"items:read", "items:write"})


# -- the CLI process -------------------------------------------------------------------


CONFIG = """
audience = "api://demo"
token_format = "jwt"
access_token_ttl = 600
refresh_token_ttl = 86400
allow_password_grant = true
{extra}

[[clients]]
id = "svc-a"
secret = "svc-a-secret"
grant_types = ["client_credentials", "password", "refresh_token"]
scopes = ["items:read", "items:write", "admin"]

[[clients]]
id = "rs"
secret = "{rs_hash}"
grant_types = []
introspect = true

[[users]]
username = "alice"
password = "alice-pw"
scopes = ["items:read", "items:write"]
"""


def scopegate_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scopegate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def rs_hash() -> str:
    """`scopegate hash-secret` output for the resource server's secret (from stdin)."""
    result = scopegate_cli("hash-secret", stdin="rs-secret\n")
    assert result.returncode == 0, result.stderr
    value = result.stdout.strip()
    assert value.startswith("$argon2id$")
    assert "rs-secret" not in result.stdout
    return value


def test_cli_serve_process(tmp_path: Path, rs_hash: str) -> None:
    """`python -m scopegate issuer serve` serves a TOML config and stops cleanly on SIGTERM."""
    key_file = tmp_path / "issuer.pem"
    generated = scopegate_cli("keys", "generate", "--alg", "ES256", "--out", str(key_file))
    assert generated.returncode == 0, generated.stderr
    assert (key_file.stat().st_mode & 0o777) == 0o600
    public = json.loads(generated.stdout)
    config = tmp_path / "issuer.toml"
    config.write_text(CONFIG.format(extra=f'signing_key = "{key_file.name}"', rs_hash=rs_hash))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    args = [
        sys.executable,
        "-m",
        "scopegate",
        "issuer",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
    ]
    with run_process(args, port, ready_path=WELL_KNOWN) as proc:
        metadata = httpx.get(f"{base}{WELL_KNOWN}").json()
        assert metadata["issuer"] == base
        assert "password" in metadata["grant_types_supported"]
        assert httpx.get(metadata["jwks_uri"]).json()["keys"] == [public]
        body = httpx.post(
            f"{base}/token",
            data={"grant_type": "password", "username": "alice", "password": "alice-pw"},
            auth=("svc-a", "svc-a-secret"),
        ).json()
        header = jwt.get_unverified_header(body["access_token"])
        assert header["kid"] == public["kid"]
        assert header["alg"] == "ES256"
        info = httpx.post(
            f"{base}/introspect", data={"token": body["access_token"]}, auth=("rs", "rs-secret")
        ).json()
        assert info["active"] is True
        assert info["sub"] != "alice"
        # SEC-4: the served app ignores client-sent X-Forwarded-For for throttling.
        statuses = [
            httpx.post(
                f"{base}/token",
                data={"grant_type": "client_credentials"},
                auth=("svc-a", "wrong"),
                headers={"x-forwarded-for": f"10.0.0.{i}"},
            ).status_code
            for i in range(22)
        ]
        assert statuses[0] == 401
        assert statuses[-1] == 429
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert "RFC 9700" in output
    for secret in (
        "svc-a-secret",
        "alice-pw",
        "rs-secret",
        body["access_token"],
        body["refresh_token"],
        "PRIVATE KEY",
    ):
        assert secret not in output


def test_cli_serve_generates_key_and_default_issuer(tmp_path: Path, rs_hash: str) -> None:
    """No signing_key: a key is generated and logged by kid; issuer defaults to http://HOST:PORT."""
    config = tmp_path / "issuer.toml"
    config.write_text(CONFIG.format(extra="", rs_hash=rs_hash))
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "scopegate",
        "issuer",
        "serve",
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with run_process(args, port, ready_path=WELL_KNOWN) as proc:
        metadata = httpx.get(f"http://127.0.0.1:{port}{WELL_KNOWN}").json()
        assert metadata["issuer"] == f"http://127.0.0.1:{port}"
        kid = httpx.get(metadata["jwks_uri"]).json()["keys"][0]["kid"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
        output = proc.stdout.read().decode() if proc.stdout else ""
    assert kid in output
    assert "PRIVATE" not in output


def test_cli_serve_bad_config(tmp_path: Path) -> None:
    """A bad configuration exits with code 2 and a message, no traceback."""
    config = tmp_path / "issuer.toml"
    config.write_text('issuer = "http://auth.example"\naudience = "x"\n')
    result = scopegate_cli("issuer", "serve", "--config", str(config))
    assert result.returncode == 2
    assert "https" in result.stderr
    assert "Traceback" not in result.stderr
