"""IntrospectionVerifier against a real introspection server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import pytest

from scopegate._cache import CacheEntry, MemoryCache, RedisCache
from scopegate._errors import (
    ConfigurationError,
    IntrospectionUnavailableError,
    InvalidTokenError,
)
from scopegate._flow import HTTPRunner
from scopegate._introspection import IntrospectionVerifier
from scopegate._verifier import HybridVerifier
from tests.introspection.conftest import NOW, FakeClock, active
from tests.introspection.introspection_server import IntrospectionServer, Reply

MakeVerifier = Callable[..., IntrospectionVerifier]
TOKEN = "opaque-token-0123456789abcdefghijklmnopqrstuvwxyz"


def verify_both(verifier: IntrospectionVerifier, token: str, mode: str) -> Any:
    """Run verify or averify (in a fresh loop) depending on *mode*."""
    if mode == "sync":
        return verifier.verify(token)

    async def go() -> Any:
        try:
            return await verifier.averify(token)
        finally:
            await verifier._runner.aclose()

    return asyncio.run(go())


MODES = [pytest.param("sync", id="sync"), pytest.param("async", id="async")]


@pytest.mark.parametrize("mode", MODES)
def test_active_token_maps_to_access_token(
    server: IntrospectionServer, make_verifier: MakeVerifier, mode: str
) -> None:
    """An active answer becomes an AccessToken with subject, client, scopes, exp and iss."""
    server.tokens[TOKEN] = active(iss="https://as.example", aud=["api", "other"])
    verifier = make_verifier(issuer="https://as.example", audience="api")
    token = verify_both(verifier, TOKEN, mode)
    assert token.subject == "alice"
    assert token.client_id == "svc-a"
    assert token.scopes == frozenset({"items:read", "items:write"})
    assert token.expires_at == int(NOW) + 3600
    assert token.issuer == "https://as.example"
    assert token.token == TOKEN
    assert token.claims["aud"] == ["api", "other"]
    assert token.has_scopes("items:read")
    assert not token.has_scopes("admin")


def test_scope_claims_mapping_is_configurable(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """Scopes come through the same ScopeMapping as JWTs (dotted paths, lists)."""
    server.tokens[TOKEN] = active(scope=None, realm_access={"roles": ["admin", "ops"]})
    verifier = make_verifier(scope_claims=("scope", "realm_access.roles"))
    assert verifier.verify(TOKEN).scopes == frozenset({"admin", "ops"})


@pytest.mark.parametrize(
    "auth_method",
    [
        pytest.param("client_secret_basic", id="basic"),
        pytest.param("client_secret_post", id="post"),
    ],
)
def test_request_shape(
    server: IntrospectionServer, make_verifier: MakeVerifier, auth_method: str
) -> None:
    """POST form with token and token_type_hint; credentials per RFC 6749 §2.3.1."""
    server.tokens[TOKEN] = active()
    make_verifier(auth_method=auth_method).verify(TOKEN)
    request = server.requests[-1]
    assert request.path == "/introspect"
    assert request.form["token"] == [TOKEN]
    assert request.form["token_type_hint"] == ["access_token"]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    if auth_method == "client_secret_basic":
        raw = base64.b64decode(request.headers["authorization"].removeprefix("Basic ")).decode()
        cid, _, secret = raw.partition(":")
        # The secret has '&', '=', '+', '/', ':' and a non-ASCII letter: all encoded.
        # RFC 6749 Appendix B: space becomes '+', reserved characters are %-escaped.
        assert cid == "api%3Aresource+server"
        assert secret == "s3cr%26t%3D%2B%2F%3A%C3%A9"
        assert (unquote_plus(cid), unquote_plus(secret)) == (server.client_id, server.client_secret)
        assert "client_secret" not in request.form
    else:
        assert "authorization" not in request.headers
        assert request.form["client_id"] == [server.client_id]
        assert request.form["client_secret"] == [server.client_secret]


@pytest.mark.parametrize("mode", MODES)
def test_active_answer_is_cached(
    server: IntrospectionServer, make_verifier: MakeVerifier, mode: str
) -> None:
    """Repeated verification of one token costs one introspection call."""
    server.tokens[TOKEN] = active()
    verifier = make_verifier()
    for _ in range(5):
        assert verify_both(verifier, TOKEN, mode).subject == "alice"
    assert server.calls == 1


def test_cache_stores_claims_not_decisions(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """The cache holds the AS answer under a SHA-256 key; scope checks stay with callers."""
    server.tokens[TOKEN] = active()
    cache = MemoryCache()
    verifier = make_verifier(cache=cache)
    first = verifier.verify(TOKEN)
    second = verifier.verify(TOKEN)
    assert first.has_scopes("items:read")
    assert not second.has_scopes("admin")
    [(key, (_, entry))] = list(cache._data._data.items())
    assert TOKEN not in key
    assert TOKEN[:8] not in key
    assert len(key.split(":")[1]) == 64
    assert entry.claims == server.tokens[TOKEN]
    assert TOKEN not in repr(entry)


@pytest.mark.parametrize("mode", MODES)
def test_inactive_is_invalid_token_and_negatively_cached(
    server: IntrospectionServer, make_verifier: MakeVerifier, clock: FakeClock, mode: str
) -> None:
    """active:false is 401 invalid_token, reused for negative_ttl, then asked again."""
    verifier = make_verifier(negative_ttl=10)
    for _ in range(3):
        with pytest.raises(InvalidTokenError) as info:
            verify_both(verifier, TOKEN, mode)
        assert info.value.reason == "inactive"
    assert server.calls == 1
    clock.advance(11)
    with pytest.raises(InvalidTokenError):
        verify_both(verifier, TOKEN, mode)
    assert server.calls == 2


def test_negative_caching_can_be_disabled(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """negative_ttl=0 asks the AS every time for an inactive token."""
    verifier = make_verifier(negative_ttl=0)
    for _ in range(3):
        with pytest.raises(InvalidTokenError):
            verifier.verify(TOKEN)
    assert server.calls == 3


def test_revoked_token_is_refused_after_cache_ttl(
    server: IntrospectionServer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    """cache_ttl is the revocation-delay budget (attacks H-16)."""
    server.tokens[TOKEN] = active()
    verifier = make_verifier(cache_ttl=60)
    verifier.verify(TOKEN)
    server.tokens[TOKEN] = {"active": False}
    clock.advance(59)
    assert verifier.verify(TOKEN).subject == "alice"
    clock.advance(2)
    with pytest.raises(InvalidTokenError):
        verifier.verify(TOKEN)
    assert server.calls == 2


@pytest.mark.parametrize("mode", MODES)
def test_ttl_is_capped_by_exp(
    server: IntrospectionServer, make_verifier: MakeVerifier, clock: FakeClock, mode: str
) -> None:
    """An entry lives min(exp - now, cache_ttl): a token expiring in 5 s is re-asked at 6 s."""
    server.tokens[TOKEN] = active(exp=int(NOW) + 5)
    verifier = make_verifier(cache_ttl=60, leeway=0)
    verify_both(verifier, TOKEN, mode)
    clock.advance(4)
    verify_both(verifier, TOKEN, mode)
    assert server.calls == 1
    clock.advance(2)
    with pytest.raises(InvalidTokenError) as info:
        verify_both(verifier, TOKEN, mode)
    assert info.value.reason == "expired"
    assert server.calls == 2


def test_token_without_exp_uses_cache_ttl(
    server: IntrospectionServer, make_verifier: MakeVerifier, clock: FakeClock
) -> None:
    """Without exp the entry lives cache_ttl."""
    server.tokens[TOKEN] = active(exp=None)
    verifier = make_verifier(cache_ttl=30)
    assert verifier.verify(TOKEN).expires_at is None
    clock.advance(29)
    verifier.verify(TOKEN)
    assert server.calls == 1
    clock.advance(2)
    verifier.verify(TOKEN)
    assert server.calls == 2


def test_cache_ttl_zero_disables_positive_caching(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """cache_ttl=0 introspects on every request."""
    server.tokens[TOKEN] = active()
    verifier = make_verifier(cache_ttl=0)
    verifier.verify(TOKEN)
    verifier.verify(TOKEN)
    assert server.calls == 2


def test_shared_prefix_tokens_do_not_share_entries(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """Tokens A and B sharing 60 characters are cached apart (attacks H-15)."""
    prefix = "eyJhbGciOiJSUzI1NiJ9-eyJpc3MiOiJodHRwczovL2FzLmV4YW1wbGUifQ-"
    token_a, token_b = prefix + "AAAA", prefix + "BBBB"
    server.tokens[token_a] = active()
    verifier = make_verifier()
    verifier.verify(token_a)
    with pytest.raises(InvalidTokenError):
        verifier.verify(token_b)
    assert server.calls_by_token == {token_a: 1, token_b: 1}


def test_cache_is_partitioned_by_endpoint_and_client(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """Two verifiers with different client ids on one cache do not reuse each other's answers."""
    server.tokens[TOKEN] = active()
    cache = MemoryCache()
    make_verifier(cache=cache).verify(TOKEN)
    other = make_verifier(cache=cache, client_id="other-rs", auth_method="client_secret_post")
    server.client_id = "other-rs"
    other.verify(TOKEN)
    assert server.calls == 2
    assert len(cache) == 2


def test_single_flight_asyncio(server: IntrospectionServer, make_verifier: MakeVerifier) -> None:
    """100 concurrent averify calls for one uncached token make exactly one call."""
    server.tokens[TOKEN] = active()
    server.delay = 0.3
    verifier = make_verifier()

    async def go() -> list[Any]:
        try:
            return await asyncio.gather(*(verifier.averify(TOKEN) for _ in range(100)))
        finally:
            await verifier.aclose()

    results = asyncio.run(go())
    assert server.calls == 1
    assert {r.subject for r in results} == {"alice"}


def test_single_flight_asyncio_errors_are_shared_not_cached(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """Concurrent waiters on a failing call all get 503, and the failure is not cached."""
    server.replies[TOKEN] = Reply(status=500, body=b"{}", delay=0.3)
    verifier = make_verifier()

    async def go() -> list[Any]:
        try:
            return await asyncio.gather(
                *(verifier.averify(TOKEN) for _ in range(20)), return_exceptions=True
            )
        finally:
            await verifier.aclose()

    results = asyncio.run(go())
    assert all(isinstance(r, IntrospectionUnavailableError) for r in results)
    assert server.calls == 1
    del server.replies[TOKEN]
    server.tokens[TOKEN] = active()
    assert verifier.verify(TOKEN).subject == "alice"
    assert server.calls == 2


def test_single_flight_threads(server: IntrospectionServer, make_verifier: MakeVerifier) -> None:
    """32 threads verifying one uncached token at once make exactly one call."""
    server.tokens[TOKEN] = active()
    server.delay = 0.3
    verifier = make_verifier()
    barrier = threading.Barrier(32)
    results: list[Any] = []

    def worker() -> None:
        barrier.wait()
        results.append(verifier.verify(TOKEN))

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 32
    assert server.calls == 1


# -- attacks.md section H: every malformed or hostile answer --------------------------

UNAVAILABLE = IntrospectionUnavailableError
INVALID = InvalidTokenError


def _json(obj: Any, **kwargs: Any) -> Reply:
    return Reply.json(obj, **kwargs)


MALFORMED = [
    pytest.param(_json(active(exp=int(NOW) - 3600)), INVALID, "expired", id="h1-expired"),
    pytest.param(_json(active(nbf=int(NOW) + 3600)), INVALID, "not_yet_valid", id="h2-nbf-future"),
    pytest.param(
        _json(active(iat=int(NOW) + 3600)), INVALID, "issued_in_future", id="h2-iat-future"
    ),
    pytest.param(_json({"scope": "a", "sub": "x"}), UNAVAILABLE, "bad_active", id="h3-no-active"),
    pytest.param(_json(active(active="true")), UNAVAILABLE, "bad_active", id="h4-string-true"),
    pytest.param(_json(active(active="false")), UNAVAILABLE, "bad_active", id="h4-string-false"),
    pytest.param(_json(active(active=1)), UNAVAILABLE, "bad_active", id="h4-one"),
    pytest.param(_json({"active": None}), UNAVAILABLE, "bad_active", id="h4-null"),
    pytest.param(_json({"active": 0}), UNAVAILABLE, "bad_active", id="h4-zero"),
    pytest.param(
        _json({"active": False, "sub": "alice", "scope": "admin"}),
        INVALID,
        "inactive",
        id="h5-inactive-with-fields",
    ),
    pytest.param(Reply(body=b"<html>hi</html>"), UNAVAILABLE, "not_json", id="h6-not-json"),
    pytest.param(Reply(body=b"[true]"), UNAVAILABLE, "not_json", id="h6-array"),
    pytest.param(Reply(body=b'"active"'), UNAVAILABLE, "not_json", id="h6-string"),
    pytest.param(Reply(body=b""), UNAVAILABLE, "not_json", id="h6-empty"),
    pytest.param(
        Reply(body=b'{"active": false, "active": true}'), UNAVAILABLE, "not_json", id="h6-dup-keys"
    ),
    pytest.param(Reply(body=b'{"active": true, "exp": NaN}'), UNAVAILABLE, "not_json", id="h6-nan"),
    pytest.param(
        Reply(body=b'{"active": true, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
        UNAVAILABLE,
        "not_json",
        id="h6-deep-nesting",
    ),
    pytest.param(Reply(body=b"\xff\xfe{}"), UNAVAILABLE, "not_json", id="h6-bad-utf8"),
    pytest.param(
        Reply(body=b'{"active": true}', content_type="text/html"),
        UNAVAILABLE,
        "content_type",
        id="h7-text-html",
    ),
    pytest.param(
        Reply(body=b'{"active": true}', content_type=None),
        UNAVAILABLE,
        "content_type",
        id="h7-no-content-type",
    ),
    pytest.param(Reply(status=500, body=b"{}"), UNAVAILABLE, "http_status", id="h8-500"),
    pytest.param(Reply(status=502, body=b"bad gateway"), UNAVAILABLE, "http_status", id="h8-502"),
    pytest.param(Reply(drop=True), UNAVAILABLE, "unreachable", id="h8-connection-dropped"),
    pytest.param(Reply(delay=3.0), UNAVAILABLE, "timeout", id="h8-timeout"),
    pytest.param(
        Reply(status=401, body=b'{"error":"invalid_client"}'),
        UNAVAILABLE,
        "rejected_credentials",
        id="h9-401",
    ),
    pytest.param(Reply(status=403, body=b"{}"), UNAVAILABLE, "rejected_credentials", id="h9-403"),
    pytest.param(Reply(pad_bytes=2 << 20), UNAVAILABLE, "response_too_large", id="h11-huge-body"),
    pytest.param(
        _json(active(token_type="refresh_token")), INVALID, "wrong_token_type", id="h12-refresh"
    ),
    pytest.param(
        _json(active(token_type="DPoP")), INVALID, "wrong_token_type", id="h12-dpop-without-cnf"
    ),
    pytest.param(_json(active(aud="someone-else")), INVALID, "wrong_audience", id="h13-aud"),
    pytest.param(_json(active(aud=["x", "y"])), INVALID, "wrong_audience", id="h13-aud-list"),
    pytest.param(_json(active(iss="https://evil.example")), INVALID, "wrong_issuer", id="h13-iss"),
    pytest.param(
        _json(active(scope=["admin"])), UNAVAILABLE, "malformed_response", id="h14-scope-array"
    ),
    pytest.param(_json(active(sub=42)), UNAVAILABLE, "malformed_response", id="h14-sub-number"),
    pytest.param(
        _json(active(exp="2100-01-01")), UNAVAILABLE, "malformed_response", id="h14-exp-string"
    ),
    pytest.param(_json(active(exp=True)), UNAVAILABLE, "malformed_response", id="h14-exp-bool"),
    # NumericDates outside 1970..9999: 10**400 is valid JSON yet overflows float arithmetic.
    pytest.param(
        _json(active(exp=10**400)), UNAVAILABLE, "malformed_response", id="h14-exp-beyond-float"
    ),
    pytest.param(
        _json(active(exp=-(10**400))), UNAVAILABLE, "malformed_response", id="h14-exp-below-float"
    ),
    pytest.param(
        _json(active(nbf=10**400)), UNAVAILABLE, "malformed_response", id="h14-nbf-beyond-float"
    ),
    pytest.param(
        _json(active(iat=10**400)), UNAVAILABLE, "malformed_response", id="h14-iat-beyond-float"
    ),
    pytest.param(
        _json(active(exp=253_402_300_800)), UNAVAILABLE, "malformed_response", id="h14-exp-y10k"
    ),
    pytest.param(_json(active(exp=1e300)), UNAVAILABLE, "malformed_response", id="h14-exp-1e300"),
    pytest.param(_json(active(exp=-1)), UNAVAILABLE, "malformed_response", id="h14-exp-negative"),
    pytest.param(_json(active(aud=7)), UNAVAILABLE, "malformed_response", id="h14-aud-number"),
    pytest.param(
        _json(active(aud=["api", 7])), UNAVAILABLE, "malformed_response", id="h14-aud-mixed"
    ),
    pytest.param(
        _json(active(iss=["https://as.example"])), UNAVAILABLE, "malformed_response", id="h14-iss"
    ),
    pytest.param(
        _json(active(permissions="admin", scp={"a": 1})),
        UNAVAILABLE,
        "malformed_response",
        id="h14-scp-object",
    ),
    pytest.param(
        _json(active(cnf={"jkt": "abc"})), INVALID, "sender_constrained", id="bound-token"
    ),
]


@pytest.mark.parametrize(("reply", "error", "reason"), MALFORMED)
@pytest.mark.parametrize("mode", MODES)
def test_malformed_and_hostile_answers(
    server: IntrospectionServer,
    make_verifier: MakeVerifier,
    caplog: pytest.LogCaptureFixture,
    reply: Reply,
    error: type[Exception],
    reason: str,
    mode: str,
) -> None:
    """Each attacks.md H case ends in its 401 or 503, is not cached, and logs no token."""
    server.replies[TOKEN] = reply
    # A tight deadline only where the deadline is the subject: a loaded CI host can stall
    # a loopback connect for half a second, which must not turn h1 into a 503.
    timeout = 0.5 if reply.delay else 10.0
    verifier = make_verifier(
        issuer="https://as.example", audience="api", negative_ttl=0, http_timeout=timeout
    )
    caplog.set_level(logging.DEBUG)
    for attempt in (1, 2):
        with pytest.raises(error) as info:
            verify_both(verifier, TOKEN, mode)
        assert type(info.value) is error
        assert info.value.reason == reason  # type: ignore[attr-defined]
        assert server.calls == attempt  # never cached
    response = info.value.to_response()  # type: ignore[attr-defined]
    headers = dict(response.headers)
    if error is UNAVAILABLE:
        assert response.status == 503
        assert headers["retry-after"].isdigit()
        assert "invalid_token" not in headers["www-authenticate"]
        assert caplog.records, "a failure must be logged"
    else:
        assert response.status == 401
        assert 'error="invalid_token"' in headers["www-authenticate"]
    assert TOKEN not in caplog.text
    assert server.client_secret not in caplog.text
    assert TOKEN not in response.body.decode() + str(headers)


def test_rejected_credentials_log_an_error(
    server: IntrospectionServer, make_verifier: MakeVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 from the AS to us is a configuration fault: ERROR log, 503 to the client."""
    verifier = make_verifier(client_secret="wrong")
    with pytest.raises(IntrospectionUnavailableError):
        verifier.verify(TOKEN)
    assert [r.levelno for r in caplog.records] == [logging.ERROR]
    assert "refused our client credentials" in caplog.text
    assert "wrong" not in caplog.text


def test_redirect_is_not_followed(server: IntrospectionServer, make_verifier: MakeVerifier) -> None:
    """A 3xx answer is a 503 and its Location is never visited (attacks H-10)."""
    server.replies[TOKEN] = Reply(
        status=302, body=b"", headers=(("Location", server.base_url + "/elsewhere"),)
    )
    with pytest.raises(IntrospectionUnavailableError) as info:
        make_verifier().verify(TOKEN)
    assert info.value.reason == "redirect"
    assert server.hits["/elsewhere"] == 0


def test_retry_after_from_the_as_is_passed_on(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """A 503 or 429 with Retry-After from the AS sets our Retry-After (bounded)."""
    server.replies[TOKEN] = Reply(status=503, body=b"{}", headers=(("Retry-After", "30"),))
    with pytest.raises(IntrospectionUnavailableError) as info:
        make_verifier().verify(TOKEN)
    assert dict(info.value.to_response().headers)["retry-after"] == "30"
    server.replies[TOKEN] = Reply(status=429, body=b"{}", headers=(("Retry-After", "99999"),))
    with pytest.raises(IntrospectionUnavailableError) as info:
        make_verifier().verify(TOKEN)
    assert info.value.retry_after == 300


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param(active(token_type="Bearer"), id="bearer"),
        pytest.param(active(token_type="access_token"), id="access-token"),
        pytest.param(active(token_type="DPoP", cnf={"jkt": "A" * 43}), id="dpop-bound"),
        pytest.param(active(aud=["other", "api"]), id="aud-list-with-ours"),
        pytest.param(active(aud="api"), id="aud-string"),
        pytest.param(active(iss="https://as.example"), id="iss-equal"),
        pytest.param(active(exp=int(NOW) - 30), id="expired-within-leeway"),
        pytest.param(active(nbf=int(NOW) + 30), id="nbf-within-leeway"),
        pytest.param(active(exp=NOW + 100.5), id="float-exp"),
        pytest.param(active(exp=253_402_300_799), id="exp-end-of-year-9999"),
        pytest.param({"active": True}, id="minimal"),
    ],
)
def test_acceptable_answers(
    server: IntrospectionServer, make_verifier: MakeVerifier, claims: dict[str, Any]
) -> None:
    """Answers within the rules are accepted."""
    server.tokens[TOKEN] = claims
    verifier = make_verifier(issuer="https://as.example", audience="api")
    assert verifier.verify(TOKEN).claims["active"] is True


@pytest.mark.parametrize("mode", MODES)
def test_cached_entry_with_out_of_range_date_is_not_used(
    server: IntrospectionServer, make_verifier: MakeVerifier, mode: str
) -> None:
    """A cached entry whose exp no float holds (old version, tampering) is re-asked, no crash."""
    server.tokens[TOKEN] = active()
    cache = MemoryCache()
    verifier = make_verifier(cache=cache)
    key = verifier._prefix + hashlib.sha256(TOKEN.encode()).hexdigest()
    cache.set(key, CacheEntry(True, {**active(), "exp": 10**400}, NOW + 60), 60)
    assert verify_both(verifier, TOKEN, mode).expires_at == int(NOW) + 3600
    assert server.calls == 1


def test_answers_without_iss_or_aud_pass_configured_checks(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """iss and aud are checked when the response carries them (RFC 7662 makes them optional)."""
    server.tokens[TOKEN] = active()
    verifier = make_verifier(issuer="https://as.example", audience=["api", "api2"])
    assert verifier.verify(TOKEN).issuer is None


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("has space", id="space"),
        pytest.param('quote"token', id="quote"),
        pytest.param("new\r\nline", id="crlf"),
        pytest.param("tök", id="non-ascii"),
        pytest.param("\ud800", id="lone-surrogate"),
        pytest.param("", id="empty"),
        pytest.param("a" * 8193, id="too-long"),
        pytest.param("=abc", id="leading-equals"),
    ],
)
@pytest.mark.parametrize("mode", MODES)
def test_malformed_tokens_never_reach_the_as(
    server: IntrospectionServer, make_verifier: MakeVerifier, token: str, mode: str
) -> None:
    """Tokens outside the b64token grammar are 401 without an introspection call (H-17)."""
    with pytest.raises(InvalidTokenError) as info:
        verify_both(make_verifier(), token, mode)
    assert info.value.reason == ("too_long" if len(token) > 8192 else "malformed")
    assert server.calls == 0


@pytest.mark.parametrize("mode", MODES)
def test_outage_and_recovery(
    server: IntrospectionServer, make_verifier: MakeVerifier, mode: str
) -> None:
    """AS down: 503 with Retry-After, nothing cached; AS back: the token is accepted."""
    server.tokens[TOKEN] = active()
    verifier = make_verifier()
    server.stop()
    for _ in range(2):
        with pytest.raises(IntrospectionUnavailableError) as info:
            verify_both(verifier, TOKEN, mode)
        assert info.value.reason == "unreachable"
        assert info.value.to_response().status == 503
    server.start()
    assert verify_both(verifier, TOKEN, mode).subject == "alice"
    assert server.calls == 1


def test_cached_tokens_survive_an_outage(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """A cached answer keeps serving while the AS is down (until its TTL)."""
    server.tokens[TOKEN] = active()
    verifier = make_verifier()
    verifier.verify(TOKEN)
    server.stop()
    assert verifier.verify(TOKEN).subject == "alice"


@pytest.mark.parametrize("mode", MODES)
def test_endpoint_from_discovery(
    server: IntrospectionServer, make_verifier: MakeVerifier, mode: str
) -> None:
    """Without introspection_uri the endpoint is read from RFC 8414 metadata."""
    server.metadata = {"issuer": server.base_url, "introspection_endpoint": server.url}
    server.tokens[TOKEN] = active(iss=server.base_url)
    verifier = make_verifier(introspection_uri=None, issuer=server.base_url)
    assert verify_both(verifier, TOKEN, mode).subject == "alice"
    assert server.hits["/.well-known/oauth-authorization-server"] == 1
    assert server.calls == 1


def test_discovery_without_introspection_endpoint_is_503(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """Metadata lacking introspection_endpoint is a 503, not a token error."""
    server.metadata = {"issuer": server.base_url}
    verifier = make_verifier(introspection_uri=None, issuer=server.base_url)
    with pytest.raises(IntrospectionUnavailableError):
        verifier.verify(TOKEN)
    assert server.calls == 0


def test_hybrid_verifier_routes_opaque_tokens_here(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """HybridVerifier sends non-JWS tokens to introspection."""
    server.tokens[TOKEN] = active()
    hybrid = HybridVerifier(introspection=make_verifier())
    assert hybrid.verify(TOKEN).subject == "alice"
    with pytest.raises(InvalidTokenError):
        hybrid.verify("a.b.c")


def test_shared_runner_is_not_closed(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """A runner passed in stays open after close()."""
    server.tokens[TOKEN] = active()
    runner = HTTPRunner(timeout=10)
    verifier = make_verifier(runner=runner)
    verifier.verify(TOKEN)
    verifier.close()
    assert runner._client is not None
    runner.close()


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"introspection_uri": "http://as.example/introspect"}, id="plain-http"),
        pytest.param({"introspection_uri": "ftp://127.0.0.1/x"}, id="bad-scheme"),
        pytest.param({"introspection_uri": None}, id="no-uri-no-issuer"),
        pytest.param(
            {"introspection_uri": None, "issuer": "http://as.example"}, id="discovery-plain-http"
        ),
        pytest.param({"client_secret": ""}, id="empty-secret"),
        pytest.param({"client_id": ""}, id="empty-client"),
        pytest.param({"auth_method": "private_key_jwt"}, id="bad-auth-method"),
        pytest.param({"leeway": 301}, id="leeway-too-big"),
        pytest.param({"cache_ttl": -1}, id="negative-ttl"),
        pytest.param({"cache_ttl": float("inf")}, id="infinite-ttl"),
        pytest.param({"cache_ttl": float("nan")}, id="nan-ttl"),
        pytest.param({"negative_ttl": float("inf")}, id="infinite-negative-ttl"),
        pytest.param({"http_timeout": 0}, id="zero-timeout"),
        pytest.param({"scope_claims": ("a..b",)}, id="bad-scope-path"),
    ],
)
def test_bad_configuration_is_refused(kwargs: dict[str, Any]) -> None:
    """Unsafe or incomplete settings raise ConfigurationError at construction."""
    options: dict[str, Any] = {
        "introspection_uri": "https://as.example/introspect",
        "client_id": "rs",
        "client_secret": "secret",
    }
    options.update(kwargs)
    with pytest.raises(ConfigurationError):
        IntrospectionVerifier(**options)


def test_repr_hides_secrets() -> None:
    """repr shows the endpoint without userinfo, and never the secret."""
    verifier = IntrospectionVerifier(
        introspection_uri="https://user:pw@as.example/introspect?x=1",
        client_id="rs",
        client_secret="topsecret",
    )
    text = repr(verifier)
    assert "topsecret" not in text
    assert "pw" not in text
    assert "as.example/introspect" in text


def test_from_env_unset_returns_none() -> None:
    """Without SCOPEGATE_INTROSPECTION_URI there is no introspection verifier."""
    assert IntrospectionVerifier.from_env({}) is None
    assert IntrospectionVerifier.from_env({"SCOPEGATE_INTROSPECTION_URI": " "}) is None


def test_from_env_builds_a_working_verifier(server: IntrospectionServer) -> None:
    """from_env reads the URI, credentials, issuer, audience and cache TTL."""
    # from_env uses the real clock: no exp/iat relative to the fake NOW.
    server.tokens[TOKEN] = active(iss="https://as.example", aud="api", exp=None, iat=None)
    verifier = IntrospectionVerifier.from_env(
        {
            "SCOPEGATE_INTROSPECTION_URI": server.url,
            "SCOPEGATE_INTROSPECTION_CLIENT_ID": server.client_id,
            "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": server.client_secret,
            "SCOPEGATE_INTROSPECTION_AUTH_METHOD": "client_secret_post",
            "SCOPEGATE_INTROSPECTION_CACHE_TTL": "15",
            "SCOPEGATE_ISSUER": "https://as.example",
            "SCOPEGATE_AUDIENCE": "api, api2",
        }
    )
    assert verifier is not None
    try:
        assert verifier.verify(TOKEN).subject == "alice"
        assert verifier.cache_ttl == 15
        assert verifier.auth_method == "client_secret_post"
        assert verifier.audience == frozenset({"api", "api2"})
        assert verifier.issuer == "https://as.example"
        assert isinstance(verifier._cache, MemoryCache)
    finally:
        verifier.close()


def test_from_env_with_redis_url_uses_redis_cache() -> None:
    """SCOPEGATE_REDIS_URL selects a RedisCache the verifier owns and closes."""
    verifier = IntrospectionVerifier.from_env(
        {
            "SCOPEGATE_INTROSPECTION_URI": "https://as.example/introspect",
            "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
            "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "secret",
            "SCOPEGATE_REDIS_URL": "redis://127.0.0.1:1/0",
        }
    )
    assert verifier is not None
    assert isinstance(verifier._cache, RedisCache)
    assert verifier._own_cache
    verifier.close()


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs"}, id="no-secret"),
        pytest.param(
            {
                "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
                "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "s",
                "SCOPEGATE_INTROSPECTION_AUTH_METHOD": "none",
            },
            id="bad-method",
        ),
        pytest.param(
            {
                "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
                "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "s",
                "SCOPEGATE_INTROSPECTION_CACHE_TTL": "soon",
            },
            id="bad-ttl",
        ),
        pytest.param(
            {
                "SCOPEGATE_INTROSPECTION_CLIENT_ID": "rs",
                "SCOPEGATE_INTROSPECTION_CLIENT_SECRET": "s",
                "SCOPEGATE_INTROSPECTION_CACHE_TTL": "inf",
            },
            id="infinite-ttl",
        ),
    ],
)
def test_from_env_bad_values(env: dict[str, str]) -> None:
    """Missing or invalid variables raise ConfigurationError."""
    env = {"SCOPEGATE_INTROSPECTION_URI": "https://as.example/introspect", **env}
    with pytest.raises(ConfigurationError):
        IntrospectionVerifier.from_env(env)


def test_single_flight_is_per_token(
    server: IntrospectionServer, make_verifier: MakeVerifier
) -> None:
    """A slow introspection of one token does not hold up another token."""
    slow, fast = TOKEN + "slow", TOKEN + "fast"
    server.tokens[fast] = active()
    server.replies[slow] = Reply.json(active(sub="bob"), delay=0.8)
    verifier = make_verifier(http_timeout=5)

    async def go() -> list[str]:
        order: list[str] = []

        async def one(token: str) -> None:
            order.append((await verifier.averify(token)).subject or "")

        try:
            await asyncio.gather(one(slow), one(fast))
        finally:
            await verifier.aclose()
        return order

    assert asyncio.run(go()) == ["alice", "bob"]
    assert server.calls == 2
