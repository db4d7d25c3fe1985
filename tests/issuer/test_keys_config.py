"""Signing keys and rotation, configuration loading, the CLI helpers, module hygiene."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from scopegate._errors import ConfigurationError
from scopegate.cli.issuer import register
from scopegate.issuer import IssuerConfig, SigningKey, SigningKeySet, load_config
from tests.issuer.conftest import AUDIENCE, Caller, make_issuer

CC = {"grant_type": "client_credentials"}


def pem(key: object) -> bytes:
    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("http://x", id="http-remote"),
        pytest.param("https://x?q=1", id="query"),
        pytest.param("https://x#f", id="fragment"),
        pytest.param("ftp://x", id="scheme"),
        pytest.param("/relative", id="relative"),
    ],
)
def test_insecure_or_malformed_issuer_refused(issuer: str) -> None:
    """REQ-1/MD-2: non-https issuers (except loopback) and query/fragment are refused."""
    with pytest.raises(ConfigurationError):
        IssuerConfig(issuer=issuer, audience=AUDIENCE)


def test_http_allowed_for_loopback_and_dev_mode() -> None:
    """REQ-1: http is allowed on loopback, or anywhere with insecure_dev_mode."""
    IssuerConfig(issuer="http://127.0.0.1:9000", audience=AUDIENCE)
    IssuerConfig(issuer="http://localhost:9000", audience=AUDIENCE)
    IssuerConfig(issuer="http://x", audience=AUDIENCE, insecure_dev_mode=True)


def test_access_token_lifetime_cap() -> None:
    """RS-6: access tokens above one hour need an explicit override."""
    with pytest.raises(ConfigurationError):
        IssuerConfig(issuer="https://x", audience=AUDIENCE, access_token_ttl=7200)
    IssuerConfig(
        issuer="https://x", audience=AUDIENCE, access_token_ttl=7200, allow_long_lived_tokens=True
    )
    assert IssuerConfig(issuer="https://x", audience=AUDIENCE).access_token_ttl == 600


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(lambda: rsa.generate_private_key(65537, 1024), id="rsa-1024"),
        pytest.param(lambda: ec.generate_private_key(ec.SECP256K1()), id="secp256k1"),
    ],
)
def test_weak_or_unsupported_keys_refused(key) -> None:  # type: ignore[no-untyped-def]
    """KEY-3: RSA below 2048 bits and curves without a JWS algorithm are refused."""
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(pem(key()))


def test_ec_key_must_fit_its_algorithm() -> None:
    """KEY-3: a P-384 key signs ES384 (its own curve), never ES256."""
    data = pem(ec.generate_private_key(ec.SECP384R1()))
    assert SigningKey.from_pem(data).alg == "ES384"
    with pytest.raises(ConfigurationError):
        SigningKey.from_pem(data, alg="ES256")


def test_bad_pem_refused_without_leaking() -> None:
    """KEY-6: an unreadable key raises a ConfigurationError without key material."""
    with pytest.raises(ConfigurationError) as info:
        SigningKey.from_pem(b"-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n")
    assert "QUJD" not in str(info.value)


@pytest.mark.parametrize(
    "alg",
    [
        pytest.param("RS256", id="rs256"),
        pytest.param("ES256", id="es256"),
        pytest.param("EdDSA", id="eddsa"),
    ],
)
def test_jwks_members_and_roundtrip(alg: str) -> None:
    """KEY-2/AT-8: public members only, one alg per key, kid = RFC 7638 thumbprint."""
    key = SigningKey.generate(alg)
    assert SigningKey.from_pem(key.private_pem()).kid == key.kid
    jwk = SigningKeySet(current=key).jwks()["keys"][0]
    assert jwk["alg"] == alg
    assert jwk["use"] == "sig"
    assert jwk["kid"] == key.kid
    assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k", "key_ops"} & set(jwk)
    assert "private_key" not in repr(key)
    assert "BEGIN" not in repr(key)
    with pytest.raises(ConfigurationError):
        SigningKey.generate("HS256")  # SEC-6: no shared-secret signing


def test_key_rotation_lifecycle() -> None:
    """KEY-4: next is published before it signs; previous still verifies until removed."""
    first, second = SigningKey.generate("RS256"), SigningKey.generate("ES256")
    issuer = make_issuer(password=False, keys=SigningKeySet(current=first))
    call = Caller(issuer)
    old = json.loads(call.token(CC).body)["access_token"]
    issuer.publish_next_key(second)
    kids = [k["kid"] for k in json.loads(call.request("/jwks.json", method="GET").body)["keys"]]
    assert kids == [first.kid, second.kid]
    assert (
        jwt.get_unverified_header(json.loads(call.token(CC).body)["access_token"])["kid"]
        == first.kid
    )  # next does not sign yet
    issuer.rotate_keys()
    new = json.loads(call.token(CC).body)["access_token"]
    assert jwt.get_unverified_header(new)["kid"] == second.kid
    kids = [k["kid"] for k in json.loads(call.request("/jwks.json", method="GET").body)["keys"]]
    assert kids == [second.kid, first.kid]
    assert call.introspect(old)["active"] is True  # previous still verifies
    issuer.remove_key(first.kid)  # KEY-5: emergency removal
    assert call.introspect(old) == {"active": False}
    assert call.introspect(new)["active"] is True


def test_remove_current_key_promotes_next() -> None:
    """KEY-5: removing the current key promotes next immediately; without one it fails."""
    a, b = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    assert SigningKeySet(current=a, next=b).without(a.kid).current is b
    with pytest.raises(ConfigurationError):
        SigningKeySet(current=a).without(a.kid)
    with pytest.raises(ConfigurationError):
        SigningKeySet(current=a).rotate()
    with pytest.raises(ConfigurationError):
        SigningKeySet(current=a, previous=(a,))


CONFIG = """
issuer = "https://auth.example"
audience = "api://demo"
token_format = "opaque"
access_token_ttl = 300
signing_key = "k.pem"
previous_signing_keys = ["old.pem"]

[[clients]]
id = "svc"
secrets = ["one", "two"]
grant_types = ["client_credentials"]
scopes = ["a", "b"]
default_scopes = ["a"]
token_endpoint_auth_method = "client_secret_post"

[[users]]
username = "alice"
password = "pw"
scopes = ["a"]
"""


def test_load_config(tmp_path: Path) -> None:
    """The TOML format: settings, clients, users, relative key paths."""
    (tmp_path / "c.toml").write_text(CONFIG)
    loaded = load_config(tmp_path / "c.toml")
    assert loaded.config.token_format == "opaque"
    assert loaded.config.access_token_ttl == 300
    assert loaded.signing_keys == (tmp_path / "k.pem", tmp_path / "old.pem")
    client = loaded.clients[0]
    assert client.auth_methods == frozenset({"client_secret_post"})
    assert len(client.secret_hashes) == 2
    assert client.effective_default_scopes == frozenset({"a"})
    user = loaded.users[0]
    assert user.subject != "alice"
    assert len(user.subject) == 36


@pytest.mark.parametrize(
    "text",
    [
        pytest.param('audience = "x"\nissuer = "https://a"\ntypo_setting = 1', id="unknown-key"),
        pytest.param(
            'audience = "x"\nissuer = "https://a"\n[[clients]]\nid = "c"\n',
            id="client-without-secret",
        ),
        pytest.param(
            'audience = "x"\nissuer = "https://a"\n[[clients]]\nid = "c"\n'
            'secret = "s"\ngrant_types = ["implicit"]',
            id="bad-grant",
        ),
        pytest.param(
            'audience = "x"\nissuer = "https://a"\n[[clients]]\nid = "c"\n'
            'secret = "s"\nscopes = ["bad\\"scope"]',
            id="bad-scope",
        ),
        pytest.param(
            'audience = "x"\nissuer = "https://a"\n[[clients]]\nid = "c"\n'
            'secret = "$scrypt$garbage"',
            id="bad-hash",
        ),
        pytest.param(
            'audience = "x"\nissuer = "https://a"\n[[users]]\nusername = "u"\n',
            id="user-without-password",
        ),
        pytest.param("not toml [", id="not-toml"),
        pytest.param('issuer = "https://a"', id="no-audience"),
    ],
)
def test_bad_config_refused(tmp_path: Path, text: str) -> None:
    """Typos and unsafe values are refused at load time."""
    (tmp_path / "c.toml").write_text(text)
    with pytest.raises(ConfigurationError):
        load_config(tmp_path / "c.toml")


def test_from_config_loads_key_files(tmp_path: Path) -> None:
    """Issuer.from_config signs with signing_key and publishes previous keys."""
    from scopegate.issuer import Issuer

    current, old = SigningKey.generate("EdDSA"), SigningKey.generate("RS256")
    (tmp_path / "k.pem").write_bytes(current.private_pem())
    (tmp_path / "old.pem").write_bytes(old.private_pem())
    (tmp_path / "c.toml").write_text(CONFIG)
    issuer = Issuer.from_config(load_config(tmp_path / "c.toml"))
    assert issuer.keys.current.kid == current.kid
    assert [k.kid for k in issuer.keys.previous] == [old.kid]
    (tmp_path / "old.pem").write_text("garbage")
    with pytest.raises(ConfigurationError):
        Issuer.from_config(load_config(tmp_path / "c.toml"))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_hash_secret_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """hash-secret reads stdin and prints a verifiable hash, never the secret."""
    from scopegate.issuer import verify_secret

    monkeypatch.setattr(sys, "stdin", io.StringIO("top-secret\n"))
    args = parse("hash-secret", "--scheme", "scrypt")
    assert args.handler(args) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("$scrypt$")
    assert verify_secret(out, "top-secret")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert args.handler(args) == 2


def test_cli_hash_secret_generate(capsys: pytest.CaptureFixture[str]) -> None:
    """hash-secret --generate prints a fresh 256-bit secret and its argon2id hash."""
    from scopegate.issuer import verify_secret

    args = parse("hash-secret", "--generate")
    assert args.handler(args) == 0
    secret, hashed = capsys.readouterr().out.split()
    assert len(secret) >= 43
    assert verify_secret(hashed, secret)


def test_cli_hash_secret_refuses_argv() -> None:
    """hash-secret takes no secret on the command line (shell history, ps)."""
    with pytest.raises(SystemExit):
        parse("hash-secret", "my-secret")


def test_cli_keys_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """keys generate writes a 0600 PEM, refuses to overwrite, and prints the public JWK."""
    out = tmp_path / "k.pem"
    args = parse("keys", "generate", "--alg", "EdDSA", "--out", str(out))
    assert args.handler(args) == 0
    assert out.stat().st_mode & 0o777 == 0o600
    jwk = json.loads(capsys.readouterr().out)
    assert SigningKey.from_pem(out.read_bytes()).kid == jwk["kid"]
    assert "d" not in jwk
    assert args.handler(args) == 1
    args = parse("keys", "generate")
    assert args.handler(args) == 0
    assert "BEGIN PRIVATE KEY" in capsys.readouterr().out


def test_import_issuer_pulls_no_framework() -> None:
    """Importing scopegate.issuer (core + WSGI) does not import Starlette or uvicorn."""
    code = (
        "import sys, scopegate.issuer; "
        "print(any(m.split('.')[0] in ('starlette', 'uvicorn', 'flask', 'django') "
        "for m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_public_api_sorted() -> None:
    """scopegate.issuer.__all__ is sorted and every name resolves."""
    import scopegate.issuer as module

    assert module.__all__ == sorted(module.__all__)
    for name in module.__all__:
        assert getattr(module, name) is not None
