"""RedisStore against a real redis-server: shared state between issuer instances."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator

import httpx
import pytest

from scopegate.issuer import (
    Issuer,
    IssuerConfig,
    RedisStore,
    SigningKey,
    SigningKeySet,
    StoreUnavailableError,
    create_wsgi_app,
)
from scopegate.issuer._store import RefreshTokenRecord
from tests.issuer.conftest import (
    AUDIENCE,
    Caller,
    run_waitress,
    standard_clients,
    standard_users,
)
from tests.servers import RedisServer, free_port, run_asgi

pytestmark = pytest.mark.redis
PW = {"grant_type": "password", "username": "alice", "password": "alice-pw"}
KEYS = SigningKeySet(current=SigningKey.generate("ES256"))


def make(url: str, issuer: str = "https://auth.example", **settings: object) -> Issuer:
    config = IssuerConfig(issuer=issuer, audience=AUDIENCE, allow_password_grant=True, **settings)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Issuer(
            config,
            clients=standard_clients(),
            users=standard_users(),
            keys=KEYS,
            store=RedisStore(url),
        )


@contextlib.contextmanager
def pair(url: str, **settings: object) -> Iterator[tuple[Caller, Caller]]:
    first, second = make(url, **settings), make(url, **settings)
    try:
        yield Caller(first), Caller(second)
    finally:
        first.close()
        second.close()


def body(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    assert response.status == 200, response.body
    import json

    return dict(json.loads(response.body))


def refresh(call: Caller, token: str):  # type: ignore[no-untyped-def]
    return call.token({"grant_type": "refresh_token", "refresh_token": token})


@pytest.mark.parametrize(
    "token_format", [pytest.param("jwt", id="jwt"), pytest.param("opaque", id="opaque")]
)
def test_two_issuers_share_refresh_families(redis_server: RedisServer, token_format: str) -> None:
    """Refresh in one instance, reuse detected in the other, revocation seen by both."""
    with pair(redis_server.url, token_format=token_format) as (one, two):
        r1 = body(one.token(PW))
        r2 = body(refresh(two, r1["refresh_token"]))
        assert one.introspect(r2["access_token"], auth=("rs", "rs-secret"))["active"] is True
        # reuse of R1 at instance one revokes the family for both
        assert refresh(one, r1["refresh_token"]).status == 400
        assert refresh(two, r2["refresh_token"]).status == 400
        for call in (one, two):
            assert call.introspect(r2["access_token"], auth=("rs", "rs-secret")) == {
                "active": False
            }


def test_revocation_visible_to_both(redis_server: RedisServer) -> None:
    """RV-6/RV-7: revocation through one instance is honoured by the other."""
    with pair(redis_server.url) as (one, two):
        cc = body(one.token({"grant_type": "client_credentials"}))
        assert two.revoke(cc["access_token"]).status == 200
        assert one.introspect(cc["access_token"]) == {"active": False}
        pw = body(two.token(PW))
        assert one.revoke(pw["refresh_token"]).status == 200
        assert refresh(two, pw["refresh_token"]).status == 400
        assert two.introspect(pw["access_token"]) == {"active": False}


def test_throttling_counters_are_shared(redis_server: RedisServer) -> None:
    """PW-7: failures counted in one instance lock the account in the other."""
    with pair(redis_server.url) as (one, two):
        for _ in range(5):
            one.token({**PW, "password": "nope"})
        assert two.token(PW).status == 400
        assert Caller(two.issuer, address="203.0.113.9").token(PW).status == 400


def test_concurrent_refresh_one_winner_across_instances(redis_server: RedisServer) -> None:
    """RT-7: threads racing one refresh token across two instances: one winner (Lua CAS)."""
    with pair(redis_server.url) as (one, two):
        r1 = body(one.token(PW))
        barrier = threading.Barrier(20)
        statuses: list[int] = []

        def worker(call: Caller) -> None:
            barrier.wait()
            statuses.append(refresh(call, r1["refresh_token"]).status)

        threads = [
            threading.Thread(target=worker, args=(one if i % 2 else two,)) for i in range(20)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses.count(200) == 1


def test_real_servers_share_state(redis_server: RedisServer) -> None:
    """A Starlette and a WSGI issuer behind 'a load balancer' agree through Redis."""
    port_a, port_b = free_port(), free_port()
    issuer_a = make(redis_server.url, issuer="http://127.0.0.1:9999")
    issuer_b = make(redis_server.url, issuer="http://127.0.0.1:9999")
    from scopegate.issuer import create_asgi_app

    try:
        with (
            run_asgi(create_asgi_app(issuer_a), port=port_a) as a,
            run_waitress(create_wsgi_app(issuer_b), port=port_b) as b,
        ):
            auth = ("svc", "s3cret-Value_~.")
            first = httpx.post(f"{a}/token", data=PW, auth=auth).json()
            second = httpx.post(
                f"{b}/token",
                auth=auth,
                data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
            ).json()
            reuse = httpx.post(
                f"{a}/token",
                auth=auth,
                data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
            )
            assert reuse.json()["error"] == "invalid_grant"
            info = httpx.post(
                f"{b}/introspect", data={"token": second["access_token"]}, auth=("rs", "rs-secret")
            ).json()
            assert info == {"active": False}
    finally:
        issuer_a.close()
        issuer_b.close()


def test_redis_outage_is_503_and_recovers(redis_server: RedisServer) -> None:
    """ER-4/RV-8: with Redis down the endpoints answer 503; after a restart they work."""
    issuer = make(redis_server.url)
    call = Caller(issuer)
    try:
        assert call.token({"grant_type": "client_credentials"}).status == 200
        redis_server.stop()
        for response in (
            call.token(PW),
            call.revoke("x"),
            call.request("/introspect", {"token": "x"}),
        ):
            assert response.status == 503
            assert "retry-after" in dict(response.headers)
        redis_server.start()
        assert call.token(PW).status == 200
    finally:
        issuer.close()


def test_store_records_hold_no_token_values(redis_server: RedisServer) -> None:
    """RT-11/SEC-3: Redis holds hashes only; no token, secret or password value."""
    import redis

    with pair(redis_server.url, token_format="opaque") as (one, _):
        tokens = body(one.token(PW))
        client = redis.Redis.from_url(redis_server.url)
        try:
            dump = b"".join(
                key
                + repr(client.type(key)).encode()
                + b"".join(
                    str(v).encode()
                    for v in (
                        [client.get(key)]
                        if client.type(key) == b"string"
                        else client.hgetall(key).values()
                        if client.type(key) == b"hash"
                        else client.smembers(key)
                    )
                )
                for key in client.keys("*")
            )
        finally:
            client.close()
    for secret in (tokens["access_token"], tokens["refresh_token"], "alice-pw"):
        assert secret.encode() not in dump


def test_redis_store_direct_api(redis_server: RedisServer) -> None:
    """The RedisStore CAS: rotation wins once, then reports the rotated state."""
    store = RedisStore(redis_server.url)
    try:
        record = RefreshTokenRecord(
            client_id="c",
            subject="s",
            scopes=("a",),
            audience="x",
            family_id="f1",
            issued_at=1,
            expires_at=10**10,
            idle_expires_at=10**10,
        )
        store.create_refresh_token("k1", record, 100.0)
        assert store.rotate_refresh_token("k1", "k2", record, 100.0) == "active"
        assert store.rotate_refresh_token("k1", "k3", record, 100.0) == "rotated"
        assert store.rotate_refresh_token("nope", "k4", record, 100.0) == "missing"
        store.revoke_family("f1", 100.0)
        assert store.rotate_refresh_token("k2", "k5", record, 100.0) == "revoked"
        fetched = store.get_refresh_token("k2", 100.0)
        assert fetched is not None
        assert fetched.state == "revoked"
    finally:
        store.close()


def test_redis_store_unreachable() -> None:
    """A Redis that is not there raises StoreUnavailableError, not a redis exception."""
    store = RedisStore(f"redis://127.0.0.1:{free_port()}/0")
    try:
        with pytest.raises(StoreUnavailableError):
            store.is_jti_revoked("x", 0.0)
    finally:
        store.close()


def test_two_cli_processes_share_redis(redis_server: RedisServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two `scopegate issuer serve` processes with one redis_url and one key agree."""
    import signal
    import sys

    from tests.servers import run_process

    key = SigningKey.generate("RS256")
    (tmp_path / "k.pem").write_bytes(key.private_pem())
    port_a, port_b = free_port(), free_port()
    config = tmp_path / "issuer.toml"
    config.write_text(
        f'issuer = "http://127.0.0.1:{port_a}"\naudience = "api://demo"\n'
        f'signing_key = "k.pem"\nredis_url = "{redis_server.url}"\n'
        "allow_password_grant = true\n"
        '[[clients]]\nid = "app"\nsecret = "app-secret"\n'
        'grant_types = ["password", "refresh_token"]\nscopes = ["items:read"]\n'
        '[[clients]]\nid = "rs"\nsecret = "rs-secret"\ngrant_types = []\nintrospect = true\n'
        '[[users]]\nusername = "alice"\npassword = "alice-pw"\nscopes = ["items:read"]\n'
    )

    def args(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "scopegate",
            "issuer",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
        ]

    ready = "/.well-known/oauth-authorization-server"
    with (
        run_process(args(port_a), port_a, ready_path=ready) as proc_a,
        run_process(args(port_b), port_b, ready_path=ready) as proc_b,
    ):
        a, b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
        auth = ("app", "app-secret")
        first = httpx.post(f"{a}/token", data=PW, auth=auth).json()
        second = httpx.post(
            f"{b}/token",
            auth=auth,
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        ).json()
        assert (
            httpx.post(
                f"{a}/introspect", data={"token": second["access_token"]}, auth=("rs", "rs-secret")
            ).json()["active"]
            is True
        )
        reuse = httpx.post(
            f"{a}/token",
            auth=auth,
            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        )
        assert reuse.json()["error"] == "invalid_grant"
        for base in (a, b):
            info = httpx.post(
                f"{base}/introspect",
                data={"token": second["access_token"]},
                auth=("rs", "rs-secret"),
            ).json()
            assert info == {"active": False}
        for proc in (proc_a, proc_b):
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
