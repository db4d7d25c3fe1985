"""`make demo` (examples/demo.py) runs the whole flow and exits 0."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.servers import ROOT

# A JWT, or any base64url run long enough to be a whole token or refresh token.
_RAW_TOKEN = re.compile(r"eyJ[\w-]+\.[\w-]+\.[\w-]+|[\w-]{40,}")


def test_demo_runs_every_outcome_and_exits_zero() -> None:
    """The demo starts the issuer and two example APIs, sees every expected outcome,
    prints no token in full, stops what it started and exits 0."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "[FAIL]" not in out
    assert re.search(r"All \d+ outcomes as expected", out)
    for seen in ('error="insufficient_scope"', 'error="invalid_token"', "-> 201", "invalid_grant"):
        assert seen in out
    assert not _RAW_TOKEN.search(out), "a raw token reached the transcript"
