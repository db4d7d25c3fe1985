"""A million distinct junk tokens, in-process through the ASGI middleware: memory stays bounded.

The flood runs in its own process (:mod:`tests.stress.flood`) so its RSS is the
middleware's alone; its JWKS comes from a real fault-server process.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.servers import ROOT
from tests.stress.figures import note, record
from tests.stress.procs import PYTHON, FaultServer

COUNT = 1_000_000


@pytest.mark.timeout(400)
def test_million_junk_tokens_memory_bounded(fault_server: FaultServer) -> None:
    """1,000,000 distinct junk tokens: all 401, caches at or under their bounds, RSS flat."""
    result = subprocess.run(
        [
            PYTHON,
            "-m",
            "tests.stress.flood",
            "--jwks-uri",
            fault_server.url + "/jwks",
            "--count",
            str(COUNT),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=360,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["statuses"] == {"401": COUNT + 20_000}, figures
    assert figures["valid_accepted"] == figures["jwt_cache_size"] + 2000
    assert figures["jwt_cache_entries"] <= figures["jwt_cache_size"]
    assert figures["introspection_cache_entries"] <= figures["introspection_cache_max"]
    assert figures["jwks_negative_entries"] <= 1024
    assert figures["jwks_fetches"] <= 3  # unknown kids refresh at most once per cooldown
    growth = figures["rss_after_kib"] - figures["rss_before_kib"]
    second_half = figures["rss_after_kib"] - figures["rss_half_kib"]
    # Bounded caches: the second half of the flood adds (almost) nothing.
    assert second_half < 8 * 1024, figures
    assert growth < 32 * 1024, figures
    record("junk tokens flooded in-process (all 401)", COUNT)
    note(
        f"memory flood: {COUNT} junk tokens in {figures['seconds']} s; RSS "
        f"{figures['rss_before_kib']} -> {figures['rss_half_kib']} -> "
        f"{figures['rss_after_kib']} KiB "
        f"(growth {growth} KiB, second half {second_half} KiB); caches: jwt "
        f"{figures['jwt_cache_entries']}/{figures['jwt_cache_size']}, introspection "
        f"{figures['introspection_cache_entries']}/{figures['introspection_cache_max']}, "
        f"jwks negative kids {figures['jwks_negative_entries']}"
    )
