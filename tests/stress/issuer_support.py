"""A real issuer process for the stress and leak suites: its TOML config and secrets."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.stress.procs import PYTHON, Proc

APP_SECRET = "app-secret-for-restart-test"
RS_SECRET = "rs-secret-for-restart-test"
PASSWORD = "alice-password-for-restart"


def write_config(directory: Path, redis_url: str) -> Path:
    """An issuer TOML config with Redis state and a fixed signing key file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (directory / "issuer.pem").write_bytes(pem)
    config = directory / "issuer.toml"
    config.write_text(
        f"""
audience = "api://restart"
allow_password_grant = true
signing_key = "issuer.pem"
redis_url = "{redis_url}"
address_max_failures = 1000

[[clients]]
id = "app"
secret = "{APP_SECRET}"
grant_types = ["password", "refresh_token", "client_credentials"]
scopes = ["items:read", "items:write"]

[[clients]]
id = "rs"
secret = "{RS_SECRET}"
grant_types = ["client_credentials"]
introspect = true

[[users]]
username = "alice"
password = "{PASSWORD}"
scopes = ["items:read", "items:write"]
"""
    )
    return config


def issuer_process(config: Path, log_level: str = "warning") -> Proc:
    """``scopegate issuer serve`` on a free port with *config* (not started)."""
    return Proc(
        [
            PYTHON,
            "-m",
            "scopegate",
            "issuer",
            "serve",
            "--config",
            str(config),
            "--port",
            "{port}",
            "--log-level",
            log_level,
        ],
        ready_path="/.well-known/oauth-authorization-server",
    )
