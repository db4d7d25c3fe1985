"""``scopegate issuer serve``, ``scopegate hash-secret`` and ``scopegate keys generate``.

Ordinary mistakes end in one line on stderr and an exit code, never a traceback: 2 for
a usage or configuration error (bad port, unreadable or invalid configuration file,
unwritable key path), 1 for the environment (port in use, Redis unreachable, key file
exists).
"""

from __future__ import annotations

import argparse
import errno
import getpass
import json
import logging
import os
import signal
import socket
import sys
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

from scopegate._errors import ConfigurationError
from scopegate._extras import install_hint

__all__ = ["register"]


def register(commands: Any) -> None:
    """Add the issuer sub-commands to the ``scopegate`` parser's sub-parsers."""
    issuer = commands.add_parser("issuer", help="run the companion OAuth 2.0 issuer")
    issuer_commands = issuer.add_subparsers(dest="issuer_command", metavar="COMMAND")
    issuer_commands.required = True
    serve = issuer_commands.add_parser(
        "serve", help="serve token, introspection, revocation, JWKS and metadata endpoints"
    )
    serve.add_argument("--config", required=True, type=Path, help="TOML configuration file")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=9000, help="port, 0-65535 (default 9000)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(handler=serve_command)

    hashing = commands.add_parser(
        "hash-secret",
        help="hash a client secret or password for the issuer configuration",
        description="Reads the secret from standard input (or prompts twice) and prints "
        "its hash. The secret is never taken from the command line, where shell history "
        "and process listings would keep it.",
    )
    hashing.add_argument("--scheme", choices=["argon2id", "scrypt"], default="argon2id")
    hashing.add_argument(
        "--generate",
        action="store_true",
        help="generate a random 256-bit client secret; print it, then its hash",
    )
    hashing.set_defaults(handler=hash_secret_command)

    keys = commands.add_parser("keys", help="manage issuer signing keys")
    key_commands = keys.add_subparsers(dest="keys_command", metavar="COMMAND")
    key_commands.required = True
    generate = key_commands.add_parser("generate", help="generate a signing key (PEM)")
    generate.add_argument("--alg", choices=["RS256", "ES256", "EdDSA"], default="RS256")
    generate.add_argument(
        "--out",
        type=Path,
        help="write the private key here (mode 0600); missing directories are created (0700)",
    )
    generate.add_argument("--force", action="store_true", help="overwrite --out")
    generate.set_defaults(handler=keys_generate_command)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: use a number from 0 to 65535")
    return value


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _default_issuer(host: str, port: int) -> str:
    return f"http://{_shown(host)}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """A socket bound to *host*:*port*, so a busy port is reported before anything starts."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As uvicorn does: reuse a port in TIME_WAIT (never one another socket listens on).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def _bind_problem(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return "cannot resolve the host name"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use (another process listens on that port)"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges)"
    return (exc.strerror or type(exc).__name__).lower()


def serve_command(args: argparse.Namespace) -> int:
    """Load the configuration and serve the issuer with uvicorn until SIGINT/SIGTERM."""
    from scopegate.issuer._config import load_config
    from scopegate.issuer._errors import StoreUnavailableError
    from scopegate.issuer._issuer import InsecureGrantWarning, Issuer

    try:
        import uvicorn

        from scopegate.issuer._asgi import create_asgi_app
    except ImportError:
        print(
            install_hint("scopegate issuer serve", "uvicorn and Starlette", "issuer"),
            file=sys.stderr,
        )
        return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        where = f"{_shown(args.host)}:{args.port}"
        print(f"scopegate issuer: cannot listen on {where}: {_bind_problem(exc)}", file=sys.stderr)
        return 1
    port = int(sock.getsockname()[1])
    try:
        loaded = load_config(args.config, default_issuer=_default_issuer(args.host, port))
        with warnings.catch_warnings():
            # Issuer logs the password-grant warning; the Python warning would print it twice.
            warnings.simplefilter("ignore", InsecureGrantWarning)
            issuer = Issuer.from_config(loaded)
    except ConfigurationError as exc:
        sock.close()
        print(f"scopegate issuer: configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        issuer.check()
    except StoreUnavailableError as exc:
        sock.close()
        issuer.close()
        print(f"scopegate issuer: {exc}", file=sys.stderr)
        return 1
    logging.getLogger("scopegate.issuer").info(
        "issuer %s listening on %s:%s", issuer.config.issuer, _shown(args.host), port
    )
    config = uvicorn.Config(
        create_asgi_app(issuer),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # Access logs would record any query string, and credentials sent there by a
        # broken client must not reach a log (RFC 6749 §2.3.1). Forwarded headers are
        # not trusted: they would let a client pick its own throttling address.
        access_log=False,
        proxy_headers=False,
        lifespan="off",
        server_header=False,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal to the
    # handler that was installed before it; a no-op handler there turns a requested stop
    # into a normal exit with status 0.
    previous = {sig: signal.signal(sig, _ignore_signal) for sig in _STOP_SIGNALS}
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        issuer.close()
    logging.getLogger("scopegate.issuer").info("issuer stopped")
    return 0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    return None


def _read_secret() -> str | None:
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line.rstrip("\r\n") or None
    first = getpass.getpass("Secret: ")
    if first != getpass.getpass("Repeat: "):
        print("scopegate hash-secret: the two entries differ", file=sys.stderr)
        return None
    return first or None


def hash_secret_command(args: argparse.Namespace) -> int:
    """Print the hash of a secret read from stdin or a prompt (never from argv)."""
    from scopegate.issuer._passwords import generate_client_secret, hash_secret

    if args.generate:
        secret = generate_client_secret()
        print(secret)
    else:
        read = _read_secret()
        if read is None:
            print("scopegate hash-secret: no secret given", file=sys.stderr)
            return 2
        secret = read
    try:
        print(hash_secret(secret, scheme=args.scheme))
    except ValueError:
        print("scopegate hash-secret: the secret must be 1 to 4096 bytes", file=sys.stderr)
        return 2
    return 0


def _make_private_dirs(directory: Path) -> None:
    """Create *directory* and its missing parents, each readable by the owner only."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        if directory.parent == directory:
            break
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700)


def keys_generate_command(args: argparse.Namespace) -> int:
    """Generate a signing key; write the PEM to --out (0600) or stdout, the JWK to stderr."""
    from scopegate._signing import SigningKey

    key = SigningKey.generate(args.alg)
    pem = key.private_pem()
    if args.out is None:
        sys.stdout.write(pem.decode())
    else:
        out: Path = args.out
        flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if args.force else os.O_EXCL)
        try:
            if out.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory")
            _make_private_dirs(out.parent)
            fd = os.open(out, flags, 0o600)
        except FileExistsError:
            print(f"scopegate keys generate: {out}: file exists (use --force)", file=sys.stderr)
            return 1
        except OSError as exc:
            problem = (exc.strerror or type(exc).__name__).lower()
            print(f"scopegate keys generate: cannot write {out}: {problem}", file=sys.stderr)
            return 2
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        print(json.dumps(key.public_jwk()))
    print(f"kid={key.kid} alg={key.alg}", file=sys.stderr)
    return 0
