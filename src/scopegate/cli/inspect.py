"""``scopegate token inspect``: why a resource server accepts or rejects a token.

The library judges the token, not this module: a :class:`~scopegate.JWTVerifier` is
built from the options as a resource server builds it, its
:meth:`~scopegate.JWTVerifier.explain` runs the one rule table check by check, and
:mod:`scopegate.cli.report` puts the outcome into words. The keys come from

* ``--jwks FILE``: a PEM public key or certificate, a JWK, a JWKS, or a PEM private
  key whose public half is used (the issuer's key file);
* ``--fetch``: the issuer's metadata (RFC 8414, then OpenID discovery) and its JWKS,
  fetched by the verifier exactly as in production; or ``--jwks URL --fetch``;
* nowhere: the signature is then reported as not checked.

Nothing touches the network without ``--fetch``. The token is never printed, only a
SHA-256 fingerprint and its length. Exit codes: 0 no check failed, 1 the token is
rejected, 2 usage error, 3 the keys could not be read or fetched.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from scopegate._checks import REASONS
from scopegate._errors import ConfigurationError
from scopegate._jwt import JWTVerifier
from scopegate._keys import check_algorithms, load_static_keys
from scopegate._signing import SigningKey
from scopegate.cli.main import CommandError
from scopegate.cli.report import build_report, render_json, render_text

__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_arguments", "build_verifier", "run"]

# The verifier's own defaults, shown in --help; options left out keep them.
_DEFAULTS: dict[str, Any] = JWTVerifier.__init__.__kwdefaults__ or {}
# Stand-ins for what the user did not give; both under the reserved .invalid TLD
# (RFC 2606). The issuer check is then shown as not compared and does not count; the
# JWKS URL is never fetched, because explain() runs with fetch=False without --fetch.
_ISSUER_NOT_GIVEN = "https://issuer.invalid"
_NO_KEYS = "https://keys.invalid/jwks.json"


HELP = "decode a token without trusting it and explain every check"
DESCRIPTION = (
    "Decode TOKEN without trusting it and list each check a scopegate resource server "
    "makes, with the reason for every failure. No network access unless --fetch is given. "
    "The token itself is never printed. Exit status: 0 no check failed, 1 rejected, "
    "2 usage error, 3 keys unavailable."
)
EPILOG = (
    "examples:\n"
    '  scopegate token inspect "$TOKEN" --issuer https://as.example --audience api://orders\n'
    "  scopegate token inspect - --jwks jwks.json < token.txt\n"
    '  scopegate token inspect "$TOKEN" --issuer https://as.example --fetch'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``token inspect``'s options on *parser*; unset ones keep the verifier's defaults."""
    parser.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    parser.add_argument("--issuer", help="the issuer the API trusts (iss must match exactly)")
    _repeatable(
        parser, "--audience", "audience", "AUDIENCE", "this API's audience (aud must contain one)"
    )
    parser.add_argument(
        "--jwks",
        metavar="FILE|URL",
        help="keys to check the signature: a PEM public or private key, a certificate, a "
        "JWK or JWKS file; or a JWKS URL (with --fetch)",
    )
    parser.add_argument(
        "--fetch",
        action="store_true",
        help="allow network access: discover the keys from --issuer, or fetch --jwks URL",
    )
    parser.add_argument(
        "--typ",
        choices=("strict", "lenient"),
        help="typ policy: strict needs at+jwt (RFC 9068); lenient also accepts JWT or none "
        f"(default: {_DEFAULTS['typ']})",
    )
    _repeatable(parser, "--algorithm", "algorithms", "ALG", "an allowed algorithm")
    parser.add_argument(
        "--leeway", type=float, help=f"clock skew in seconds (default: {_DEFAULTS['leeway']})"
    )
    parser.add_argument(
        "--max-lifetime", type=float, help="largest exp - iat in seconds (default: no limit)"
    )
    parser.add_argument(
        "--require",
        metavar="CLAIMS",
        help=f"comma-separated required claims (default: {','.join(_DEFAULTS['required_claims'])})",
    )
    _repeatable(parser, "--scope-claim", "scope_claims", "CLAIM", "claim or dotted path of scopes")
    parser.add_argument(
        "--timeout", type=float, help=f"network timeout (default: {_DEFAULTS['http_timeout']} s)"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _repeatable(
    parser: argparse.ArgumentParser, flag: str, dest: str, metavar: str, what: str
) -> None:
    default = _DEFAULTS.get(dest)
    shown = "" if default is None else f" (default: {' '.join(default)})"
    parser.add_argument(
        flag, dest=dest, action="append", metavar=metavar, help=f"{what}; repeat for several{shown}"
    )


def _read_token(value: str) -> str:
    token = (sys.stdin.read() if value == "-" else value).strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return token


def _key_file(path: Path, algorithms: frozenset[str]) -> bytes:
    """The key file's public keys, checked as the verifier will parse them."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(f"keys unavailable: cannot read {path}: {exc.strerror}", 3) from exc
    try:
        if b"PRIVATE KEY-----" in data:
            # The issuer's own key file: its public half is what the issuer publishes.
            data = SigningKey.from_pem(data).public_pem()
        load_static_keys(data, algorithms)
    except ConfigurationError as exc:
        raise CommandError(f"keys unavailable: {path}: {exc}", 3) from exc
    return data


def _key_source(args: argparse.Namespace, algorithms: frozenset[str]) -> dict[str, Any]:
    """The verifier's keyword arguments naming where its keys come from."""
    network = {} if args.timeout is None else {"http_timeout": args.timeout}
    if args.jwks is not None and args.jwks.startswith(("https://", "http://")):
        if not args.fetch:
            raise CommandError("--jwks is a URL; add --fetch to allow network access")
        return {"jwks_uri": args.jwks, **network}
    if args.jwks is not None:
        if args.fetch:
            raise CommandError("--fetch goes with --issuer or a --jwks URL, not a key file")
        return {"keys": _key_file(Path(args.jwks), algorithms)}
    if args.fetch:
        if args.issuer is None:
            raise CommandError("--fetch needs --issuer (to discover its keys) or a --jwks URL")
        return {"jwks_uri": None, **network}  # discovery, as a resource server does
    return {"jwks_uri": _NO_KEYS}


def build_verifier(args: argparse.Namespace) -> JWTVerifier:
    """The :class:`~scopegate.JWTVerifier` that ``token inspect`` explains the token with.

    Options left out keep the verifier's defaults; without ``--issuer`` a stand-in issuer
    is used and the issuer check is reported as not compared.

    Raises:
        CommandError: A setting the verifier refuses (2), or keys that cannot be read
            (3).
    """
    given: dict[str, Any] = {
        "typ": args.typ,
        "leeway": args.leeway,
        "max_lifetime": args.max_lifetime,
        "required_claims": None if args.require is None else args.require.split(","),
        "scope_claims": args.scope_claims,
    }
    options = {name: value for name, value in given.items() if value is not None}
    try:
        algorithms = check_algorithms(args.algorithms or _DEFAULTS["algorithms"])
        source = _key_source(args, algorithms)
        return JWTVerifier(
            issuer=args.issuer or _ISSUER_NOT_GIVEN,
            audience=args.audience,  # None: no audience check, as the verifier allows
            algorithms=tuple(algorithms),
            **options,
            **source,
        )
    except ConfigurationError as exc:
        raise CommandError(str(exc)) from exc


def run(args: argparse.Namespace) -> int:
    """Explain the token with the verifier the options describe, and print the report.

    Returns:
        0 when no check failed, 1 when the token is rejected.

    Raises:
        CommandError: See :func:`build_verifier`; also the keys could not be fetched (3).
    """
    token = _read_token(args.token)
    verifier = build_verifier(args)
    try:
        now = time.time()
        checks = verifier.explain(token, fetch=args.fetch)
    finally:
        verifier.close()
    for check in checks:
        # A key-source failure is an outage (503 for a resource server), not a verdict.
        if check.check == "key" and check.passed is False and check.reason not in REASONS:
            source = args.jwks if args.jwks is not None else f"the metadata of {args.issuer}"
            raise CommandError(f"keys unavailable ({check.reason}) from {source}", 3)
    report = build_report(token, verifier, checks, now=now, issuer_compared=bool(args.issuer))
    sys.stdout.write(render_json(report) if args.json else render_text(report))
    return 1 if report.rejected else 0
