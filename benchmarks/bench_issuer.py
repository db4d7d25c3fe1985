"""Companion issuer: client_credentials issuance rate (tokens/s) per signing algorithm.

Two measurements per token kind (RS256, ES256, EdDSA JWTs, and opaque tokens):

* ``in-process``: ``Issuer.handle`` called directly with a prepared request (parsing,
  Basic client authentication, scope checks, minting and JSON rendering; no HTTP), one
  thread, wall clock; the bare ``jwt.encode`` rate with the same key is shown as the
  signing floor.
* ``real server``: ``python -m scopegate issuer serve`` (uvicorn, one process) on
  127.0.0.1 with a TOML config and a key made by ``scopegate keys generate``, driven by
  ``--threads`` keep-alive httpx clients for ``--duration`` seconds; only 200 answers
  with an ``access_token`` are counted.

Client secrets are plaintext in the config, held as a keyed digest in memory (an
argon2id-hashed secret costs one slow verification, then is memoised).

Usage::

    .venv/bin/python benchmarks/bench_issuer.py [--duration 4] [--threads 8]
        [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import _harness
import httpx
import jwt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.servers import free_port, run_process  # noqa: E402

from scopegate.issuer import (  # noqa: E402
    Client,
    HTTPRequest,
    Issuer,
    IssuerConfig,
    SigningKey,
    SigningKeySet,
)

TITLE = "Companion issuer: client_credentials issuance (tokens/s)"
KINDS = ("RS256", "ES256", "EdDSA", "opaque")
FORM = b"grant_type=client_credentials&scope=items%3Aread"
AUTH = "Basic " + base64.b64encode(b"svc-a:bench-secret").decode()


def in_process(kind: str, seconds: float) -> tuple[float, float | None]:
    """(issuer tokens/s, bare jwt.encode tokens/s) for one token kind."""
    key = SigningKey.generate("ES256" if kind == "opaque" else kind)
    config = IssuerConfig(
        issuer="https://auth.example",
        audience="api://bench",
        token_format="opaque" if kind == "opaque" else "jwt",
    )
    issuer = Issuer(
        config,
        clients=[Client("svc-a", ("bench-secret",), scopes=frozenset({"items:read"}))],
        keys=SigningKeySet(current=key),
    )
    request = HTTPRequest(
        "POST",
        "/token",
        "",
        {"content-type": "application/x-www-form-urlencoded", "authorization": AUTH},
        FORM,
        "127.0.0.1",
    )
    assert issuer.handle(request).status == 200
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            issuer.handle(request)
        count += 50
    rate = count / (time.perf_counter() - start)
    if kind == "opaque":
        return rate, None
    claims = {
        "iss": "https://auth.example",
        "sub": "client:svc-a",
        "aud": "api://bench",
        "client_id": "svc-a",
        "iat": 1,
        "exp": 2,
        "jti": "x",
        "scope": "items:read",
    }
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(50):
            jwt.encode(
                claims,
                key.private_key,
                algorithm=key.alg,
                headers={"typ": "at+jwt", "kid": key.kid},
            )
        count += 50
    return rate, count / (time.perf_counter() - start)


CONFIG = """
audience = "api://bench"
token_format = "{fmt}"
signing_key = "{key}"
address_max_failures = 1000000

[[clients]]
id = "svc-a"
secret = "bench-secret"
scopes = ["items:read"]
"""


def real_server(kind: str, seconds: float, threads: int, workdir: Path) -> float:
    """tokens/s from a real `scopegate issuer serve` process."""
    alg = "ES256" if kind == "opaque" else kind
    key_file = workdir / f"{kind}.pem"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "scopegate",
            "keys",
            "generate",
            "--alg",
            alg,
            "--out",
            str(key_file),
            "--force",
        ],
        check=True,
        capture_output=True,
    )
    config = workdir / f"{kind}.toml"
    config.write_text(CONFIG.format(fmt="opaque" if kind == "opaque" else "jwt", key=key_file.name))
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "scopegate",
        "issuer",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    url = f"http://127.0.0.1:{port}/token"
    counts = [0] * threads
    with run_process(args, port, ready_path="/.well-known/oauth-authorization-server"):
        stop = threading.Event()
        barrier = threading.Barrier(threads + 1)

        def worker(index: int) -> None:
            with httpx.Client(auth=("svc-a", "bench-secret")) as client:
                data = {"grant_type": "client_credentials", "scope": "items:read"}
                client.post(url, data=data)  # connect + warm up
                barrier.wait()
                while not stop.is_set():
                    response = client.post(url, data=data)
                    if response.status_code == 200 and "access_token" in response.json():
                        counts[index] += 1

        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        elapsed = time.perf_counter() - start
        for thread in pool:
            thread.join()
    return sum(counts) / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--json", dest="json_out")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration = 1.0
    warnings.simplefilter("ignore")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="scopegate-bench-issuer-") as tmp:
        for kind in KINDS:
            inproc, floor = in_process(kind, args.duration)
            served = real_server(kind, args.duration, args.threads, Path(tmp))
            rows.append({"kind": kind, "in_process": inproc, "jwt_encode": floor, "server": served})
            print(
                f"{kind:7s} in-process {inproc:9.0f} tokens/s   "
                f"jwt.encode floor {floor or 0:9.0f}/s   "
                f"real server ({args.threads} clients) {served:8.0f} tokens/s",
                flush=True,
            )
    lines = [
        "| token | in-process (tokens/s) | jwt.encode alone (/s) | real server (tokens/s) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in rows:
        floor = f"{row['jwt_encode']:.0f}" if row["jwt_encode"] else "n/a"
        lines.append(f"| {row['kind']} | {row['in_process']:.0f} | {floor} | {row['server']:.0f} |")
    notes = (
        f"In-process: one thread calling Issuer.handle. Real server: one uvicorn process, "
        f"{args.threads} keep-alive httpx client threads in the same machine, "
        f"{args.duration:g} s per kind. os.cpu_count()={os.cpu_count()}."
    )
    print(notes)
    if args.json_out:
        _harness.write_json(
            args.json_out,
            {
                "title": TITLE,
                "markdown": "\n".join(lines),
                "notes": notes,
                "results": rows,
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
