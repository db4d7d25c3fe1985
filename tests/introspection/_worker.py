"""One worker process for the two-process Redis test: verify one token, print the result.

``python -m tests.introspection._worker URI REDIS_URL TOKEN START_AT MODE`` waits until
the Unix time START_AT (so several workers ask at the same moment), verifies TOKEN with
a RedisCache-backed IntrospectionVerifier (MODE ``sync`` or ``async``) and prints JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from scopegate._cache import RedisCache
from scopegate._introspection import IntrospectionVerifier
from tests.introspection.introspection_server import CLIENT_ID, CLIENT_SECRET


def main() -> None:
    """Run one verification as described in the module docstring."""
    uri, redis_url, token, start_at, mode = sys.argv[1:6]
    cache = RedisCache(redis_url, lock_wait=10)
    verifier = IntrospectionVerifier(
        introspection_uri=uri, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, cache=cache
    )
    while time.time() < float(start_at):
        time.sleep(0.002)
    if mode == "sync":
        result = verifier.verify(token)
        cache.close()
    else:

        async def go() -> object:
            try:
                return await verifier.averify(token)
            finally:
                await verifier.aclose()
                await cache.aclose()

        result = asyncio.run(go())  # type: ignore[assignment]
    verifier.close()
    print(json.dumps({"sub": result.subject, "scopes": sorted(result.scopes)}))


if __name__ == "__main__":
    main()
