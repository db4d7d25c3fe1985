"""`scopegate token inspect` / `token mint`: every rejection class explained in words."""

from __future__ import annotations

import argparse
import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scopegate import _cli_token
from scopegate._cli_token import inspect_token
from scopegate._errors import InvalidTokenError
from scopegate.testing import OMIT, IssuerServer, LocalIssuer, SigningKey
from tests.servers import free_port, run_process

NOW = 1_800_000_000.0
ISS = "https://issuer.example"
AUD = "https://api.example"


def b64(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The issuer's RSA key, shared by the module."""
    return SigningKey.generate("RS256", kid="k1")


@pytest.fixture(scope="module")
def issuer(key: SigningKey) -> LocalIssuer:
    """A local issuer whose clock is frozen at NOW."""
    return LocalIssuer(key=key, clock=lambda: NOW)


def good_header(key: SigningKey, **extra: Any) -> dict[str, Any]:
    """A correct RFC 9068 header for *key*, with changes."""
    header = {"alg": "RS256", "kid": key.kid, "typ": "at+jwt", **extra}
    return {k: v for k, v in header.items() if v is not OMIT}


def raw(key: SigningKey, header: bytes | str, payload: bytes | str) -> str:
    """Sign exact header/payload bytes (hostile JSON that a dict cannot express)."""
    h = header.encode() if isinstance(header, str) else header
    p = payload.encode() if isinstance(payload, str) else payload
    return key.sign_bytes(h, p)


def claims_json(issuer: LocalIssuer) -> str:
    """A valid claims set as compact JSON, for splicing hostile members into."""
    return json.dumps(issuer.claims(["read"]), separators=(",", ":"))


Builder = Callable[[LocalIssuer, SigningKey], str]


def _tamper_last_char(token: str) -> str:
    head, _, sig = token.rpartition(".")
    last = sig[-1]
    # RS256 signatures are 256 bytes: the last base64url char carries 4 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = alphabet[alphabet.index(last) ^ 1]
    return f"{head}.{sig[:-1]}{twin}"


def _attacker(issuer: LocalIssuer, key: SigningKey, **headers: Any) -> str:
    evil = SigningKey.generate("RS256", kid=key.kid)
    return issuer.make_token(["read"], key=evil, headers=headers or None)


def _multi_key(issuer: LocalIssuer, key: SigningKey) -> str:
    return issuer.make_token(["read"], headers={"kid": None})


CASES: list[Any] = [
    # --- B: compact serialization and encoding
    pytest.param(
        lambda i, k: i.make_token(["read"]) + ".x", "format", "4 segments", id="b1-extra-dots"
    ),
    pytest.param(
        lambda i, k: "eyJhbGciOiJSUzI1NiJ9.e30", "format", "2 segments", id="b2-two-segments"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"]).rpartition(".")[0] + ".",
        "format",
        "stripped signature",
        id="b3-stripped-signature",
    ),
    pytest.param(lambda i, k: "..", "format", "header segment is empty", id="b4-empty-segments"),
    pytest.param(
        lambda i, k: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
        "format",
        "encrypted JWE",
        id="b5-jwe",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"cty": "JWT"}),
        "cty",
        "nested JWT",
        id="b6-nested-jwt",
    ),
    pytest.param(
        lambda i, k: '{"payload":"e30","signatures":[]}',
        "format",
        "JSON serialization",
        id="b7-json-serialization",
    ),
    pytest.param(lambda i, k: "ab!!.cd.ef", "format", "outside the base64url", id="b8-junk"),
    pytest.param(lambda i, k: i.make_token(["read"]) + "==", "format", "padding", id="b9-padding"),
    pytest.param(
        lambda i, k: _tamper_last_char(i.make_token(["read"])),
        "format",
        "not canonical",
        id="b10-non-canonical",
    ),
    pytest.param(lambda i, k: "ab+/.cd.ef", "format", "standard base64", id="b11-std-alphabet"),
    pytest.param(
        lambda i, k: raw(k, b"{not json", b"{}"), "header", "not valid JSON", id="b12-not-json"
    ),
    pytest.param(
        lambda i, k: raw(k, b'{"alg":"RS256","x":"\xff"}', b"{}"),
        "header",
        "UTF-8",
        id="b12-bad-utf8",
    ),
    pytest.param(
        lambda i, k: raw(k, b'["RS256"]', b"{}"), "header", "not an object", id="b13-array-header"
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), b'"just a string"'),
        "payload",
        "not an object",
        id="b13-string-payload",
    ),
    pytest.param(
        lambda i, k: raw(
            k, '{"alg":"HS256","alg":"RS256","kid":"k1","typ":"at+jwt"}', claims_json(i)
        ),
        "header",
        "repeats a member name",
        id="b14-duplicate-header-member",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), claims_json(i)[:-1] + ',"sub":"admin"}'),
        "payload",
        "repeats a member name",
        id="b15-duplicate-claim",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), claims_json(i)[:-1] + ',"x":NaN}'),
        "payload",
        "NaN",
        id="b16-nan",
    ),
    pytest.param(
        lambda i, k: raw(k, "[" * 1000 + "]" * 1000, b"{}"),
        "header",
        "nested too deeply",
        id="b17-deep-header",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), '{"x":' + "[" * 1000 + "]" * 1000 + "}"),
        "payload",
        "nested too deeply",
        id="b18-deep-payload",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), '{"x":' + "9" * 5000 + "}"),
        "payload",
        "not valid JSON",
        id="b19-huge-integer",
    ),
    # --- C: JOSE header
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "none"}),
        "alg",
        "unsigned token",
        id="c1-alg-none",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "nOnE"}),
        "alg",
        "unsigned token",
        id="c1-alg-none-mixed-case",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k, alg=OMIT)), claims_json(i)),
        "alg",
        "no alg",
        id="c2-alg-missing",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": ["RS256"]}),
        "alg",
        "not a string",
        id="c2-alg-array",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "HS256"}),
        "alg",
        "algorithm-confusion",
        id="c3-hs256-confusion",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "RS512"}),
        "alg",
        "not in the allowed algorithms",
        id="c-alg-not-allowed",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "PS256"}),
        "signature",
        "not bound to PS256",
        id="c9-alg-key-mismatch",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": "../../dev/null"}),
        "signature",
        "no key with kid",
        id="c11-kid-path-traversal",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": 'a"\r\nSet-Cookie: x=y'}),
        "kid",
        "non-printable",
        id="c11-kid-header-injection",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": "k" * 300}),
        "kid",
        "longer than 256",
        id="c11-kid-too-long",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": 7}),
        "kid",
        "not a string",
        id="c12-kid-int",
    ),
    pytest.param(
        lambda i, k: _attacker(i, k, jku="https://evil.example/jwks"),
        "signature",
        "does not match",
        id="c15-jku",
    ),
    pytest.param(
        lambda i, k: _attacker(i, k, jwk={"kty": "RSA"}),
        "signature",
        "does not match",
        id="c16-embedded-jwk",
    ),
    pytest.param(
        lambda i, k: _attacker(i, k, x5c=["MIIB"]), "signature", "does not match", id="c17-x5c"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"crit": ["exp_ext"]}),
        "crit",
        "critical extensions",
        id="c18-crit",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"crit": []}),
        "crit",
        "critical extensions",
        id="c19-crit-empty",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"b64": False}),
        "b64",
        "unencoded payload",
        id="c20-b64",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"zip": "DEF"}),
        "zip",
        "compression",
        id="c21-zip",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": None}),
        "typ",
        "has no typ",
        id="c22-typ-missing",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": "JWT"}),
        "typ",
        "ID token",
        id="c22-typ-jwt",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": "application/jwt"}),
        "typ",
        "lenient",
        id="c22-typ-application-jwt",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": "id_token+jwt"}),
        "typ",
        "not an access token type",
        id="c22-typ-id-token",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"enc": "A256GCM"}),
        "enc",
        "JWE encryption header",
        id="c24-enc",
    ),
    # --- D (signature)
    pytest.param(lambda i, k: _attacker(i, k), "signature", "does not match", id="d1-attacker-key"),
    pytest.param(
        lambda i, k: i.make_token(["read"]).rpartition(".")[0] + "." + b64(b"\0" * 256),
        "signature",
        "does not match",
        id="d-zero-signature",
    ),
    # --- E: claims
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=OMIT), "required", "exp", id="e1-missing-exp"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iat=OMIT), "required", "iat", id="e2-missing-iat"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], sub=OMIT), "required", "sub", id="e2-missing-sub"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], jti=OMIT), "required", "jti", id="e2-missing-jti"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], client_id=OMIT),
        "required",
        "client_id",
        id="e3-missing-client-id",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], expires_in=-120), "exp", "expired", id="e4-expired"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], nbf=NOW + 3600),
        "nbf",
        "not valid before",
        id="e6-nbf-future",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iat=NOW + 86400),
        "iat",
        "issued in the future",
        id="e7-iat-future",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=10**30),
        "lifetime",
        "maximum",
        id="e8-never-expires",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp="9999999999"), "exp", "a string", id="e9-exp-string"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=True), "exp", "a boolean", id="e10-exp-bool"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iat=True), "iat", "a boolean", id="e10-iat-bool"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=None), "exp", "JSON type", id="e11-exp-null"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=[1]), "exp", "JSON type", id="e11-exp-list"
    ),
    pytest.param(
        lambda i, k: raw(
            k, json.dumps(good_header(k)), claims_json(i).replace('"exp":', '"exp":1e400,"x":')
        ),
        "payload",
        "NaN, Infinity",
        id="e12-exp-overflow",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], nbf=None), "nbf", "JSON type", id="e13-nbf-null"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss="https://evil.example"),
        "iss",
        "must match exactly",
        id="e15-wrong-iss",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=ISS + ".evil"), "iss", "prefix", id="e16-iss-prefix"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=ISS + "/"),
        "iss",
        "trailing slash",
        id="e17-iss-trailing-slash",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=ISS.upper()),
        "iss",
        "letter case",
        id="e17-iss-case",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=42), "iss", "not a string", id="e19-iss-not-string"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss="https://other-issuer.example"),
        "iss",
        "must match exactly",
        id="e20-other-issuer-same-key",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience="https://other.example"),
        "aud",
        "another API",
        id="e21-wrong-aud",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=OMIT), "required", "aud", id="e23-aud-missing"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=""), "aud", "non-empty", id="e23-aud-empty"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=[]),
        "aud",
        "non-empty",
        id="e23-aud-empty-list",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=123), "aud", "non-empty", id="e23-aud-number"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=[AUD, 5]),
        "aud",
        "non-empty",
        id="e23-aud-mixed-list",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=AUD.upper()),
        "aud",
        "case-sensitive",
        id="e24-aud-case",
    ),
    pytest.param(
        lambda i, k: i.make_token(
            None, headers={"typ": "JWT"}, audience="client-1", nonce="n", at_hash="x"
        ),
        "aud",
        "ID token",
        id="e26-id-token",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], sub=5),
        "sub",
        "non-empty string",
        id="e28-sub-not-string",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], jti=["x"]),
        "jti",
        "non-empty string",
        id="e28-jti-not-string",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], client_id=""),
        "client_id",
        "non-empty string",
        id="e3-client-id-empty",
    ),
    pytest.param(
        lambda i, k: i.make_token(None, scope=["admin"]), "scope", "wrong type", id="e29-scope-list"
    ),
    pytest.param(
        lambda i, k: i.make_token(None, scope=1), "scope", "wrong type", id="e29-scope-number"
    ),
    pytest.param(
        lambda i, k: i.make_token(None, scope={}), "scope", "wrong type", id="e29-scope-object"
    ),
    pytest.param(
        lambda i, k: i.make_token('read "quoted"'), "scope", "characters", id="e30-scope-bad-chars"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], cnf={"jkt": "abc"}),
        "cnf",
        "sender-constrained",
        id="e31-cnf",
    ),
]


@pytest.mark.parametrize(("build", "check", "words"), CASES)
def test_inspect_explains_rejection(
    issuer: LocalIssuer, key: SigningKey, build: Builder, check: str, words: str
) -> None:
    """Each attack class is rejected, by the named check, with an explanation in words."""
    token = build(issuer, key)
    report = inspect_token(token, issuer=ISS, audience=AUD, keys=issuer.jwks()["keys"], now=NOW)
    failed = {c.name: c.detail for c in report.checks if c.status == "fail"}
    assert report.rejected
    assert check in failed, failed
    assert words in failed[check]
    # The explanation agrees with the library: JWTVerifier rejects the same token.
    with pytest.raises(InvalidTokenError):
        issuer.verifier(clock=lambda: NOW, cache_verified=False).verify(token)


def test_inspect_no_kid_with_several_keys_is_ambiguous(issuer: LocalIssuer) -> None:
    """C-14: without a kid, a multi-key set cannot pick a key and nothing is tried."""
    other = SigningKey.generate("RS256", kid="k2")
    keys = [issuer.key.public_jwk(), other.public_jwk()]
    token = issuer.make_token(["read"], headers={"kid": None})
    report = inspect_token(token, issuer=ISS, audience=AUD, keys=keys, now=NOW)
    failed = {c.name: c.detail for c in report.checks if c.status == "fail"}
    assert "several keys could match" in failed["signature"]


def test_inspect_no_kid_with_one_key_verifies(issuer: LocalIssuer) -> None:
    """Without a kid, the single key of a one-key set is used."""
    token = issuer.make_token(["read"], headers={"kid": None})
    report = inspect_token(token, issuer=ISS, audience=AUD, keys=issuer.jwks()["keys"], now=NOW)
    assert not report.rejected
    assert report.signature_verified


ACCEPTED: list[Any] = [
    pytest.param(lambda i: i.make_token(["read"]), id="valid"),
    pytest.param(lambda i: i.make_token(["read"], headers={"typ": "AT+JWT"}), id="c23-typ-case"),
    pytest.param(
        lambda i: i.make_token(["read"], headers={"typ": "application/at+jwt"}),
        id="c23-typ-media-type",
    ),
    pytest.param(lambda i: i.make_token(["read"], expires_in=-30), id="e5-expired-within-leeway"),
    pytest.param(lambda i: i.make_token(["read"], exp=NOW + 100.5), id="e14-float-exp"),
    pytest.param(
        lambda i: i.make_token(["read"], audience=["https://x.example", AUD]), id="e22-aud-array"
    ),
    pytest.param(
        lambda i: i.make_token(["read"], extra={"anything": [1, 2]}), id="e32-extra-claims"
    ),
    pytest.param(lambda i: i.make_token("read  read "), id="f6-duplicate-spaces"),
]


@pytest.mark.parametrize("build", ACCEPTED)
def test_inspect_accepts_valid_shapes(
    issuer: LocalIssuer, build: Callable[[LocalIssuer], str]
) -> None:
    """Tokens a resource server must accept pass every check, signature included."""
    report = inspect_token(
        build(issuer), issuer=ISS, audience=AUD, keys=issuer.jwks()["keys"], now=NOW
    )
    assert not report.rejected, [c for c in report.checks if c.status == "fail"]
    assert report.signature_verified


def test_inspect_lenient_typ_accepts_jwt_and_missing(issuer: LocalIssuer) -> None:
    """In lenient mode typ JWT and a missing typ pass; id_token+jwt still fails."""
    keys = issuer.jwks()["keys"]
    for typ in ("JWT", None):
        token = issuer.make_token(["read"], headers={"typ": typ})
        assert not inspect_token(
            token, issuer=ISS, audience=AUD, keys=keys, typ="lenient", now=NOW
        ).rejected
    token = issuer.make_token(["read"], headers={"typ": "id_token+jwt"})
    assert inspect_token(
        token, issuer=ISS, audience=AUD, keys=keys, typ="lenient", now=NOW
    ).rejected


def test_inspect_oversized_token_stops_before_parsing() -> None:
    """A-15: a token over 8 KiB is refused by size alone."""
    report = inspect_token("a" * 9000 + ".b.c")
    assert [c.name for c in report.checks] == ["size"]
    assert report.rejected


def test_inspect_without_keys_skips_signature(issuer: LocalIssuer) -> None:
    """Without keys the signature is reported as not checked, not as passed."""
    report = inspect_token(issuer.make_token(["read"]), now=NOW)
    statuses = {c.name: c.status for c in report.checks}
    assert statuses["signature"] == "skip"
    assert statuses["iss"] == "info"
    assert statuses["aud"] == "info"
    assert not report.rejected
    assert not report.signature_verified


def test_inspect_reports_refused_keys(issuer: LocalIssuer) -> None:
    """G-5: an HMAC (oct) key in the set is named as skipped and never used."""
    keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]
    report = inspect_token(
        issuer.make_token(["read"]), issuer=ISS, audience=AUD, keys=keys, now=NOW
    )
    details = {c.name: c.detail for c in report.checks}
    assert "symmetric" in details["key"]
    assert report.rejected


# --------------------------------------------------------------------------- the CLI


def run_cli(argv: list[str]) -> int:
    """Parse *argv* with the token sub-commands and run the handler."""
    parser = argparse.ArgumentParser(prog="scopegate")
    _cli_token.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


@pytest.fixture
def jwks_file(tmp_path: Path, issuer: LocalIssuer) -> str:
    """The issuer's JWKS written to a file."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    return str(path)


def test_cli_accepts_and_never_prints_the_token(
    jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid token exits 0, shows ACCEPTED and its fingerprint, never the token itself."""
    live = LocalIssuer(key=SigningKey.generate("ES256", kid="k1"))
    Path(jwks_file).write_text(json.dumps(live.jwks()))
    token = live.make_token(["read"])
    code = run_cli(
        ["token", "inspect", token, "--issuer", ISS, "--audience", AUD, "--jwks", jwks_file]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "ACCEPTED" in out
    assert "sha256:" in out
    assert token not in out
    assert token.split(".")[2] not in out


def test_cli_rejected_token_exits_1(
    issuer: LocalIssuer, jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired token exits 1 and names the failed check."""
    token = LocalIssuer(key=issuer.key).make_token(["read"], expires_in=-3600)
    code = run_cli(["token", "inspect", token, "--jwks", jwks_file])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  exp" in out
    assert "REJECTED" in out


def test_cli_reads_token_from_stdin_and_strips_bearer(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` reads the token from stdin (keeps it out of shell history); 'Bearer ' is removed."""
    import io

    token = LocalIssuer(key=issuer.key).make_token(["read"])
    monkeypatch.setattr("sys.stdin", io.StringIO(f"Bearer {token}\n"))
    code = run_cli(["token", "inspect", "-"])
    out = capsys.readouterr().out
    assert code == 0
    assert "NO FAILURE FOUND, but the signature was not verified" in out


def test_cli_json_output(
    issuer: LocalIssuer, jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json gives a machine-readable report with every check."""
    token = LocalIssuer(key=issuer.key).make_token(["read"], headers={"typ": "JWT"})
    code = run_cli(["token", "inspect", token, "--jwks", jwks_file, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["rejected"] is True
    assert data["signature_verified"] is True
    assert {"name": "typ", "status": "fail"}.items() <= next(
        c for c in data["checks"] if c["name"] == "typ"
    ).items()


def test_cli_escapes_control_characters(
    issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Claim values cannot inject terminal escape sequences into the output."""
    token = issuer.make_token(["read"], sub="\x1b[2J\x1b]0;pwned\x07")
    run_cli(["token", "inspect", token])
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "\\u001b" in out


def test_cli_url_needs_fetch(issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    """A --jwks URL without --fetch is refused: no network unless asked (exit 2)."""
    code = run_cli(["token", "inspect", issuer.make_token(), "--jwks", "https://x.example/jwks"])
    assert code == 2
    assert "--fetch" in capsys.readouterr().err


def test_cli_fetch_discovers_keys_from_a_real_server(capsys: pytest.CaptureFixture[str]) -> None:
    """--fetch --issuer discovers the JWKS over HTTP (RFC 8414) and checks the signature."""
    with IssuerServer() as server:
        token = server.make_token(["read"])
        code = run_cli(
            [
                "token",
                "inspect",
                token,
                "--issuer",
                server.issuer,
                "--audience",
                server.audience,
                "--fetch",
            ]
        )
        hits = dict(server.hits)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS  signature" in out
    assert hits["/.well-known/oauth-authorization-server"] == 1
    assert hits["/jwks.json"] == 1


def test_cli_fetch_jwks_url_and_outage_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """--jwks URL --fetch works; an unavailable server exits 3 with a reason."""
    with IssuerServer() as server:
        token = server.make_token(["read"])
        assert run_cli(["token", "inspect", token, "--jwks", server.jwks_uri, "--fetch"]) == 0
        server.available = False
        code = run_cli(["token", "inspect", token, "--jwks", server.jwks_uri, "--fetch"])
    assert code == 3
    assert "HTTP 503" in capsys.readouterr().err


def test_cli_mint_then_inspect_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`token mint` with --key-out/--jwks-out makes a token that `inspect` fully accepts."""
    key_path, jwks_path = tmp_path / "dev.pem", tmp_path / "jwks.json"
    code = run_cli(
        [
            "token",
            "mint",
            "--alg",
            "EdDSA",
            "--key-out",
            str(key_path),
            "--jwks-out",
            str(jwks_path),
            "--scope",
            "items:read admin",
            "--sub",
            "alice",
            "--claim",
            "tenant=acme",
            "--claim",
            "level=3",
        ]
    )
    token = capsys.readouterr().out.strip()
    assert code == 0
    assert key_path.stat().st_mode & 0o777 == 0o600
    report = inspect_token(
        token, issuer=ISS, audience=AUD, keys=json.loads(jwks_path.read_text())["keys"]
    )
    assert not report.rejected
    assert report.signature_verified
    assert report.claims is not None
    assert report.claims["tenant"] == "acme"
    assert report.claims["level"] == 3
    assert report.claims["scope"] == "items:read admin"
    # Minting again from the saved PEM gives the same kid (RFC 7638 thumbprint).
    assert run_cli(["token", "mint", "--key", str(key_path)]) == 0
    again = capsys.readouterr().out.strip()
    assert run_cli(["token", "inspect", again, "--jwks", str(jwks_path)]) == 0


def test_cli_inspect_with_pem_public_key(tmp_path: Path, issuer: LocalIssuer) -> None:
    """--jwks also takes a PEM key (the public half of a private PEM is used)."""
    pem = tmp_path / "key.pem"
    pem.write_bytes(issuer.key.private_pem())
    token = LocalIssuer(key=issuer.key).make_token(["read"], headers={"kid": None})
    assert run_cli(["token", "inspect", token, "--jwks", str(pem)]) == 0


def test_cli_mint_bad_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable or non-PEM key is a clear error with exit 2."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    assert run_cli(["token", "mint", "--key", str(bad)]) == 2
    assert run_cli(["token", "mint", "--key", str(tmp_path / "missing.pem")]) == 2
    assert "error:" in capsys.readouterr().err


def test_cli_missing_key_file_exit_3(issuer: LocalIssuer, tmp_path: Path) -> None:
    """A missing --jwks file means keys unavailable (exit 3)."""
    assert (
        run_cli(["token", "inspect", issuer.make_token(), "--jwks", str(tmp_path / "nope.json")])
        == 3
    )


def test_inspect_times_are_in_words(issuer: LocalIssuer) -> None:
    """Time checks give the date and a relative duration."""
    token = LocalIssuer(key=issuer.key, clock=lambda: NOW - 7200).make_token(["read"])
    report = inspect_token(token, now=NOW)
    exp = next(c for c in report.checks if c.name == "exp")
    assert exp.status == "fail"
    assert "UTC" in exp.detail
    assert "1 h 55 min ago" in exp.detail
    assert time.gmtime(NOW).tm_year == 2027


# --------------------------------------------------------------------------- real processes


def scopegate(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m scopegate ARGS` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "scopegate", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_generate_then_mint_then_inspect(tmp_path: Path) -> None:
    """A key from `keys generate` signs with `token mint --key`; `inspect` accepts it."""
    pem = tmp_path / "issuer.pem"
    assert scopegate("keys", "generate", "--alg", "ES256", "--out", str(pem)).returncode == 0
    minted = scopegate(
        "token",
        "mint",
        "--key",
        str(pem),
        "--scope",
        "items:read",
        "--issuer",
        "http://127.0.0.1:9000",
        "--audience",
        "api://demo",
    )
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    result = scopegate(
        "token",
        "inspect",
        "-",
        "--jwks",
        str(pem),
        "--issuer",
        "http://127.0.0.1:9000",
        "--audience",
        "api://demo",
        stdin=token,
    )
    assert result.returncode == 0, result.stdout
    assert "ACCEPTED" in result.stdout
    assert token not in result.stdout + result.stderr
    wrong = scopegate("token", "inspect", token, "--jwks", str(pem), "--audience", "api://x")
    assert wrong.returncode == 1
    assert "FAIL  aud" in wrong.stdout


def test_inspect_a_token_from_the_real_issuer(tmp_path: Path) -> None:
    """A token from `scopegate issuer serve` passes `inspect --fetch` (discovery + JWKS)."""
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    config = tmp_path / "issuer.toml"
    config.write_text(
        f'issuer = "{issuer}"\naudience = "api://demo"\n\n'
        '[[clients]]\nid = "svc-a"\nsecret = "a-long-enough-client-secret-for-tests-0123456789"\n'
        'grant_types = ["client_credentials"]\nscopes = ["items:read", "admin"]\n'
    )
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
        "--log-level",
        "warning",
    ]
    with run_process(args, port, ready_path="/.well-known/oauth-authorization-server"):
        response = httpx.post(
            f"{issuer}/token",
            data={"grant_type": "client_credentials", "scope": "items:read"},
            auth=("svc-a", "a-long-enough-client-secret-for-tests-0123456789"),
        )
        assert response.status_code == 200, response.text
        token = response.json()["access_token"]
        result = scopegate(
            "token",
            "inspect",
            "-",
            "--issuer",
            issuer,
            "--audience",
            "api://demo",
            "--fetch",
            "--json",
            stdin=token,
        )
        offline = scopegate("token", "inspect", "-", "--issuer", issuer, stdin=token)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["signature_verified"] is True
    assert {c["name"]: c["status"] for c in report["checks"]}["verifier"] == "pass"
    assert offline.returncode == 0
    assert "signature was not verified" in offline.stdout


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_inspect_never_crashes_on_text(text: str) -> None:
    """Arbitrary text gives a report, never an exception."""
    report = inspect_token(text, issuer=ISS, audience=AUD)
    assert report.checks


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=80))
def test_inspect_never_crashes_on_segments(header: bytes, payload: bytes, sig: bytes) -> None:
    """Three base64url segments of arbitrary bytes never crash inspect (keys given)."""
    token = f"{b64(header)}.{b64(payload)}.{b64(sig)}"
    keys = [{"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB"}]
    report = inspect_token(token, issuer=ISS, audience=AUD, keys=keys)
    assert report.rejected


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "alg",
                "typ",
                "kid",
                "crit",
                "exp",
                "iat",
                "nbf",
                "aud",
                "iss",
                "sub",
                "scope",
                "scp",
                "jti",
                "client_id",
                "cnf",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
            lambda inner: (
                st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)
            ),
            max_leaves=5,
        ),
    )
)
def test_inspect_never_crashes_on_hostile_json(members: dict[str, Any]) -> None:
    """Hostile JSON values in header and claims give a report, never an exception."""
    token = f"{b64(json.dumps(members).encode())}.{b64(json.dumps(members).encode())}.c2ln"
    assert inspect_token(token, issuer=ISS, audience=AUD, now=NOW).checks
