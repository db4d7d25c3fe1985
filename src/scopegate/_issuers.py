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

Routing reads no more than it must before a signature is checked. The payload is
base64url-decoded, and the top-level ``iss`` member is found with a few C-speed passes
(strings told apart by their quotes, nesting counted outside them), without parsing the
JSON: a payload crafted to be slow to parse (6 KB of nested arrays cost 9.5 times a
bad-signature rejection, ``bench_dpop.py``) costs no more than a flat one before its
signature is checked with the keys of the issuer it names. The chosen verifier then
parses the claims strictly, from the same decoded bytes, and the router accepts the
result only if its ``iss`` is the one it routed by, so a payload that reads differently
to the quick scan and to the strict parser can only be refused.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import logging
import re
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
from scopegate._jsonstrict import StrictJSONError, loads_object, net_depth, unescape_quotes
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


#: The most mentions of ``"iss"`` looked at before the top-level member is found (an
#: ``act`` chain names a few issuers; a payload naming more is refused unparsed).
_MAX_ISS_MENTIONS = 16
#: Bounded runs: a regular expression reads ~5 ns a byte, so no pattern may walk a long
#: run an attacker wrote (whitespace, a value) more than once. An issuer identifier is a
#: URL; one of more than 2048 characters is refused.
_PLAIN_VALUE = re.compile(rb'[ \t\n\r]{0,64}:[ \t\n\r]{0,64}"([^"\\]{0,2048})"')
_JSON_WHITESPACE = b" \t\n\r"
_FLAT_PREFIX = re.compile(rb"[ \t\n\r]*\{[^\[\]{}\\]*")


def _opens_only_the_object(payload: bytes, at: int) -> bool:
    """Whether ``payload[:at]`` opens the top-level object and nothing else: ``{`` after
    whitespace, then no bracket and no backslash. One match on short text (0.1 µs; the
    finds below cost 0.5 µs in calls alone); on long text, ``find`` calls at memchr speed
    (the match reads a byte in ~5 ns: 6 KB of whitespace took 29 µs)."""
    if at <= 256:
        return _FLAT_PREFIX.fullmatch(payload, 0, at) is not None
    opening = payload.find(b"{", 0, at)
    if opening < 0 or payload[:opening].strip(_JSON_WHITESPACE):
        return False
    start = opening + 1
    return (
        payload.find(b"\\", start, at) < 0
        and payload.find(b"[", start, at) < 0
        and payload.find(b"{", start, at) < 0
        and payload.find(b"]", start, at) < 0
        and payload.find(b"}", start, at) < 0
    )


#: After a name: the colon, then a string value's contents (escaped quotes dropped), or
#: null (which the claim rules read as a missing claim).
_MEMBER_VALUE = re.compile(rb'[ \t\n\r]{0,64}:[ \t\n\r]{0,64}(?:"([^"]{0,2048})"|(null))?')


def _issuer_of(payload: bytes) -> str:
    """The unverified top-level ``iss`` of a decoded payload, found without parsing it.

    Linear in the payload, in C-speed passes (``find``, ``count``, ``translate``, one
    anchored regex match per mention). With escaped backslashes and quotes dropped, the
    quotes left open and close strings in turn, so a ``"iss"`` after an even number of
    them is a string, a member name when a colon follows, at the top level when the
    brackets before it, outside strings, leave one object open. Escapes other than
    ``\\\\`` and ``\\"`` in the value are decoded; those two never belong in an issuer
    identifier (a URL), and a value read wrongly through them, like a name spelled with
    escapes, only routes the token to a verifier whose ``iss`` check refuses it.
    """
    # Most issuers write iss among the first, flat members: no bracket and no backslash
    # before it, so every quote there opens or closes a string and the top-level object
    # is the only one open: two anchored matches read it (0.3 µs against 0.9 to 1.5 below
    # with a plain claim set, under load; the strict parse of the same claims, 1.25).
    at = payload.find(b'"iss"')
    if at > 0 and _opens_only_the_object(payload, at):
        flat = _PLAIN_VALUE.match(payload, at + 5)
        if flat is not None and flat[1]:
            try:
                return flat[1].decode()
            except UnicodeDecodeError:
                raise invalid("malformed") from None
    text = unescape_quotes(payload)
    depth = 0
    counted = 0  # text before this offset is counted in depth; it lies outside strings
    at = -1
    for _ in range(_MAX_ISS_MENTIONS):
        at = text.find(b'"iss"', at + 1)
        if at < 0:
            raise invalid("missing_claim")
        if text.count(b'"', counted, at) & 1:
            continue  # that quote closes a string
        depth += net_depth(text[counted:at])
        counted = at
        member = _MEMBER_VALUE.match(text, at + 5)
        if member is None:
            continue  # the string "iss" as a value, not a member name
        if depth != 1:
            continue  # a nested member (an act claim's iss)
        value = member[1]
        if not value:
            # null reads as absent (as in the claim rules); a number, an object... or "".
            raise invalid("missing_claim" if member[2] else "bad_claim_type")
        try:
            if b"\\" not in value:
                return value.decode()
            issuer: str = json.loads(b'"' + value + b'"')
            issuer.encode()  # a lone surrogate escape is not text (I-JSON)
        except ValueError:  # Unicode errors, JSONDecodeError: not UTF-8, a bad escape
            raise invalid("malformed") from None
        return issuer
    raise invalid("malformed")


_UNKNOWN: Any = object()
#: What routing read before any signature check: the unverified iss, the decoded payload,
#: and the token as split (``split_compact``).
_Route = tuple[str, bytes, tuple[bytes, int, int]]


def _routed_to(token: AccessToken, issuer: str, payload: bytes) -> AccessToken:
    """*token* if its verified iss is the *issuer* it was routed by; else refused."""
    said = token.issuer
    if said is None:  # a verifier of another kind that does not say: read it now
        try:
            said = loads_object(payload).get("iss")
        except StrictJSONError:
            raise invalid("malformed") from None
    if said != issuer:
        # The strict parse read another iss than the quick scan (duplicate members, an
        # escaped name): refused, whatever the chosen verifier's own settings.
        raise invalid("wrong_issuer")
    return token


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
        ConfigurationError: No issuer and no resolver, two verifiers for one issuer, a
            verifier that is not a :class:`~scopegate.TokenVerifier`, or a
            :class:`~scopegate.JWTVerifier` mapped to another issuer than its own.

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
            if isinstance(verifier, JWTVerifier) and verifier.issuer != issuer:
                raise ConfigurationError(
                    f"the verifier for {issuer!r} checks another issuer, {verifier.issuer!r}"
                )
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
        if hit is not None:
            return hit
        route = self._route(token)
        done = self._attempt(token, route)
        return done if done is not None else run(self._routed_flow(token, route))

    async def averify(self, token: str) -> AccessToken:
        """Verify *token* with its issuer's verifier (asyncio)."""
        hit = self.cached(token)
        if hit is not None:
            return hit
        route = self._route(token)
        done = self._attempt(token, route)
        return done if done is not None else await arun(self._routed_flow(token, route))

    def verify_flow(self, token: str) -> Flow[AccessToken]:
        """Route and verify *token* (either driver runs it)."""
        return self._routed_flow(token, self._route(token))

    def _route(self, token: str) -> _Route | None:
        """The token's unverified iss and its decoded payload; ``None`` for an opaque
        token (one that does not split as a JWS)."""
        try:
            raw, first, second = split_compact(token, self.max_token_length)
        except JOSEError as exc:
            if looks_like_jws(token):  # counted only here: most tokens split cleanly
                raise invalid("too_long" if str(exc) == "too long" else "malformed") from None
            return None
        try:
            payload = b64url_decode(raw[first + 1 : second])
        except JOSEError:
            raise invalid("malformed") from None
        return _issuer_of(payload), payload, (raw, first, second)

    def _attempt(self, token: str, route: _Route | None) -> AccessToken | None:
        """The verification by a static issuer's JWTVerifier whose key is in memory, or
        ``None`` for :meth:`_routed_flow` to do (a fetch, a resolver, introspection).

        The same steps as the flow without its generators, as ``JWTVerifier.verify``
        skips its own: over a single verifier, an uncached token cost +2.3 µs through
        the flow and +1.7 µs so; handing the verifier the split token too, +1.3 µs
        (``benchmarks/bench_issuers.py``, A/B on one machine).
        """
        if route is None:
            return None
        verifier = self._static.get(route[0])
        if type(verifier) is not JWTVerifier:
            return None
        done = verifier._attempt(token, route[1], route[2])
        return None if isinstance(done, tuple) else _routed_to(done, route[0], route[1])

    def _routed_flow(self, token: str, route: _Route | None) -> Flow[AccessToken]:
        if route is None:
            opaque = self.introspection
            if opaque is None:
                raise invalid("unsupported_token_format")
            result: AccessToken = yield Call(opaque.verify, opaque.averify, token)
            return result
        issuer, payload, split = route
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
            routed: AccessToken = yield from verifier._routed_flow(token, payload, split)
        else:
            routed = yield Call(verifier.verify, verifier.averify, token)
        return _routed_to(routed, issuer, payload)

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
