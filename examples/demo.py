"""``make demo``: OAuth 2.0 as its three parties play it, end to end, in under a minute.

OAuth 2.0 is a conversation between a **client** (a program that wants to call an API),
an **authorization server** (it checks who the client is and issues access tokens) and a
**resource server** (the API: it accepts a request whose token is valid and carries the
scope the route needs). This script starts the last two as real processes on 127.0.0.1,
plays the clients, and prints each step as "who -> whom: what", the answer, and what the
answer means for the client:

* Act 1, the client-credentials grant (RFC 6749 §4.4): a back-end service gets a JWT
  access token (RFC 9068) as itself and calls the Starlette example, which checks the
  token locally with the issuer's published keys; then requests the API refuses.
* Act 2, the password grant and its refresh token (RFC 6749 §4.3, §6): a trusted app
  signs a user in, refreshes her token, and a replayed refresh token is refused.
* Act 3, an MCP client (the official MCP Python SDK) that knows only the MCP server's
  URL: the 401 points it at the server's RFC 9728 metadata, which names the
  authorization server; it gets a token for that resource (RFC 8707), lists and calls
  tools, and is refused the tool its token has no scope for.
* Act 4, opaque tokens checked by introspection (RFC 7662) in the FastAPI example: a
  token works, is revoked (RFC 7009), and is refused.

Tokens are shown truncated. Everything started is stopped, also on failure or Ctrl-C.
The exit status is 0 only when every outcome is the expected one.

Run it with ``make demo`` or ``.venv/bin/python examples/demo.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "demo_issuer.toml"
AUDIENCE = "api://demo"
SERVICE = ("inventory-service", "demo-service-secret-7c41d9a2")
TRUSTED_APP = ("trusted-app", "demo-app-secret-5e0b3f88")
API_CLIENT = ("items-api", "demo-api-secret-a92c6d17")
MCP_AGENT = ("mcp-agent", "demo-mcp-secret-3f9e21b6")
USER = ("alice", "correct horse battery staple")
#: The MCP resource demo_issuer.toml lets mcp-agent ask for; replaced by the real URL.
CONFIGURED_MCP_RESOURCE = "http://127.0.0.1:8000/mcp"
#: Seconds the act-4 API may reuse an introspection answer: the revocation delay.
INTROSPECTION_CACHE_TTL = 1
START_TIMEOUT = 20.0
TIME_BUDGET = 55.0
WIDTH = 30

#: What the resource server's answer means for the client: (status, error) -> one line.
MEANINGS: dict[tuple[int, str | None], str] = {
    (200, None): "the token is valid and carries the scope this route needs: here is the result",
    (201, None): "the token is valid and carries the scope to write: the item was created",
    (401, None): "no token was sent: the client must first get one from the authorization server",
    (401, "invalid_token"): (
        "the API does not accept this token (forged, expired, revoked or never issued): "
        "the client must get a new one, not retry this one"
    ),
    (403, "insufficient_scope"): (
        "the token is valid but lacks the scope named in the challenge: the client may "
        "ask the authorization server for a token with it, if it is allowed that scope"
    ),
}
#: What the authorization server's token endpoint answers means for the client.
TOKEN_MEANINGS: dict[tuple[int, str | None], str] = {
    (200, None): "the client proved who it is and may have these scopes: here are its tokens",
    (400, "invalid_grant"): (
        "the authorization server refuses the grant: a refresh token works once, and a "
        "replayed one also revokes what was issued from it"
    ),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short(token: str) -> str:
    """A token as the transcript shows it: never in full."""
    return f"{token[:12]}... ({len(token)} chars)"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(1)


def _error_of(response: Any) -> str | None:
    """The RFC 6750 error of a challenge, else the ``error`` of an OAuth error body."""
    challenge = response.headers.get("www-authenticate")
    if challenge is not None:
        for part in challenge.replace(",", " ").split():
            if part.startswith("error="):
                return str(part.split("=", 1)[1].strip('"'))
        return None
    with contextlib.suppress(ValueError, AttributeError):
        error = response.json().get("error")
        return str(error) if error and response.status_code >= 400 else None
    return None


class Demo:
    """Runs the processes, sends the requests, narrates them and keeps the score."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started = time.monotonic()
        self.checks = 0
        self.failures: list[str] = []
        self.client = httpx.Client(timeout=10, trust_env=False)
        self.parties: dict[str, str] = {}  # base URL -> party name, for narration

    # -- processes ---------------------------------------------------------------------

    @contextlib.contextmanager
    def process(
        self,
        party: str,
        detail: str,
        args: list[str],
        base_url: str,
        ready_path: str,
        env: dict[str, str] | None = None,
    ) -> Iterator[None]:
        """Start *args*, wait until *ready_path* answers, stop it on exit (always)."""
        log_path = self.workdir / f"{party.split()[0]}-{free_port()}.log"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPEGATE_")}
        child_env.update(env or {})
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv built from our own paths
                args, env=child_env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent
            )
            try:
                self._wait_ready(proc, base_url + ready_path, log_path)
                self.parties[base_url] = party
                print(f"  started the {party:<22} {base_url}  ({detail})")
                yield
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def _wait_ready(self, proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{url} process exited early:\n{log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get(url, timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not answer within {START_TIMEOUT:.0f} s")

    def issuer(self, token_format: str) -> contextlib.AbstractContextManager[None]:
        """The companion issuer in *token_format*; its URL is ``self.issuer_url``."""
        port = free_port()
        self.issuer_url = f"http://127.0.0.1:{port}"
        self.mcp_url = f"http://127.0.0.1:{free_port()}/mcp"
        config = self.workdir / f"issuer-{token_format}.toml"
        text = CONFIG.read_text("utf-8").replace(CONFIGURED_MCP_RESOURCE, self.mcp_url)
        # Top-level keys must precede the [[clients]] tables: prepend the format.
        config.write_text(f'token_format = "{token_format}"\n' + text)
        args = [sys.executable, "-m", "scopegate", "issuer", "serve", "--config", str(config),
                "--port", str(port), "--log-level", "warning"]  # fmt: skip
        detail = f"scopegate issuer serve, {token_format.upper()} access tokens"
        well_known = "/.well-known/oauth-authorization-server"
        return self.process("authorization server", detail, args, self.issuer_url, well_known)

    def api(
        self, name: str, env: dict[str, str], port: int | None = None, detail: str = ""
    ) -> contextlib.AbstractContextManager[None]:
        """Example *name* served by examples/serve.py; its URL is ``self.api_url``."""
        port = port or free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        args = [sys.executable, str(HERE / "serve.py"), name, "--port", str(port)]
        detail = detail or f"the {name} example"
        return self.process("resource server", detail, args, self.api_url, "/public", env)

    def metadata(self) -> dict[str, Any]:
        """The issuer's RFC 8414 metadata."""
        url = f"{self.issuer_url}/.well-known/oauth-authorization-server"
        data: dict[str, Any] = self.client.get(url).json()
        return data

    # -- narration ---------------------------------------------------------------------

    def step(self, text: str) -> None:
        print(f"\n  {text}")

    def record(
        self,
        who: str,
        what: str,
        response: httpx.Response,
        expected: int,
        summary: str,
        expected_error: str | None = None,
        meanings: dict[tuple[int, str | None], str] | None = None,
        meaning: str | None = None,
    ) -> None:
        """Print one exchange (who, the call and its status, the answer, its meaning)."""
        error = _error_of(response)
        status = response.status_code
        passed = status == expected and (expected_error is None or error == expected_error)
        if expected == 401 and expected_error is None and error is not None:
            passed = False  # RFC 6750 §3.1: no error code when no token was sent
        self.checks += 1
        mark = "ok  " if passed else "FAIL"
        print(f"    [{mark}] {who}: {what} -> {status}")
        print(f"           {summary}")
        table = MEANINGS if meanings is None else meanings
        meaning = meaning or table.get((status, error)) or table.get((status, None))
        if meaning:
            print(f"           means: {meaning}")
        if not passed:
            self.failures.append(f"{who}: {what}: got {status} {error}, expected {expected}")
        if time.monotonic() - self.started > TIME_BUDGET:
            raise RuntimeError(f"the demo ran over its {TIME_BUDGET:.0f} s budget")

    def token(self, who: str, client: tuple[str, str], **form: str) -> dict[str, Any]:
        """The client asks the authorization server's token endpoint for a token."""
        shown = " ".join(
            f"{k}={v!r}" if k == "scope" else f"{k}={v}"
            for k, v in form.items()
            if k not in ("password", "refresh_token")
        )
        response = self.client.post(self.meta["token_endpoint"], data=form, auth=client)
        body: dict[str, Any] = response.json()
        if response.status_code == 200:
            parts = [f"access_token={short(body['access_token'])}"]
            if "refresh_token" in body:
                parts.append(f"refresh_token={short(body['refresh_token'])}")
            parts.append(f"scope={body.get('scope')!r}")
            summary = ", ".join(parts)
        else:
            summary = f"error={body.get('error')}"
        what = f"POST /token to the authorization server ({shown})"
        self.record(who, what, response, 200, summary, meanings=TOKEN_MEANINGS)
        return body

    def call(
        self,
        who: str,
        method: str,
        path: str,
        token: str | None,
        expected: int,
        error: str | None = None,
        body: Any = None,
    ) -> httpx.Response:
        """The client calls the resource server; check the status and the RFC 6750 error."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = self.client.request(method, self.api_url + path, headers=headers, json=body)
        challenge = response.headers.get("www-authenticate")
        if challenge:
            summary = f"WWW-Authenticate: {challenge}"
        else:
            summary = response.text.strip().replace("\n", " ")
            summary = summary if len(summary) <= 90 else summary[:87] + "..."
        self.record(who, f"{method} {path}", response, expected, summary, error)
        return response

    # -- the story ---------------------------------------------------------------------

    def act_client_credentials(self) -> None:
        print("\nAct 1 - the client-credentials grant: a service calls the API as itself")
        print("  (JWT access tokens, RFC 9068: the API checks them with the issuer's keys)")
        svc = self.token(
            "service", SERVICE, grant_type="client_credentials", scope="items:read items:write"
        )["access_token"]
        print("           the authorization server checked the service's id and secret and")
        print("           issued a token for the API (aud) with the scopes it may have")
        self.step("The service presents its token to the resource server:")
        self.call("service", "GET", "/items", svc, 200)
        self.call("service", "POST", "/items", svc, 201, body={"name": "level"})
        self.call("service", "GET", "/admin", svc, 403, "insufficient_scope")

        self.step("Requests the resource server refuses:")
        self.call("anonymous client, no token", "GET", "/items", None, 401)
        middle = len(svc) // 2
        tampered = svc[:middle] + ("A" if svc[middle] != "A" else "B") + svc[middle + 1 :]
        self.call("service, token with one character changed", "GET", "/items", tampered, 401,
                  "invalid_token")  # fmt: skip

    def act_password(self) -> None:
        print("\nAct 2 - the password grant and its refresh token: an app signs alice in")
        print("  (a legacy grant, RFC 9700 says not to use it; the issuer enables it on request)")
        grant = self.token(
            "trusted app",
            TRUSTED_APP,
            grant_type="password",
            username=USER[0],
            password=USER[1],
            scope="items:read admin",
        )
        print("           the authorization server checked the app's credentials and alice's")
        print("           password; the token speaks for alice, the refresh token renews it")
        self.step("The app calls the resource server for alice:")
        access = grant["access_token"]
        self.call("trusted app, alice's token", "GET", "/me", access, 200)
        self.call("trusted app, alice's token", "GET", "/admin", access, 200)
        self.call("trusted app, alice's token", "POST", "/items", access, 403,
                  "insufficient_scope", body={"name": "saw"})  # fmt: skip

        self.step("Later the app swaps the refresh token for new tokens (rotation):")
        fresh = self.token(
            "trusted app",
            TRUSTED_APP,
            grant_type="refresh_token",
            refresh_token=grant["refresh_token"],
        )
        self.call("trusted app, alice's refreshed token", "GET", "/admin",
                  fresh["access_token"], 200)  # fmt: skip
        replay = self.client.post(
            self.meta["token_endpoint"],
            auth=TRUSTED_APP,
            data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
        )
        self.record(
            "trusted app",
            "POST /token to the authorization server (the used refresh token, again)",
            replay,
            400,
            f"error={replay.json().get('error')}",
            "invalid_grant",
            meanings=TOKEN_MEANINGS,
        )

    def act_mcp(self) -> None:
        print("\nAct 3 - an MCP client (official MCP Python SDK) that knows only a URL")
        print("  (RFC 9728 metadata leads it to the authorization server; RFC 8707 resource)")
        env = {"SCOPEGATE_ISSUER": self.issuer_url, "SCOPEGATE_RESOURCE": self.mcp_url}
        port = int(httpx.URL(self.mcp_url).port or 0)
        with self.api("mcp", env, port, "the mcp example, MCP SDK behind MCPGate"):
            self.parties[self.api_url] = "resource server"
            try:
                asyncio.run(self._mcp_session())
            except ImportError as exc:
                self.failures.append(f"act 3 needs the MCP SDK: pip install '.[mcp]' ({exc})")

    async def _mcp_session(self) -> None:
        import json
        import urllib.parse

        import httpx2
        from mcp import Client, MCPError
        from mcp.client.auth.extensions.client_credentials import ClientCredentialsOAuthProvider
        from mcp.client.streamable_http import streamable_http_client

        demo = self

        class Storage:
            """The SDK's TokenStorage, in memory."""

            tokens: Any = None
            client_info: Any = None

            async def get_tokens(self) -> Any:
                return self.tokens

            async def set_tokens(self, tokens: Any) -> None:
                self.tokens = tokens

            async def get_client_info(self) -> Any:
                return self.client_info

            async def set_client_info(self, info: Any) -> None:
                self.client_info = info

        async def narrate(response: Any) -> None:
            # The SDK's own HTTP traffic, as it happens: who it talks to, and what.
            await response.aread()
            request = response.request
            origin = f"{request.url.scheme}://{request.url.host}:{request.url.port}"
            party = demo.parties.get(origin, origin)
            path = request.url.path
            what = f"{request.method} {path} to the {party}"
            meanings: dict[tuple[int, str | None], str] | None = None
            meaning = None
            if request.method == "POST" and path == "/mcp":
                with contextlib.suppress(ValueError, AttributeError):
                    body = json.loads(request.content)
                    name = (body.get("params") or {}).get("name")
                    what += f" ({body.get('method')}{' ' + name if name else ''})"
                if response.status_code == 401:
                    meaning = (
                        "no token yet: the challenge names the scope to ask for first and "
                        "where this server's metadata is (resource_metadata)"
                    )
            elif "oauth-protected-resource" in path:
                meaning = "public, no token needed: it names the authorization server to ask"
            elif "oauth-authorization-server" in path:
                meaning = "public, no token needed: it says where the token endpoint is"
            elif path.endswith("/token"):
                form = dict(urllib.parse.parse_qsl(request.content.decode()))
                asked = {k: form[k] for k in ("grant_type", "scope", "resource") if k in form}
                what += " (" + " ".join(f"{k}={v}" for k, v in asked.items()) + ")"
                meanings = TOKEN_MEANINGS
            status = response.status_code
            summary = _mcp_summary(response)
            demo.record("MCP client", what, response, status, summary, None, meanings, meaning)

        self.step(f"The MCP client is given {self.mcp_url} and its client credentials:")
        provider = ClientCredentialsOAuthProvider(
            server_url=self.mcp_url,
            storage=Storage(),
            client_id=MCP_AGENT[0],
            client_secret=MCP_AGENT[1],
            issuer=self.issuer_url,
        )
        hooks = {"response": [narrate]}
        before = self.checks
        async with (
            httpx2.AsyncClient(auth=provider, timeout=30, event_hooks=hooks) as http,
            Client(streamable_http_client(self.mcp_url, http_client=http)) as client,
        ):
            await client.list_tools()
            await client.call_tool("list_items", {})
            self.step("It calls a tool its token has no scope for (create_item: items:write):")
            try:
                await client.call_tool("create_item", {"name": "drill"})
            except MCPError as exc:
                print(f"           the SDK raised MCPError {exc.error.code}: {exc.error.message}")
                print("           (it stepped up: asked for items:write too, was granted only what")
                print("           mcp-agent may have, items:read; the call stays refused, the")
                print("           connection stays open)")
            else:
                self.failures.append("MCP client: create_item was not refused")
        if self.checks == before:
            self.failures.append("MCP client: no traffic was seen")

    def act_opaque(self) -> None:
        print("\nAct 4 - opaque access tokens, checked by introspection (RFC 7662)")
        print("  (the API asks the authorization server about each token it has not seen)")
        self.meta = self.metadata()
        env = {
            "SCOPEGATE_ISSUER": self.issuer_url,
            "SCOPEGATE_AUDIENCE": AUDIENCE,
            "SCOPEGATE_INTROSPECTION_URI": self.meta["introspection_endpoint"],
            "SCOPEGATE_INTROSPECTION_CLIENT_ID": API_CLIENT[0],
            "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": API_CLIENT[1],
            "SCOPEGATE_INTROSPECTION_CACHE_TTL": str(INTROSPECTION_CACHE_TTL),
        }
        with self.api("fastapi", env, detail="the fastapi example, introspecting"):
            self.step("The service's token works until the service revokes it (RFC 7009):")
            svc = self.token(
                "service", SERVICE, grant_type="client_credentials", scope="items:read"
            )["access_token"]
            self.call("service", "GET", "/items", svc, 200)
            revoked = self.client.post(
                self.meta["revocation_endpoint"],
                auth=SERVICE,
                data={"token": svc, "token_type_hint": "access_token"},
            )
            revoke_path = httpx.URL(self.meta["revocation_endpoint"]).path
            self.record(
                "service",
                f"POST {revoke_path} to the authorization server (its own token)",
                revoked,
                200,
                "(an empty 200, RFC 7009 §2.2)",
                meaning="revoked: the authorization server now answers 'inactive' for it",
            )
            # The API may reuse an introspection answer for the cache TTL; that TTL is
            # the revocation delay you choose (SCOPEGATE_INTROSPECTION_CACHE_TTL).
            time.sleep(INTROSPECTION_CACHE_TTL + 0.2)
            self.call("service, its revoked token", "GET", "/items", svc, 401, "invalid_token")
            self.call("a stranger, with a token the issuer never issued", "GET", "/admin",
                      "not-a-token-we-issued", 401, "invalid_token")  # fmt: skip

    def run(self) -> int:
        print("scopegate demo: OAuth 2.0 between its three parties\n")
        print(f"  {'client':<{WIDTH}} a program that wants to call an API (played by this script)")
        print(f"  {'authorization server':<{WIDTH}} checks who the client is, issues access tokens")
        print(f"  {'resource server':<{WIDTH}} the API: serves a request whose token is valid")
        print(f"  {'':<{WIDTH}} and carries the scope the route needs\n")
        try:
            with self.issuer("jwt"):
                self.meta = self.metadata()
                env = {"SCOPEGATE_ISSUER": self.issuer_url, "SCOPEGATE_AUDIENCE": AUDIENCE}
                with self.api(
                    "starlette", env, detail="the starlette example, JWTs checked locally"
                ):
                    self.act_client_credentials()
                    self.act_password()
                self.act_mcp()
            print()
            with self.issuer("opaque"):
                self.act_opaque()
        except (RuntimeError, httpx.HTTPError, KeyError, ValueError) as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
            print(f"\n  stopped: {type(exc).__name__}: {exc}")
        finally:
            self.client.close()
        elapsed = time.monotonic() - self.started
        if self.failures:
            print(f"\n{len(self.failures)} unexpected outcome(s) in {elapsed:.1f} s:")
            for failure in self.failures:
                print(f"  - {failure}")
            return 1
        print("\nIn every act the client got a token from the authorization server and showed it")
        print("to the resource server, which checked it (locally for a JWT, by asking the")
        print("authorization server for an opaque one) and answered: 2xx, or a 401 or 403")
        print("whose WWW-Authenticate challenge says what the client should do next.")
        print(f"\nAll {self.checks} outcomes as expected; everything stopped ({elapsed:.1f} s).")
        return 0


def _mcp_summary(response: Any) -> str:
    """One line about an answer the MCP client received."""
    challenge = response.headers.get("www-authenticate")
    if challenge:
        return f"WWW-Authenticate: {challenge}"
    path = response.request.url.path
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip().replace("\n", " ")
        return text if len(text) <= 90 else text[:87] + "..."
    if "oauth-protected-resource" in path:
        return f"RFC 9728 metadata: authorization_servers={body.get('authorization_servers')}"
    if "oauth-authorization-server" in path:
        return f"RFC 8414 metadata: token_endpoint={body.get('token_endpoint')}"
    if path.endswith("/token") and "access_token" in body:
        return f"access_token={short(body['access_token'])}, scope={body.get('scope')!r}"
    result = body.get("result") if isinstance(body, dict) else None
    if isinstance(result, dict) and "tools" in result:
        return "JSON-RPC result: tools " + ", ".join(t.get("name", "?") for t in result["tools"])
    if isinstance(result, dict) and result.get("content"):
        text = str(result["content"][0].get("text", ""))
        return "JSON-RPC result: " + (text if len(text) <= 70 else text[:67] + "...")
    if isinstance(result, dict):
        return "JSON-RPC result"
    text = str(body)
    return text if len(text) <= 90 else text[:87] + "..."


def main() -> int:
    """Run the demo; 0 when every outcome was the expected one."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="scopegate-demo-") as workdir:
        return Demo(Path(workdir)).run()


if __name__ == "__main__":
    sys.exit(main())
