"""Fixtures for the issuer tests: a configured issuer and a tiny in-process HTTP caller."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import argon2
import pytest

from scopegate.issuer import (
    Client,
    HTTPRequest,
    HTTPResponse,
    Issuer,
    IssuerConfig,
    SigningKey,
    SigningKeySet,
    User,
)
from tests.servers import wait_for_port

ISSUER = "https://auth.example"
AUDIENCE = "api://demo"
SECRET = "s3cret-Value_~."
ALL_GRANTS = frozenset({"client_credentials", "password", "refresh_token"})
FORM = "application/x-www-form-urlencoded"
RS_KEY = SigningKey.generate("RS256")


def basic(client_id: str, secret: str) -> str:
    """An RFC 6749 §2.3.1 Basic header (form-encoded halves)."""
    raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class FakeClock:
    """A settable clock."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


@dataclass
class Caller:
    """Calls an issuer in process through its sans-io handle()."""

    issuer: Issuer
    address: str = "192.0.2.1"

    def request(
        self,
        path: str,
        form: Mapping[str, str] | list[tuple[str, str]] | str | bytes | None = None,
        *,
        auth: tuple[str, str] | None = ("svc", SECRET),
        method: str = "POST",
        headers: Mapping[str, str] | None = None,
        query: str = "",
        content_type: str | None = FORM,
    ) -> HTTPResponse:
        if isinstance(form, bytes):
            body = form
        elif isinstance(form, str):
            body = form.encode()
        else:
            body = urlencode(form or {}).encode()
        all_headers = {}
        if content_type:
            all_headers["content-type"] = content_type
        if auth:
            all_headers["authorization"] = basic(*auth)
        all_headers.update(headers or {})
        return self.issuer.handle(HTTPRequest(method, path, query, all_headers, body, self.address))

    def token(self, form: Any = None, **kwargs: Any) -> HTTPResponse:
        return self.request("/token", form, **kwargs)

    def introspect(self, token: str, **kwargs: Any) -> dict[str, Any]:
        response = self.request("/introspect", {"token": token}, **kwargs)
        assert response.status == 200, response.body
        return dict(json.loads(response.body))

    def revoke(self, token: str, **kwargs: Any) -> HTTPResponse:
        return self.request("/revoke", {"token": token}, **kwargs)


def standard_clients() -> list[Client]:
    return [
        Client("svc", (SECRET,), grant_types=ALL_GRANTS, scopes=frozenset({"read", "write"})),
        Client("other", ("other-secret",), grant_types=ALL_GRANTS, scopes=frozenset({"read"})),
        Client("rs", ("rs-secret",), grant_types=frozenset(), introspect=True),
        Client(
            "post", ("post-secret",), scopes=frozenset({"read"}), auth_method="client_secret_post"
        ),
        Client(
            "basic",
            ("basic-secret",),
            scopes=frozenset({"read"}),
            auth_methods=frozenset({"client_secret_basic"}),
        ),
        Client("nodefault", ("nd-secret",), scopes=frozenset({"read"}), default_scopes=frozenset()),
        Client("cconly", ("cc-secret",), scopes=frozenset({"read"})),
    ]


# Cheap argon2id parameters so the suite stays fast; the first successful login
# upgrades them to the defaults (PW-8).
CHEAP = argon2.PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)
ALICE_HASH = CHEAP.hash("alice-pw")
BOB_HASH = CHEAP.hash("bob-pw")


def standard_users() -> list[User]:
    return [
        User("user-1", "alice", ALICE_HASH, scopes=frozenset({"read", "write"})),
        User("user-2", "bob", BOB_HASH, scopes=frozenset({"read"}), disabled=True),
    ]


def make_issuer(
    *,
    clock: Callable[[], float] | None = None,
    password: bool = True,
    keys: SigningKeySet | None = None,
    **settings: Any,
) -> Issuer:
    """An issuer with the standard clients and users (the password grant on by default)."""
    config = IssuerConfig(
        issuer=settings.pop("issuer", ISSUER),
        audience=AUDIENCE,
        allow_password_grant=password,
        **settings,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            config,
            clients=standard_clients(),
            users=standard_users(),
            keys=keys or SigningKeySet(current=RS_KEY),
            clock=clock or FakeClock(),
        )


@contextlib.contextmanager
def run_waitress(app: Any, port: int) -> Iterator[str]:
    """Like tests.servers.run_wsgi, but lets client connections drain before closing.

    Closing a waitress server from another thread while a keep-alive channel is still
    open races with its select() loop (EBADF in the server thread), so wait until only
    the listener and the trigger remain.
    """
    from waitress.server import create_server

    server = create_server(app, host="127.0.0.1", port=port, threads=8)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        deadline = time.monotonic() + 5
        while len(server._map) > 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        from waitress import wasyncore

        # Close every fd from inside the loop thread; the loop ends when its map is empty.
        server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
        thread.join(10)
        server.task_dispatcher.shutdown()


@pytest.fixture
def clock() -> FakeClock:
    """A fake clock shared by the issuer under test."""
    return FakeClock()


@pytest.fixture
def issuer(clock: FakeClock) -> Iterator[Issuer]:
    """An issuer with JWT access tokens and the password grant enabled."""
    return make_issuer(clock=clock)


@pytest.fixture
def call(issuer: Issuer) -> Caller:
    """Call the issuer in process."""
    return Caller(issuer)
