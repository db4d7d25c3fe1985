"""In-process cost of an authenticated MCP tool call: scopegate's gate vs the SDK's own auth.

One MCP ``tools/call`` of ``list_items`` (protocol 2026-07-28, JSON response) through the
official SDK's streamable-HTTP app, ``await app(scope, receive, send)`` in a loop on one
uvloop event loop, the apps' lifespans running (the SDK's session manager). GC stays on,
as in a server. Every case's status and body are checked once before timing.

Cases, same server, same tool, same request:

* the SDK app without auth (the floor);
* the SDK's own bearer stack (``AuthSettings`` + ``token_verifier``: Starlette's
  ``AuthenticationMiddleware`` with the SDK's ``BearerAuthBackend`` and
  ``RequireAuthMiddleware``, ``validate_token_resource=True``) with a **trivial
  verifier**: a dict lookup returning a ready ``AccessToken``, no cryptography at all;
* scopegate's :class:`~scopegate.integrations.mcp.MCPGate` with a ``JWTVerifier`` and a
  repeated RS256 token (verified-token cache hit), with the per-tool check (the body is
  buffered and parsed) and without it.

The figure: gate ÷ SDK stack, per round, summarised as median (min-max).

Usage::

    .venv/bin/python benchmarks/bench_mcp.py [--rounds 41] [--target 0.025] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import warnings
from typing import Any

import _fixtures
import _harness

TITLE = "In-process MCP tool call (µs/call)"
RESOURCE = "http://127.0.0.1:8000/mcp"
BARE = "mcp · SDK app, no auth (floor)"
SDK = "mcp · SDK bearer auth + trivial dict verifier"
GATE = "mcp · scopegate MCPGate, cached token, per-tool check"
GATE_NO_TOOLS = "mcp · scopegate MCPGate, cached token, no tool_scopes"
ITEMS = [{"id": 1, "name": "hammer"}, {"id": 2, "name": "screwdriver"}]
BODY = json.dumps(
    {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {
            "name": "list_items",
            "arguments": {},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    }
).encode()


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop is installed with the bench deps
        return asyncio.new_event_loop()


def mcp_scope(token: str | None) -> dict[str, Any]:
    """The HTTP scope uvicorn would build for the MCP client's POST."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"accept", b"application/json, text/event-stream"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"mcp-protocol-version", b"2026-07-28"),
        (b"mcp-method", b"tools/call"),
        (b"mcp-name", b"list_items"),
    ]
    if token is not None:
        headers.append((b"authorization", b"Bearer " + token.encode()))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/mcp",
        "raw_path": b"/mcp",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def one_call(app: Any, scope: dict[str, Any], sent: list[dict[str, Any]] | None) -> None:
    """One request: the body, then (like a server) a disconnect only after the response."""
    done = asyncio.Event()
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if sent is not None:
            sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(dict(scope), receive, send)


def check(loop: asyncio.AbstractEventLoop, name: str, app: Any, scope: dict[str, Any]) -> None:
    """The case answers 200 with the tool's result, or the bench refuses to time it."""
    sent: list[dict[str, Any]] = []
    loop.run_until_complete(one_call(app, scope, sent))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    text = json.loads(body)["result"]["content"][0]["text"] if status == 200 else ""
    if status != 200 or json.loads(text) != ITEMS:
        raise AssertionError(f"{name}: unexpected response {status} {body[:120]!r}")


def case(
    loop: asyncio.AbstractEventLoop, name: str, app: Any, scope: dict[str, Any]
) -> _harness.Case:
    async def batch(n: int) -> float:
        start = _harness.clock()
        for _ in range(n):
            await one_call(app, scope, None)
        return _harness.clock() - start

    return _harness.Case(name, lambda n: loop.run_until_complete(batch(n)), "mcp")


class Lifespans:
    """Runs the lifespan of every app on the loop until :meth:`stop`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running: list[tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]] = []

    def start(self, app: Any) -> Any:
        async def go() -> tuple[asyncio.Queue[dict[str, Any]], asyncio.Task[None]]:
            inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
            scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
            task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
            await inbox.put({"type": "lifespan.startup"})
            message = await outbox.get()
            assert message["type"] == "lifespan.startup.complete", message
            return inbox, task

        self.running.append(self.loop.run_until_complete(go()))
        return app

    def stop(self) -> None:
        async def go() -> None:
            for inbox, task in self.running:
                await inbox.put({"type": "lifespan.shutdown"})
                await task

        self.loop.run_until_complete(go())


def items_server(**kwargs: Any) -> Any:
    from mcp.server.mcpserver import MCPServer

    mcp = MCPServer("items", **kwargs)

    # Async tools: a sync one runs in a worker thread, whose hand-off noise would swamp
    # the difference being measured.
    @mcp.tool()
    async def list_items() -> str:
        return json.dumps(ITEMS)

    @mcp.tool()
    async def create_item(name: str) -> dict[str, str]:
        return {"name": name}

    return mcp


def build_cases(
    material: _fixtures.Material, loop: asyncio.AbstractEventLoop, lifespans: Lifespans
) -> list[_harness.Case]:
    from mcp.server.auth.provider import AccessToken as SDKAccessToken
    from mcp.server.auth.settings import AuthSettings

    from scopegate import GuardOptions, JWTVerifier, ProtectedResource
    from scopegate.integrations.mcp import MCPGate

    key = material.private["RS256"]
    token = _fixtures.mint("RS256", key, "bench-rs256", {**_fixtures.claims(), "aud": RESOURCE})
    cases: list[_harness.Case] = []

    def add(name: str, app: Any, scope: dict[str, Any]) -> None:
        lifespans.start(app)
        check(loop, name, app, scope)
        cases.append(case(loop, name, app, scope))

    add(BARE, items_server().streamable_http_app(), mcp_scope(None))

    ready = SDKAccessToken(
        token=token,
        client_id="bench-client",
        scopes=["items:read", "items:write", "profile"],
        expires_at=int(time.time()) + 86000,
        resource=RESOURCE,
        subject="user-1234",
        claims={"iss": _fixtures.ISSUER},
    )

    class DictVerifier:
        """The cheapest TokenVerifier there is: a dict lookup."""

        def __init__(self) -> None:
            self.tokens = {token: ready}

        async def verify_token(self, raw: str) -> SDKAccessToken | None:
            return self.tokens.get(raw)

    sdk = items_server(
        token_verifier=DictVerifier(),
        auth=AuthSettings(
            issuer_url=_fixtures.ISSUER,
            resource_server_url=RESOURCE,
            required_scopes=["items:read"],
            validate_token_resource=True,
        ),
    )
    add(SDK, sdk.streamable_http_app(), mcp_scope(token))

    options = GuardOptions(
        resource=ProtectedResource(resource=RESOURCE, authorization_servers=[_fixtures.ISSUER]),
        required_scopes=["items:read"],
    )
    for name, tool_scopes in (
        (GATE, {"list_items": ["items:read"], "create_item": ["items:write"]}),
        (GATE_NO_TOOLS, None),
    ):
        verifier = JWTVerifier(
            issuer=_fixtures.ISSUER, audience=RESOURCE, keys={"keys": [material.jwk("RS256")]}
        )
        gate = MCPGate(
            items_server().streamable_http_app(),
            verifier=verifier,
            options=options,
            tool_scopes=tool_scopes,
        )
        add(name, gate, mcp_scope(token))
    return cases


def report(stats: dict[str, _harness.Stat]) -> dict[str, Any]:
    rows = [
        [
            name,
            _harness.fmt_us(stat),
            _harness.fmt_summary(_harness.difference(stats, name, BARE), prefix="+", digits=1),
            _harness.fmt_summary(_harness.ratio(stats, name, SDK)),
        ]
        for name, stat in stats.items()
    ]
    figure = _harness.ratio(stats, GATE, SDK)
    targets = [
        {
            "figure": "Issue 12: MCP tool call, cached token: MCPGate ÷ SDK bearer auth (trivial "
            "verifier), in-process",
            "value": figure,
            "shown": _harness.fmt_summary(figure),
            "target": "-",
            "met": None,
        }
    ]
    table = _harness.markdown_table(
        ["case", "µs/call median (min-max)", "+µs over no auth", "x SDK auth"], rows
    )
    return {"rows": [s.row() for s in stats.values()], "markdown": table, "targets": targets}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--target", type=float, default=0.025, help="seconds per sample")
    parser.add_argument("--json", help="write results here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny counts")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.INFO)  # the SDK logs every session manager start at INFO
    material = _fixtures.load(unique=0)
    loop = _loop()
    lifespans = Lifespans(loop)
    start, load_before = time.monotonic(), _harness.loadavg()
    cases = build_cases(material, loop, lifespans)
    stats = _harness.run_cases(cases, rounds=args.rounds, target=args.target, quick=args.quick)
    lifespans.stop()
    loop.close()
    out = report(stats)
    out["title"] = TITLE
    out["notes"] = (
        f"{args.rounds if not args.quick else 2} interleaved rounds, ~{args.target}s/sample, "
        f"GC on, {type(loop).__module__} loop; RS256 token; "
        f"loadavg {load_before} → {_harness.loadavg()}; elapsed {time.monotonic() - start:.0f}s"
    )
    out["versions"] = _harness.versions("mcp", "starlette", "pydantic", "uvloop", "scopegate")
    print(f"## {TITLE}\n\n{out['markdown']}\n\n{out['notes']}")
    for t in out["targets"]:
        print(f"- {t['figure']}: {t['shown']}")
    if args.json:
        _harness.write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
