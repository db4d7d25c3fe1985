"""Several trusted issuers on one API: route each JWT to its issuer's verifier.

:class:`IssuerRouter` reads ``iss`` from the token's payload (strict JSON, size-capped,
*unverified*: it only chooses which verifier — which keys, audience and policy — judges
the token) and hands the token to the verifier configured for that issuer. It never
tries verifiers one after another, and an issuer that is not trusted costs nothing but
the parse: no discovery, no JWKS fetch, no request of any kind.

Issuers come from a static mapping, or from a *resolver* callable (sync or async) for
tenant patterns (a Keycloak realm per tenant, a multi-tenant Entra app): its answers,
a verifier or ``None`` for "not trusted", are cached in a bounded map, and concurrent
first uses of one issuer share one call. A resolver that raises, or takes longer than
``resolver_timeout``, is an outage (503), never a 500 and never a 401. Opaque tokens go
to the one configured introspection verifier, never fanned out.

The payload parsed for routing is handed to the chosen :class:`~scopegate.JWTVerifier`
after its signature verified (the same bytes), so a token's claims are parsed once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from scopegate._cache import BoundedDict
from scopegate._checks import invalid
from scopegate._errors import BearerError, ConfigurationError, ServiceUnavailableError
from scopegate._flow import Call, Flight, Flow, arun, run
from scopegate._jose import (
    MAX_TOKEN_LENGTH,
    JOSEError,
    b64url_decode,
    looks_like_jws,
    split_compact,
)
from scopegate._jsonstrict import StrictJSONError, loads_object
from scopegate._jwt import JWTVerifier
from scopegate._settings import number, whole
from scopegate._token import AccessToken
from scopegate._verifier import CachedVerifier, TokenVerifier

__all__ = ["IssuerRouter", "Resolver"]

logger = logging.getLogger("scopegate.issuers")

Resolver = Callable[[str], "TokenVerifier | Awaitable[TokenVerifier | None] | None"]

# Resolvers run here, so one that hangs cannot hold a request (or the event loop) past
# resolver_timeout; its answers are cached, so this runs once per new issuer.
_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="scopegate-resolver")
    return _POOL


def _call_resolver(resolver: Resolver, issuer: str) -> TokenVerifier | None:
    answer = resolver(issuer)
    if inspect.isawaitable(answer):
        return asyncio.run(_awaited(answer))
    return answer


async def _awaited(answer: Awaitable[TokenVerifier | None]) -> TokenVerifier | None:
    return await answer


class _Resolve:
    """One resolver call as a flow effect, bounded by *timeout* in both worlds."""

    __slots__ = ("issuer", "resolver", "timeout")

    def __init__(self, resolver: Resolver, issuer: str, timeout: float) -> None:
        self.resolver = resolver
        self.issuer = issuer
        self.timeout = timeout

    def run(self) -> TokenVerifier | None:
        future = _pool().submit(_call_resolver, self.resolver, self.issuer)
        return future.result(self.timeout)

    async def arun(self) -> TokenVerifier | None:
        if inspect.iscoroutinefunction(self.resolver):
            result: Any = await asyncio.wait_for(self.resolver(self.issuer), self.timeout)
        else:
            loop = asyncio.get_running_loop()
            call = loop.run_in_executor(_pool(), _call_resolver, self.resolver, self.issuer)
            result = await asyncio.wait_for(call, self.timeout)
        return result  # type: ignore[no-any-return]


def _issuer_of(raw: bytes, first: int, second: int) -> tuple[str, dict[str, Any]]:
    """The unverified ``iss`` and the strictly parsed payload it came from."""
    try:
        claims = loads_object(b64url_decode(raw[first + 1 : second]))
    except (JOSEError, StrictJSONError):
        raise invalid("malformed") from None
    issuer = claims.get("iss")
    if type(issuer) is not str or not issuer:
        raise invalid("missing_claim" if issuer is None else "bad_claim_type")
    return issuer, claims


_UNKNOWN: Any = object()


class IssuerRouter:
    """Verifies JWTs with the verifier of their issuer, and opaque tokens by introspection.

    Args:
        verifiers: The trusted issuers: :class:`~scopegate.JWTVerifier` objects (keyed
            by their ``issuer``), or a mapping of issuer identifier to verifier. Each has
            its own audience, algorithms, key source, ``typ`` policy, scope claims and
            leeway.
        resolver: For issuers not in *verifiers*: ``resolver(iss)`` returns the verifier
            for a trusted issuer or ``None``; sync or async. Answers are cached.
        introspection: The verifier for tokens that are not JWTs (or ``None``).
        resolver_timeout: Seconds a resolver call may take before the request is a 503.
        max_resolved: Most resolver answers (trusted or not) kept.

    Raises:
        ConfigurationError: No issuer and no resolver, two verifiers for one issuer, or a
            verifier that is not a :class:`~scopegate.TokenVerifier`.

    Example::

        router = IssuerRouter([
            presets.entra(TENANT, audience="api://orders", version=1),
            presets.entra(TENANT, audience=APP_ID, version=2),
        ])
    """

    def __init__(
        self,
        verifiers: Iterable[JWTVerifier] | Mapping[str, TokenVerifier] = (),
        *,
        resolver: Resolver | None = None,
        introspection: TokenVerifier | None = None,
        resolver_timeout: float = 5.0,
        max_resolved: int = 1024,
    ) -> None:
        static: dict[str, TokenVerifier] = {}
        items = (
            verifiers.items()
            if isinstance(verifiers, Mapping)
            else ((getattr(v, "issuer", None), v) for v in verifiers)
        )
        for issuer, verifier in items:
            if not isinstance(issuer, str) or not issuer:
                raise ConfigurationError("each verifier needs its issuer identifier")
            if not isinstance(verifier, TokenVerifier):
                raise ConfigurationError(f"the verifier for {issuer!r} is not a TokenVerifier")
            if issuer in static:
                raise ConfigurationError(f"two verifiers for the issuer {issuer!r}")
            static[issuer] = verifier
        if not static and resolver is None:
            raise ConfigurationError("IssuerRouter needs verifiers or a resolver")
        if resolver is not None and not callable(resolver):
            raise ConfigurationError("resolver must be callable")
        self._static = static
        self._resolver = resolver
        self.introspection = introspection
        self.resolver_timeout = number("resolver_timeout", resolver_timeout, low_open=True)
        self._resolved: BoundedDict[str, TokenVerifier | None] = BoundedDict(
            whole("max_resolved", max_resolved, low=1)
        )
        self._flight = Flight()
        self._probes = tuple(v.cached for v in static.values() if isinstance(v, CachedVerifier))
        self._opaque_probe = (
            introspection.cached if isinstance(introspection, CachedVerifier) else None
        )
        limits = [getattr(v, "max_token_length", None) for v in (*static.values(), introspection)]
        self.max_token_length = max((n for n in limits if type(n) is int), default=MAX_TOKEN_LENGTH)

    def __repr__(self) -> str:
        return (
            f"IssuerRouter(issuers={sorted(self._static)!r}, resolver={self._resolver is not None})"
        )

    @property
    def issuers(self) -> tuple[str, ...]:
        """The statically trusted issuers (the RFC 9728 ``authorization_servers``)."""
        return tuple(self._static)

    # -- the cache probe ------------------------------------------------------------------

    def cached(self, token: str) -> AccessToken | None:
        """A verified token from one of the issuers' caches, without I/O; else ``None``.

        Probing each static issuer's cache is one dict lookup each (the token's hash is
        computed once): cheaper than parsing the payload to find the issuer (about 0.05
        µs per issuer against 2.5 µs, ``benchmarks/bench_issuers.py``).
        """
        for probe in self._probes:
            hit = probe(token)
            if hit is not None:
                return hit
        opaque = self._opaque_probe
        if opaque is not None and not looks_like_jws(token):
            return opaque(token)
        return None

    # -- verification: one flow, two drivers -----------------------------------------------

    def verify(self, token: str) -> AccessToken:
        """Verify *token* with its issuer's verifier (threads)."""
        hit = self.cached(token)
        return hit if hit is not None else run(self.verify_flow(token))

    async def averify(self, token: str) -> AccessToken:
        """Verify *token* with its issuer's verifier (asyncio)."""
        hit = self.cached(token)
        return hit if hit is not None else await arun(self.verify_flow(token))

    def verify_flow(self, token: str) -> Flow[AccessToken]:
        """Route and verify *token* (either driver runs it)."""
        try:
            raw, first, second = split_compact(token, self.max_token_length)
        except JOSEError as exc:
            if looks_like_jws(token):  # counted only here: most tokens split cleanly
                raise invalid("too_long" if str(exc) == "too long" else "malformed") from None
            opaque = self.introspection
            if opaque is None:
                raise invalid("unsupported_token_format") from None
            result: AccessToken = yield Call(opaque.verify, opaque.averify, token)
            return result
        issuer, claims = _issuer_of(raw, first, second)
        verifier = self._static.get(issuer)
        if verifier is None:
            verifier = yield from self._resolve_flow(issuer)
            if verifier is None:
                # No discovery, no JWKS: an issuer we do not trust costs nothing more.
                raise invalid("untrusted_issuer")
            # A resolved issuer's cache is not probed by cached() (that would mean
            # asking every tenant): look in it now that the token named its issuer.
            probe = getattr(verifier, "cached", None)
            hit = probe(token) if probe is not None else None
            if hit is not None:
                return hit  # type: ignore[no-any-return]
        if isinstance(verifier, JWTVerifier):
            routed: AccessToken = yield from verifier.verify_flow(token, claims)
            return routed
        other: AccessToken = yield Call(verifier.verify, verifier.averify, token)
        return other

    def _resolve_flow(self, issuer: str) -> Flow[TokenVerifier | None]:
        resolver = self._resolver
        if resolver is None:
            return None
        known: TokenVerifier | None = self._resolved.get(issuer, _UNKNOWN)
        if known is not _UNKNOWN:
            return known
        answer: TokenVerifier | None = yield self._flight.join(
            issuer, lambda: self._ask_flow(resolver, issuer)
        )
        return answer

    def _ask_flow(self, resolver: Resolver, issuer: str) -> Flow[TokenVerifier | None]:
        known: TokenVerifier | None = self._resolved.get(issuer, _UNKNOWN)
        if known is not _UNKNOWN:
            return known  # answered by a flight that ended between our miss and now
        try:
            answer = yield _Resolve(resolver, issuer, self.resolver_timeout)
        except BearerError:
            raise
        except Exception as exc:
            # The resolver failed or hung: we cannot tell whether the issuer is trusted.
            logger.error("issuer resolver failed (%s)", type(exc).__name__)
            raise ServiceUnavailableError(reason="issuer_resolver", retry_after=5) from exc
        if answer is not None and not isinstance(answer, TokenVerifier):
            logger.error("issuer resolver returned a %s, not a verifier", type(answer).__name__)
            raise ServiceUnavailableError(reason="issuer_resolver", retry_after=5)
        self._resolved.put(issuer, answer)
        return answer

    def _verifiers(self) -> list[Any]:
        """Every verifier in use: static, resolved (still cached) and introspection."""
        found: list[Any] = []
        resolved = self._resolved.values()
        for verifier in (*self._static.values(), *resolved, self.introspection):
            if verifier is not None and not any(verifier is seen for seen in found):
                found.append(verifier)
        return found

    def close(self) -> None:
        """Close every verifier's clients (static, resolved and introspection)."""
        for verifier in self._verifiers():
            close = getattr(verifier, "close", None)
            if close is not None:
                close()

    async def aclose(self) -> None:
        """Close every verifier's clients (on the loop that used them)."""
        for verifier in self._verifiers():
            aclose = getattr(verifier, "aclose", None)
            if aclose is not None:
                await aclose()
