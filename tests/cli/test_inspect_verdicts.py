"""`token inspect` has no rule of its own: its verdict is JWTVerifier.verify's, always.

Every token of the core attack corpus (tests/core/test_jwt_attacks.py) goes through the
command line in-process and through ``JWTVerifier.verify`` with the same settings: both
accept it, or both reject it with the same reason code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from scopegate._errors import InvalidTokenError
from scopegate.cli import main
from tests.core.test_jwt_attacks import ACCEPT, CASES, verifier
from tests.core.tokens import AUDIENCE, EC384_KEY, EC_KEY, ED_KEY, ISSUER, RSA_KEY, jwks

ALGORITHMS = ("RS256", "PS256", "ES256", "ES384", "EdDSA")


@pytest.fixture(scope="module")
def jwks_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The attack verifier's keys as a JWKS file."""
    path = tmp_path_factory.mktemp("keys") / "jwks.json"
    path.write_text(json.dumps(jwks(RSA_KEY, EC_KEY, ED_KEY, EC384_KEY)))
    return path


def verify_outcome(token: str) -> str:
    """``accept``, or the reason code JWTVerifier.verify rejects *token* with."""
    try:
        verifier().verify(token)
    except InvalidTokenError as exc:
        return exc.reason
    return ACCEPT


def inspect_outcome(token: str, jwks_file: Path, capsys: pytest.CaptureFixture[str]) -> str:
    """``accept``, or the first failing reason `token inspect` reports for *token*."""
    options = ["--issuer", ISSUER, "--audience", AUDIENCE, "--jwks", str(jwks_file)]
    for alg in ALGORITHMS:
        options += ["--algorithm", alg]
    code = main(["token", "inspect", "--json", *options, "--", token])
    report = json.loads(capsys.readouterr().out)
    assert code == (1 if report["rejected"] else 0)
    assert report["rejected"] == (report["reason"] is not None)
    return report["reason"] or ACCEPT


@pytest.mark.parametrize(("make", "expected"), CASES)
def test_inspect_verdict_is_the_verifiers(
    make: Callable[[], str], expected: str, jwks_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For the attack corpus, inspect's verdict and first reason equal verify()'s."""
    token = make()
    outcome = verify_outcome(token)
    assert outcome == expected
    assert inspect_outcome(token, jwks_file, capsys) == outcome
