"""``scopegate token mint``: a development token signed with a local key.

The key is the one :class:`~scopegate._signing.SigningKey` of the library: a PEM file
(``--key``, such as the issuer's from ``scopegate keys generate``) or a fresh key, which
``--key-out`` saves with mode 0600 and ``--jwks-out`` publishes as a JWK Set. The
token's ``kid`` is the key's RFC 7638 thumbprint unless ``--kid`` says otherwise, so a
saved key signs with the same ``kid`` later. Claims are those of
:meth:`scopegate.testing.LocalIssuer.make_token`. Only the token is printed; key
material goes nowhere but the file asked for.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, cast, get_args

from scopegate._errors import ConfigurationError
from scopegate._signing import SigningAlgorithm, SigningKey
from scopegate.cli.main import CommandError
from scopegate.testing import DEFAULT_AUDIENCE, DEFAULT_ISSUER, LocalIssuer

__all__ = ["DESCRIPTION", "EPILOG", "HELP", "add_arguments", "run"]


HELP = "sign a development token with a local key"
DESCRIPTION = (
    "Print a signed RFC 9068 access token for development and tests. Use --key with the "
    "issuer's PEM key (kid = its RFC 7638 thumbprint, as `scopegate issuer serve` publishes "
    "it), or let it generate a key and save it with --key-out/--jwks-out. Exit status: "
    "0 token printed, 1 --key-out exists (add --force), 2 usage error."
)
EPILOG = (
    "example:\n"
    "  scopegate token mint --key keys/issuer.pem --issuer http://127.0.0.1:9000 \\\n"
    '      --audience api://demo --scope "items:read items:write" --sub alice'
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``token mint`` on the sub-command's *parser*."""
    parser.add_argument("--key", metavar="PEM", type=Path, help="private key file (PEM)")
    parser.add_argument(
        "--alg",
        choices=get_args(SigningAlgorithm),
        help="signing algorithm (default: from the key type; RS256 for a new key)",
    )
    parser.add_argument("--kid", help="key id (default: the key's RFC 7638 thumbprint)")
    parser.add_argument("--issuer", default=DEFAULT_ISSUER, help=f"iss claim ({DEFAULT_ISSUER})")
    parser.add_argument(
        "--audience", default=DEFAULT_AUDIENCE, help=f"aud claim ({DEFAULT_AUDIENCE})"
    )
    parser.add_argument("--sub", default="dev-user", help="sub claim (dev-user)")
    parser.add_argument("--client-id", default="dev-client", help="client_id claim (dev-client)")
    parser.add_argument("--scope", default=None, help='space-delimited scopes, e.g. "read write"')
    parser.add_argument("--expires-in", type=float, default=600, help="lifetime in seconds (600)")
    parser.add_argument("--typ", help="typ header (default: at+jwt)")
    parser.add_argument(
        "--claim",
        action="append",
        type=_member,
        metavar="NAME=JSON",
        help="extra claim; the value is parsed as JSON, else taken as a string",
    )
    parser.add_argument(
        "--header",
        action="append",
        type=_member,
        metavar="NAME=JSON",
        help="extra JOSE header member",
    )
    parser.add_argument(
        "--key-out", metavar="FILE", type=Path, help="save the private key here (mode 0600)"
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --key-out")
    parser.add_argument("--jwks-out", metavar="FILE", type=Path, help="write the public JWKS here")


def _member(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw  # a bare word is a string
    return name, value


def run(args: argparse.Namespace) -> int:
    """Print a token signed with the chosen key; save the key and JWKS when asked.

    Raises:
        CommandError: An unreadable or unsuitable key (2), an unwritable output path
            (2), or an existing ``--key-out`` without ``--force`` (1).
    """
    key = _signing_key(args)
    if args.key_out is not None:
        _save_private_key(key, args.key_out, force=args.force)
    if args.jwks_out is not None:
        _write(args.jwks_out, json.dumps(key.jwks(), indent=2) + "\n")
    headers: dict[str, Any] = dict(args.header or [])
    if args.typ is not None:
        headers["typ"] = args.typ
    token = LocalIssuer(issuer=args.issuer, audience=args.audience, key=key).make_token(
        args.scope,
        sub=args.sub,
        client_id=args.client_id,
        expires_in=args.expires_in,
        headers=headers,
        **dict(args.claim or []),
    )
    sys.stdout.write(token + "\n")
    return 0


def _signing_key(args: argparse.Namespace) -> SigningKey:
    alg = cast(SigningAlgorithm | None, args.alg)
    try:
        if args.key is not None:
            return SigningKey.from_pem(args.key.read_bytes(), alg=alg, kid=args.kid)
        key = SigningKey.generate(alg or "RS256", kid=args.kid)
    except OSError as exc:
        raise CommandError(f"cannot read the key {args.key}: {exc.strerror}") from exc
    except ConfigurationError as exc:  # fixed text: never key material
        raise CommandError(str(exc)) from exc
    if args.key_out is None and args.jwks_out is None:
        sys.stderr.write(
            "note: signed with a fresh throw-away key; add --key-out/--jwks-out to keep it, "
            "or --key FILE to use yours\n"
        )
    return key


def _save_private_key(key: SigningKey, path: Path, *, force: bool) -> None:
    # O_EXCL: a private key is never replaced by accident (as `keys generate`).
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise CommandError(f"{path} exists; add --force to overwrite it", code=1) from exc
    except OSError as exc:
        raise CommandError(f"cannot write the key to {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as handle:
        # An overwritten file keeps its old mode: make it owner-only before writing.
        os.fchmod(handle.fileno(), 0o600)
        handle.write(key.private_pem())


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror}") from exc
