"""Smoke run of benchmarks/bench_issuers.py, tiny counts: it must run; numbers are not judged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_issuers_quick(tmp_path: Path) -> None:
    """bench_issuers times one verifier and routers of 2 and 8 issuers (cached, uncached,
    cache miss) and reports each routing overhead against its budget."""
    out = tmp_path / "issuers.json"
    env = {**os.environ, "SCOPEGATE_BENCH_DIR": str(tmp_path / "material")}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_issuers.py"),
            "--quick",
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    cases = {row["case"] for row in data["rows"]}
    assert "single JWTVerifier · cached (same token)" in cases
    assert "IssuerRouter, 2 issuers · cached (same token)" in cases
    assert "IssuerRouter, 8 issuers · cached (same token)" in cases
    assert "IssuerRouter, 2 issuers · cache miss (new token each call)" in cases
    figures = [t["figure"] for t in data["targets"]]
    assert any("cached hit: router (2 issuers)" in f for f in figures)
    assert any("uncached: router (2 issuers)" in f for f in figures)
    assert all(t["target"].startswith("≤") for t in data["targets"])
    assert data["title"]
