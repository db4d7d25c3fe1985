"""What a DPoP request and a hostile token cost, in process (issues 13 and 19).

DPoP (RFC 9449), RS256 access tokens bound to an ES256 proof key, a fresh proof for every
request (a proof is single-use). Cases, interleaved round by round (``_harness``), GC
off, thread CPU time:

* ``token verification``: ``JWTVerifier(cache_verified=False).verify`` of the bound token;
* ``proof signature``: one raw ES256 verify of a proof's signature (``cryptography``),
  the floor of a proof check;
* ``DPoP request``: ``BearerGuard.decide`` of a WSGI request carrying
  ``Authorization: DPoP <token>`` and a new proof, with the token verification uncached,
  the in-memory replay store recording every proof;
* the same with the verified-token cache on (the token is checked once, each proof is
  new);
* ``replay check``: ``MemoryReplayStore.first_use`` of a new key, and the same against a
  real ``redis-server`` on 127.0.0.1 (``RedisReplayStore``, one ``SET NX PX`` round trip)
  when one can be started.

The DPoP figure is the request ÷ (token verification + proof signature), same round.

Hostile tokens (issue 19): the costliest tokens under the 8192-character cap that the
verifier must reject (``tests/core/hostile_tokens.py`` keeps the shapes), each ÷ a
rejection for a bad signature, same round. The figure is the worst token anyone can send
(``header-*``: the shape is the JOSE header, parsed before the signature check);
``payload-*`` rows carry the shape as claims signed by the issuer's key, parsed only
after a good signature, and are shown for information. ``router: routed-*`` rows send
each shape beside a trusted ``iss`` (last), with a junk signature, through an
``IssuerRouter``, which reads the payload for ``iss`` before any signature: anyone can
send them, so their worst is a target too (÷ a bad signature through the same router).
``proof: proof-*`` rows check each shape as the claims of a DPoP proof signed with the
sender's own key, as a token endpoint must before it knows the client (÷ checking an
ordinary proof; at a resource server the token and its binding come first).

Usage::

    .venv/bin/python benchmarks/bench_dpop.py [--rounds 31] [--target 0.03] [--json OUT]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _fixtures
import _harness

TITLE = "DPoP requests and hostile tokens (µs/operation)"
ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://api.bench.example"
DPOP_BUDGET = 1.25
REPLAY_BUDGET_US = 2.0
HOSTILE_BUDGET = 5.0

TOKEN = "token verification (RS256, uncached)"
PROOF = "proof signature (ES256 raw verify)"
REQUEST = "DPoP request: guard.decide, token uncached"
REQUEST_CACHED = "DPoP request: guard.decide, token cached"
REPLAY_MEMORY = "replay check: memory store"
REPLAY_REDIS = "replay check: Redis store (127.0.0.1)"
BAD_SIGNATURE = "rejection: bad signature (RS256)"
ROUTER_BAD_SIGNATURE = "router (2 issuers): rejection, bad signature (RS256)"
ORDINARY_PROOF = "token endpoint: an ordinary proof checked (ES256)"


def _environ(token: str, proof: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/items",
        "RAW_URI": "/items",
        "QUERY_STRING": "",
        "SERVER_NAME": "api.bench.example",
        "SERVER_PORT": "443",
        "HTTP_HOST": "api.bench.example",
        "wsgi.url_scheme": "https",
        "HTTP_AUTHORIZATION": f"DPoP {token}",
        "HTTP_DPOP": proof,
    }


def _redis_server() -> tuple[subprocess.Popen[bytes], str] | None:
    """A throwaway redis-server on a free loopback port, or None."""
    binary = shutil.which("redis-server")
    if binary is None or importlib.util.find_spec("redis") is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


def _hostile() -> Any:
    """tests/core/hostile_tokens.py (the shapes are kept there, with the cost tests)."""
    if not (ROOT / "tests" / "core" / "hostile_tokens.py").exists():
        return None
    sys.path.insert(0, str(ROOT))
    try:
        from tests.core import hostile_tokens
    finally:
        sys.path.remove(str(ROOT))
    return hostile_tokens


def build_cases(
    material: _fixtures.Material, redis_url: str | None, proof_count: int = 30_000
) -> list[_harness.Case]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from scopegate import BearerGuard, DPoPPolicy, GuardOptions, JWTVerifier, MemoryReplayStore
    from scopegate._flow import run
    from scopegate.testing import DPoPKey
    from scopegate.wsgi import WSGIRequest

    key = DPoPKey.generate("ES256")
    claims = _fixtures.claims(cnf={"jkt": key.jkt})
    token = _fixtures.mint("RS256", material.private["RS256"], "bench-rs256", claims)
    uncached = JWTVerifier(
        issuer=_fixtures.ISSUER,
        audience=_fixtures.AUDIENCE,
        keys=material.jwks,
        cache_verified=False,
    )
    cached = JWTVerifier(issuer=_fixtures.ISSUER, audience=_fixtures.AUDIENCE, keys=material.jwks)
    if uncached.verify(token).jkt != key.jkt:  # pragma: no cover - a broken bench
        raise AssertionError("the bench token is not bound")

    def proof() -> str:
        return key.proof("GET", PUBLIC_URL + "/items", token=token)

    # The floor of a proof check: its ES256 signature over its own signing input.
    sample = proof()
    head, _, sig64 = sample.rpartition(".")
    import base64

    raw = base64.urlsafe_b64decode(sig64 + "=" * (-len(sig64) % 4))
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    public = key.key.public_key  # the SigningKey's public key object
    ecdsa = ec.ECDSA(hashes.SHA256())
    signing_input = head.encode()

    # Proofs are made before any timing (an ES256 signature each) and cycled; the replay
    # store's clock moves on 10 ms per request, so a proof has left the store long before
    # it comes round again, and proofs are accepted for 10 minutes (max_age) so the
    # run's own length never makes them stale.
    ticks = itertools.count()
    policy = DPoPPolicy(replay=MemoryReplayStore(timer=lambda: next(ticks) * 0.01), max_age=600)
    options = GuardOptions(dpop=policy, public_url=PUBLIC_URL)
    guards = {REQUEST: BearerGuard(uncached, options), REQUEST_CACHED: BearerGuard(cached, options)}
    proofs = itertools.cycle([proof() for _ in range(proof_count)]).__next__
    cases = [
        _harness.call_case(TOKEN, lambda: uncached.verify(token), group="dpop"),
        _harness.call_case(PROOF, lambda: public.verify(der, signing_input, ecdsa), group="dpop"),
    ]
    for name, guard in guards.items():
        outcome = guard.decide(WSGIRequest(_environ(token, proof())))
        if getattr(outcome, "jkt", None) != key.jkt:  # pragma: no cover - a broken bench
            raise AssertionError(f"{name}: not accepted: {outcome!r}")
        cases.append(
            _harness.call_case(
                name,
                lambda g=guard: g.decide(WSGIRequest(_environ(token, proofs()))),
                group="dpop",
            )
        )
    # The store as the guard uses it: keys as record_flow makes them (the key's
    # thumbprint, ":", a 22-character jti), a 60 s lifetime, and a clock that moves on
    # (10 ms per proof), so the store stays in its steady state instead of filling up.
    ticks = itertools.count()
    store = MemoryReplayStore(timer=lambda: next(ticks) * 0.01)
    jkt = key.jkt
    prepared = [f"{jkt}:{i:022x}" for i in range(200_000)]
    replay_keys = itertools.cycle(prepared).__next__
    cases.append(
        _harness.call_case(
            REPLAY_MEMORY, lambda: store.first_use(replay_keys(), 60), group="replay"
        )
    )
    if redis_url is not None:
        from scopegate import RedisReplayStore

        redis_store = RedisReplayStore(redis_url)
        keys = itertools.count()
        if not run(redis_store.first_use_flow("probe", 60)):  # pragma: no cover
            raise AssertionError("the Redis replay store refused a new key")
        cases.append(
            _harness.call_case(
                REPLAY_REDIS,
                lambda: run(redis_store.first_use_flow(f"k{next(keys)}", 60)),
                group="replay",
            )
        )
    # Hostile tokens against one bad-signature rejection, same verifier and key.
    hostile = _hostile()
    if hostile is not None:
        from scopegate import InvalidTokenError

        signer = hostile.signing_key()
        verifier = hostile.hostile_verifier(signer)

        def refused_by(verify: Any) -> Any:
            """A case factory: *verify* (a verifier's or a router's) refusing a token."""

            def case(raw_token: str) -> Any:
                def call() -> None:
                    try:
                        verify(raw_token)
                    except InvalidTokenError:
                        return
                    raise AssertionError("a hostile token was accepted")  # pragma: no cover

                return call

            return case

        rejected = refused_by(verifier.verify)

        reference = hostile.bad_signature_token(signer)
        cases.append(_harness.call_case(BAD_SIGNATURE, rejected(reference), group="hostile"))
        for name, raw_token in hostile.hostile_tokens(8192, signer).items():
            cases.append(
                _harness.call_case(f"hostile: {name}", rejected(raw_token), group="hostile")
            )
        # An IssuerRouter reads the payload (for iss) before any signature check.
        from scopegate import IssuerRouter

        other = hostile.hostile_verifier(signer, issuer="https://other.hostile.test")
        router = IssuerRouter([hostile.hostile_verifier(signer), other])

        routed = refused_by(router.verify)

        # A token endpoint checks a proof before it knows the client: anyone's key.
        from scopegate import BearerError
        from scopegate._dpop import ProofVerifier
        from scopegate.testing import DPoPKey

        sender = DPoPKey.generate()
        endpoint = "https://issuer.hostile.test/token"
        # Checking is stateless (no replay store here): one ordinary proof serves every
        # round, accepted each time within an hour.
        proof_verifier = ProofVerifier(DPoPPolicy(max_age=3600))
        ordinary = sender.proof("POST", endpoint)

        def proof_checked(text: str) -> Any:
            def call() -> None:
                try:
                    proof_verifier.check(
                        text, method="POST", url=endpoint, token=None, now=time.time()
                    )
                except BearerError:
                    return

            return call

        proof_checked(ordinary)()
        cases.append(_harness.call_case(ORDINARY_PROOF, proof_checked(ordinary), group="proofs"))
        for name, crafted in hostile.hostile_proofs(sender).items():
            if not name.startswith("proof-8k-"):
                cases.append(
                    _harness.call_case(f"proof: {name}", proof_checked(crafted), group="proofs")
                )
        cases.append(_harness.call_case(ROUTER_BAD_SIGNATURE, routed(reference), group="routed"))
        for name, raw_token in hostile.routed_tokens(8192, signer).items():
            if name.startswith("routed-"):
                cases.append(
                    _harness.call_case(f"router: {name}", routed(raw_token), group="routed")
                )
    return cases


def _worst_of(
    stats: dict[str, _harness.Stat],
    rows: list[list[str]],
    targets: list[dict[str, Any]],
    candidates: list[str],
    shown: list[str],
    reference: str,
    unit: str,
    figure: str,
    cut: int,
) -> None:
    """Each of *shown* ÷ *reference* beside its row; the worst of *candidates* as a
    target row (≤ HOSTILE_BUDGET) whose *figure* names its shape (the name after *cut*)."""
    if not shown or reference not in stats:
        return
    ratios = {name: _harness.ratio(stats, name, reference) for name in shown}
    worst = max(candidates or shown, key=lambda n: ratios[n]["median"])
    value = ratios[worst]
    targets.append(
        {
            "figure": figure.format(shape=worst[cut:]),
            "value": value,
            "shown": _harness.fmt_summary(value),
            "target": f"≤ {HOSTILE_BUDGET:g}",
            "met": value["median"] <= HOSTILE_BUDGET,
        }
    )
    for row, name in zip(rows, stats, strict=True):
        if name in ratios:
            row[1] += f" (x{ratios[name]['median']:.2f} of {unit})"


def report(stats: dict[str, _harness.Stat]) -> dict[str, Any]:
    rows = [[name, _harness.fmt_us(stat)] for name, stat in stats.items()]
    targets: list[dict[str, Any]] = []
    if {TOKEN, PROOF, REQUEST} <= stats.keys():
        value = _harness.summary(
            [
                r / (t + p)
                for r, t, p in zip(
                    stats[REQUEST].samples_us,
                    stats[TOKEN].samples_us,
                    stats[PROOF].samples_us,
                    strict=True,
                )
            ]
        )
        targets.append(
            {
                "figure": "Issue 13: DPoP request ÷ (token verification + proof signature)",
                "value": value,
                "shown": _harness.fmt_summary(value),
                "target": f"≤ {DPOP_BUDGET}",
                "met": value["median"] <= DPOP_BUDGET,
            }
        )
    if REPLAY_MEMORY in stats:
        value = _harness.summary(stats[REPLAY_MEMORY].samples_us)
        targets.append(
            {
                "figure": "Issue 13: DPoP replay check, memory store (µs)",
                "value": value,
                "shown": _harness.fmt_summary(value, prefix="") + " µs",
                "target": f"≤ {REPLAY_BUDGET_US:g} µs",
                "met": value["median"] <= REPLAY_BUDGET_US,
            }
        )
    if REPLAY_REDIS in stats:
        value = _harness.summary(stats[REPLAY_REDIS].samples_us)
        targets.append(
            {
                "figure": "Issue 13: DPoP replay check, Redis on 127.0.0.1 (client CPU µs, info)",
                "value": value,
                "shown": _harness.fmt_summary(value, prefix="") + " µs",
                "target": "-",
                "met": None,
            }
        )
    # header-* tokens need no key: anyone can send them. payload-* tokens carry the
    # shape as claims signed by the issuer's key (what is parsed after a good
    # signature): shown, but no attacker can make them.
    worst_rows = (
        (
            "hostile: ",
            "hostile: header-",
            BAD_SIGNATURE,
            "a bad signature",
            "Issue 19: costliest token anyone can send ({shape}) ÷ a bad-signature "
            "rejection, under the 8192-character cap",
            len("hostile: "),
        ),
        (
            "proof: ",
            "proof: ",
            ORDINARY_PROOF,
            "an ordinary proof",
            "Issue 19: costliest DPoP proof anyone can sign, at a token endpoint ({shape}) "
            "÷ checking an ordinary proof",
            len("proof: proof-"),
        ),
        (
            "router: ",
            "router: ",
            ROUTER_BAD_SIGNATURE,
            "a bad signature",
            "Issue 19: costliest token anyone can send to an IssuerRouter ({shape}, iss "
            "last) ÷ a bad-signature rejection through it, under the 8192-character cap",
            len("router: routed-"),
        ),
    )
    for shown, counted, reference, unit, figure, cut in worst_rows:
        _worst_of(
            stats,
            rows,
            targets,
            [n for n in stats if n.startswith(counted)],
            [n for n in stats if n.startswith(shown)],
            reference,
            unit,
            figure,
            cut,
        )
    table = _harness.markdown_table(["case", "µs/op median (min-max)"], rows)
    return {"rows": [s.row() for s in stats.values()], "markdown": table, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--target", type=float, default=0.03, help="seconds per sample")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    args = parser.parse_args(argv)
    material = _fixtures.load(unique=0)
    start, load_before = time.monotonic(), _harness.loadavg()
    server = _redis_server()
    try:
        cases = build_cases(material, server[1] if server else None, 200 if args.quick else 30_000)
        stats = _harness.run_cases(cases, rounds=args.rounds, target=args.target, quick=args.quick)
    finally:
        if server is not None:
            server[0].kill()
            server[0].wait()
    out = report(stats)
    out["title"] = TITLE
    out["notes"] = (
        f"{args.rounds if not args.quick else 2} interleaved rounds, ~{args.target}s/sample, "
        "GC off, thread CPU time; RS256 tokens bound to an ES256 proof key, a new proof per "
        f"request; Redis: {'a local redis-server' if server else 'not available, skipped'}; "
        f"loadavg {load_before} → {_harness.loadavg()}; "
        f"elapsed {time.monotonic() - start:.0f}s"
    )
    out["versions"] = _harness.versions("cryptography", "redis", "scopegate")
    print(f"## {TITLE}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out["targets"]:
        verdict = {True: "met", False: "NOT met", None: "info"}[t["met"]]
        print(f"- {t['figure']}: {t['shown']} (target {t['target']}: {verdict})")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
