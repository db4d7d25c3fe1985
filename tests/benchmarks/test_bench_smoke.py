"""Smoke runs of benchmarks/ with tiny counts: the code must run, the numbers are not judged.

No timing assertions here (benchmarks judge speed); each test only checks that a suite
runs end to end, validates what it claims to measure, and reports in the expected shape.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for the bench scripts with their key material in a private directory."""
    material = tmp_path_factory.mktemp("bench-material")
    return {**os.environ, "SCOPEGATE_BENCH_DIR": str(material), "PYTHONWARNINGS": "ignore"}


@pytest.fixture
def bench_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the (non-package) benchmarks/ modules importable for in-process unit tests."""
    monkeypatch.syspath_prepend(str(BENCH))


def run_script(
    script: str, args: list[str], env: dict[str, str], tmp_path: Path, timeout: float = 240
) -> dict[str, Any]:
    """Run one bench script with --json and return what it wrote."""
    out = tmp_path / f"{script}.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_verify_quick(bench_env: dict[str, str], tmp_path: Path) -> None:
    """bench_verify measures every library and scopegate for RS256, ES256 and EdDSA."""
    data = run_script("bench_verify.py", ["--quick"], bench_env, tmp_path)
    cases = {row["case"] for row in data["rows"]}
    for alg in ("RS256", "ES256", "EdDSA"):
        assert f"{alg} · raw verify" in cases
        assert f"{alg} · jwt.decode (PyJWT)" in cases
        assert f"{alg} · scopegate uncached" in cases
        assert f"{alg} · scopegate cached (same token)" in cases
    assert "RS256 · authlib rfc9068 validator" in cases
    assert "RS256 · scopegate cache miss (new token each call)" in cases
    figures = [t["figure"] for t in data["targets"]]
    assert "RS256 uncached validation ÷ raw verify" in figures
    assert all(row["median_us"] > 0 for row in data["rows"])


def test_inproc_quick(bench_env: dict[str, str], tmp_path: Path) -> None:
    """bench_inproc runs bare, protected and peer stacks for ASGI and WSGI."""
    data = run_script("bench_inproc.py", ["--quick"], bench_env, tmp_path)
    cases = {row["case"] for row in data["rows"]}
    assert "asgi · starlette bare" in cases
    assert "asgi · starlette + scopegate, repeated token (cache hit)" in cases
    assert "asgi · starlette + scopegate, new token per request (cache miss)" in cases
    assert "wsgi · flask + Authlib ResourceProtector" in cases
    assert "wsgi · flask + scopegate ScopeGate, repeated token (cache hit)" in cases
    assert any("middleware cost" in t["figure"] for t in data["targets"])
    assert "asgi · cache hit + scopegate.prometheus" in cases
    assert "asgi · cache hit + scopegate.otel (SDK, no exporter)" in cases
    assert any(t["target"] == "≤ 1.0 µs" for t in data["targets"])


def test_mcp_quick(bench_env: dict[str, str], tmp_path: Path) -> None:
    """bench_mcp times one tool call bare, with the SDK's auth and through MCPGate."""
    pytest.importorskip("mcp")
    data = run_script("bench_mcp.py", ["--quick"], bench_env, tmp_path)
    cases = {row["case"] for row in data["rows"]}
    assert "mcp · SDK bearer auth + trivial dict verifier" in cases
    assert "mcp · scopegate MCPGate, cached token, per-tool check" in cases
    assert any("MCPGate ÷ SDK bearer auth" in t["figure"] for t in data["targets"])


def test_profile_quick(bench_env: dict[str, str], tmp_path: Path) -> None:
    """bench_profile produces the component table and the three profiles."""
    data = run_script("bench_profile.py", ["--quick"], bench_env, tmp_path)
    markdown = data["markdown"]
    assert "Components of one RS256 verification" in markdown
    assert "verify, uncached, RS256" in markdown
    assert "ASGI: Starlette + scopegate middleware" in markdown


@pytest.mark.parametrize(
    "script",
    [
        pytest.param("bench_introspection.py", id="introspection"),
        pytest.param("bench_issuer.py", id="issuer"),
    ],
)
def test_peer_scripts_quick(script: str, bench_env: dict[str, str], tmp_path: Path) -> None:
    """The other areas' bench scripts that run.py calls accept --quick and --json."""
    if not (BENCH / script).exists():
        pytest.skip(f"{script} not in this checkout")
    data = run_script(script, ["--quick"], bench_env, tmp_path)
    assert data.get("title")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (apt-get install wrk)")
def test_http_quick_with_wrk(bench_env: dict[str, str], tmp_path: Path) -> None:
    """bench_http starts real servers on 127.0.0.1, checks them, and drives them with wrk."""
    data = run_script(
        "bench_http.py",
        [
            "--quick",
            "--only",
            "uvicorn starlette bare",
            "--only",
            "starlette + scopegate, unique",
            "--only",
            "waitress flask + Authlib",
        ],
        bench_env,
        tmp_path,
    )
    rows = data["rows"]
    assert set(rows) == {
        "uvicorn starlette bare",
        "uvicorn starlette + scopegate, unique token",
        "waitress flask + Authlib RP, repeated token",
    }
    for samples in rows.values():
        assert samples[0]["rps"] > 0
        assert samples[0]["non2xx"] == 0


def test_http_quick_python_client(bench_env: dict[str, str], tmp_path: Path) -> None:
    """Without wrk, the bounded Python load client drives the same servers."""
    data = run_script(
        "bench_http.py",
        [
            "--quick",
            "--load",
            "python",
            "--only",
            "waitress flask bare",
            "--only",
            "waitress flask + scopegate",
        ],
        bench_env,
        tmp_path,
    )
    rows = data["rows"]
    assert set(rows) == {"waitress flask bare", "waitress flask + scopegate, repeated token"}
    assert all(samples[0]["rps"] > 0 for samples in rows.values())
    assert "Flask + scopegate ÷ Flask + Authlib" not in json.dumps(data["targets"])


def test_run_writes_report(bench_env: dict[str, str], tmp_path: Path) -> None:
    """run.py collects the suites into a RESULTS-style report with the machine description."""
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH / "run.py"),
            "--quick",
            "--only",
            "verify,inproc",
            "--output",
            str(output),
        ],
        cwd=ROOT,
        env=bench_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = output.read_text()
    assert "## Targets (issue 6)" in report
    assert "RS256 uncached validation ÷ raw verify" in report
    assert "| CPU |" in report
    assert "Python" in report


def test_parse_wrk_output(bench_modules: None) -> None:
    """wrk's text output is parsed into req/s, latency percentiles and error counts."""
    import bench_http

    out = """Running 8s test @ http://127.0.0.1:8000/bare
  2 threads and 64 connections
  Latency Distribution
     50%    2.99ms
     75%    3.20ms
     90%    3.51ms
     99%   14.20ms
  168368 requests in 8.00s, 22.32MB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 5
Requests/sec:  21046.00
Transfer/sec:      2.79MB
"""
    rps, p50, p99, non2xx, errors, total = bench_http.parse_wrk(out)
    assert (rps, p50, p99, non2xx, errors, total) == (21046.0, 2.99, 14.2, 5, 3, 168368)


def test_introspection_target_found(bench_modules: None) -> None:
    """run.py reads the memory cache-hit row of [C]'s results as the issue-6 figure."""
    import run

    data = {
        "rows": [
            {"case": "x miss", "median_us": 900.0},
            {"case": "cached hit (memory)", "median_us": 1.5, "min_us": 1.4, "max_us": 2.0},
        ]
    }
    target = run.introspection_target(data)
    assert target is not None
    assert target["met"] is True
    assert run.introspection_target({"rows": [{"case": "miss", "median_us": 1.0}]}) is None


def test_harness_ratios_are_per_round(bench_modules: None) -> None:
    """Ratios are taken inside each round, then summarised as min/median/max."""
    import _harness

    stats = {
        "a": _harness.Stat("a", "", [2.0, 4.0, 6.0]),
        "b": _harness.Stat("b", "", [1.0, 4.0, 2.0]),
    }
    assert _harness.ratio(stats, "a", "b") == {"median": 2.0, "min": 1.0, "max": 3.0}
    assert _harness.difference(stats, "a", "b") == {"median": 1.0, "min": 0.0, "max": 4.0}
