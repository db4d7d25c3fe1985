"""pytest plugin: scopegate's fixtures, registered through the ``pytest11`` entry point.

Installing scopegate makes these fixtures available in every test session; nothing to
import. Frameworks are imported only inside the fixtures that need them.

Fixtures:
    scopegate_signing_key: one RSA :class:`~scopegate.testing.SigningKey` per session.
    scopegate_issuer: a :class:`~scopegate.testing.LocalIssuer` (in-process, no network).
    make_token / token_factory: ``scopegate_issuer.make_token``.
    scopegate_verifier: a ``JWTVerifier`` that trusts ``scopegate_issuer``.
    scopegate_issuer_server: a started :class:`~scopegate.testing.IssuerServer` (HTTP).
    scopegate_env: ``SCOPEGATE_*`` variables pointing at ``scopegate_issuer_server``.
    scopegate_client: ``scopegate_client(app, scopes=[...])`` gives the framework's test
        client with a fresh token from ``scopegate_issuer`` attached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from scopegate._signing import SigningKey
from scopegate.testing._clients import client_for
from scopegate.testing._issuer import LocalIssuer
from scopegate.testing._server import IssuerServer


@pytest.fixture(scope="session")
def scopegate_signing_key() -> SigningKey:
    """One RSA signing key for the whole session (RSA generation is the slow part)."""
    return SigningKey.generate("RS256", kid="scopegate-test-key")


@pytest.fixture
def scopegate_issuer(scopegate_signing_key: SigningKey) -> LocalIssuer:
    """An in-process fake issuer; its :meth:`~LocalIssuer.verifier` needs no network."""
    return LocalIssuer(key=scopegate_signing_key)


@pytest.fixture
def make_token(scopegate_issuer: LocalIssuer) -> Callable[..., str]:
    """``make_token(scopes=..., sub=..., expires_in=..., **claims)`` by ``scopegate_issuer``."""
    return scopegate_issuer.make_token


@pytest.fixture
def token_factory(scopegate_issuer: LocalIssuer) -> Callable[..., str]:
    """Alias of ``make_token`` for projects that already have a fixture by that name."""
    return scopegate_issuer.make_token


@pytest.fixture
def scopegate_verifier(scopegate_issuer: LocalIssuer) -> Any:
    """A ``JWTVerifier`` trusting ``scopegate_issuer`` (static keys, no network)."""
    return scopegate_issuer.verifier()


@pytest.fixture
def scopegate_issuer_server(scopegate_signing_key: SigningKey) -> Iterator[IssuerServer]:
    """A fake issuer serving discovery and JWKS on 127.0.0.1, stopped after the test."""
    with IssuerServer(key=scopegate_signing_key) as server:
        yield server


@pytest.fixture
def scopegate_env(
    scopegate_issuer_server: IssuerServer, monkeypatch: pytest.MonkeyPatch
) -> IssuerServer:
    """Set ``SCOPEGATE_ISSUER/AUDIENCE/JWKS_URI`` to the served issuer for ``from_env``."""
    for name, value in scopegate_issuer_server.env().items():
        monkeypatch.setenv(name, value)
    return scopegate_issuer_server


@pytest.fixture
def scopegate_client(scopegate_issuer: LocalIssuer) -> Callable[..., Any]:
    """Factory: ``scopegate_client(app, scopes=["read"])`` -> a test client with a token.

    ``app`` is a Flask app, a Starlette/FastAPI (or any ASGI) app, or ``None`` for the
    configured Django project. ``anonymous=True`` sends no token; ``token="..."`` sends
    that exact token; other keywords go to ``make_token`` (``sub=``, ``expires_in=``...).
    """

    def factory(
        app: Any = None,
        scopes: str | Iterable[str] | None = (),
        *,
        anonymous: bool = False,
        token: str | None = None,
        **claims: Any,
    ) -> Any:
        if not anonymous and token is None:
            token = scopegate_issuer.make_token(scopes, **claims)
        return client_for(app, token)

    return factory
