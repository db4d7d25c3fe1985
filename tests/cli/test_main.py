"""The `scopegate` entry point: one parser assembling every sub-command."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from scopegate import __version__
from scopegate.cli import build_parser, main


def test_console_script_is_cli_main() -> None:
    """The installed `scopegate` script runs scopegate.cli:main."""
    (script,) = entry_points(group="console_scripts", name="scopegate")
    assert script.value == "scopegate.cli:main"
    assert script.load() is main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """--version prints the package version and exits 0."""
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"scopegate {__version__}"


def test_python_dash_m_runs_the_same_command_line() -> None:
    """`python -m scopegate` is the same entry point."""
    result = subprocess.run(
        [sys.executable, "-m", "scopegate", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"scopegate {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["token", "inspect", "--help"], id="token-inspect"),
        pytest.param(["token", "mint", "--help"], id="token-mint"),
        pytest.param(["issuer", "serve", "--help"], id="issuer-serve"),
        pytest.param(["keys", "generate", "--help"], id="keys-generate"),
        pytest.param(["hash-secret", "--help"], id="hash-secret"),
    ],
)
def test_every_sub_command_is_registered(argv: list[str]) -> None:
    """The token commands and the issuer's commands share one parser."""
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 0


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["token"], id="no-action"),
        pytest.param(["token", "inspect"], id="no-token"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """A missing command or argument is a usage error (exit 2), never a traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: scopegate" in capsys.readouterr().err
