"""In-process request cost of the ASGI and WSGI stacks, without a server or sockets.

ASGI: ``await app(scope, receive, send)`` in a loop on one uvloop event loop, with a
synthetic HTTP scope carrying ``Authorization: Bearer <RS256 token>``; the timed ``send``
is a no-op. WSGI: ``app(environ, start_response)`` with a fresh environ per call, body
consumed and closed. GC stays on, as in a server. Every case's status (and body) is
checked once before timing.

Cases: bare Starlette; Starlette + scopegate's ASGI middleware with a repeated token
(verified-token cache hit), with the cache off, and with a new token per request (cache
on, every lookup a miss); the anchor Starlette AuthenticationMiddleware + PyJWT. WSGI:
bare Flask; Flask + scopegate (repeated token, uncached); Flask + Authlib
ResourceProtector.

Observability (issue 16): the cache-hit case again with a no-op hook, with
``scopegate.prometheus`` instrumented, and with ``scopegate.otel`` instrumented on the
SDK (no span processor, no metric reader: the cost of making the spans and metrics)
and on the API's no-op providers. Hooks are process-wide, so each of these cases
installs its hook only while its own samples run; the figures are differences from the
no-hook cache hit measured in the same round.

Usage::

    .venv/bin/python benchmarks/bench_inproc.py [--rounds 41] [--target 0.025] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import _apps
import _fixtures
import _harness

TITLE = "In-process request cost (µs/request)"
ASGI_BASE = "asgi · starlette bare"
WSGI_BASE = "wsgi · flask bare"
FLASK_HIT = "wsgi · flask + scopegate ScopeGate, repeated token (cache hit)"
FLASK_AUTHLIB = "wsgi · flask + Authlib ResourceProtector"
#: Issue-6 target: repeated-token middleware cost over a bare Starlette request.
MIDDLEWARE_TARGET_US = 3.0
ASGI_HIT = "asgi · starlette + scopegate, repeated token (cache hit)"
HOOK_NOOP = "asgi · cache hit + a no-op hook"
HOOK_PROMETHEUS = "asgi · cache hit + scopegate.prometheus"
HOOK_OTEL_SDK = "asgi · cache hit + scopegate.otel (SDK, no exporter)"
HOOK_OTEL_API = "asgi · cache hit + scopegate.otel (API no-op providers)"
#: Issue-16 target: Prometheus on costs at most this much more per cached hit.
PROMETHEUS_TARGET_US = 1.0


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is installed with the bench deps
        return asyncio.new_event_loop()


def asgi_scope(path: str, token: str | None) -> dict[str, Any]:
    """A minimal HTTP scope as uvicorn would build it."""
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench"), (b"accept", b"*/*")]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


def asgi_case(
    loop: asyncio.AbstractEventLoop, name: str, app: Any, scopes: Iterator[dict[str, Any]]
) -> _harness.Case:
    """Time ``n`` sequential requests inside one coroutine on *loop*."""

    async def batch(n: int) -> float:
        start = _harness.clock()
        for _ in range(n):
            await app(dict(next(scopes)), _receive, _send)
        return _harness.clock() - start

    return _harness.Case(name, lambda n: loop.run_until_complete(batch(n)), "asgi")


def asgi_check(
    loop: asyncio.AbstractEventLoop, app: Any, scope: dict[str, Any]
) -> tuple[int, bytes]:
    """Status and body of one request, to prove the case does what it claims."""
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    loop.run_until_complete(app(dict(scope), _receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body


def wsgi_environ(path: str, token: str | None) -> dict[str, Any]:
    """A WSGI environ template as a threaded server would build it."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if token is not None:
        env["HTTP_AUTHORIZATION"] = "Bearer " + token
    return env


def wsgi_call(app: Any, template: dict[str, Any]) -> tuple[str, bytes]:
    """One WSGI request: status line and body."""
    status: list[str] = []

    def start_response(s: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        status.append(s)
        return None

    env = dict(template)
    env["wsgi.input"] = io.BytesIO(b"")
    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return status[0], body


def wsgi_case(name: str, app: Any, templates: Iterator[dict[str, Any]]) -> _harness.Case:
    def one() -> None:
        wsgi_call(app, next(templates))

    return _harness.call_case(name, one, group="wsgi", gc_off=False)


def _expect(name: str, got: tuple[Any, bytes], status: str, body: bytes | None = None) -> None:
    if not str(got[0]).startswith(status) or (body is not None and got[1] != body):
        raise AssertionError(f"{name}: unexpected response {got[0]} {got[1][:80]!r}")


def hooked(case: _harness.Case, hook: Any) -> _harness.Case:
    """*case* with *hook* registered only while its samples run (hooks are global)."""
    from scopegate import add_hook, remove_hook

    def run(n: int) -> float:
        add_hook(hook)
        try:
            return case.run(n)
        finally:
            remove_hook(hook)

    return _harness.Case(case.name, run, case.group)


def observability_hooks() -> dict[str, Any]:
    """The hooks measured: a no-op, Prometheus and OpenTelemetry (instrumented once, then
    detached: each case attaches its hook while it runs)."""
    hooks: dict[str, Any] = {HOOK_NOOP: lambda record: None}
    if _have("scopegate.prometheus") and _have("prometheus_client"):
        import prometheus_client

        import scopegate.prometheus

        prometheus = scopegate.prometheus.instrument(prometheus_client.CollectorRegistry())
        prometheus.uninstrument()
        hooks[HOOK_PROMETHEUS] = prometheus.hook
    if _have("scopegate.otel") and _have("opentelemetry.sdk"):
        from opentelemetry.metrics import NoOpMeterProvider
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.trace import NoOpTracerProvider

        import scopegate.otel

        for name, tracer, meter in (
            (HOOK_OTEL_SDK, TracerProvider(), MeterProvider()),
            (HOOK_OTEL_API, NoOpTracerProvider(), NoOpMeterProvider()),
        ):
            otel = scopegate.otel.instrument(tracer, meter)
            otel.uninstrument()
            hooks[name] = otel.hook
    return hooks


def _have(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def build_cases(
    material: _fixtures.Material, loop: asyncio.AbstractEventLoop, *, unique: int
) -> list[_harness.Case]:
    """All in-process cases; each is checked once before timing."""
    token = material.tokens["RS256"]
    cases: list[_harness.Case] = []
    repeated = itertools.repeat(asgi_scope("/protected", token))
    # The bare app serves /protected too (unprotected there): the same route position
    # and handler, so the only difference is the middleware.
    bare_scope = asgi_scope("/protected", token)

    def add_asgi(name: str, app: Any, scopes: Iterator[dict[str, Any]], body: bytes) -> None:
        _expect(name, asgi_check(loop, app, asgi_scope("/protected", token)), "200", body)
        cases.append(asgi_case(loop, name, app, scopes))

    bare = _apps.starlette_bare()
    _expect(ASGI_BASE, asgi_check(loop, bare, bare_scope), "200", b"anonymous")
    cases.append(asgi_case(loop, ASGI_BASE, bare, itertools.repeat(bare_scope)))
    if _have("scopegate._jwt") and _have("scopegate.asgi"):
        add_asgi(
            "asgi · starlette + scopegate, repeated token (cache hit)",
            _apps.starlette_scopegate(material, cached=True),
            repeated,
            b"user-1234",
        )
        if _have("scopegate._observe"):
            for name, hook in observability_hooks().items():
                app = _apps.starlette_scopegate(material, cached=True)
                case = asgi_case(loop, name, app, itertools.repeat(asgi_scope("/protected", token)))
                cases.append(hooked(case, hook))
                from scopegate import add_hook, remove_hook

                add_hook(hook)
                try:
                    _expect(name, asgi_check(loop, app, asgi_scope("/protected", token)), "200")
                finally:
                    remove_hook(hook)
        add_asgi(
            "asgi · starlette + scopegate + @require_scope, repeated token",
            _apps.starlette_scopegate(material, cached=True, require_scope=True),
            itertools.repeat(asgi_scope("/protected", token)),
            b"user-1234",
        )
        add_asgi(
            "asgi · starlette + scopegate, cache off",
            _apps.starlette_scopegate(material, cached=False),
            itertools.repeat(asgi_scope("/protected", token)),
            b"user-1234",
        )
        if unique:
            scopes = [asgi_scope("/protected", t) for t in material.unique_tokens(unique)]
            add_asgi(
                "asgi · starlette + scopegate, new token per request (cache miss)",
                _apps.starlette_scopegate(material, cached=True),
                itertools.cycle(scopes),
                b"user-1234",
            )
    add_asgi(
        "asgi · starlette + AuthenticationMiddleware(PyJWT) [anchor]",
        _apps.starlette_authmw_pyjwt(material),
        itertools.repeat(asgi_scope("/protected", token)),
        b"user-1234",
    )

    wsgi_bare = _apps.flask_bare()
    wsgi_tpl = wsgi_environ("/protected", token)
    _expect(WSGI_BASE, wsgi_call(wsgi_bare, wsgi_tpl), "200", b"ok")
    cases.append(wsgi_case(WSGI_BASE, wsgi_bare, itertools.repeat(wsgi_tpl)))
    if _have("scopegate._jwt") and _have("scopegate.integrations.flask"):
        app = _apps.flask_scopegate(material, cached=True, style="integration")
        _expect("flask scopegate", wsgi_call(app, wsgi_tpl), "200", b"user-1234")
        cases.append(wsgi_case(FLASK_HIT, app, itertools.repeat(wsgi_tpl)))
    if _have("scopegate._jwt") and _have("scopegate.wsgi"):
        app = _apps.flask_scopegate(material, cached=True, style="middleware")
        _expect("flask scopegate mw", wsgi_call(app, wsgi_tpl), "200", b"user-1234")
        cases.append(
            wsgi_case(
                "wsgi · flask + scopegate WSGI middleware, repeated token",
                app,
                itertools.repeat(wsgi_tpl),
            )
        )
    authlib = _apps.flask_authlib(material)
    _expect("authlib", wsgi_call(authlib, wsgi_tpl), "200", b"user-1234")
    cases.append(wsgi_case(FLASK_AUTHLIB, authlib, itertools.repeat(wsgi_tpl)))
    if _have("scopegate._jwt") and _have("scopegate.integrations.flask"):
        app = _apps.flask_scopegate(material, cached=False, style="integration")
        _expect("flask scopegate uncached", wsgi_call(app, wsgi_tpl), "200", b"user-1234")
        cases.append(
            wsgi_case(
                "wsgi · flask + scopegate ScopeGate, cache off", app, itertools.repeat(wsgi_tpl)
            )
        )
    return cases


def report(stats: dict[str, _harness.Stat]) -> dict[str, Any]:
    """Markdown table, rows and target checks."""
    rows = []
    for name, stat in stats.items():
        base = ASGI_BASE if stat.group == "asgi" else WSGI_BASE
        rows.append(
            [
                name,
                _harness.fmt_us(stat),
                _harness.fmt_summary(_harness.difference(stats, name, base), prefix="+", digits=1),
                _harness.fmt_summary(_harness.ratio(stats, name, base)),
            ]
        )
    targets: list[dict[str, Any]] = []
    hit = "asgi · starlette + scopegate, repeated token (cache hit)"
    if hit in stats:
        diff = _harness.difference(stats, hit, ASGI_BASE)
        targets.append(
            {
                "figure": "repeated token: ASGI middleware cost over bare Starlette, in-process",
                "value": diff,
                "shown": _harness.fmt_summary(diff, prefix="+", digits=2) + " µs",
                "target": f"≤ {MIDDLEWARE_TARGET_US} µs",
                "met": diff["median"] <= MIDDLEWARE_TARGET_US,
            }
        )
    for name in (HOOK_NOOP, HOOK_PROMETHEUS, HOOK_OTEL_SDK, HOOK_OTEL_API):
        if name in stats and ASGI_HIT in stats:
            extra = _harness.difference(stats, name, ASGI_HIT)
            prometheus = name == HOOK_PROMETHEUS
            targets.append(
                {
                    "figure": f"Issue 16: {name}: cost over the same cache hit without hooks"
                    + ("" if prometheus else " (info)"),
                    "value": extra,
                    "shown": _harness.fmt_summary(extra, prefix="+", digits=2) + " µs",
                    "target": f"≤ {PROMETHEUS_TARGET_US} µs" if prometheus else "-",
                    "met": extra["median"] <= PROMETHEUS_TARGET_US if prometheus else None,
                }
            )
    for name in (FLASK_HIT,):
        if name in stats and FLASK_AUTHLIB in stats:
            speed = _harness.ratio(stats, FLASK_AUTHLIB, name)  # time ratio = speed ratio inverted
            targets.append(
                {
                    "figure": "in-process Flask + scopegate speed ÷ Flask + Authlib (info)",
                    "value": speed,
                    "shown": _harness.fmt_summary(speed),
                    "target": "-",
                    "met": None,
                }
            )
    table = _harness.markdown_table(
        ["case", "µs/request median (min-max)", "+µs over bare", "x bare"], rows
    )
    return {"rows": [s.row() for s in stats.values()], "markdown": table, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--target", type=float, default=0.025, help="seconds per sample")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # joserfc/authlib deprecation chatter
    material = _fixtures.load(unique=64 if args.quick else _fixtures.UNIQUE_TOKENS)
    loop = _loop()
    start, load_before = time.monotonic(), _harness.loadavg()
    cases = build_cases(material, loop, unique=64 if args.quick else _fixtures.UNIQUE_TOKENS)
    stats = _harness.run_cases(cases, rounds=args.rounds, target=args.target, quick=args.quick)
    loop.close()
    out = report(stats)
    out["title"] = TITLE
    out["notes"] = (
        f"{args.rounds if not args.quick else 2} interleaved rounds, ~{args.target}s/sample, "
        f"GC on, {type(loop).__module__} loop; RS256 token; "
        f"loadavg {load_before} → {_harness.loadavg()}; elapsed {time.monotonic() - start:.0f}s"
    )
    out["versions"] = _harness.versions(
        "starlette", "Flask", "Werkzeug", "Authlib", "joserfc", "PyJWT", "uvloop", "scopegate"
    )
    print(f"## {TITLE}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out["targets"]:
        print(f"- {t['figure']}: {t['shown']} (target {t['target']})")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
