"""``make demo``: the whole OAuth 2.0 story, end to end, in under a minute.

It starts the companion issuer (``scopegate issuer serve`` with examples/demo_issuer.toml:
generated signing key, in-memory state, password grant enabled) and a protected example
API (``examples/serve.py``), then plays the clients and prints what each one sees:

* Act 1, JWT access tokens (RFC 9068) checked locally by the Starlette example: a service
  uses client_credentials, a trusted app uses the password grant and a refresh token;
  200, 201, 403 ``insufficient_scope``, 401 without a token and with a tampered token,
  a refreshed token working, a replayed refresh token refused.
* Act 2, opaque access tokens checked by RFC 7662 introspection in the FastAPI example:
  a token works, is revoked (RFC 7009), and is refused with 401 ``invalid_token``.

Tokens are shown truncated. Everything started is stopped, also on failure or Ctrl-C.
The exit status is 0 only when every outcome is the expected one.

Run it with ``make demo`` or ``.venv/bin/python examples/demo.py``.
"""

from __future__ import annotations

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
USER = ("alice", "correct horse battery staple")
#: Seconds the act-2 API may reuse an introspection answer: the revocation delay.
INTROSPECTION_CACHE_TTL = 1
START_TIMEOUT = 20.0
TIME_BUDGET = 55.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short(token: str) -> str:
    """A token as the transcript shows it: never in full."""
    return f"{token[:12]}... ({len(token)} chars)"


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(1)


class Demo:
    """Runs the processes, sends the requests and keeps the score."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started = time.monotonic()
        self.checks = 0
        self.failures: list[str] = []
        self.client = httpx.Client(timeout=10, trust_env=False)

    # -- processes ---------------------------------------------------------------------

    @contextlib.contextmanager
    def process(
        self,
        label: str,
        args: list[str],
        base_url: str,
        ready_path: str,
        env: dict[str, str] | None = None,
    ) -> Iterator[None]:
        """Start *args*, wait until *ready_url* answers, stop it on exit (always)."""
        log_path = self.workdir / f"{label.split()[0]}-{free_port()}.log"
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SCOPEGATE_")}
        child_env.update(env or {})
        with log_path.open("wb") as log:
            proc = subprocess.Popen(  # noqa: S603 - fixed argv built from our own paths
                args, env=child_env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent
            )
            try:
                self._wait_ready(proc, base_url + ready_path, log_path)
                print(f"  started {label:<30} {base_url}")
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
        config = self.workdir / f"issuer-{token_format}.toml"
        # Top-level keys must precede the [[clients]] tables: prepend the format.
        config.write_text(f'token_format = "{token_format}"\n' + CONFIG.read_text("utf-8"))
        port = free_port()
        self.issuer_url = f"http://127.0.0.1:{port}"
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
        return self.process(
            f"issuer ({token_format} tokens)",
            args,
            self.issuer_url,
            "/.well-known/oauth-authorization-server",
        )

    def api(self, name: str, env: dict[str, str]) -> contextlib.AbstractContextManager[None]:
        """Example *name* served by examples/serve.py; its URL is ``self.api_url``."""
        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        args = [sys.executable, str(HERE / "serve.py"), name, "--port", str(port)]
        return self.process(f"API ({name} example)", args, self.api_url, "/public", env)

    def metadata(self) -> dict[str, Any]:
        """The issuer's RFC 8414 metadata."""
        url = f"{self.issuer_url}/.well-known/oauth-authorization-server"
        data: dict[str, Any] = self.client.get(url).json()
        return data

    # -- clients -----------------------------------------------------------------------

    def token(self, who: str, client: tuple[str, str], **form: str) -> dict[str, Any]:
        """POST to the token endpoint as *client* and show the answer."""
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
        self.record(f"{who}: POST /token {shown}", response.status_code, 200, summary)
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
        """Call the API as *who* and check the status (and the RFC 6750 error code)."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        response = self.client.request(method, self.api_url + path, headers=headers, json=body)
        challenge = response.headers.get("www-authenticate")
        if challenge:
            summary = f"WWW-Authenticate: {challenge}"
        else:
            summary = response.text.strip().replace("\n", " ")
            summary = summary if len(summary) <= 90 else summary[:87] + "..."
        ok = response.status_code == expected and (
            error is None or (challenge is not None and f'error="{error}"' in challenge)
        )
        if expected == 401 and error is None and challenge and "error=" in challenge:
            ok = False  # RFC 6750 §3.1: no error code when no token was sent
        self.record(f"{who}: {method} {path}", response.status_code, expected, summary, ok)
        return response

    def record(
        self, what: str, status: int, expected: int, summary: str, ok: bool | None = None
    ) -> None:
        passed = status == expected if ok is None else ok
        self.checks += 1
        mark = "ok  " if passed else "FAIL"
        print(f"    [{mark}] {what}")
        print(f"           -> {status}  {summary}")
        if not passed:
            self.failures.append(f"{what}: got {status}, expected {expected}")
        if time.monotonic() - self.started > TIME_BUDGET:
            raise RuntimeError(f"the demo ran over its {TIME_BUDGET:.0f} s budget")

    # -- the story ---------------------------------------------------------------------

    def act_jwt(self) -> None:
        print("\nAct 1 - JWT access tokens (RFC 9068), verified locally by the API")
        with self.issuer("jwt"):
            env = {"SCOPEGATE_ISSUER": self.issuer_url, "SCOPEGATE_AUDIENCE": AUDIENCE}
            with self.api("starlette", env):
                self.meta = self.metadata()
                print("\n  A back-end service authenticates as itself (client_credentials):")
                svc = self.token(
                    "service",
                    SERVICE,
                    grant_type="client_credentials",
                    scope="items:read items:write",
                )["access_token"]
                self.call("service", "GET", "/items", svc, 200)
                self.call("service", "POST", "/items", svc, 201, body={"name": "level"})
                self.call("service", "GET", "/admin", svc, 403, "insufficient_scope")

                print("\n  Requests the API refuses:")
                self.call("anonymous", "GET", "/items", None, 401)
                middle = len(svc) // 2
                tampered = svc[:middle] + ("A" if svc[middle] != "A" else "B") + svc[middle + 1 :]
                self.call("tampered token", "GET", "/items", tampered, 401, "invalid_token")

                print("\n  A trusted first-party app signs alice in (password grant):")
                grant = self.token(
                    "trusted app",
                    TRUSTED_APP,
                    grant_type="password",
                    username=USER[0],
                    password=USER[1],
                    scope="items:read admin",
                )
                self.call("alice", "GET", "/me", grant["access_token"], 200)
                self.call("alice", "GET", "/admin", grant["access_token"], 200)
                self.call(
                    "alice",
                    "POST",
                    "/items",
                    grant["access_token"],
                    403,
                    "insufficient_scope",
                    body={"name": "saw"},
                )

                print("\n  The app refreshes alice's token (refresh_token grant, rotation):")
                fresh = self.token(
                    "trusted app",
                    TRUSTED_APP,
                    grant_type="refresh_token",
                    refresh_token=grant["refresh_token"],
                )
                self.call("alice (refreshed)", "GET", "/admin", fresh["access_token"], 200)
                replay = self.client.post(
                    self.meta["token_endpoint"],
                    auth=TRUSTED_APP,
                    data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]},
                )
                self.record(
                    "trusted app: POST /token replaying the used refresh token",
                    replay.status_code,
                    400,
                    f"error={replay.json().get('error')}",
                    replay.status_code == 400 and replay.json().get("error") == "invalid_grant",
                )

    def act_opaque(self) -> None:
        print("\nAct 2 - opaque access tokens, checked by introspection (RFC 7662)")
        with self.issuer("opaque"):
            self.meta = self.metadata()
            env = {
                "SCOPEGATE_ISSUER": self.issuer_url,
                "SCOPEGATE_AUDIENCE": AUDIENCE,
                "SCOPEGATE_INTROSPECTION_URI": self.meta["introspection_endpoint"],
                "SCOPEGATE_INTROSPECTION_CLIENT_ID": API_CLIENT[0],
                "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": API_CLIENT[1],
                "SCOPEGATE_INTROSPECTION_CACHE_TTL": str(INTROSPECTION_CACHE_TTL),
            }
            with self.api("fastapi", env):
                print("\n  The service's token works until it is revoked (RFC 7009):")
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
                    f"service: POST {revoke_path} (its own token)",
                    revoked.status_code,
                    200,
                    "revoked",
                )
                # The API may reuse an introspection answer for the cache TTL; that TTL is
                # the revocation delay you choose (SCOPEGATE_INTROSPECTION_CACHE_TTL).
                time.sleep(INTROSPECTION_CACHE_TTL + 0.2)
                self.call("service (revoked)", "GET", "/items", svc, 401, "invalid_token")
                self.call("service", "GET", "/admin", "not-a-token-we-issued", 401, "invalid_token")

    def run(self) -> int:
        print("scopegate demo: an issuer, a protected API and its clients")
        try:
            self.act_jwt()
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
        print(f"\nAll {self.checks} outcomes as expected; everything stopped ({elapsed:.1f} s).")
        return 0


def main() -> int:
    """Run the demo; 0 when every outcome was the expected one."""
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="scopegate-demo-") as workdir:
        return Demo(Path(workdir)).run()


if __name__ == "__main__":
    sys.exit(main())
