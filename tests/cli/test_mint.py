"""`scopegate token mint`: ordinary mistakes end in one line and an exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from scopegate.cli import main


def test_key_out_in_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--key-out into a directory that does not exist: a clear error and exit 2."""
    target = tmp_path / "nodir" / "x.pem"
    code = main(["token", "mint", "--alg", "EdDSA", "--key-out", str(target)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: cannot write the key to ")
    assert "No such file or directory" in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""  # no token for a key that was not saved
    assert not target.parent.exists()


def test_jwks_out_in_a_missing_directory_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--jwks-out into a directory that does not exist: a clear error and exit 2."""
    code = main(["token", "mint", "--alg", "EdDSA", "--jwks-out", str(tmp_path / "no" / "j")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("error: cannot write ")
    assert captured.out == ""


def test_key_out_never_overwrites_a_key_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An existing --key-out is refused (exit 1, file untouched), as `keys generate` does."""
    target = tmp_path / "issuer.pem"
    target.write_text("the key that signs production tokens\n")
    code = main(["token", "mint", "--alg", "EdDSA", "--key-out", str(target)])
    captured = capsys.readouterr()
    assert code == 1
    assert "exists; add --force to overwrite it" in captured.err
    assert captured.out == ""
    assert target.read_text() == "the key that signs production tokens\n"


def test_key_out_with_force_replaces_the_key_owner_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--force replaces the file; the new private key is mode 0600 even if the old was not."""
    target = tmp_path / "dev.pem"
    target.write_text("old\n")
    target.chmod(0o644)
    code = main(["token", "mint", "--alg", "EdDSA", "--key-out", str(target), "--force"])
    captured = capsys.readouterr()
    assert code == 0
    assert target.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert target.stat().st_mode & 0o777 == 0o600
    assert "PRIVATE KEY" not in captured.out + captured.err
    assert captured.out.count(".") == 2  # the token, and nothing else


def test_throw_away_key_is_announced_not_printed(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --key or --key-out the fresh key is never shown; a note says it is lost."""
    assert main(["token", "mint", "--alg", "ES256"]) == 0
    captured = capsys.readouterr()
    assert "throw-away key" in captured.err
    assert "PRIVATE KEY" not in captured.out + captured.err
