"""Where the time goes on scopegate's hot paths: cProfile tables and component timings.

Three scenarios, each run N times under :mod:`cProfile`:

* ``verify uncached``: ``JWTVerifier(cache_verified=False).verify`` on an RS256 token;
* ``ASGI cache hit``: one request through Starlette + scopegate's ASGI middleware with a
  repeated token;
* ``Flask cache hit``: one request through Flask + the ``ScopeGate`` extension.

For each, the functions with the most own time are listed with calls per operation and
their share of the profiled total. cProfile inflates pure-Python calls relative to C
calls, so read the shares as "where to look", and the component timings (plain
``timeit``, best of 7, no profiler) as the costs.

Usage::

    .venv/bin/python benchmarks/bench_profile.py [--json OUT] [--quick]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import pstats
import sys
import timeit
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _apps
import _fixtures
import _harness
import bench_inproc
import bench_verify

TITLE = "Where the time goes (profiles of the hot paths)"
TOP = 10


def short_path(filename: str) -> str:
    """*filename* from its package on (``scopegate/_jwt.py``, ``werkzeug/local.py``)."""
    path = Path(filename)
    parts = path.parts
    if "scopegate" in parts:
        return "/".join(parts[parts.index("scopegate") :])
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    return path.name


def _label(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return "C: " + name.strip("<>")  # a C function, e.g. "method 'verify' of ..."
    return f"{short_path(filename)}:{line} {name}"


def _package(filename: str) -> str:
    if filename == "~":
        return "C builtins"
    for name in ("scopegate", "starlette", "flask", "werkzeug", "cryptography", "asyncio"):
        if f"/{name}/" in filename:
            return name
    return "other"


def by_package(entries: dict[Any, Any], total: float) -> str:
    """Own time grouped by package, as shares of the profiled total."""
    groups: dict[str, float] = {}
    for (filename, _line, _name), value in entries.items():
        key = _package(filename)
        groups[key] = groups.get(key, 0.0) + value[2]
    ranked = sorted(groups.items(), key=lambda kv: kv[1], reverse=True)
    return "Own time by package: " + ", ".join(f"{k} {v / total * 100:.0f}%" for k, v in ranked)


def profile(run: Callable[[int], object], n: int) -> tuple[list[list[str]], float]:
    """Profile ``run(n)`` (which performs *n* operations); rows of the top functions.

    The benchmark's own driver frames are left out of the table (not of the total).
    """
    run(min(n, 200))
    prof = cProfile.Profile()
    prof.enable()
    run(n)
    prof.disable()
    stats = pstats.Stats(prof)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values()) or 1e-9
    here = str(Path(__file__).resolve().parent)
    ranked = sorted(
        ((f, v) for f, v in entries.items() if not f[0].startswith(here)),
        key=lambda kv: kv[1][2],
        reverse=True,
    )[:TOP]
    rows = [
        [
            _label(func),
            f"{ncalls / n:.1f}",
            f"{tottime / n * 1e6:.2f}",
            f"{tottime / total * 100:.0f}%",
        ]
        for func, (_cc, ncalls, tottime, _ct, _callers) in ranked
    ]
    rows.append([f"_{by_package(entries, total)}_", "", "", ""])
    return rows, total / n * 1e6


def repeat(fn: Callable[[], object]) -> Callable[[int], None]:
    """A runner calling *fn* n times."""

    def run(n: int) -> None:
        for _ in range(n):
            fn()

    return run


def best_of(fn: Callable[[], object], n: int) -> float:
    """Best-of-7 µs per call, no profiler."""
    timer = timeit.Timer("fn()", timer=_harness.clock, globals={"fn": fn})
    return min(timer.repeat(7, n)) / n * 1e6


def components(material: _fixtures.Material, n: int) -> list[list[str]]:
    """Costs of the verifier's pipeline steps, where the internals are recognisable.

    These use private helpers of ``scopegate._jwt``; a step whose helper changed name is
    simply left out rather than failing the run.
    """
    from scopegate import _jwt

    token = material.tokens["RS256"]
    verifier = _apps.scopegate_verifier(material, cached=False)
    cached = _apps.scopegate_verifier(material, cached=True)
    cached.verify(token)
    steps: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("verify, uncached (all steps)", lambda: lambda: verifier.verify(token)),
        (
            "verify, cache hit (fresh str, as from a request)",
            lambda: lambda: cached.verify(token[:].encode().decode()),
        ),
        ("parse: split + header + header checks", lambda: lambda: verifier._parse(token)),
    ]

    def _sig() -> Callable[[], object]:
        # The floor, as in bench_verify: independent of scopegate's internals.
        return bench_verify.raw_verifier("RS256", material.public_key("RS256"), token)

    def _payload() -> Callable[[], object]:
        payload = token.split(".")[1].encode()
        return lambda: _jwt._json(payload)

    def _claims() -> Callable[[], object]:
        claims = _jwt._json(token.split(".")[1].encode())
        now = verifier._clock()
        fused = getattr(verifier, "_check_claims", None)
        if fused is not None:
            return lambda: fused(claims, now)
        checks = [c for _n, c in verifier._claim_checks]
        return lambda: [c(claims, now) for c in checks]

    def _build() -> Callable[[], object]:
        claims = _jwt._json(token.split(".")[1].encode())
        return lambda: verifier._build(claims, token)

    steps += [
        ("signature (cryptography RSA verify)", _sig),
        ("payload: base64url + strict JSON", _payload),
        ("claim checks", _claims),
        ("build AccessToken (scopes, client_id)", _build),
    ]
    rows = []
    for name, make in steps:
        try:
            fn = make()
            fn()
        except Exception:  # a renamed internal: skip the row
            continue
        rows.append([name, f"{best_of(fn, n):.2f}"])
    return rows


def asgi_components(material: _fixtures.Material, n: int) -> list[list[str]]:
    """Costs of the pieces of one cache-hit request through the ASGI middleware.

    Uses private helpers of ``scopegate.asgi``; a piece whose helper changed is left out.
    """
    token = material.tokens["RS256"]
    loop = bench_inproc._loop()
    bare = _apps.starlette_bare()
    protected = _apps.starlette_scopegate(material, cached=True)
    bare_scope = bench_inproc.asgi_scope("/protected", token)  # same route, open
    scope = bench_inproc.asgi_scope("/protected", token)

    def per_request(app: Any, sc: dict[str, Any]) -> float:
        async def batch(k: int) -> float:
            start = _harness.clock()
            for _ in range(k):
                await app(dict(sc), bench_inproc._receive, bench_inproc._send)
            return _harness.clock() - start

        return min(loop.run_until_complete(batch(n)) for _ in range(7)) / n * 1e6

    rows = [
        ["bare Starlette request", f"{per_request(bare, bare_scope):.2f}"],
        ["Starlette + scopegate middleware, cache hit", f"{per_request(protected, scope):.2f}"],
    ]
    loop.close()
    guard = protected.guard
    verifier = guard.verifier
    header_value = "Bearer " + token
    verifier.verify(token)
    message = {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"content-length", b"9"), (b"content-type", b"text/plain; charset=utf-8")],
    }
    pieces: list[tuple[str, Callable[[], Callable[[], object]]]] = [
        ("read request headers", lambda: _asgi_helper("_RequestHeaders", scope["headers"])),
        (
            "extract the token (RFC 6750 grammar)",
            lambda: (
                lambda: guard.extract(authorization=[header_value], method="GET", query_string="")
            ),
        ),
        (
            "verifier cache hit (fresh token str, hash included)",
            lambda: lambda: verifier.verify(header_value[7:]),
        ),
        (
            "add Vary to the response headers",
            lambda: _asgi_helper("_patch_headers", message, False),
        ),
    ]
    for name, make in pieces:
        try:
            fn = make()
            fn()
        except Exception:
            continue
        rows.append([f"  piece: {name}", f"{best_of(fn, n):.2f}"])
    return rows


def _asgi_helper(name: str, *args: Any) -> Callable[[], object]:
    from scopegate import asgi

    helper = getattr(asgi, name)
    return lambda: helper(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    material = _fixtures.load(unique=0)
    token = material.tokens["RS256"]
    scale = 0.01 if args.quick else 1.0
    sections: list[str] = []

    verifier = _apps.scopegate_verifier(material, cached=False)
    rows, per_op = profile(repeat(lambda: verifier.verify(token)), max(10, int(3000 * scale)))
    header = ["function (own time)", "calls/op", "profiled µs/op", "share"]
    sections.append(
        f"### verify, uncached, RS256 (profiled total {per_op:.1f} µs/op)\n\n"
        + _harness.markdown_table(header, rows)
    )

    loop = bench_inproc._loop()
    app = _apps.starlette_scopegate(material, cached=True)
    scope = bench_inproc.asgi_scope("/protected", token)

    async def batch(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), bench_inproc._receive, bench_inproc._send)

    rows, per_op = profile(lambda n: loop.run_until_complete(batch(n)), max(10, int(5000 * scale)))
    sections.append(
        f"### ASGI: Starlette + scopegate middleware, repeated token "
        f"(profiled total {per_op:.1f} µs/request)\n\n" + _harness.markdown_table(header, rows)
    )
    loop.close()

    try:
        flask_app = _apps.flask_scopegate(material, cached=True, style="integration")
    except ImportError:
        flask_app = None
    if flask_app is not None:
        env = itertools.repeat(bench_inproc.wsgi_environ("/protected", token))
        rows, per_op = profile(
            repeat(lambda: bench_inproc.wsgi_call(flask_app, next(env))), max(10, int(5000 * scale))
        )
        sections.append(
            f"### Flask + ScopeGate extension, repeated token (profiled total {per_op:.1f} "
            f"µs/request)\n\n" + _harness.markdown_table(header, rows)
        )

    comp = components(material, max(10, int(3000 * scale)))
    asgi_comp = asgi_components(material, max(10, int(5000 * scale)))
    sections.insert(
        0,
        "### Components of one cache-hit ASGI request (best of 7, no profiler)\n\n"
        + _harness.markdown_table(["step", "µs"], asgi_comp),
    )
    if comp:
        sections.insert(
            0,
            "### Components of one RS256 verification (timeit best of 7, no profiler)\n\n"
            + _harness.markdown_table(["step", "µs"], comp),
        )
    out: dict[str, Any] = {
        "title": TITLE,
        "markdown": "\n\n".join(sections),
        "notes": "cProfile inflates Python-level calls; shares point where to look.",
        "targets": [],
        "rows": [],
        "components": {name.strip(): float(us) for name, us in comp + asgi_comp},
    }
    print(f"## {TITLE}\n\n{out['markdown']}")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
