"""The ``scopegate`` command line: one entry point, a sub-command per job.

Each area registers its own sub-commands (``token`` in :mod:`scopegate._cli_token`,
``issuer``/``keys``/``hash-secret`` in :mod:`scopegate.issuer._cli`), so this module only
assembles the parser and maps failures to exit codes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from scopegate._version import __version__

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """Build the full ``scopegate`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="scopegate",
        description="OAuth 2.0 bearer-token toolkit: inspect and mint tokens, run the issuer.",
    )
    parser.add_argument("--version", action="version", version=f"scopegate {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    from scopegate import _cli_token
    from scopegate.issuer import _cli as issuer_cli

    _cli_token.register(commands)
    issuer_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
