"""Several issuers on one API (IssuerRouter) and step-up authentication (RFC 9470)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
import sys
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from scopegate import (
    ConfigurationError,
    GuardOptions,
    InsufficientUserAuthenticationError,
    InvalidTokenError,
    IssuerRouter,
    JWTVerifier,
    ProtectedResource,
    ServiceUnavailableError,
    from_env,
    require_scope,
)
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.presets import entra_v1_v2
from scopegate.testing import LocalIssuer, SigningKey
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware
from tests.servers import free_port, run_asgi, run_process, run_wsgi

ALPHA = LocalIssuer(issuer="https://alpha.test", audience="api://alpha")
BETA = LocalIssuer(issuer="https://beta.test", audience="api://beta")


def router(**kwargs: Any) -> IssuerRouter:
    return IssuerRouter([ALPHA.verifier(), BETA.verifier()], **kwargs)


def test_tokens_are_routed_by_their_issuer() -> None:
    """Each issuer's token is judged by its own verifier (its keys, its audience)."""
    r = router()
    assert r.verify(ALPHA.make_token(["a"])).issuer == "https://alpha.test"
    assert r.verify(BETA.make_token(["b"])).issuer == "https://beta.test"
    # Beta's audience on an alpha token: alpha's verifier refuses it.
    with pytest.raises(InvalidTokenError) as info:
        r.verify(ALPHA.make_token(["a"], aud="api://beta"))
    assert info.value.reason == "wrong_audience"
    # A token claiming alpha but signed with beta's key: alpha's keys refuse it.
    forged = BETA.make_token(["a"], iss="https://alpha.test", aud="api://alpha")
    with pytest.raises(InvalidTokenError):
        r.verify(forged)


def test_untrusted_and_malformed_issuers_are_refused() -> None:
    """An unknown iss is untrusted_issuer; a missing or mistyped one is a bad token."""
    r = router()
    other = LocalIssuer(issuer="https://gamma.test")
    for token, reason in (
        (other.make_token(["a"]), "untrusted_issuer"),
        (ALPHA.make_token(["a"], iss=None), "missing_claim"),
        (ALPHA.make_token(["a"], iss=7), "bad_claim_type"),
        ("a.b.c", "malformed"),
    ):
        with pytest.raises(InvalidTokenError) as info:
            r.verify(token)
        assert info.value.reason == reason


class _Wrapped:
    """A TokenVerifier that is not a JWTVerifier (a custom one, in a mapping)."""

    def __init__(self, inner: JWTVerifier) -> None:
        self.inner = inner

    def verify(self, token: str) -> Any:
        return self.inner.verify(token)

    async def averify(self, token: str) -> Any:
        return await self.inner.averify(token)


def _signed(issuer: LocalIssuer, payload: str) -> str:
    """*payload* as written (member order, escapes, duplicates) signed by *issuer*."""
    header = json.dumps({"alg": issuer.key.alg, "kid": issuer.key.kid, "typ": "at+jwt"})
    return issuer.key.sign_bytes(header.encode(), payload.encode())


def _claims_text(issuer: LocalIssuer, before: str = "", after: str = "") -> str:
    """ALPHA-style claims as JSON text without iss, with *before* and *after* spliced in."""
    claims = issuer.claims(["a"])
    del claims["iss"]
    body = json.dumps(claims)[1:-1]
    return "{" + before + body + after + "}"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"iss":"https://a.test"}', "https://a.test"),
        ('{ "iss" : "https://a.test" , "x": 1}', "https://a.test"),
        # Nested members named iss (an act chain) come before the top-level one.
        (
            '{"act":{"iss":"https://x.test","act":{"iss":"y"}},"iss":"https://a.test"}',
            "https://a.test",
        ),
        # The string "iss" as a value, and inside other strings, is not a member.
        ('{"aud":"iss","note":"say \\"iss\\": \\"no\\"","iss":"https://a.test"}', "https://a.test"),
        ('{"x":["{","iss"],"iss":"https://a.test"}', "https://a.test"),
        # A value with escapes is decoded (some encoders escape "/").
        ('{"iss":"https:\\/\\/a.test"}', "https://a.test"),
    ],
)
def test_the_issuer_is_found_without_parsing(payload: str, expected: str) -> None:
    """The pre-signature scan finds the top-level iss member whatever surrounds it."""
    from scopegate._issuers import _issuer_of

    assert _issuer_of(payload.encode()) == expected


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{}", "missing_claim"),
        ('{"act":{"iss":"https://a.test"}}', "missing_claim"),
        ('{"x":"iss"}', "missing_claim"),
        ('{"iss":7}', "bad_claim_type"),
        ('{"iss":{"a":1}}', "bad_claim_type"),
        ('{"iss":""}', "bad_claim_type"),
        ('{"iss":"\\ud800"}', "malformed"),
        ('{"iss":"\\q"}', "malformed"),
        ('{"x":[' + ",".join(['{"iss":"n"}'] * 20) + '],"iss":"https://a.test"}', "malformed"),
    ],
)
def test_the_issuer_scan_refuses(payload: str, reason: str) -> None:
    """No top-level string iss is a bad token before any signature check; so is a payload
    naming more issuers than any real token (an act chain names a few)."""
    from scopegate._issuers import _issuer_of

    with pytest.raises(InvalidTokenError) as info:
        _issuer_of(payload.encode())
    assert info.value.reason == reason


def test_a_payload_read_two_ways_is_refused() -> None:
    """Where the quick scan and the strict parser could disagree, the token is refused:
    duplicate members by the strict parser, anything else by the router's check that the
    verified iss is the one it routed by, whatever the verifier's own settings."""
    duplicate = _signed(ALPHA, _claims_text(ALPHA, '"iss":"https://alpha.test",', ',"iss":"x"'))
    with pytest.raises(InvalidTokenError) as info:
        router().verify(duplicate)
    assert info.value.reason == "malformed"
    # An escaped backslash the scan drops: it routes to alpha, whose token says otherwise.
    skewed = _signed(ALPHA, _claims_text(ALPHA, '"iss":"https://alpha.test\\\\",'))
    with pytest.raises(InvalidTokenError) as info:
        router().verify(skewed)
    assert info.value.reason == "wrong_issuer"
    # A verifier of another kind that accepts that iss: the router's own check refuses it.
    lenient = ALPHA.verifier(issuer="https://alpha.test\\", cache_verified=False)
    assert lenient.verify(skewed).issuer == "https://alpha.test\\"
    mapped = IssuerRouter({"https://alpha.test": _Wrapped(lenient)})
    for verify in (mapped.verify, lambda token: asyncio.run(mapped.averify(token))):
        with pytest.raises(InvalidTokenError) as info:
            verify(skewed)
        assert info.value.reason == "wrong_issuer"
    # A JWTVerifier mapped to another issuer than its own is a configuration mistake.
    with pytest.raises(ConfigurationError):
        IssuerRouter({"https://alpha.test": lenient})
    # A name spelled with an escape is not seen by the scan: no issuer, before any check.
    escaped = _signed(ALPHA, _claims_text(ALPHA, '"\\u0069ss":"https://alpha.test",'))
    with pytest.raises(InvalidTokenError) as info:
        router().verify(escaped)
    assert info.value.reason == "missing_claim"


def test_each_issuer_keeps_its_own_token_cap() -> None:
    """The router splits a token under the largest cap of its verifiers, once; a verifier
    with a smaller cap still refuses a longer token as too long (the split is reused only
    within its own cap)."""
    r = IssuerRouter(
        [ALPHA.verifier(max_token_length=1024), BETA.verifier(max_token_length=16384)]
    )
    assert r.max_token_length == 16384
    long_alpha = ALPHA.make_token(["a"], pad="x" * 2000)
    with pytest.raises(InvalidTokenError) as info:
        r.verify(long_alpha)
    assert info.value.reason == "too_long"
    assert r.verify(ALPHA.make_token(["a"])).issuer == "https://alpha.test"
    assert r.verify(BETA.make_token(["b"], pad="x" * 2000)).issuer == "https://beta.test"


def test_router_needs_issuers_and_refuses_duplicates() -> None:
    """Configuration mistakes fail at construction."""
    with pytest.raises(ConfigurationError):
        IssuerRouter([])
    with pytest.raises(ConfigurationError):
        IssuerRouter([ALPHA.verifier(), ALPHA.verifier()])


def test_cached_hits_need_no_routing() -> None:
    """A repeated token is answered from its issuer's cache."""
    r = router()
    token = BETA.make_token(["b"])
    first = r.verify(token)
    assert r.cached(token) is first
    assert asyncio.run(r.averify(token)) is first


def test_entra_v1_and_v2_on_one_api() -> None:
    """The Entra preset routes v1 and v2 tokens to their own issuer and audience."""
    tenant = "00000000-0000-0000-0000-000000000001"
    key = SigningKey.generate("RS256")
    r = entra_v1_v2(tenant, v1_audience="api://orders", v2_audience="app-id", keys=key.jwks())
    now = int(time.time())
    base = {"sub": "s", "iat": now, "exp": now + 600}
    v1 = key.sign(
        {**base, "iss": f"https://sts.windows.net/{tenant}/", "aud": "api://orders", "ver": "1.0"},
        {"typ": "JWT"},
    )
    v2 = key.sign(
        {
            **base,
            "iss": f"https://login.microsoftonline.com/{tenant}/v2.0",
            "aud": "app-id",
            "ver": "2.0",
        },
        {"typ": "JWT"},
    )
    assert r.verify(v1).issuer.startswith("https://sts.windows.net/")  # type: ignore[union-attr]
    assert r.verify(v2).issuer.endswith("/v2.0")  # type: ignore[union-attr]


class _CountingOpaque:
    """An introspection stand-in: accepts every token, counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def verify(self, token: str) -> Any:
        self.calls += 1
        return ALPHA.verifier().verify(ALPHA.make_token(["opaque"]))

    async def averify(self, token: str) -> Any:
        return self.verify(token)


@pytest.mark.parametrize(
    ("token", "route"),
    [
        pytest.param("opaque-token-value", "introspection", id="opaque"),
        pytest.param("x" * 9000, "introspection", id="long-opaque"),
        pytest.param("a..b", "malformed", id="empty-segment"),
        pytest.param("a.b." + "c" * 9000, "too_long", id="long-jws"),
        pytest.param("a.b.c.d", "introspection", id="four-parts"),
    ],
)
def test_token_shape_picks_jwt_or_introspection(token: str, route: str) -> None:
    """Three dot-separated parts make a JWT (refused when malformed or too long); any
    other shape goes to the one introspection verifier, whatever its length."""
    opaque = _CountingOpaque()
    r = router(introspection=opaque)
    if route == "introspection":
        assert r.verify(token).scopes == frozenset({"opaque"})
        assert opaque.calls == 1
        return
    with pytest.raises(InvalidTokenError) as info:
        r.verify(token)
    assert info.value.reason == route
    assert opaque.calls == 0


def test_resolved_issuers_use_their_cache_and_are_closed() -> None:
    """A token of a resolved issuer is verified once, then answered from that issuer's
    cache; close() reaches resolved verifiers too."""
    verifier = BETA.verifier()
    checked = 0
    finish = verifier._finish

    def counting_finish(*args: Any) -> Any:
        nonlocal checked
        checked += 1
        return finish(*args)

    verifier._finish = counting_finish  # type: ignore[method-assign]
    closed: list[str] = []
    verifier.close = lambda: closed.append("beta")  # type: ignore[method-assign]
    r = IssuerRouter([ALPHA.verifier()], resolver=lambda iss: verifier)
    token = BETA.make_token(["b"])
    first = r.verify(token)
    assert r.verify(token) is first
    assert asyncio.run(r.averify(token)) is first
    assert checked == 1  # one signature check: later calls hit beta's cache
    r.close()
    assert closed == ["beta"]


# -- resolvers --------------------------------------------------------------------------


def test_resolver_answers_are_cached_and_bounded() -> None:
    """A resolver is asked once per issuer; its answers (trusted or not) stay bounded."""
    asked: Counter[str] = Counter()

    def resolve(issuer: str) -> JWTVerifier | None:
        asked[issuer] += 1
        return BETA.verifier() if issuer == "https://beta.test" else None

    r = IssuerRouter([ALPHA.verifier()], resolver=resolve, max_resolved=64)
    for _ in range(3):
        assert r.verify(BETA.make_token(["b"], jti=secrets.token_hex(4))).subject
    assert asked["https://beta.test"] == 1
    for _ in range(500):
        junk = LocalIssuer(issuer=f"https://t{secrets.token_hex(6)}.test", key=ALPHA.key)
        with pytest.raises(InvalidTokenError):
            r.verify(junk.make_token(["a"]))
    assert len(r._resolved) <= 64


@pytest.mark.anyio
async def test_async_resolver_and_single_flight() -> None:
    """An async resolver is awaited once for concurrent first uses of one issuer."""
    calls = 0

    async def resolve(issuer: str) -> JWTVerifier | None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return BETA.verifier()

    r = IssuerRouter([ALPHA.verifier()], resolver=resolve)
    tokens = [BETA.make_token(["b"], jti=str(i)) for i in range(10)]
    results = await asyncio.gather(*(r.averify(t) for t in tokens))
    assert len(results) == 10
    assert calls == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("failure", ["raises", "hangs", "wrong-type"])
def test_a_failing_resolver_is_a_503(mode: str, failure: str) -> None:
    """A resolver that raises, hangs or answers nonsense is an outage (503), not a 500."""

    def resolve(issuer: str) -> Any:
        if failure == "raises":
            raise RuntimeError("directory down")
        if failure == "hangs":
            time.sleep(5)
        return "not a verifier"

    r = IssuerRouter([ALPHA.verifier()], resolver=resolve, resolver_timeout=0.3)
    token = BETA.make_token(["b"])
    started = time.monotonic()
    call = (lambda: r.verify(token)) if mode == "sync" else (lambda: asyncio.run(r.averify(token)))
    with pytest.raises(ServiceUnavailableError) as info:
        call()
    assert info.value.reason == "issuer_resolver"
    assert time.monotonic() - started < 3


# -- real issuers and a counting third party ------------------------------------------------


class _Counting(BaseHTTPRequestHandler):
    hits: Counter[str] = Counter()

    def do_GET(self) -> None:
        type(self).hits[self.path] += 1
        self.send_response(404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def counting_server() -> Iterator[tuple[str, Counter[str]]]:
    _Counting.hits = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Counting.hits
    finally:
        server.shutdown()
        server.server_close()


def _issuer_process(tmp: Path, name: str, audience: str) -> Any:
    config = tmp / f"{name}.toml"
    config.write_text(
        f"""
audience = "{audience}"
access_token_ttl = 600

[[clients]]
id = "svc-{name}"
secret = "secret-{name}-4b8e2a6c1f0d"
grant_types = ["client_credentials"]
scopes = ["items:read"]
"""
    )
    port = free_port()
    args = [
        sys.executable, "-m", "scopegate", "issuer", "serve",
        "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return port, run_process(args, port, ready_path="/.well-known/oauth-authorization-server")


def _token(url: str, name: str) -> str:
    response = httpx.post(
        url + "/token",
        data={"grant_type": "client_credentials", "scope": "items:read"},
        auth=(f"svc-{name}", f"secret-{name}-4b8e2a6c1f0d"),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def _app_for(verifier: IssuerRouter) -> Any:
    """An ASGI app answering the token's issuer; it closes *verifier* at shutdown."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await verifier.aclose()  # the async clients belong to this loop
            await send({"type": "lifespan.shutdown.complete"})
            return
        token = scope["scopegate.token"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": token.issuer.encode()})

    return app


def test_two_real_issuers_on_one_api_and_a_third_never_contacted(tmp_path: Path) -> None:
    """Two issuer processes, each with its own audience, are accepted on one API under
    uvicorn; a token naming a third issuer is refused with no request to it; a flood of
    10,000 random issuers makes no fetch and keeps memory bounded."""
    port_a, proc_a = _issuer_process(tmp_path, "a", "api://a")
    port_b, proc_b = _issuer_process(tmp_path, "b", "api://b")
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    with proc_a, proc_b, counting_server() as (url_c, hits_c):
        r = IssuerRouter(
            [
                JWTVerifier(issuer=url_a, audience="api://a"),
                JWTVerifier(issuer=url_b, audience="api://b"),
            ]
        )
        options = GuardOptions(resource=None)
        with run_asgi(ASGIMiddleware(_app_for(r), verifier=r, options=options)) as api:
            for url, name in ((url_a, "a"), (url_b, "b")):
                response = httpx.get(
                    api + "/x", headers={"Authorization": f"Bearer {_token(url, name)}"}
                )
                assert (response.status_code, response.text) == (200, url)
            third = LocalIssuer(issuer=url_c).make_token(["items:read"])
            refused = httpx.get(api + "/x", headers={"Authorization": f"Bearer {third}"})
            assert refused.status_code == 401
            assert 'error="invalid_token"' in refused.headers["www-authenticate"]
        assert sum(hits_c.values()) == 0  # no discovery, no JWKS at the third issuer
        fetches = (
            r._static[url_a].key_source.fetch_count,  # type: ignore[union-attr]
            r._static[url_b].key_source.fetch_count,  # type: ignore[union-attr]
        )
        flood_key = SigningKey.generate("ES256")
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(10_000):
            junk = LocalIssuer(issuer=f"https://{secrets.token_hex(8)}.test", key=flood_key)
            with pytest.raises(InvalidTokenError):
                r.verify(junk.make_token(["items:read"]))
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 1_000_000, grown  # nothing per issuer is kept
        assert (
            r._static[url_a].key_source.fetch_count,  # type: ignore[union-attr]
            r._static[url_b].key_source.fetch_count,  # type: ignore[union-attr]
        ) == fetches
        assert sum(hits_c.values()) == 0
        r.close()


def test_metadata_lists_every_trusted_issuer() -> None:
    """RFC 9728 authorization_servers names every issuer the router trusts."""
    from scopegate._guard import BearerGuard

    r = router()
    guard = BearerGuard(r, resource=ProtectedResource(resource="https://api.test"))
    import json

    from tests.core.views import FakeRequest

    document = guard.decide(FakeRequest(path="/.well-known/oauth-protected-resource"))
    assert json.loads(document.body)["authorization_servers"] == [  # type: ignore[union-attr]
        "https://alpha.test",
        "https://beta.test",
    ]


def test_from_env_routes_several_issuers() -> None:
    """SCOPEGATE_ISSUER with several issuers builds an IssuerRouter."""
    verifier = from_env(
        {"SCOPEGATE_ISSUER": "https://a.test https://b.test", "SCOPEGATE_AUDIENCE": "api://x"}
    )
    assert isinstance(verifier, IssuerRouter)
    assert verifier.issuers == ("https://a.test", "https://b.test")
    with pytest.raises(ConfigurationError):
        from_env(
            {
                "SCOPEGATE_ISSUER": "https://a.test https://b.test",
                "SCOPEGATE_AUDIENCE": "api://x",
                "SCOPEGATE_JWKS_URI": "https://a.test/jwks",
            }
        )


# -- step-up (RFC 9470) ---------------------------------------------------------------------

STEP = LocalIssuer()


@require_scope("items:read", acr_values=["urn:mfa"], max_age=300)
async def _stepped(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@require_scope("items:read", acr_values=["urn:mfa"], max_age=300)
def _stepped_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [])
    return [b"ok"]


STEP_CASES = [
    pytest.param({"acr": "urn:mfa", "auth_time": 0}, 200, None, id="strong-recent"),
    pytest.param({"acr": "urn:pwd", "auth_time": 0}, 401, "acr", id="weak-acr"),
    pytest.param({"auth_time": 0}, 401, "acr", id="no-acr"),
    pytest.param({"acr": "urn:mfa", "auth_time": -3600}, 401, "age", id="too-old"),
    pytest.param({"acr": "urn:mfa"}, 401, "age", id="no-auth-time"),
]


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
@pytest.mark.parametrize(("claims", "status", "why"), STEP_CASES)
def test_step_up_through_real_servers(
    kind: str, claims: dict[str, Any], status: int, why: str | None
) -> None:
    """A token too weak or too old is 401 insufficient_user_authentication naming
    acr_values and max_age (RFC 9470 §3); a strong, recent one passes."""
    extra = dict(claims)
    if "auth_time" in extra:
        extra["auth_time"] = int(time.time()) + extra["auth_time"]
    token = STEP.make_token(["items:read"], **extra)
    verifier = STEP.verifier()
    if kind == "asgi":
        server: Any = run_asgi(ASGIMiddleware(_stepped, verifier=verifier))
    else:
        server = run_wsgi(WSGIMiddleware(_stepped_wsgi, verifier=verifier))
    with server as url:
        response = httpx.get(url + "/x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    if status == 401:
        challenge = response.headers["www-authenticate"]
        assert 'error="insufficient_user_authentication"' in challenge
        assert 'acr_values="urn:mfa"' in challenge
        assert 'max_age="300"' in challenge


def test_step_up_requirement_settings_are_checked() -> None:
    """acr values must be single tokens; max_age a whole number."""
    for kwargs in ({"acr_values": "urn:mfa"}, {"acr_values": ["a b"]}, {"max_age": "300"}):
        with pytest.raises(ConfigurationError):
            require_scope("items:read", **kwargs)  # type: ignore[arg-type]


def test_step_up_error_renders_its_challenge() -> None:
    """The error alone renders acr_values and max_age."""
    error = InsufficientUserAuthenticationError(acr_values=["urn:mfa", "urn:hw"], max_age=60)
    challenge = dict(error.to_response("api").headers)["www-authenticate"]
    assert challenge == (
        'Bearer realm="api", error="insufficient_user_authentication", '
        'error_description="A stronger or more recent authentication is required", '
        'acr_values="urn:mfa urn:hw", max_age="60"'
    )
