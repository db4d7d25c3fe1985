"""Test your protected API with real tokens: a local issuer, a token factory, clients.

Everything here signs real RFC 9068 access tokens with a key generated on the spot, and
builds verifiers that trust exactly that key, so your tests run the same checks as
production, with no mocking of scopegate itself and no network unless you ask for it.

- :class:`LocalIssuer`: in-process; ``make_token(...)`` and ``verifier()``.
- :class:`IssuerServer`: the same, also serving discovery and the JWKS on 127.0.0.1.
- :class:`SigningKey`: a key bound to one algorithm; JWKS export and raw signing.
- :class:`DPoPKey` and :class:`DPoPAuth`: DPoP proofs (RFC 9449) and an ``httpx.Auth``
  that sends a DPoP-bound token with a fresh proof on every request.
- ``starlette_client`` / ``flask_client`` / ``django_client`` / ``client_for``: framework
  test clients that send a bearer token.

With scopegate installed, pytest also gets fixtures (``scopegate_issuer``, ``make_token``,
``scopegate_client``...; see :mod:`scopegate.testing._plugin`).

Example:
    >>> from scopegate.testing import LocalIssuer
    >>> issuer = LocalIssuer()
    >>> token = issuer.make_token(scopes=["items:read"], sub="alice")
    >>> issuer.verifier().verify(token).subject
    'alice'

Never use these keys or verifiers in production: the keys live in memory and the
tokens are whatever the test asks for.
"""

from scopegate._signing import SigningAlgorithm, SigningKey
from scopegate.testing._clients import client_for, django_client, flask_client, starlette_client
from scopegate.testing._dpop import DPoPAuth, DPoPKey
from scopegate.testing._issuer import DEFAULT_AUDIENCE, DEFAULT_ISSUER, OMIT, LocalIssuer
from scopegate.testing._server import IssuerServer

__all__ = [
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "OMIT",
    "DPoPAuth",
    "DPoPKey",
    "IssuerServer",
    "LocalIssuer",
    "SigningAlgorithm",
    "SigningKey",
    "client_for",
    "django_client",
    "flask_client",
    "starlette_client",
]
