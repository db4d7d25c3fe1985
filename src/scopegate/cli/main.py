"""Assemble the ``scopegate`` parser and run a sub-command.

Exit codes shared by every command: 0 success, 1 the command's negative answer (a token
rejected, a file that already exists), 2 a usage or configuration error, 3 keys that
could not be read or fetched, 130 interrupted. A :class:`CommandError` ends a command
with one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from scopegate._version import __version__

__all__ = ["CommandError", "build_parser", "main"]


class CommandError(Exception):
    """A failure the user can fix: one ``error:`` line on stderr and an exit code.

    Args:
        message: Fixed text or values the user gave; never a token or key material.
        code: The exit code (2 by default: usage or configuration).
    """

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    """Build the full ``scopegate`` argument parser.

    Returns:
        The parser; each sub-command sets a ``handler`` taking the parsed arguments and
        returning the exit code.
    """
    parser = argparse.ArgumentParser(
        prog="scopegate",
        description="OAuth 2.0 bearer-token toolkit: inspect and mint tokens, run the issuer.",
    )
    parser.add_argument("--version", action="version", version=f"scopegate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    # Imported here: the command modules import CommandError from this module.
    from scopegate.cli import inspect, mint
    from scopegate.cli import issuer as issuer_cli

    token = commands.add_parser(
        "token",
        help="mint development tokens and explain why a token is accepted or rejected",
        description="Work with access tokens.",
    )
    actions = token.add_subparsers(dest="token_command", metavar="ACTION")
    actions.required = True
    for name, command in (("inspect", inspect), ("mint", mint)):
        _add_command(actions, name, command)
    issuer_cli.register(commands)
    return parser


def _add_command(actions: Any, name: str, command: ModuleType) -> None:
    # A command module declares HELP, DESCRIPTION, EPILOG, add_arguments(parser) and
    # run(args) -> exit code.
    parser = actions.add_parser(
        name,
        help=command.HELP,
        description=command.DESCRIPTION,
        epilog=command.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_arguments(parser)
    parser.set_defaults(handler=command.run)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: The arguments after the program name (``sys.argv[1:]`` when ``None``).

    Returns:
        The process exit code.
    """
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
