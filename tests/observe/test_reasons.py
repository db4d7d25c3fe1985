"""Every reason code the library defines ends in a ``decision`` record naming it.

One case per code of :data:`scopegate._observe.REASON_CODES` (a new code without a case
fails ``test_every_reason_code_has_a_case``), each driven by real requests through the
ASGI and the WSGI middleware: real tokens, real proofs, a real JWKS / discovery server
and a real introspection endpoint for the 503s, a closed port for unreachable ones.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from scopegate import (
    DPoPPolicy,
    HTTPRunner,
    HybridVerifier,
    IntrospectionVerifier,
    InvalidDPoPProofError,
    InvalidRequestError,
    InvalidTokenError,
    IssuerRouter,
    JWTVerifier,
    MemoryReplayStore,
    NonceSource,
    ProtectedResource,
    RedisReplayStore,
    ServiceUnavailableError,
    _observe,
    presets,
)
from scopegate.testing import OMIT, DPoPKey, LocalIssuer
from tests.core.jwks_server import JWKSServer
from tests.introspection.introspection_server import (
    CLIENT_ID,
    CLIENT_SECRET,
    IntrospectionServer,
    Reply,
)
from tests.observe.stack import BASE, KINDS, Client, Records, Stack
from tests.servers import free_port

ISS = LocalIssuer()
OTHER = LocalIssuer(issuer="https://other.example")
KEY = DPoPKey.generate()
INTRUDER = DPoPKey.generate()
URL = BASE + "/ok"
SRC = Path(__file__).resolve().parents[2] / "src" / "scopegate"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def good(**claims: Any) -> str:
    return ISS.make_token(["items:read"], **claims)


def bound(key: DPoPKey = KEY) -> str:
    return ISS.make_token(["items:read"], cnf={"jkt": key.jkt})


def dpop(token: str, proof: str | list[str]) -> list[tuple[str, str]]:
    proofs = proof if isinstance(proof, list) else [proof]
    return [("Authorization", f"DPoP {token}"), *(("DPoP", p) for p in proofs)]


def closed_url(path: str = "") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


class Raising:
    """A custom verifier whose every verification raises *error*."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def verify(self, token: str) -> Any:
        raise self.error

    async def averify(self, token: str) -> Any:
        raise self.error


def _boom(request: httpx.Request) -> httpx.Response:
    raise RuntimeError("a bug in the transport")


@dataclass
class Case:
    """How to make the guard refuse with one reason code.

    ``build()`` returns a fresh verifier (and guard options); ``drive(client)`` sends the
    requests, the last of which must be refused with the reason.
    """

    build: Callable[[], Any]
    drive: Callable[[Client], httpx.Response]
    status: int
    options: dict[str, Any] | Callable[[], dict[str, Any]] = field(default_factory=dict)
    kinds: tuple[str, ...] = KINDS


def plain(drive: Callable[[Client], httpx.Response], status: int = 401, **options: Any) -> Case:
    return Case(ISS.verifier, drive, status, options)


def header(value: str, status: int = 401, **options: Any) -> Case:
    return plain(lambda c: c.get(headers={"Authorization": value}), status, **options)


def token(raw: str, status: int = 401, verifier: Callable[[], Any] = ISS.verifier) -> Case:
    return Case(verifier, lambda c: c.get(headers=bearer(raw)), status)


def with_dpop(drive: Callable[[Client], httpx.Response], **policy: Any) -> Case:
    return Case(ISS.verifier, drive, 401, {"dpop": DPoPPolicy(**policy)})


def raising(error: Exception) -> Case:
    return Case(lambda: Raising(error), lambda c: c.get(headers=bearer("abc")), error_status(error))


def error_status(error: Exception) -> int:
    return int(getattr(error, "status", 401))


def proof(**kwargs: Any) -> Callable[[Client], httpx.Response]:
    """A bound token with a proof made by KEY with *kwargs* (see DPoPKey.proof)."""

    def drive(client: Client) -> httpx.Response:
        tok = bound()
        options = {"token": tok, **kwargs}
        return client.get(headers=dpop(tok, KEY.proof("GET", URL, **options)))

    return drive


def forged(client: Client) -> httpx.Response:
    """A proof whose signature was altered."""
    tok = bound()
    head, _, signature = KEY.proof("GET", URL, token=tok).rpartition(".")
    altered = f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"
    return client.get(headers=dpop(tok, altered))


def stolen(client: Client) -> httpx.Response:
    """INTRUDER's bound token with a valid proof made with KEY."""
    tok = bound(INTRUDER)
    return client.get(headers=dpop(tok, KEY.proof("GET", URL, token=tok)))


def replayed(client: Client) -> httpx.Response:
    tok = bound()
    headers = dpop(tok, KEY.proof("GET", URL, token=tok))
    assert client.get(headers=headers).status_code == 200
    return client.get(headers=headers)


def store_full(client: Client) -> httpx.Response:
    tok = bound()
    assert client.get(headers=dpop(tok, KEY.proof("GET", URL, token=tok))).status_code == 200
    return client.get(headers=dpop(tok, KEY.proof("GET", URL, token=tok)))


def bad_signature() -> str:
    raw = good()
    head, _, signature = raw.rpartition(".")
    return f"{head}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


# -- servers for the 503s ------------------------------------------------------------------


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JWKSServer]:
    """A real JWKS + discovery server whose failures the cases switch on."""
    with JWKSServer.running() as server:
        yield server


@pytest.fixture(scope="module")
def introspection() -> Iterator[IntrospectionServer]:
    """A real RFC 7662 endpoint with scripted answers per token."""
    with IntrospectionServer() as server:
        server.tokens["refresh"] = {"active": True, "token_type": "refresh_token"}
        server.replies["slow"] = Reply(delay=1.0)
        server.replies["huge"] = Reply(pad_bytes=2 << 20)
        server.replies["redirect"] = Reply(status=302, headers=(("location", "http://x.test"),))
        server.replies["error"] = Reply(status=500)
        server.replies["html"] = Reply(content_type="text/html")
        server.replies["notjson"] = Reply(body=b"{nope")
        server.replies["badactive"] = Reply.json({"active": "true"})
        server.replies["badscope"] = Reply.json({"active": True, "scope": 5})
        yield server


def jwks_case(server: JWKSServer, mode: str, reason: str) -> Case:
    def build() -> JWTVerifier:
        server.reset()
        server.mode = mode
        return ISS.verifier(jwks_uri=server.jwks_uri, keys=None)

    return Case(build, lambda c: c.get(headers=bearer(good())), 503)


def discovery_case(server: JWKSServer, **switches: Any) -> Case:
    def build() -> JWTVerifier:
        server.reset()
        for name, value in switches.items():
            setattr(server, name, value)
        return JWTVerifier(issuer=server.url, audience=ISS.audience, discovery="oauth")

    return Case(build, lambda c: c.get(headers=bearer(good())), 503)


def introspected(server: IntrospectionServer, raw: str, status: int = 503, **kw: Any) -> Case:
    def build() -> IntrospectionVerifier:
        options = {
            "introspection_uri": server.url,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "http_timeout": 0.3,
            **kw,
        }
        return IntrospectionVerifier(**options)

    return Case(build, lambda c: c.get(headers=bearer(raw)), status)


def discovery_unavailable(client: Client) -> httpx.Response:
    first = client.get(headers=bearer("opaque-1"))
    assert first.status_code == 503
    return client.get(headers=bearer("opaque-2"))


def cases(jwks: JWKSServer, intro: IntrospectionServer) -> dict[str, Case]:
    """reason code -> how to produce it."""
    now = int(time.time())
    resource = ProtectedResource(resource=BASE, authorization_servers=[ISS.issuer])
    entra_issuer = LocalIssuer(
        issuer="https://login.microsoftonline.com/tenant-1/v2.0", audience="app-1", key=ISS.key
    )
    cognito_issuer = LocalIssuer(
        issuer="https://cognito-idp.eu-west-1.amazonaws.com/pool_1", key=ISS.key
    )

    def cognito() -> JWTVerifier:
        return presets.cognito("eu-west-1", "pool_1", "app-client", keys=ISS.jwks())

    two_keys = LocalIssuer()
    two_keys.extra_keys.append(LocalIssuer().key)

    return {
        # Error-class defaults (a custom verifier raising without a reason).
        "invalid_token": raising(InvalidTokenError()),
        "invalid_request": raising(InvalidRequestError()),
        "invalid_dpop_proof": raising(InvalidDPoPProofError()),
        "temporarily_unavailable": raising(ServiceUnavailableError()),
        "verifier_error": raising(RuntimeError("bug")),
        # Transport (RFC 6750 §2).
        "missing_token": plain(lambda c: c.get()),
        "token_too_long": header("Bearer " + "a" * 9000),
        "malformed_bearer": header("Bearer a b"),
        "empty_bearer": header("Bearer"),
        "multiple_methods": plain(
            lambda c: c.get(headers=bearer(good()), params={"access_token": "x"}), 400
        ),
        # ASGI only: a WSGI server joins repeated fields into one (CGI), which the guard
        # then sees as one malformed value.
        "duplicate_authorization": Case(
            ISS.verifier,
            lambda c: c.get(headers=[("Authorization", "Bearer a"), ("Authorization", "Bearer b")]),
            400,
            kinds=("asgi",),
        ),
        "repeated_parameter": plain(
            lambda c: c.get(params="access_token=a&access_token=b"), 400, allow_query_token=True
        ),
        "empty_parameter": plain(
            lambda c: c.get(params="access_token="), 400, allow_query_token=True
        ),
        # The guard and the decorators.
        "method_not_allowed": Case(
            lambda: ISS.verifier(audience=BASE),
            lambda c: c.request("POST", "/.well-known/oauth-protected-resource"),
            400,
            {"resource": resource},
        ),
        "unsupported_token_format": token(
            "opaque-token", verifier=lambda: HybridVerifier(jwt=ISS.verifier())
        ),
        "insufficient_scope": plain(lambda c: c.get("/scoped", headers=bearer(good())), 403),
        "insufficient_user_authentication": plain(
            lambda c: c.get("/stepup", headers=bearer(good(acr="pwd")))
        ),
        "dpop_required": with_dpop(lambda c: c.get(headers=bearer(good())), mode="required"),
        "dpop_binding": with_dpop(stolen),
        "sender_constrained": with_dpop(lambda c: c.get(headers=bearer(bound()))),
        # DPoP proofs (RFC 9449).
        "dpop_missing": with_dpop(lambda c: c.get(headers=dpop(bound(), []))),
        "dpop_multiple": Case(  # ASGI only, as duplicate_authorization
            ISS.verifier,
            lambda c: c.get(headers=dpop(bound(), ["a.b.c", "d.e.f"])),
            401,
            {"dpop": DPoPPolicy()},
            kinds=("asgi",),
        ),
        "dpop_too_long": with_dpop(lambda c: c.get(headers=dpop(bound(), "a" * 9000))),
        "dpop_malformed": with_dpop(lambda c: c.get(headers=dpop(bound(), "not-a-jws"))),
        "dpop_type": with_dpop(proof(headers={"typ": "JWT"})),
        "dpop_alg": with_dpop(proof(headers={"alg": "HS256"})),
        "dpop_key": with_dpop(proof(headers={"jwk": None})),
        "dpop_signature": with_dpop(forged),
        "dpop_claims": with_dpop(proof(claims={"htm": 5})),
        "dpop_method": with_dpop(proof(claims={"htm": "POST"})),
        "dpop_url": with_dpop(proof(claims={"htu": "http://elsewhere.test/ok"})),
        "dpop_iat": with_dpop(proof(iat=now - 3600)),
        "dpop_ath": with_dpop(proof(claims={"ath": "wrong"})),
        "dpop_nonce": with_dpop(proof(), nonce=NonceSource()),
        "dpop_replayed": with_dpop(replayed),
        "dpop_replay_store_full": Case(
            ISS.verifier,
            store_full,
            503,
            lambda: {"dpop": DPoPPolicy(replay=MemoryReplayStore(maxsize=1))},
        ),
        "dpop_replay_unavailable": Case(
            ISS.verifier,
            proof(),
            503,
            lambda: {
                "dpop": DPoPPolicy(replay=RedisReplayStore(f"redis://127.0.0.1:{free_port()}/0"))
            },
        ),
        # JWTs (the rule table, scopegate._checks).
        "too_long": Case(
            lambda: ISS.verifier(max_token_length=64),
            lambda c: c.get(headers=bearer(good())),
            401,
            {"max_token_length": 8192},
        ),
        "malformed": token("a.b.c"),
        "alg_not_allowed": token(good(headers={"alg": "none"})),
        "crit": token(good(headers={"crit": ["exp"]})),
        "unsupported_header": token(good(headers={"zip": "DEF"})),
        "wrong_type": token(good(headers={"typ": "JWT"})),
        "bad_kid": token(good(headers={"kid": 5})),
        "unknown_key": token(good(headers={"kid": "nobody"})),
        "ambiguous_key": token(
            two_keys.make_token(["items:read"], headers={"kid": None}),
            verifier=two_keys.verifier,
        ),
        "key_alg_mismatch": token(good(headers={"alg": "PS256"})),
        "bad_signature": token(bad_signature()),
        "missing_claim": token(good(sub=OMIT)),
        "bad_claim_type": token(good(sub=5)),
        "wrong_issuer": token(good(iss="https://other.example")),
        "untrusted_issuer": token(
            OTHER.make_token(["items:read"]), verifier=lambda: IssuerRouter([ISS.verifier()])
        ),
        "wrong_audience": token(good(audience="api://other")),
        "expired": token(good(expires_in=-600)),
        "not_yet_valid": token(good(nbf=now + 3600)),
        "issued_in_future": token(good(iat=now + 3600, expires_in=7200)),
        "lifetime": token(good(expires_in=7200), verifier=lambda: ISS.verifier(max_lifetime=60)),
        "bad_scope_claim": token(ISS.make_token(None, scope=5)),
        "claims_validator": token(
            good(), verifier=lambda: ISS.verifier(claims_validator=lambda claims: 1 / 0)
        ),
        # Presets.
        "wrong_token_version": token(
            entra_issuer.make_token(["x"], ver="1.0", azp="client-1"),
            verifier=lambda: presets.entra("tenant-1", "app-1", keys=ISS.jwks()),
        ),
        "wrong_token_use": token(
            cognito_issuer.make_token(["x"], token_use="id", client_id="app-client"),
            verifier=cognito,
        ),
        "wrong_client": token(
            cognito_issuer.make_token(["x"], token_use="access", client_id="intruder"),
            verifier=cognito,
        ),
        # Several issuers.
        "issuer_resolver": token(
            OTHER.make_token(["items:read"]),
            503,
            verifier=lambda: IssuerRouter(resolver=lambda iss: 1 / 0),
        ),
        # Signing keys (503).
        "jwks_unreachable": Case(
            lambda: ISS.verifier(jwks_uri=closed_url("/jwks"), keys=None),
            lambda c: c.get(headers=bearer(good())),
            503,
        ),
        "jwks_http_status": jwks_case(jwks, "error", "jwks_http_status"),
        "jwks_too_large": jwks_case(jwks, "huge", "jwks_too_large"),
        "jwks_malformed": jwks_case(jwks, "garbage", "jwks_malformed"),
        "jwks_unavailable": Case(
            lambda: ISS.verifier(
                jwks_uri="http://127.0.0.1:1/jwks",
                keys=None,
                runner=HTTPRunner(
                    transport=httpx.MockTransport(_boom),
                    async_transport=httpx.MockTransport(_boom),
                ),
            ),
            lambda c: c.get(headers=bearer(good())),
            503,
        ),
        # Discovery (503).
        "discovery_unreachable": Case(
            lambda: JWTVerifier(issuer=closed_url(), audience=ISS.audience),
            lambda c: c.get(headers=bearer(good())),
            503,
        ),
        "discovery_http_status": discovery_case(jwks, discovery_mode="error"),
        "discovery_malformed": discovery_case(jwks, discovery_mode="garbage"),
        "discovery_issuer_mismatch": discovery_case(jwks, metadata_issuer="https://x.example"),
        "discovery_bad_endpoint": discovery_case(jwks, metadata_extra={"jwks_uri": "ftp://x"}),
        "discovery_unavailable": Case(
            # A JWKS retries discovery on its own schedule; introspection asks every time.
            lambda: IntrospectionVerifier(
                issuer=closed_url(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET
            ),
            discovery_unavailable,
            503,
        ),
        # Introspection (RFC 7662).
        "inactive": introspected(intro, "unknown", 401),
        "wrong_token_type": introspected(intro, "refresh", 401),
        "unreachable": Case(
            lambda: IntrospectionVerifier(
                introspection_uri=closed_url("/introspect"),
                client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET,
            ),
            lambda c: c.get(headers=bearer("opaque")),
            503,
        ),
        "timeout": introspected(intro, "slow"),
        "response_too_large": introspected(intro, "huge"),
        "redirect": introspected(intro, "redirect"),
        "http_status": introspected(intro, "error"),
        "content_type": introspected(intro, "html"),
        "not_json": introspected(intro, "notjson"),
        "bad_active": introspected(intro, "badactive"),
        "malformed_response": introspected(intro, "badscope"),
        "rejected_credentials": introspected(intro, "unknown", client_secret="wrong-secret"),
    }


@pytest.fixture(scope="module")
def table(jwks_server: JWKSServer, introspection: IntrospectionServer) -> dict[str, Case]:
    return cases(jwks_server, introspection)


def test_every_reason_code_has_a_case(table: dict[str, Case]) -> None:
    """The cases cover the whole vocabulary: a new reason code needs a case here."""
    from tests.observe.test_mcp_records import MCP_REASONS

    assert set(table) | set(MCP_REASONS) == set(_observe.REASON_CODES)
    assert not set(table) & set(MCP_REASONS)


def test_the_vocabulary_is_defined_once() -> None:
    """No code is in both tables, and every code the source raises is in the vocabulary."""
    from scopegate._checks import REASONS as JWT
    from scopegate._errors import REASONS as ERRORS

    assert not set(JWT) & set(ERRORS)
    text = "\n".join(p.read_text() for p in SRC.rglob("*.py") if "issuer" not in p.parts)
    patterns = (
        r'reason="([a-z_]+)"',
        r'reason = "([a-z_]+)"',
        r'_fail\("([a-z_]+)"\)',
        r'invalid\("([a-z_]+)"',
        r'_unavailable\("([a-z_]+)"',
        r'error\(reason="([a-z_]+)"',
        r'"([a-z_]+)" if proofs else "([a-z_]+)"',
        r'"(redirect)" if 300',
        r'else "(http_status)"',
        r'"(too_long)" if str\(exc\)',
    )
    raised: set[str] = set()
    for pattern in patterns:
        for match in re.finditer(pattern, text):
            raised.update(g for g in match.groups() if g)
    assert raised, "the scan found nothing: the patterns are out of date"
    assert raised <= _observe.REASON_CODES, sorted(raised - _observe.REASON_CODES)
    for code in _observe.REASON_CODES:
        assert f'"{code}"' in text, f"{code} is defined but never used"


@pytest.mark.parametrize("kind", KINDS)
def test_each_reason_code_ends_in_a_record_naming_it(table: dict[str, Case], kind: str) -> None:
    """Through real requests, each case's refusal is a decision record with its reason."""
    missing: dict[str, str] = {}
    for reason, case in table.items():
        if kind not in case.kinds:
            continue
        verifier = case.build()
        options = case.options() if callable(case.options) else case.options
        client = Stack(verifier, **options).client(kind)
        try:
            with Records() as records:
                response = case.drive(client)
        finally:
            client.close(verifier)
        decisions = records.named("decision")
        last = decisions[-1] if decisions else None
        if (
            last is None
            or last.reason != reason
            or last.outcome != _observe.refusal(case.status)
            or last.attributes["status"] != case.status
            or response.status_code != case.status
        ):
            missing[reason] = f"{response.status_code} {last}"
        elif last.outcome != "accepted":
            assert last.attributes["issuer"] is None
            assert last.attributes["client_id"] is None
    assert not missing, missing


def test_a_decorator_refusal_is_an_endpoint_stage_record() -> None:
    """The guard accepts, the decorator refuses: two records, the second of stage endpoint."""
    stack = Stack(ISS.verifier())
    for kind in KINDS:
        client = stack.client(kind)
        with Records() as records:
            response = client.get("/recent", headers=bearer(good(auth_time=1)))
        client.close()
        assert response.status_code == 401
        first, second = records.named("decision")
        assert (first.outcome, first.attributes["stage"]) == ("accepted", "guard")
        assert second.outcome == "rejected"
        assert second.reason == "insufficient_user_authentication"
        assert second.attributes["stage"] == "endpoint"
        assert second.attributes["kind"] == "jwt"
        assert second.duration == 0.0
