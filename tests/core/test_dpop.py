"""DPoP (RFC 9449) on the resource server: proofs, binding, replay, nonces, challenges.

The attack table runs through real servers: the ASGI middleware under uvicorn and the
WSGI middleware under waitress, with tokens bound to a client key (``cnf.jkt``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from scopegate import (
    ConfigurationError,
    DPoPPolicy,
    GuardOptions,
    MemoryReplayStore,
    NonceSource,
    RedisReplayStore,
    ServiceUnavailableError,
)
from scopegate._dpop import access_token_hash, normalize_url
from scopegate._flow import run
from scopegate._guard import BearerGuard
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.testing import DPoPAuth, DPoPKey, LocalIssuer, SigningKey
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware
from tests.core.views import FakeRequest
from tests.servers import RedisServer, run_asgi, run_wsgi

KEY = DPoPKey.generate()
OTHER = DPoPKey.generate()
ISSUER = LocalIssuer()


def bound_token(key: DPoPKey = KEY, **claims: Any) -> str:
    """A token bound to *key* (``cnf.jkt``)."""
    # A day: module-level tokens are minted at import, long before late tests run.
    return ISSUER.make_token(
        ["items:read"], cnf={"jkt": key.jkt}, **{"expires_in": 86400, **claims}
    )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("HTTPS://API.Example/items", "https://api.example/items", id="case"),
        pytest.param("https://api.example:443/items", "https://api.example/items", id="port"),
        pytest.param("http://api.example:80", "http://api.example/", id="empty-path"),
        pytest.param("https://api.example/a/./b/../c", "https://api.example/a/c", id="dots"),
        pytest.param("https://api.example/%7Eme", "https://api.example/~me", id="unreserved"),
        pytest.param("https://api.example/a%2fb", "https://api.example/a%2Fb", id="escape-case"),
        pytest.param("https://api.example/x?q=1#f", "https://api.example/x", id="query-fragment"),
        pytest.param("wss://api.example/ws", "https://api.example/ws", id="websocket"),
    ],
)
def test_urls_are_compared_after_rfc3986_normalisation(a: str, b: str) -> None:
    """Syntax- and scheme-based normalisation (RFC 3986 §6.2.2-6.2.3)."""
    assert normalize_url(a) == normalize_url(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param("https://api.example/items", "https://api.example/items/", id="slash"),
        pytest.param("https://api.example/items", "http://api.example/items", id="scheme"),
        pytest.param("https://api.example:8443/x", "https://api.example/x", id="other-port"),
        pytest.param("https://api.example/a%2Fb", "https://api.example/a/b", id="encoded-slash"),
    ],
)
def test_different_urls_stay_different(a: str, b: str) -> None:
    """Normalisation never makes two different resources equal."""
    assert normalize_url(a) != normalize_url(b)


def test_policy_settings_are_checked() -> None:
    """Mistyped or unsafe DPoP settings are refused."""
    for bad in (
        {"mode": "maybe"},
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"max_age": "60"},
        {"max_age": 0},
        {"replay": object()},
    ):
        with pytest.raises(ConfigurationError):
            DPoPPolicy(**bad)  # type: ignore[arg-type]


def test_memory_replay_store_fails_closed_when_full() -> None:
    """A full store refuses rather than forgets a proof that could still be replayed."""
    now = [100.0]
    store = MemoryReplayStore(maxsize=2, timer=lambda: now[0])
    assert store.first_use("a", 60)
    assert not store.first_use("a", 60)
    assert store.first_use("b", 60)
    with pytest.raises(ServiceUnavailableError):
        store.first_use("c", 60)
    now[0] += 61  # both expired: room again
    assert store.first_use("c", 60)
    assert store.first_use("a", 60)


@pytest.mark.redis
def test_redis_replay_store(redis_server: RedisServer) -> None:
    """SET NX PX: first use true, replay false, and an outage fails closed (503)."""
    store = RedisReplayStore(redis_server.url)
    assert run(store.first_use_flow("k", 30))
    assert not run(store.first_use_flow("k", 30))
    redis_server.stop()
    with pytest.raises(ServiceUnavailableError):
        run(store.first_use_flow("k2", 30))
    store.close()


def test_nonce_source_rotates_and_accepts_the_previous() -> None:
    """Nonces are HMACs of a period; the current and previous one are accepted."""
    now = [1000.0]
    source = NonceSource(b"0123456789abcdef0123", period=10, clock=lambda: now[0])
    first = source.current()
    now[0] += 10
    assert source.current() != first
    assert source.accepts(first)
    now[0] += 10
    assert not source.accepts(first)
    assert not source.accepts(None)


# -- the guard ---------------------------------------------------------------------------

ORIGIN = "https://api.example"


def guard(**dpop: Any) -> BearerGuard:
    return BearerGuard(ISSUER.verifier(), dpop=DPoPPolicy(**dpop), public_url=ORIGIN)


def dpop_request(
    token: str, proof: str | list[str] | None, *, method: str = "GET", path: str = "/items"
) -> FakeRequest:
    proofs = [] if proof is None else [proof] if isinstance(proof, str) else proof
    return FakeRequest(
        method=method, path=path, authorization=[f"DPoP {token}"], headers={"dpop": proofs}
    )


def outcome(g: BearerGuard, request: FakeRequest) -> tuple[int, str]:
    """(status, WWW-Authenticate) of a refused request; (200, "") for a token."""
    result = g.decide(request)
    if hasattr(result, "status"):
        return result.status, dict(result.headers)["www-authenticate"]  # type: ignore[union-attr]
    return 200, ""


def test_a_bound_token_with_its_proof_is_accepted_once() -> None:
    """The happy path, then the same proof again is a replay."""
    g = guard()
    token = bound_token()
    proof = KEY.proof("GET", ORIGIN + "/items", token=token)
    assert outcome(g, dpop_request(token, proof)) == (200, "")
    status, challenge = outcome(g, dpop_request(token, proof))
    assert status == 401
    assert 'DPoP realm="api", error="invalid_dpop_proof"' in challenge


def test_challenges_name_both_schemes_and_the_algorithms() -> None:
    """Bearer and DPoP accepted: one field with both challenges; the error sits in the
    challenge of the scheme the request used (RFC 9449 §7.1)."""
    g = guard()
    _, missing = outcome(g, FakeRequest())
    assert missing == 'Bearer realm="api", DPoP realm="api", algs="ES256 EdDSA PS256 RS256"'
    _, bearer = outcome(g, FakeRequest(authorization=["Bearer nope"]))
    assert bearer.startswith('Bearer realm="api", error="invalid_token"')
    assert bearer.endswith('DPoP realm="api", algs="ES256 EdDSA PS256 RS256"')
    _, dpop = outcome(g, dpop_request("nope", None))
    assert dpop.startswith('Bearer realm="api", DPoP realm="api", error="invalid_dpop_proof"')
    required = guard(mode="required")
    _, only = outcome(required, FakeRequest())
    assert only == 'DPoP realm="api", algs="ES256 EdDSA PS256 RS256"'


def test_use_dpop_nonce_hands_out_the_nonce() -> None:
    """With nonces required, a proof without one is 401 use_dpop_nonce + DPoP-Nonce."""
    source = NonceSource()
    g = guard(nonce=source)
    token = bound_token()
    result = g.decide(dpop_request(token, KEY.proof("GET", ORIGIN + "/items", token=token)))
    headers = dict(result.headers)  # type: ignore[union-attr]
    assert 'error="use_dpop_nonce"' in headers["www-authenticate"]
    assert headers["dpop-nonce"] == source.current()
    proof = KEY.proof("GET", ORIGIN + "/items", token=token, nonce=source.current())
    assert outcome(g, dpop_request(token, proof)) == (200, "")


def _hs256_proof(token: str) -> str:
    import hashlib
    import hmac

    from scopegate._jose import compact_json, encode_compact

    header = {"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}}
    claims = {
        "jti": "hs",
        "htm": "GET",
        "htu": ORIGIN + "/items",
        "iat": int(time.time()),
        "ath": access_token_hash(token),
    }
    return encode_compact(
        compact_json(header),
        claims,
        lambda data: hmac.new(b"secret", data, hashlib.sha256).digest(),
    )


def _private_jwk_proof(token: str) -> str:
    jwk = KEY.key.public_jwk()
    private = SigningKey.generate("ES256")
    # The private scalar of another key in the header: refused before anything else.
    numbers = private.private_key.private_numbers()  # type: ignore[union-attr]
    from scopegate._jose import b64url_encode

    d = b64url_encode(numbers.private_value.to_bytes(32, "big"))
    return KEY.proof("GET", ORIGIN + "/items", token=token, headers={"jwk": {**jwk, "d": d}})


TOKEN = bound_token()
OTHER_TOKEN = bound_token(OTHER)
UNBOUND = ISSUER.make_token(["items:read"], expires_in=86400)
URL = ORIGIN + "/items"


def _broken(proof: str) -> str:
    """*proof* with another signature of the same length (it cannot verify)."""
    head, _, signature = proof.rpartition(".")
    return f"{head}.{'B' if signature[0] == 'A' else 'A'}{signature[1:]}"


def test_a_proof_is_read_only_for_its_own_bound_token() -> None:
    """The token is judged before the proof, and the proof's key against the token's
    binding before the proof's signature and claims: without a valid token bound to the
    proof's key, no proof signature is checked and no proof claims are read (anyone can
    sign a proof with a key of their own)."""
    g = guard()
    forged = _broken(TOKEN)
    # A forged token with a broken proof: the token's error.
    status, challenge = outcome(g, dpop_request(forged, _broken(KEY.proof("GET", URL))))
    assert (status, 'error="invalid_token"' in challenge) == (401, True)
    # A valid token bound to KEY with OTHER's proof, unsigned: refused for the binding.
    for proof in (_broken(OTHER.proof("GET", URL, token=TOKEN)), OTHER.proof("GET", URL)):
        result = g.decide(dpop_request(TOKEN, proof))
        assert getattr(result, "status", None) == 401
        assert 'error="invalid_token"' in dict(result.headers)["www-authenticate"]  # type: ignore[union-attr]
    # Its own key with a broken signature: now the proof is checked.
    status, challenge = outcome(g, dpop_request(TOKEN, _broken(KEY.proof("GET", URL, token=TOKEN))))
    assert (status, 'error="invalid_dpop_proof"' in challenge) == (401, True)


#: (id, make request) -> the expected (status, error code in the challenge)
ATTACKS: list[Any] = [
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL + "/", token=TOKEN)),
        (401, "invalid_dpop_proof"),
        id="htu-trailing-slash",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", ORIGIN + "/other", token=TOKEN)),
        (401, "invalid_dpop_proof"),
        id="htu-path",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", "http://api.example/items", token=TOKEN)),
        (401, "invalid_dpop_proof"),
        id="htu-scheme",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", "https://API.EXAMPLE/items", token=TOKEN)),
        (200, ""),
        id="htu-host-case-ok",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", "https://api.example:443/items", token=TOKEN)),
        (200, ""),
        id="htu-default-port-ok",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL + "?a=1", token=TOKEN)),
        (200, ""),
        id="htu-query-ignored",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("POST", URL, token=TOKEN)),
        (401, "invalid_dpop_proof"),
        id="wrong-htm",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=TOKEN, iat=time.time() - 3600)),
        (401, "invalid_dpop_proof"),
        id="old-iat",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=TOKEN, iat=time.time() + 3600)),
        (401, "invalid_dpop_proof"),
        id="future-iat",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=TOKEN, iat=10**400)),
        (401, "invalid_dpop_proof"),
        id="iat-beyond-float",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, _private_jwk_proof(TOKEN)),
        (401, "invalid_dpop_proof"),
        id="private-jwk",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=TOKEN, headers={"alg": "none"})),
        (401, "invalid_dpop_proof"),
        id="alg-none",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, _hs256_proof(TOKEN)),
        (401, "invalid_dpop_proof"),
        id="alg-hs256",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=TOKEN, headers={"typ": "jwt"})),
        (401, "invalid_dpop_proof"),
        id="wrong-typ",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=OTHER_TOKEN)),
        (401, "invalid_dpop_proof"),
        id="wrong-ath",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL)), (401, "invalid_dpop_proof"), id="no-ath"
    ),
    pytest.param(
        lambda: dpop_request(OTHER_TOKEN, KEY.proof("GET", URL, token=OTHER_TOKEN)),
        (401, "invalid_token"),
        id="wrong-jkt",
    ),
    pytest.param(
        lambda: FakeRequest(path="/items", headers={"dpop": [KEY.proof("GET", URL)]}),
        (401, None),
        id="proof-without-token",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, None), (401, "invalid_dpop_proof"), id="token-without-proof"
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, [KEY.proof("GET", URL, token=TOKEN)] * 2),
        (401, "invalid_dpop_proof"),
        id="two-proofs",
    ),
    pytest.param(
        lambda: dpop_request(TOKEN, KEY.proof("GET", URL, token=TOKEN, claims={"pad": "x" * 9000})),
        (401, "invalid_dpop_proof"),
        id="oversized-proof",
    ),
    pytest.param(
        lambda: FakeRequest(path="/items", authorization=[f"Bearer {TOKEN}"]),
        (401, "invalid_token"),
        id="bearer-downgrade",
    ),
    pytest.param(
        lambda: dpop_request(
            ISSUER.make_token(["items:read"]),
            KEY.proof("GET", URL, token=ISSUER.make_token(["items:read"])),
        ),
        # The token is verified first, then the proof's key against the token's binding
        # (none), before the proof's signature and claims are read.
        (401, "invalid_token"),
        id="unbound-token-with-dpop",
    ),
]


@pytest.mark.parametrize(("make", "expected"), ATTACKS)
def test_attack_table_in_the_guard(make: Any, expected: tuple[int, str | None]) -> None:
    """Each attack is refused with the right status and error (a fresh guard each)."""
    status, challenge = outcome(guard(), make())
    assert status == expected[0]
    if expected[1]:
        assert f'error="{expected[1]}"' in challenge
    elif status == 401:
        assert "error=" not in challenge


# -- through real servers ------------------------------------------------------------------


async def _asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": scope["scopegate.token"].subject.encode()})


def _wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [environ["scopegate.token"].subject.encode()]


@pytest.fixture(params=["asgi", "wsgi"])
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """The middleware under uvicorn (ASGI) or waitress (WSGI); DPoP allowed."""
    options = GuardOptions(dpop=DPoPPolicy())
    if request.param == "asgi":
        app: Any = ASGIMiddleware(_asgi_app, verifier=ISSUER.verifier(), options=options)
        with run_asgi(app) as url:
            yield url
    else:
        app = WSGIMiddleware(_wsgi_app, verifier=ISSUER.verifier(), options=options)
        with run_wsgi(app) as url:
            yield url


def _send(url: str, token: str, proofs: list[str], method: str = "GET") -> httpx.Response:
    headers = [("Authorization", f"DPoP {token}"), *(("DPoP", p) for p in proofs)]
    return httpx.request(method, url, headers=headers, timeout=10)


def test_dpop_through_real_servers(server: str) -> None:
    """httpx with DPoPAuth succeeds; replay, wrong URL, downgrade and two proofs fail."""
    url = server + "/items"
    token = bound_token()
    with httpx.Client(auth=DPoPAuth(token, KEY)) as client:
        for _ in range(3):
            response = client.get(url)
            assert (response.status_code, response.text) == (200, "test-user")
    proof = KEY.proof("GET", url, token=token)
    assert _send(url, token, [proof]).status_code == 200
    replay = _send(url, token, [proof])
    assert replay.status_code == 401
    assert 'error="invalid_dpop_proof"' in replay.headers["www-authenticate"]
    wrong = _send(url, token, [KEY.proof("GET", server + "/other", token=token)])
    assert wrong.status_code == 401
    two = _send(url, token, [KEY.proof("GET", url, token=token)] * 2)
    assert two.status_code == 401
    downgrade = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert downgrade.status_code == 401
    assert 'error="invalid_token"' in downgrade.headers["www-authenticate"]
    assert "DPoP" in downgrade.headers["www-authenticate"]


def _closing(app: Any, store: RedisReplayStore) -> Any:
    """*app*, closing *store*'s Redis clients at lifespan shutdown, on the server's loop
    (a redis.asyncio connection belongs to the loop that opened it)."""

    async def wrapper(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await store.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    return wrapper


@pytest.mark.redis
def test_replay_is_refused_across_processes_sharing_redis(redis_server: RedisServer) -> None:
    """Two servers (two processes' worth of guards) share one Redis replay store: a proof
    used at one is a replay at the other."""
    stores = [RedisReplayStore(redis_server.url) for _ in range(2)]
    apps = [
        _closing(
            ASGIMiddleware(
                _asgi_app,
                verifier=ISSUER.verifier(),
                options=GuardOptions(dpop=DPoPPolicy(replay=store), public_url="http://api.test"),
            ),
            store,
        )
        for store in stores
    ]
    token = bound_token()
    proof = KEY.proof("GET", "http://api.test/items", token=token)
    with run_asgi(apps[0]) as first, run_asgi(apps[1]) as second:
        assert _send(first + "/items", token, [proof]).status_code == 200
        again = _send(second + "/items", token, [proof])
        assert again.status_code == 401
        assert 'error="invalid_dpop_proof"' in again.headers["www-authenticate"]
        redis_server.stop()
        fresh = KEY.proof("GET", "http://api.test/items", token=token)
        outage = _send(second + "/items", token, [fresh])
        assert outage.status_code == 503  # fails closed, never accepts unchecked


def test_websocket_proof_is_a_get_on_the_ws_url() -> None:
    """A WebSocket handshake's proof names GET and the ws URL (checked as http)."""
    g = BearerGuard(ISSUER.verifier(), dpop=DPoPPolicy())
    token = bound_token()
    request = FakeRequest(
        method="GET",
        scheme="ws",
        path="/ws",
        authorization=[f"DPoP {token}"],
        headers={
            "host": ["api.example"],
            "dpop": [KEY.proof("GET", "ws://api.example/ws", token=token)],
        },
    )
    assert outcome(g, request) == (200, "")


def test_async_path_checks_the_proof_too() -> None:
    """adecide runs the same proof checks and the replay store."""
    g = guard()
    token = bound_token()
    proof = KEY.proof("GET", URL, token=token)
    first = asyncio.run(g.adecide(dpop_request(token, proof)))
    assert not hasattr(first, "status")
    second = asyncio.run(g.adecide(dpop_request(token, proof)))
    assert getattr(second, "status", None) == 401


def test_scope_error_for_a_bound_token_goes_in_the_dpop_challenge() -> None:
    """A 403 raised after the guard (a scope decorator) for a DPoP-bound token names its
    error in the DPoP challenge, the scheme the request used; for a Bearer token in the
    Bearer one (RFC 9449 §7.1)."""
    from scopegate import InsufficientScopeError
    from scopegate._scopes import check_scopes

    g = guard()
    token = bound_token()
    accepted = g.decide(dpop_request(token, KEY.proof("GET", URL, token=token)))
    plain = ISSUER.verifier().verify(UNBOUND)
    for verified, scheme in ((accepted, "DPoP"), (plain, "Bearer")):
        with pytest.raises(InsufficientScopeError) as caught:
            check_scopes(verified, ("admin",))  # type: ignore[arg-type]
        value = dict(g.render(caught.value).headers)["www-authenticate"]
        assert f'{scheme} realm="api", error="insufficient_scope"' in value
