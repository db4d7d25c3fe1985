"""Authorization-server outages seen over HTTP through the example processes.

The ``asgi`` and ``wsgi`` examples start while their JWKS and introspection server is
down: requests get 503 with ``Retry-After`` (never ``invalid_token``, never 500). The
server comes back on the same port and the examples recover by themselves, within the
``Retry-After`` they announced; then the introspection server sends garbage and
redirects, which are 503 again for tokens without a cached answer only.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fuzz import material
from tests.stress.figures import record
from tests.stress.procs import PYTHON, FaultServer, Proc
from tests.stress.test_load import answers


def _unavailable(response: httpx.Response) -> int:
    """Assert a proper 503 and return its Retry-After."""
    assert response.status_code == 503, response.text
    assert "invalid_token" not in response.headers["www-authenticate"]
    assert response.json()["error"] == "temporarily_unavailable"
    return int(response.headers["retry-after"])


@pytest.mark.parametrize(
    "example", [pytest.param("asgi", id="asgi"), pytest.param("wsgi", id="wsgi")]
)
def test_outage_then_recovery_without_restart(example: str, fault_server: FaultServer) -> None:
    """503 + Retry-After while the AS is down, recovery on its return, 503 on garbage."""
    env = {
        "SCOPEGATE_ISSUER": material.ISSUER,
        "SCOPEGATE_AUDIENCE": material.AUDIENCE,
        "SCOPEGATE_JWKS_URI": fault_server.url + "/jwks",
        "SCOPEGATE_INTROSPECTION_URI": fault_server.url + "/introspect",
        "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
        "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "rs-outage-secret",
    }
    fault_server.stop()
    jwt = {"authorization": "Bearer " + material.mint()}
    server = Proc(
        [PYTHON, "examples/serve.py", example, "--port", "{port}"], env=env, ready_path="/public"
    )
    with server, httpx.Client(base_url=server.url, timeout=30) as http:
        retry_after = _unavailable(http.get("/items", headers=jwt))
        _unavailable(http.get("/items", headers={"authorization": "Bearer active-1"}))
        assert http.get("/public", headers=jwt).status_code == 200
        record(f"example {example}: authorization server down")

        fault_server.start()
        fault_server.control(documents={"/jwks": material.jwks()}, tokens=answers())
        deadline = time.monotonic() + retry_after + 5
        while (response := http.get("/items", headers=jwt)).status_code == 503:
            assert time.monotonic() < deadline, "no recovery within Retry-After"
            time.sleep(0.25)
        assert response.status_code == 200, response.text
        assert http.get("/items", headers={"authorization": "Bearer active-1"}).status_code == 200

        for fault in ("garbage", "redirect", "error", "huge"):
            fault_server.control(mode=fault)
            # Cached answers keep serving; an uncached opaque token cannot be judged.
            assert http.get("/items", headers=jwt).status_code == 200
            assert (
                http.get("/items", headers={"authorization": "Bearer active-1"}).status_code == 200
            )
            _unavailable(http.get("/items", headers={"authorization": "Bearer active-3"}))
            record(f"example {example}: introspection {fault}")
        fault_server.control(mode="ok")
        assert http.get("/items", headers={"authorization": "Bearer active-3"}).status_code == 200
        assert "Traceback" not in server.output(), server.output()[-2000:]
