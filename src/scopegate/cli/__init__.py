"""The ``scopegate`` command line: one entry point, a module per job.

* :mod:`scopegate.cli.main`: the parser, the sub-commands it assembles, exit codes;
* :mod:`scopegate.cli.inspect`: ``token inspect``, the verifier built from the options;
* :mod:`scopegate.cli.report`: what :meth:`~scopegate.JWTVerifier.explain` found, in words;
* :mod:`scopegate.cli.mint`: ``token mint``, development tokens from a local key;
* the issuer's ``issuer serve``, ``keys generate`` and ``hash-secret`` come from
  :mod:`scopegate.issuer._cli`.

``scopegate`` (the console script) and ``python -m scopegate`` both call :func:`main`.
"""

from scopegate.cli.main import CommandError, build_parser, main

__all__ = ["CommandError", "build_parser", "main"]
