"""The ``scopegate`` command line: one entry point, a module per job.

* :mod:`scopegate.cli.main`: the parser, the sub-commands it assembles, exit codes;
* :mod:`scopegate.cli.inspect`: ``token inspect``, the verifier built from the options;
* :mod:`scopegate.cli.report`: what :meth:`~scopegate.JWTVerifier.explain` found, in words;
* :mod:`scopegate.cli.mint`: ``token mint``, development tokens from a local key;
* :mod:`scopegate.cli.issuer`: ``issuer serve``, ``keys generate`` and ``hash-secret``,
  on the companion issuer's own configuration loader and servers.

``scopegate`` (the console script) and ``python -m scopegate`` both call :func:`main`.
"""

from scopegate.cli.main import CommandError, build_parser, main

__all__ = ["CommandError", "build_parser", "main"]
