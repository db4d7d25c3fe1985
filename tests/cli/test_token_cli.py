"""`scopegate token inspect` / `token mint`: every rejection class explained in words."""

from __future__ import annotations

import base64
import io
import json
import re
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

from scopegate._errors import InvalidTokenError
from scopegate._jwt import JWTVerifier
from scopegate.cli import main
from scopegate.cli.report import build_report, render_json, render_text
from scopegate.testing import OMIT, IssuerServer, LocalIssuer, SigningKey
from tests.servers import free_port, run_process

ISS = "https://issuer.example"
AUD = "https://api.example"


def b64(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def now() -> int:
    """The current Unix time, whole seconds."""
    return int(time.time())


@pytest.fixture(scope="module")
def key() -> SigningKey:
    """The issuer's RSA key, shared by the module."""
    return SigningKey.generate("RS256", kid="k1")


@pytest.fixture(scope="module")
def issuer(key: SigningKey) -> LocalIssuer:
    """A local issuer signing with the module's key."""
    return LocalIssuer(key=key)


@pytest.fixture
def jwks_file(tmp_path: Path, issuer: LocalIssuer) -> str:
    """The issuer's JWKS written to a file."""
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(issuer.jwks()))
    return str(path)


def inspect_json(capsys: pytest.CaptureFixture[str], token: str, *options: str) -> dict[str, Any]:
    """Run `token inspect --json` in-process; the report with the exit code as `code`."""
    code = main(["token", "inspect", "--json", *options, "--", token])
    captured = capsys.readouterr()
    report: dict[str, Any] = json.loads(captured.out) if captured.out else {}
    report["code"] = code
    report["stderr"] = captured.err
    return report


def statuses(report: dict[str, Any]) -> dict[str, str]:
    """Check name -> status of a JSON report."""
    return {c["name"]: c["status"] for c in report["checks"]}


def first_failure(report: dict[str, Any]) -> dict[str, Any]:
    """The first failed check of a JSON report."""
    return next(c for c in report["checks"] if c["status"] == "fail")


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


CASES: list[Any] = [
    # --- B: compact serialization and encoding
    pytest.param(
        lambda i, k: i.make_token(["read"]) + ".x", "format", "malformed", id="b1-extra-dots"
    ),
    pytest.param(
        lambda i, k: "eyJhbGciOiJSUzI1NiJ9.e30", "format", "malformed", id="b2-two-segments"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"]).rpartition(".")[0] + ".",
        "format",
        "malformed",
        id="b3-stripped-signature",
    ),
    pytest.param(lambda i, k: "..", "format", "malformed", id="b4-empty-segments"),
    pytest.param(
        lambda i, k: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d",
        "format",
        "malformed",
        id="b5-jwe",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"cty": "JWT"}),
        "header_members",
        "unsupported_header",
        id="b6-nested-jwt",
    ),
    pytest.param(
        lambda i, k: '{"payload":"e30","signatures":[]}',
        "format",
        "malformed",
        id="b7-json-serialization",
    ),
    pytest.param(lambda i, k: "ab!!.cd.ef", "format", "malformed", id="b8-junk"),
    pytest.param(
        lambda i, k: i.make_token(["read"]) + "==", "format", "malformed", id="b9-padding"
    ),
    pytest.param(
        lambda i, k: _tamper_last_char(i.make_token(["read"])),
        "format",
        "malformed",
        id="b10-non-canonical",
    ),
    pytest.param(lambda i, k: "ab+/.cd.ef", "format", "malformed", id="b11-std-alphabet"),
    pytest.param(
        lambda i, k: raw(k, b"{not json", b"{}"), "format_header", "malformed", id="b12-not-json"
    ),
    pytest.param(
        lambda i, k: raw(k, b'{"alg":"RS256","x":"\xff"}', b"{}"),
        "format_header",
        "malformed",
        id="b12-bad-utf8",
    ),
    pytest.param(
        lambda i, k: raw(k, b'["RS256"]', b"{}"),
        "format_header",
        "malformed",
        id="b13-array-header",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), b'"just a string"'),
        "payload",
        "malformed",
        id="b13-string-payload",
    ),
    pytest.param(
        lambda i, k: raw(
            k, '{"alg":"HS256","alg":"RS256","kid":"k1","typ":"at+jwt"}', claims_json(i)
        ),
        "format_header",
        "malformed",
        id="b14-duplicate-header-member",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), claims_json(i)[:-1] + ',"sub":"admin"}'),
        "payload",
        "malformed",
        id="b15-duplicate-claim",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), claims_json(i)[:-1] + ',"x":NaN}'),
        "payload",
        "malformed",
        id="b16-nan",
    ),
    pytest.param(
        lambda i, k: raw(k, "[" * 1000 + "]" * 1000, b"{}"),
        "format",  # the header segment is over the 2048-character cap: never decoded
        "malformed",
        id="b17-deep-header",
    ),
    pytest.param(
        lambda i, k: raw(k, "[" * 40 + "]" * 40, b"{}"),
        "format_header",
        "malformed",
        id="b17-header-over-depth-cap",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), '{"x":' + "[" * 1000 + "]" * 1000 + "}"),
        "payload",
        "malformed",
        id="b18-deep-payload",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k)), '{"x":' + "9" * 5000 + "}"),
        "payload",
        "malformed",
        id="b19-huge-integer",
    ),
    # --- C: JOSE header
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "none"}),
        "alg",
        "alg_not_allowed",
        id="c1-alg-none",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "nOnE"}),
        "alg",
        "alg_not_allowed",
        id="c1-alg-none-mixed-case",
    ),
    pytest.param(
        lambda i, k: raw(k, json.dumps(good_header(k, alg=OMIT)), claims_json(i)),
        "alg",
        "alg_not_allowed",
        id="c2-alg-missing",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": ["RS256"]}),
        "alg",
        "alg_not_allowed",
        id="c2-alg-array",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "HS256"}),
        "alg",
        "alg_not_allowed",
        id="c3-hs256-confusion",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "RS512"}),
        "alg",
        "alg_not_allowed",
        id="c-alg-not-allowed",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"alg": "PS256"}),
        "key",
        "key_alg_mismatch",
        id="c9-alg-key-mismatch",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": "../../dev/null"}),
        "key",
        "unknown_key",
        id="c11-kid-path-traversal",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": 'a"\r\nSet-Cookie: x=y'}),
        "kid",
        "bad_kid",
        id="c11-kid-header-injection",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": "k" * 300}),
        "kid",
        "bad_kid",
        id="c11-kid-too-long",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"kid": 7}), "kid", "bad_kid", id="c12-kid-int"
    ),
    pytest.param(
        lambda i, k: _attacker(i, k, jku="https://evil.example/jwks"),
        "signature",
        "bad_signature",
        id="c15-jku",
    ),
    pytest.param(
        lambda i, k: _attacker(i, k, jwk={"kty": "RSA"}),
        "signature",
        "bad_signature",
        id="c16-embedded-jwk",
    ),
    pytest.param(
        lambda i, k: _attacker(i, k, x5c=["MIIB"]), "signature", "bad_signature", id="c17-x5c"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"crit": ["exp_ext"]}),
        "crit",
        "crit",
        id="c18-crit",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"crit": []}),
        "crit",
        "crit",
        id="c19-crit-empty",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"b64": False}),
        "header_members",
        "unsupported_header",
        id="c20-b64",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"zip": "DEF"}),
        "header_members",
        "unsupported_header",
        id="c21-zip",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": None}),
        "typ",
        "wrong_type",
        id="c22-typ-missing",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": "JWT"}),
        "typ",
        "wrong_type",
        id="c22-typ-jwt",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": "application/jwt"}),
        "typ",
        "wrong_type",
        id="c22-typ-application-jwt",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"typ": "id_token+jwt"}),
        "typ",
        "wrong_type",
        id="c22-typ-id-token",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], headers={"enc": "A256GCM"}),
        "header_members",
        "unsupported_header",
        id="c24-enc",
    ),
    # --- D (signature)
    pytest.param(lambda i, k: _attacker(i, k), "signature", "bad_signature", id="d1-attacker-key"),
    pytest.param(
        lambda i, k: i.make_token(["read"]).rpartition(".")[0] + "." + b64(b"\0" * 256),
        "signature",
        "bad_signature",
        id="d-zero-signature",
    ),
    # --- E: claims
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=OMIT),
        "required_claims",
        "missing_claim",
        id="e1-missing-exp",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iat=OMIT),
        "required_claims",
        "missing_claim",
        id="e2-missing-iat",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], sub=OMIT),
        "required_claims",
        "missing_claim",
        id="e2-missing-sub",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], jti=OMIT),
        "required_claims",
        "missing_claim",
        id="e2-missing-jti",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], client_id=OMIT),
        "required_claims",
        "missing_claim",
        id="e3-missing-client-id",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], expires_in=-120), "expiry", "expired", id="e4-expired"
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], nbf=now() + 3600),
        "not_before",
        "not_yet_valid",
        id="e6-nbf-future",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iat=now() + 86400),
        "issued_at",
        "issued_in_future",
        id="e7-iat-future",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=10**30),
        "claim_types",
        "bad_claim_type",
        id="e8-never-expires",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp="9999999999"),
        "claim_types",
        "bad_claim_type",
        id="e9-exp-string",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=True),
        "claim_types",
        "bad_claim_type",
        id="e10-exp-bool",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iat=True),
        "claim_types",
        "bad_claim_type",
        id="e10-iat-bool",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=None),
        "claim_types",
        "bad_claim_type",
        id="e11-exp-null",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], exp=[1]),
        "claim_types",
        "bad_claim_type",
        id="e11-exp-list",
    ),
    pytest.param(
        lambda i, k: raw(
            k, json.dumps(good_header(k)), claims_json(i).replace('"exp":', '"exp":1e400,"x":')
        ),
        "payload",
        "malformed",
        id="e12-exp-overflow",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], nbf=None),
        "claim_types",
        "bad_claim_type",
        id="e13-nbf-null",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss="https://evil.example"),
        "issuer",
        "wrong_issuer",
        id="e15-wrong-iss",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=ISS + ".evil"),
        "issuer",
        "wrong_issuer",
        id="e16-iss-prefix",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=ISS + "/"),
        "issuer",
        "wrong_issuer",
        id="e17-iss-trailing-slash",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=ISS.upper()),
        "issuer",
        "wrong_issuer",
        id="e17-iss-case",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss=42),
        "claim_types",
        "bad_claim_type",
        id="e19-iss-not-string",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], iss="https://other-issuer.example"),
        "issuer",
        "wrong_issuer",
        id="e20-other-issuer-same-key",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience="https://other.example"),
        "audience",
        "wrong_audience",
        id="e21-wrong-aud",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=OMIT),
        "required_claims",
        "missing_claim",
        id="e23-aud-missing",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=""),
        "claim_types",
        "bad_claim_type",
        id="e23-aud-empty",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=[]),
        "claim_types",
        "bad_claim_type",
        id="e23-aud-empty-list",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=123),
        "claim_types",
        "bad_claim_type",
        id="e23-aud-number",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=[AUD, 5]),
        "claim_types",
        "bad_claim_type",
        id="e23-aud-mixed-list",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], audience=AUD.upper()),
        "audience",
        "wrong_audience",
        id="e24-aud-case",
    ),
    pytest.param(
        lambda i, k: i.make_token(
            None, headers={"typ": "JWT"}, audience="client-1", nonce="n", at_hash="x"
        ),
        "typ",
        "wrong_type",
        id="e26-id-token",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], sub=5),
        "claim_types",
        "bad_claim_type",
        id="e28-sub-not-string",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], jti=["x"]),
        "claim_types",
        "bad_claim_type",
        id="e28-jti-not-string",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], client_id=""),
        "claim_types",
        "bad_claim_type",
        id="e3-client-id-empty",
    ),
    pytest.param(
        lambda i, k: i.make_token(None, scope=["admin"]),
        "scope",
        "bad_scope_claim",
        id="e29-scope-list",
    ),
    pytest.param(
        lambda i, k: i.make_token(None, scope=1), "scope", "bad_scope_claim", id="e29-scope-number"
    ),
    pytest.param(
        lambda i, k: i.make_token(None, scope={}), "scope", "bad_scope_claim", id="e29-scope-object"
    ),
    pytest.param(
        lambda i, k: i.make_token('read "quoted"'),
        "scope",
        "bad_scope_claim",
        id="e30-scope-bad-chars",
    ),
    pytest.param(
        lambda i, k: i.make_token(["read"], cnf={"jkt": "abc"}),
        "confirmation",
        "sender_constrained",
        id="e31-cnf",
    ),
]


@pytest.mark.parametrize(("build", "check", "reason"), CASES)
def test_inspect_explains_rejection(
    issuer: LocalIssuer,
    key: SigningKey,
    jwks_file: str,
    capsys: pytest.CaptureFixture[str],
    build: Builder,
    check: str,
    reason: str,
) -> None:
    """Each attack class is rejected by the named check, with its reason in words."""
    token = build(issuer, key)
    report = inspect_json(capsys, token, "--issuer", ISS, "--audience", AUD, "--jwks", jwks_file)
    failed = first_failure(report)
    assert report["code"] == 1
    assert report["rejected"] is True
    assert (failed["name"], failed["reason"]) == (check, reason)
    assert report["reason"] == reason
    assert f"[{reason}]" in failed["detail"]
    # The report is the library's own verdict: JWTVerifier rejects with the same reason.
    with pytest.raises(InvalidTokenError) as info:
        issuer.verifier(cache_verified=False).verify(token)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    ("iss", "words"),
    [
        pytest.param(ISS + "/", "trailing slash", id="trailing-slash"),
        pytest.param(ISS.upper(), "letter case", id="letter-case"),
        pytest.param(ISS + ".evil", "prefix", id="prefix"),
    ],
)
def test_inspect_names_near_miss_issuers(
    issuer: LocalIssuer, capsys: pytest.CaptureFixture[str], iss: str, words: str
) -> None:
    """A wrong iss that nearly matches says how it differs, next to the expected value."""
    report = inspect_json(capsys, issuer.make_token(["read"], iss=iss), "--issuer", ISS)
    failed = first_failure(report)
    assert failed["name"] == "issuer"
    assert words in failed["detail"]
    assert f'expected "{ISS}"' in failed["detail"]


def test_inspect_no_kid_with_several_keys_is_ambiguous(
    issuer: LocalIssuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """C-14: without a kid, a multi-key set cannot pick a key and nothing is tried."""
    other = SigningKey.generate("RS256", kid="k2")
    keys = tmp_path / "two.json"
    keys.write_text(json.dumps({"keys": [issuer.key.public_jwk(), other.public_jwk()]}))
    token = issuer.make_token(["read"], headers={"kid": None})
    report = inspect_json(capsys, token, "--jwks", str(keys))
    failed = first_failure(report)
    assert (failed["name"], failed["reason"]) == ("key", "ambiguous_key")
    assert '"k1", "k2"' in failed["detail"]


def test_inspect_no_kid_with_one_key_verifies(
    issuer: LocalIssuer, jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a kid, the single key of a one-key set is used."""
    token = issuer.make_token(["read"], headers={"kid": None})
    report = inspect_json(capsys, token, "--issuer", ISS, "--audience", AUD, "--jwks", jwks_file)
    assert report["code"] == 0
    assert report["signature_verified"] is True


ACCEPTED: list[Any] = [
    pytest.param(lambda i: i.make_token(["read"]), id="valid"),
    pytest.param(lambda i: i.make_token(["read"], headers={"typ": "AT+JWT"}), id="c23-typ-case"),
    pytest.param(
        lambda i: i.make_token(["read"], headers={"typ": "application/at+jwt"}),
        id="c23-typ-media-type",
    ),
    pytest.param(lambda i: i.make_token(["read"], expires_in=-30), id="e5-expired-within-leeway"),
    pytest.param(lambda i: i.make_token(["read"], exp=now() + 100.5), id="e14-float-exp"),
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
    issuer: LocalIssuer,
    jwks_file: str,
    capsys: pytest.CaptureFixture[str],
    build: Callable[[LocalIssuer], str],
) -> None:
    """Tokens a resource server must accept pass every check, signature included."""
    options = ("--issuer", ISS, "--audience", AUD, "--jwks", jwks_file)
    report = inspect_json(capsys, build(issuer), *options)
    assert report["code"] == 0, [c for c in report["checks"] if c["status"] != "pass"]
    assert set(statuses(report).values()) == {"pass"}
    assert report["signature_verified"] is True
    assert report["reason"] is None


def test_inspect_lenient_typ_accepts_jwt_and_missing(
    issuer: LocalIssuer, jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --typ lenient, typ JWT and a missing typ pass; id_token+jwt still fails."""
    options = ("--issuer", ISS, "--audience", AUD, "--jwks", jwks_file, "--typ", "lenient")
    for typ in ("JWT", None):
        token = issuer.make_token(["read"], headers={"typ": typ})
        assert inspect_json(capsys, token, *options)["code"] == 0
    token = issuer.make_token(["read"], headers={"typ": "id_token+jwt"})
    assert first_failure(inspect_json(capsys, token, *options))["name"] == "typ"


def test_inspect_oversized_token_stops_before_parsing(capsys: pytest.CaptureFixture[str]) -> None:
    """A-15: a token over 8 KiB is refused by its length alone."""
    report = inspect_json(capsys, "a" * 9000 + ".b.c")
    assert [(c["name"], c["reason"]) for c in report["checks"]] == [("format", "too_long")]
    assert "9004 characters (limit 8192), 3 dot-separated segments" in report["checks"][0]["detail"]
    assert report["code"] == 1


def test_inspect_says_why_the_format_fails(
    issuer: LocalIssuer, key: SigningKey, capsys: pytest.CaptureFixture[str]
) -> None:
    """A format failure names the segment count and the header length against its cap."""
    jwe = inspect_json(capsys, "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d")
    assert "5 dot-separated segments" in first_failure(jwe)["detail"]
    header = json.dumps(good_header(key, x5c=["A" * 2000]))
    big = inspect_json(capsys, raw(key, header, claims_json(issuer)))
    detail = first_failure(big)["detail"]
    assert re.search(r"a header segment of \d{4} characters \(limit 2048\)", detail)
    assert big["header"]["kid"] == key.kid  # still decoded for display


def test_inspect_without_keys_skips_signature(
    issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without keys the signature is reported as not checked, not as passed."""
    report = inspect_json(capsys, issuer.make_token(["read"]))
    found = statuses(report)
    assert found["key"] == found["signature"] == "skip"
    assert found["issuer"] == found["audience"] == "skip"
    assert report["not_compared"] == ["issuer", "audience"]
    assert report["code"] == 0
    assert report["rejected"] is False
    assert report["signature_verified"] is False


def test_inspect_refuses_a_symmetric_key_file(
    issuer: LocalIssuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """G-5: an HMAC (oct) key is refused as a resource server refuses it: keys unavailable."""
    keys = tmp_path / "oct.json"
    keys.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k1"}]}))
    code = main(["token", "inspect", issuer.make_token(["read"]), "--jwks", str(keys)])
    captured = capsys.readouterr()
    assert code == 3
    assert "symmetric" in captured.err
    assert captured.out == ""


# --------------------------------------------------------------------------- the CLI


def test_cli_accepts_and_never_prints_the_token(
    jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A valid token exits 0, shows ACCEPTED and its fingerprint, never the token itself."""
    live = LocalIssuer(key=SigningKey.generate("ES256", kid="k1"))
    Path(jwks_file).write_text(json.dumps(live.jwks()))
    token = live.make_token(["read"])
    code = main(
        ["token", "inspect", token, "--issuer", ISS, "--audience", AUD, "--jwks", jwks_file]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "ACCEPTED: every check passed" in out
    assert "sha256:" in out
    assert token not in out
    assert token.split(".")[2] not in out
    assert "PASS  signature" in out


def test_cli_rejected_token_exits_1(
    issuer: LocalIssuer, jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An expired token exits 1 and names the failed check and its reason."""
    token = issuer.make_token(["read"], expires_in=-3600)
    code = main(["token", "inspect", token, "--jwks", jwks_file])
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  expiry" in out
    assert "REJECTED by expiry [expired]" in out
    assert "401 invalid_token" in out


def test_cli_reads_token_from_stdin_and_strips_bearer(
    issuer: LocalIssuer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`-` reads the token from stdin (keeps it out of shell history); 'Bearer ' is removed."""
    token = issuer.make_token(["read"])
    monkeypatch.setattr("sys.stdin", io.StringIO(f"Bearer {token}\n"))
    code = main(["token", "inspect", "-"])
    out = capsys.readouterr().out
    assert code == 0
    assert "NO FAILURE FOUND, but the signature was not verified" in out
    assert "Not compared: issuer (give --issuer), audience (give --audience)." in out


def test_cli_json_output(
    issuer: LocalIssuer, jwks_file: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--json gives a machine-readable report with every check."""
    token = issuer.make_token(["read"], headers={"typ": "JWT"})
    data = inspect_json(capsys, token, "--jwks", jwks_file)
    assert data["code"] == 1
    assert data["rejected"] is True
    assert data["reason"] == "wrong_type"
    assert data["signature_verified"] is False  # no key is looked up for a refused header
    assert statuses(data)["signature"] == "skip"
    assert data["header"]["typ"] == "JWT"
    assert data["claims"]["scope"] == "read"
    assert {"name": "typ", "status": "fail", "reason": "wrong_type"}.items() <= next(
        c for c in data["checks"] if c["name"] == "typ"
    ).items()


def test_cli_escapes_control_characters(
    issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Claim and header values cannot inject terminal escape sequences into the output."""
    hostile = "\x1b[2J\x1b]0;pwned\x07\r\n"
    token = issuer.make_token(["read"], sub=hostile, iss=hostile, headers={"kid": hostile})
    assert main(["token", "inspect", token, "--issuer", ISS]) == 1
    out = capsys.readouterr().out
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", out)
    assert "\\u001b" in out


def test_cli_bounds_long_values(issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    """A long claim value is shortened in the check lines."""
    token = issuer.make_token(["read"], iss="https://x.example/" + "a" * 3000)
    main(["token", "inspect", token, "--issuer", ISS])
    lines = capsys.readouterr().out.splitlines()
    issuer_line = next(line for line in lines if "FAIL  issuer" in line)
    assert len(issuer_line) < 400
    assert all(len(line) < 2200 for line in lines)


def test_cli_url_needs_fetch(issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    """A --jwks URL without --fetch is refused: no network unless asked (exit 2)."""
    code = main(["token", "inspect", issuer.make_token(), "--jwks", "https://x.example/jwks"])
    assert code == 2
    assert "--fetch" in capsys.readouterr().err


def test_cli_usage_errors_exit_2(issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]) -> None:
    """Settings the verifier refuses, or --fetch without a place to fetch from, exit 2."""
    token = issuer.make_token()
    assert main(["token", "inspect", token, "--algorithm", "HS256"]) == 2
    assert main(["token", "inspect", token, "--leeway", "9999"]) == 2
    assert main(["token", "inspect", token, "--fetch"]) == 2
    assert main(["token", "inspect", token, "--fetch", "--issuer", "http://as.example"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 4
    assert "Traceback" not in err


def test_cli_fetch_discovers_keys_from_a_real_server(capsys: pytest.CaptureFixture[str]) -> None:
    """--fetch --issuer discovers the JWKS over HTTP (RFC 8414) and checks the signature."""
    with IssuerServer() as server:
        token = server.make_token(["read"])
        options = ["--issuer", server.issuer, "--audience", server.audience, "--fetch"]
        code = main(["token", "inspect", token, *options])
        hits = dict(server.hits)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS  signature" in out
    assert "ACCEPTED: every check passed" in out
    assert hits["/.well-known/oauth-authorization-server"] == 1
    assert hits["/jwks.json"] == 1


def test_cli_stays_offline_without_fetch(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --fetch nothing is requested, even with a reachable --issuer."""
    with IssuerServer() as server:
        token = server.make_token(["read"])
        code = main(["token", "inspect", token, "--issuer", server.issuer])
        hits = sum(server.hits.values())
    assert code == 0
    assert hits == 0
    assert "signature was not verified" in capsys.readouterr().out


def test_cli_fetch_finds_a_rotated_key(capsys: pytest.CaptureFixture[str]) -> None:
    """A token signed by a newly published key verifies after discovery, the old one too."""
    with IssuerServer() as server:
        old = server.make_token(["read"])
        server.rotate_key()
        new = server.make_token(["read"])
        for token in (old, new):
            assert main(["token", "inspect", token, "--issuer", server.issuer, "--fetch"]) == 0
    assert capsys.readouterr().out.count("PASS  signature") == 2


def test_cli_fetch_outage_exits_3(capsys: pytest.CaptureFixture[str]) -> None:
    """An issuer that cannot be reached for discovery means keys unavailable (exit 3)."""
    with IssuerServer() as server:
        token = server.make_token(["read"])
        server.available = False
        code = main(["token", "inspect", token, "--issuer", server.issuer, "--fetch"])
    captured = capsys.readouterr()
    assert code == 3
    assert "keys unavailable (discovery_http_status)" in captured.err
    assert captured.out == ""


def test_cli_fetch_jwks_url_and_outage_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    """--jwks URL --fetch works; an unavailable server exits 3 with a reason."""
    with IssuerServer() as server:
        token = server.make_token(["read"])
        assert main(["token", "inspect", token, "--jwks", server.jwks_uri, "--fetch"]) == 0
        server.available = False
        code = main(["token", "inspect", token, "--jwks", server.jwks_uri, "--fetch"])
    assert code == 3
    assert "keys unavailable (jwks_http_status)" in capsys.readouterr().err


def test_cli_mint_then_inspect_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`token mint` with --key-out/--jwks-out makes a token that `inspect` fully accepts."""
    key_path, jwks_path = tmp_path / "dev.pem", tmp_path / "jwks.json"
    code = main(
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
    captured = capsys.readouterr()
    token = captured.out.strip()
    assert code == 0
    assert "PRIVATE KEY" not in captured.out + captured.err
    assert key_path.stat().st_mode & 0o777 == 0o600
    report = inspect_json(
        capsys, token, "--issuer", ISS, "--audience", AUD, "--jwks", str(jwks_path)
    )
    assert report["code"] == 0
    assert report["signature_verified"] is True
    assert report["claims"]["tenant"] == "acme"
    assert report["claims"]["level"] == 3
    assert report["claims"]["scope"] == "items:read admin"
    # Minting again from the saved PEM gives the same kid (RFC 7638 thumbprint).
    assert main(["token", "mint", "--key", str(key_path)]) == 0
    again = capsys.readouterr().out.strip()
    assert main(["token", "inspect", again, "--jwks", str(jwks_path)]) == 0


def test_cli_inspect_with_pem_private_key(
    tmp_path: Path, issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    """--jwks also takes a PEM key file: the public half of a private PEM is used."""
    pem = tmp_path / "key.pem"
    pem.write_bytes(issuer.key.private_pem())
    public = tmp_path / "public.pem"
    public.write_bytes(issuer.key.public_pem())
    for kid in (None, issuer.key.kid):
        token = issuer.make_token(["read"], headers={"kid": kid})
        for path in (pem, public):
            report = inspect_json(capsys, token, "--jwks", str(path))
            assert report["code"] == 0
            assert report["signature_verified"] is True
            assert "PRIVATE" not in json.dumps(report)


def test_cli_mint_bad_key_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable or non-PEM key is a clear error with exit 2."""
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    assert main(["token", "mint", "--key", str(bad)]) == 2
    assert main(["token", "mint", "--key", str(tmp_path / "missing.pem")]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 2
    assert "Traceback" not in err


def test_cli_missing_key_file_exit_3(
    issuer: LocalIssuer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or unreadable --jwks file means keys unavailable (exit 3)."""
    token = issuer.make_token()
    assert main(["token", "inspect", token, "--jwks", str(tmp_path / "nope.json")]) == 3
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    assert main(["token", "inspect", token, "--jwks", str(garbage)]) == 3
    assert capsys.readouterr().err.count("keys unavailable") == 2


def test_inspect_times_are_in_words(
    issuer: LocalIssuer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Time checks give the date and a relative duration."""
    token = LocalIssuer(key=issuer.key, clock=lambda: time.time() - 7200).make_token(["read"])
    report = inspect_json(capsys, token)
    expiry = next(c for c in report["checks"] if c["name"] == "expiry")
    assert expiry["status"] == "fail"
    assert "UTC" in expiry["detail"]
    assert "1 h 55 min ago" in expiry["detail"]
    assert "leeway 60 s" in expiry["detail"]


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
    assert "FAIL  audience" in wrong.stdout


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
    assert set(statuses(report).values()) == {"pass"}
    assert offline.returncode == 0
    assert "signature was not verified" in offline.stdout


# --------------------------------------------------------------------------- robustness

FUZZ_KEYS = {"keys": [{"kty": "RSA", "kid": "x", "n": "AQAB", "e": "AQAB"}]}
SAFE_OUTPUT = re.compile(r"[\x09\x0a\x20-\x7e]*")


def explain_and_render(token: str, **options: Any) -> str:
    """What `token inspect` does with *token*, in-process: explain, report, both renderings."""
    verifier = JWTVerifier(issuer=ISS, audience=AUD, **options)
    report = build_report(token, verifier, verifier.explain(token, fetch=False), now=time.time())
    assert report.lines
    text = render_text(report) + render_json(report)
    assert SAFE_OUTPUT.fullmatch(text.replace("§", "")), text
    return text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_inspect_never_crashes_on_text(text: str) -> None:
    """Arbitrary text gives a printable report, never an exception."""
    explain_and_render(text, jwks_uri="https://keys.invalid/jwks.json")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(max_size=200), st.binary(max_size=80))
def test_inspect_never_crashes_on_segments(header: bytes, payload: bytes, sig: bytes) -> None:
    """Three base64url segments of arbitrary bytes never crash inspect."""
    explain_and_render(f"{b64(header)}.{b64(payload)}.{b64(sig)}", jwks_uri="https://keys.invalid/")


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
                "jku",
                "zip",
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
    document = json.dumps(members).encode()
    token = f"{b64(document)}.{b64(document)}.c2ln"
    explain_and_render(token, jwks_uri="https://keys.invalid/", max_lifetime=3600)
