"""Memory under a flood of distinct junk tokens, sent in-process to the ASGI middleware.

``python -m tests.stress.flood --jwks-uri URL --count N`` (URL on a fault server,
:mod:`tests.stress.faultserver`, which it first loads with its own keys) builds the
middleware over a :class:`~scopegate.HybridVerifier` (JWTs checked against the JWKS at *URL*; opaque
tokens introspected through an in-process transport that answers ``active: false``),
sends *N* requests each carrying a different junk token, and prints one JSON line with
the process RSS (KiB) after warm-up, at the half-way mark and at the end, plus the size
of every cache. Run in its own process so the RSS is the middleware's alone.

The junk mix: JWS-shaped tokens with a random ``kid`` (unknown-key path and the JWKS
negative cache), malformed tokens (grammar errors), and opaque tokens (introspection
negative cache). Before the flood, more distinct *valid* tokens than the verified-token
cache holds are sent, to show that cache is bounded too.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx

from scopegate._cache import MemoryCache
from scopegate._errors import BearerError
from scopegate._flow import HTTPRunner
from scopegate._introspection import IntrospectionVerifier
from scopegate._jwt import JWTVerifier
from scopegate._verifier import HybridVerifier
from scopegate.asgi import BearerAuthMiddleware
from tests.fuzz import material

JWT_CACHE_SIZE = 10_000


def rss_kib() -> int:
    """VmRSS of this process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def inner(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    """The protected application: a fixed 200."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def inactive(request: httpx.Request) -> httpx.Response:
    """The authorization server's answer for every junk opaque token."""
    return httpx.Response(200, json={"active": False})


def junk(i: int) -> bytes:
    """The i-th distinct junk token (as header bytes)."""
    kind = i % 20
    tag = f"{i:08x}".encode()
    if kind < 11:
        # A well-formed compact JWS with an unknown kid.
        header = base64.urlsafe_b64encode(
            b'{"alg":"RS256","typ":"at+jwt","kid":"k' + tag + b'"}'
        ).rstrip(b"=")
        return header + b".eyJzdWIiOiJ4In0." + tag * 8
    if kind < 19:
        return b"junk" + tag + b"!!" + tag  # outside the b64token grammar
    return b"opaque" + tag * 4  # introspected: active false


async def flood(jwks_uri: str, count: int) -> dict[str, Any]:
    """Run the flood and collect the figures."""
    jwt = JWTVerifier(
        issuer=material.ISSUER,
        audience=material.AUDIENCE,
        jwks_uri=jwks_uri,
        cache_size=JWT_CACHE_SIZE,
        algorithms=("RS256", "ES256"),
    )
    introspection = IntrospectionVerifier(
        introspection_uri="https://as.flood.test/introspect",
        client_id="rs",
        client_secret="flood-secret",
        negative_ttl=600,
        runner=HTTPRunner(async_transport=httpx.MockTransport(inactive)),
    )
    app = BearerAuthMiddleware(inner, verifier=HybridVerifier(jwt=jwt, introspection=introspection))
    statuses: dict[int, int] = {}
    sink: list[int] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sink.append(message["status"])

    async def call(token: bytes) -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/items",
            "raw_path": b"/items",
            "query_string": b"",
            "headers": [(b"authorization", b"Bearer " + token)],
        }
        await app(scope, receive, send)
        status = sink.pop()
        statuses[status] = statuses.get(status, 0) + 1

    # Distinct valid tokens beyond the verified-token cache's capacity (ES256: cheap to sign).
    valid = [material.mint(alg="ES256").encode() for _ in range(JWT_CACHE_SIZE + 2000)]
    for token in valid:
        await call(token)
    valid_ok = statuses.get(200, 0)
    statuses.clear()
    del valid
    for i in range(20_000):  # warm-up: caches reach their bounds, allocators settle
        await call(junk(count + i))
    gc.collect()
    before = rss_kib()
    start = time.monotonic()
    half = 0
    for i in range(count):
        await call(junk(i))
        if i == count // 2:
            gc.collect()
            half = rss_kib()
    elapsed = time.monotonic() - start
    gc.collect()
    after = rss_kib()
    source = jwt.key_source
    cache = getattr(introspection, "_cache", None)
    result = {
        "requests": count,
        "seconds": round(elapsed, 1),
        "statuses": statuses,
        "valid_accepted": valid_ok,
        "rss_before_kib": before,
        "rss_half_kib": half,
        "rss_after_kib": after,
        # Private attributes, read for the report only (no API exposes cache sizes).
        "jwt_cache_entries": len(getattr(jwt, "_cache", ())),
        "jwt_cache_size": JWT_CACHE_SIZE,
        "jwks_negative_entries": len(getattr(source, "_negative", {})),
        "jwks_fetches": getattr(source, "fetch_count", None),
        "introspection_cache_entries": len(cache) if isinstance(cache, MemoryCache) else 0,
        "introspection_cache_max": cache.maxsize if isinstance(cache, MemoryCache) else 0,
    }
    await introspection.aclose()
    await jwt.aclose()
    return result


def main() -> None:
    """Parse the arguments, flood, print the JSON figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jwks-uri", required=True)
    parser.add_argument("--count", type=int, default=1_000_000)
    args = parser.parse_args()
    # Keys are generated per process: publish ours on the JWKS server first.
    control = args.jwks_uri.rsplit("/", 1)[0] + "/_control"
    httpx.post(
        control, json={"documents": {"/jwks": material.jwks()}}, timeout=10
    ).raise_for_status()
    try:
        result = asyncio.run(flood(args.jwks_uri, args.count))
    except BearerError as exc:  # pragma: no cover - a bug: report it, never a traceback
        result = {"error": type(exc).__name__}
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    main()
