"""The verifier protocols, and the verifier that routes JWTs and opaque tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from scopegate._errors import ConfigurationError, InvalidTokenError
from scopegate._flow import Call, Flow
from scopegate._jose import looks_like_jws
from scopegate._token import AccessToken

__all__ = ["CachedVerifier", "FlowVerifier", "HybridVerifier", "TokenVerifier"]


@runtime_checkable
class TokenVerifier(Protocol):
    """Anything that turns a raw bearer token into an :class:`AccessToken`.

    ``verify`` serves WSGI and threads, ``averify`` asyncio; both share one logic and
    raise only :class:`scopegate.BearerError` subclasses for request outcomes.

    A verifier does not know how the token was presented: a token bound to a key
    (:attr:`AccessToken.jkt`) is returned like any other, and the guard
    (:func:`scopegate._dpop.check_binding`) accepts it only with a matching proof.
    """

    def verify(self, token: str) -> AccessToken:
        """Verify *token*; raise a ``BearerError`` when it cannot be accepted."""
        ...

    async def averify(self, token: str) -> AccessToken:
        """Async twin of :meth:`verify`; never blocks the event loop."""
        ...


@runtime_checkable
class CachedVerifier(TokenVerifier, Protocol):
    """A verifier that can answer from its cache without I/O.

    ``cached(token)`` returns the token when a previous verification is still valid
    (with the same checks a hit of ``verify`` makes), else ``None``; it never raises
    and never waits. Adapters use it to decide a repeated request without creating a
    coroutine.
    """

    def cached(self, token: str) -> AccessToken | None:
        """The verified token from the cache, or ``None``."""
        ...


@runtime_checkable
class FlowVerifier(CachedVerifier, Protocol):
    """A cached verifier whose verification behind the cache is a flow.

    ``verify_flow(token)`` is what ``verify`` does after its cache probe missed, written
    once as a :mod:`scopegate._flow` flow whose effects carry their own HTTP runner, so
    any driver runs it. The guard probes with ``cached`` and then runs ``verify_flow``
    inside its own decision flow: one driver, no coroutine per layer (on a miss through
    the ASGI middleware this saves about 2 µs of the 6 µs the guard added around an
    RS256 verification; see benchmarks/RESULTS.md).
    """

    def verify_flow(self, token: str) -> Flow[AccessToken]:
        """Verify *token*, without the cache probe, as a flow."""
        ...


class HybridVerifier:
    """Verifies JWTs locally and sends every other token to introspection.

    Args:
        jwt: Verifier for tokens shaped like a compact JWS (or ``None``: JWT disabled).
        introspection: Verifier for all other tokens (or ``None``: opaque disabled).

    A token of a disabled kind is ``invalid_token``.
    """

    __slots__ = (
        "_jwt_flow",
        "_jwt_probe",
        "_opaque_flow",
        "_opaque_probe",
        "introspection",
        "jwt",
        "max_token_length",
    )

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
        self._jwt_probe = jwt.cached if isinstance(jwt, CachedVerifier) else None
        self._opaque_probe = (
            introspection.cached if isinstance(introspection, CachedVerifier) else None
        )
        self._jwt_flow = _flow_of(jwt)
        self._opaque_flow = _flow_of(introspection)
        limits = [
            getattr(v, "max_token_length", None) for v in (jwt, introspection) if v is not None
        ]
        self.max_token_length = max((n for n in limits if type(n) is int), default=None)

    def __repr__(self) -> str:
        return f"HybridVerifier(jwt={self.jwt!r}, introspection={self.introspection!r})"

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
        """A verified token from the chosen verifier's cache, without I/O; else ``None``."""
        probe = self._jwt_probe if looks_like_jws(token) else self._opaque_probe
        return None if probe is None else probe(token)

    def verify_flow(self, token: str) -> Flow[AccessToken]:
        """Verify *token* behind the chosen verifier's cache, as a flow."""
        jws = looks_like_jws(token)
        flow = self._jwt_flow if jws else self._opaque_flow
        if flow is not None:
            result: AccessToken = yield from flow(token)
            return result
        verifier = self._pick(token)
        other: AccessToken = yield Call(verifier.verify, verifier.averify, token)
        return other


def _flow_of(verifier: TokenVerifier | None) -> Callable[[str], Flow[AccessToken]] | None:
    """*verifier*'s ``verify_flow`` when it is a :class:`FlowVerifier`, else ``None``."""
    return verifier.verify_flow if isinstance(verifier, FlowVerifier) else None
