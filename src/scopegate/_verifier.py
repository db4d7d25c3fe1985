"""The verifier protocol, and the verifier that routes JWTs and opaque tokens."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._token import AccessToken

__all__ = ["HybridVerifier", "TokenVerifier", "looks_like_jws"]


@runtime_checkable
class TokenVerifier(Protocol):
    """Anything that turns a raw bearer token into an :class:`AccessToken`.

    ``verify`` serves WSGI and threads, ``averify`` asyncio; both share one logic and
    raise only :class:`scopegate.BearerError` subclasses for request outcomes.
    """

    def verify(self, token: str) -> AccessToken:
        """Verify *token*; raise a ``BearerError`` when it cannot be accepted."""
        ...

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`; never blocks the event loop."""
        ...


def looks_like_jws(token: str) -> bool:
    """True when *token* has the shape of a compact JWS: three dot-separated parts.

    Only the shape is judged; an opaque token never has exactly two dots in practice,
    and one that does fails JWT verification with ``invalid_token`` as it should.
    """
    return token.count(".") == 2


class HybridVerifier:
    """Verifies JWTs locally and sends every other token to introspection.

    Args:
        jwt: Verifier for tokens shaped like a compact JWS (or ``None``: JWT disabled).
        introspection: Verifier for all other tokens (or ``None``: opaque disabled).

    A token of a disabled kind is ``invalid_token``.
    """

    __slots__ = ("introspection", "jwt")

    def __init__(
        self,
        *,
        jwt: TokenVerifier | None = None,
        introspection: TokenVerifier | None = None,
    ) -> None:
        if jwt is None and introspection is None:
            raise ConfigurationError("HybridVerifier needs a jwt or an introspection verifier")
        self.jwt = jwt
        self.introspection = introspection

    def _pick(self, token: str) -> TokenVerifier:
        verifier = self.jwt if looks_like_jws(token) else self.introspection
        if verifier is None:
            raise InvalidTokenError(reason="unsupported_token_format")
        return verifier

    def verify(self, token: str) -> AccessToken:
        """Verify *token* with the verifier its shape selects."""
        return self._pick(token).verify(token)

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`."""
        return await self._pick(token).averify(token)

    def cached(self, token: str) -> AccessToken | None:
        """A verified token from the chosen verifier's cache, without I/O; else ``None``.

        Lets adapters skip creating a coroutine on a cache hit. Never raises.
        """
        verifier = self.jwt if looks_like_jws(token) else self.introspection
        probe = getattr(verifier, "cached", None)
        if probe is None:
            return None
        result: AccessToken | None = probe(token)
        return result
