"""No token, refresh token, client secret or password in logs, exceptions, reprs or responses.

Every scenario runs with DEBUG logging captured for the root and ``scopegate`` loggers
(httpx, redis and the issuer included), then searches everything that could reach an
operator or a client: each log record's message, arguments and formatted traceback,
every exception's text and repr along its whole ``__cause__``/``__context__`` chain,
the repr of every public object, and every response body and header. Values that a
response must legitimately carry (the tokens a token endpoint issues) are allowed only
there.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import warnings
from collections.abc import Iterable, Iterator, MutableMapping
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from scopegate._bearer import extract_token
from scopegate._cache import MemoryCache, RedisCache
from scopegate._errors import BearerError
from scopegate._flow import HTTPRunner
from scopegate._introspection import IntrospectionVerifier
from scopegate._jwt import JWTVerifier
from scopegate._token import AccessToken
from scopegate._verifier import HybridVerifier
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.issuer import Client, Issuer, IssuerConfig, User, create_wsgi_app
from scopegate.issuer._endpoints import HTTPRequest, HTTPResponse
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware
from tests.fuzz import material

CLIENT_SECRET = "LeakCanaryClientSecret-4c1e"
RS_SECRET = "LeakCanaryRsSecret-88af"
PASSWORD = "LeakCanaryPassword-0b7d"
REDIS_PASSWORD = "LeakCanaryRedisPw-5e2a"
OPAQUE = "LeakCanaryOpaqueToken-9f3b"


@pytest.fixture
def captured(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """DEBUG capture for the root and scopegate loggers."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="scopegate")
    return caplog


def log_texts(caplog: pytest.LogCaptureFixture) -> Iterator[str]:
    """Everything a log handler could print for the captured records."""
    formatter = logging.Formatter()
    for record in caplog.records:
        yield record.getMessage()
        yield repr(record.args)
        if record.exc_info:
            yield formatter.formatException(record.exc_info)
        if record.exc_text:
            yield record.exc_text
        if record.stack_info:
            yield record.stack_info
    yield caplog.text


def exception_texts(exc: BaseException | None) -> Iterator[str]:
    """str and repr of an exception and of every exception chained to it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield str(exc)
        yield repr(exc)
        yield from (str(arg) for arg in exc.args)
        exc = exc.__cause__ or exc.__context__


def secret_fragments(secret: str) -> list[str]:
    """The secret, plus the distinctive parts of a compact JWS (its signature)."""
    parts = [secret]
    if secret.count(".") == 2:
        parts.append(secret.rsplit(".", 1)[1][:40])
    return parts


def assert_clean(texts: Iterable[str], secrets: Iterable[str], where: str) -> None:
    """No secret (or a distinctive fragment of one) occurs in any of *texts*."""
    blob = "\n".join(texts)
    for secret in secrets:
        for fragment in secret_fragments(secret):
            assert fragment not in blob, f"{where} leaks a secret ({fragment[:12]}...)"


def outcome(call: Any) -> tuple[Any, BaseException | None]:
    """Run *call*; return (result, exception)."""
    try:
        return call(), None
    except BearerError as exc:
        return None, exc


# -- resource server: JWT ------------------------------------------------------------


def jwt_tokens() -> dict[str, str]:
    """Valid and invalid JWTs, some carrying attacker text in the header."""
    return {
        "valid": material.mint(),
        "expired": material.expired(),
        "forged": material.forged(),
        "wrong-aud": material.mint(audience="api://other"),
        "unknown-kid": material.mint(kid="LeakCanaryKid\r\nSet-Cookie: x=y"),
        "crit": material.mint(header={"crit": ['LeakCanaryCrit"']}),
        "truncated": material.mint()[:-5],
        "bad-json": "eyJMZWFrQ2FuYXJ5IjoK.eyJ4IjoxfQ.c2ln",
    }


def test_jwt_verifier_leaks_nothing(captured: pytest.LogCaptureFixture) -> None:
    """JWT verification (sync, async, explain) never shows a token in logs, errors or reprs."""
    verifier = JWTVerifier(issuer=material.ISSUER, audience=material.AUDIENCE, keys=material.jwks())
    tokens = jwt_tokens()
    texts: list[str] = [repr(verifier)]
    for token in tokens.values():
        result, error = outcome(lambda t=token: verifier.verify(t))
        texts += exception_texts(error)
        if result is not None:
            texts += [repr(result), str(result)]
        _, async_error = outcome(lambda t=token: asyncio.run(verifier.averify(t)))
        texts += exception_texts(async_error)
        texts += [repr(check) for check in verifier.explain(token)]
    texts += log_texts(captured)
    secrets = [*tokens.values(), "LeakCanaryKid", "LeakCanaryCrit"]
    assert_clean(texts, secrets, "JWT verification")


# -- resource server: introspection ---------------------------------------------------


def _answers(request: httpx.Request) -> httpx.Response:
    """A fake AS: a different fault per token, and a good answer for OPAQUE."""
    form = dict(pair.split("=", 1) for pair in request.content.decode().split("&"))
    token = form["token"]
    if token.endswith("-500"):
        return httpx.Response(500, text="error echoing " + token)
    if token.endswith("-401"):
        return httpx.Response(401, json={"error": "invalid_client"})
    if token.endswith("-redirect"):
        return httpx.Response(302, headers={"location": "https://evil.test/?t=" + token})
    if token.endswith("-html"):
        return httpx.Response(
            200, text=f"<html>{token}</html>", headers={"content-type": "text/html"}
        )
    if token.endswith("-badtype"):
        return httpx.Response(200, json={"active": True, "scope": [token], "sub": token})
    if token.endswith("-inactive"):
        return httpx.Response(200, json={"active": False})
    if token.endswith("-refresh"):
        return httpx.Response(200, json={"active": True, "token_type": "refresh_token"})
    return httpx.Response(
        200, json={"active": True, "scope": "items:read", "sub": "u", "client_id": "c"}
    )


@pytest.mark.parametrize(
    "auth_method",
    [
        pytest.param("client_secret_basic", id="basic"),
        pytest.param("client_secret_post", id="post"),
    ],
)
def test_introspection_leaks_nothing(captured: pytest.LogCaptureFixture, auth_method: str) -> None:
    """Introspection faults and answers never show the token or the RS secret."""
    verifier = IntrospectionVerifier(
        introspection_uri="https://as.leak.test/introspect",
        client_id="rs",
        client_secret=RS_SECRET,
        auth_method=auth_method,  # type: ignore[arg-type]
        cache=MemoryCache(),
        runner=HTTPRunner(
            transport=httpx.MockTransport(_answers), async_transport=httpx.MockTransport(_answers)
        ),
    )
    suffixes = ["", "-500", "-401", "-redirect", "-html", "-badtype", "-inactive", "-refresh"]
    tokens = [OPAQUE + suffix for suffix in suffixes] + ["LeakCanary bad chars!"]
    texts: list[str] = [repr(verifier), str(verifier)]
    for token in tokens:
        for call in (
            lambda t=token: verifier.verify(t),
            lambda t=token: asyncio.run(verifier.averify(t)),
        ):
            result, error = outcome(call)
            texts += exception_texts(error)
            if result is not None:
                texts += [repr(result), str(result)]
                for entry in verifier._cache._data._data.values():  # type: ignore[attr-defined]
                    texts.append(repr(entry))
    texts += log_texts(captured)
    assert_clean(texts, [*tokens, RS_SECRET, "LeakCanary bad"], "introspection")


def test_introspection_url_credentials_not_logged_by_scopegate(
    captured: pytest.LogCaptureFixture,
) -> None:
    """Userinfo or query secrets in the endpoint URL stay out of scopegate's own logs and reprs.

    (httpx's own INFO line prints the request URL as configured; keep credentials out
    of URLs or raise the ``httpx`` logger's level.)
    """
    url_secret = "LeakCanaryUrlSecret-71d0"
    verifier = IntrospectionVerifier(
        introspection_uri=f"https://user:{url_secret}@as.leak.test/introspect?k={url_secret}",
        client_id="rs",
        client_secret=RS_SECRET,
        runner=HTTPRunner(transport=httpx.MockTransport(_answers)),
    )
    texts = [repr(verifier), str(verifier)]
    for token in (OPAQUE + "-500", OPAQUE + "-401", OPAQUE + "-html", OPAQUE + "-badtype"):
        _, error = outcome(lambda t=token: verifier.verify(t))
        texts += exception_texts(error)
    own = [r for r in captured.records if r.name.startswith("scopegate")]
    assert own, "expected scopegate warnings for the faults"
    texts += [r.getMessage() for r in own] + [repr(r.args) for r in own]
    assert_clean(texts, [url_secret, OPAQUE, RS_SECRET], "introspection endpoint URL")


def test_redis_cache_errors_leak_nothing(captured: pytest.LogCaptureFixture) -> None:
    """A Redis URL with a password, Redis unreachable: neither repr nor logs show the password."""
    from tests.servers import free_port

    cache = RedisCache(f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    verifier = IntrospectionVerifier(
        introspection_uri="https://as.leak.test/introspect",
        client_id="rs",
        client_secret=RS_SECRET,
        cache=cache,
        runner=HTTPRunner(transport=httpx.MockTransport(_answers)),
    )
    result, error = outcome(lambda: verifier.verify(OPAQUE))
    assert isinstance(result, AccessToken), error
    texts = [repr(cache), str(cache), repr(verifier), *log_texts(captured)]
    assert_clean(texts, [REDIS_PASSWORD, OPAQUE, RS_SECRET], "redis cache")
    cache.close()


# -- resource server: middleware responses ----------------------------------------------


def _hybrid() -> HybridVerifier:
    return HybridVerifier(
        jwt=JWTVerifier(issuer=material.ISSUER, audience=material.AUDIENCE, keys=material.jwks()),
        introspection=IntrospectionVerifier(
            introspection_uri="https://as.leak.test/introspect",
            client_id="rs",
            client_secret=RS_SECRET,
            runner=HTTPRunner(
                transport=httpx.MockTransport(_answers),
                async_transport=httpx.MockTransport(_answers),
            ),
        ),
    )


def _requests() -> list[tuple[list[str], str]]:
    """(Authorization values, query string) pairs: every error path of the guard."""
    tokens = [*jwt_tokens().values(), OPAQUE + "-500", OPAQUE + "-inactive", OPAQUE + "-html"]
    cases = [(["Bearer " + t], "") for t in tokens]
    cases += [
        (["Bearer " + OPAQUE, "Bearer " + OPAQUE + "2"], ""),
        (["Bearer " + OPAQUE], "access_token=" + OPAQUE + "q"),
        (["Bearer " + OPAQUE + '"quote'], ""),
        (["Bearer " + OPAQUE + "x" * 9000], ""),
        ([], "access_token=" + OPAQUE + "query"),
        (["Basic " + base64.b64encode(f"rs:{RS_SECRET}".encode()).decode()], ""),
    ]
    return cases


async def _asgi_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_asgi_responses_leak_nothing(captured: pytest.LogCaptureFixture) -> None:
    """ASGI middleware responses (status, headers, body) never echo the token."""
    app = ASGIMiddleware(_asgi_app, verifier=_hybrid())
    texts: list[str] = []
    secrets: list[str] = [OPAQUE, RS_SECRET]
    for values, query in _requests():
        secrets += [v.split(" ", 1)[1] for v in values if v.startswith("Bearer ")]
        sent: list[MutableMapping[str, Any]] = []
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/items",
            "raw_path": b"/items",
            "query_string": query.encode(),
            "headers": [(b"authorization", v.encode()) for v in values],
        }

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(
            message: MutableMapping[str, Any], sent: list[MutableMapping[str, Any]] = sent
        ) -> None:
            sent.append(message)

        asyncio.run(app(scope, receive, send))
        texts += [repr(message) for message in sent]
    texts += log_texts(captured)
    assert_clean(texts, secrets, "ASGI responses")
    # Real verifiers raise only BearerError: the guard's catch-all never fired.
    assert "unexpected" not in captured.text


def test_wsgi_responses_leak_nothing(captured: pytest.LogCaptureFixture) -> None:
    """WSGI middleware responses never echo the token."""

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [b"ok"]

    app = WSGIMiddleware(wsgi_app, verifier=_hybrid())
    texts: list[str] = []
    secrets: list[str] = [OPAQUE, RS_SECRET]
    for values, query in _requests():
        secrets += [v.split(" ", 1)[1] for v in values if v.startswith("Bearer ")]
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/items",
            "QUERY_STRING": query,
            "wsgi.input": io.BytesIO(b""),
        }
        if values:
            environ["HTTP_AUTHORIZATION"] = ", ".join(values)
        captured_response: list[Any] = []

        def start_response(
            status: str,
            headers: list[Any],
            exc_info: Any = None,
            out: list[Any] = captured_response,
        ) -> Any:
            out.append((status, headers))
            return lambda data: None

        body = b"".join(app(environ, start_response))
        texts += [repr(captured_response), body.decode("latin-1")]
    texts += log_texts(captured)
    assert_clean(texts, secrets, "WSGI responses")


def test_extraction_errors_leak_nothing() -> None:
    """Bearer extraction errors carry fixed text only."""
    texts: list[str] = []
    for values, query in _requests():
        try:
            texts.append(
                repr(
                    extract_token(
                        authorization=values,
                        method="GET",
                        query_string=query,
                        allow_query_token=True,
                    )
                )
            )
        except BearerError as exc:
            texts += exception_texts(exc)
    assert_clean(texts, [OPAQUE], "bearer extraction")


# -- issuer ---------------------------------------------------------------------------


def _issuer() -> Issuer:
    clients = [
        Client(
            "app",
            (CLIENT_SECRET,),
            grant_types=frozenset({"password", "refresh_token", "client_credentials"}),
            scopes=frozenset({"items:read"}),
        ),
        Client("rs", (RS_SECRET,), introspect=True),
    ]
    users = [User("u-1", "alice", PASSWORD, scopes=frozenset({"items:read"}))]
    config = IssuerConfig(
        issuer="https://issuer.leak.test", audience="api://leak", allow_password_grant=True
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the password grant's start-up warning
        return Issuer(config, clients=clients, users=users)


def _post(
    issuer: Issuer, path: str, form: list[tuple[str, str]], auth: tuple[str, str] | None
) -> HTTPResponse:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if auth is not None:
        headers["authorization"] = (
            "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        )
    return issuer.handle(
        HTTPRequest("POST", path, "", headers, urlencode(form).encode(), "127.0.0.9")
    )


def test_issuer_flows_leak_nothing(captured: pytest.LogCaptureFixture) -> None:
    """Grants, refresh rotation, reuse, revocation and introspection never log or echo secrets."""
    issuer = _issuer()
    app_auth = ("app", CLIENT_SECRET)
    responses: list[HTTPResponse] = []
    login = _post(
        issuer,
        "/token",
        [("grant_type", "password"), ("username", "alice"), ("password", PASSWORD)],
        app_auth,
    )
    assert login.status == 200
    issued = login.json()
    rotated = _post(
        issuer,
        "/token",
        [("grant_type", "refresh_token"), ("refresh_token", issued["refresh_token"])],
        app_auth,
    )
    assert rotated.status == 200
    second = rotated.json()
    issued_tokens = [
        issued["access_token"],
        issued["refresh_token"],
        second["access_token"],
        second["refresh_token"],
    ]
    # Error paths: every one is a chance to echo a secret.
    responses += [
        _post(
            issuer,
            "/token",
            [("grant_type", "refresh_token"), ("refresh_token", issued["refresh_token"])],
            app_auth,
        ),
        _post(
            issuer,
            "/token",
            [("grant_type", "refresh_token"), ("refresh_token", second["refresh_token"])],
            app_auth,
        ),
        _post(
            issuer,
            "/token",
            [("grant_type", "password"), ("username", "alice"), ("password", PASSWORD + "x")],
            app_auth,
        ),
        _post(
            issuer,
            "/token",
            [("grant_type", "password"), ("username", PASSWORD), ("password", PASSWORD)],
            app_auth,
        ),
        _post(
            issuer, "/token", [("grant_type", "client_credentials")], ("app", CLIENT_SECRET + "x")
        ),
        _post(
            issuer,
            "/token",
            [("grant_type", "client_credentials"), ("client_secret", CLIENT_SECRET)],
            app_auth,
        ),
        _post(
            issuer,
            "/token",
            [
                ("grant_type", "client_credentials"),
                ("client_id", "app"),
                ("client_secret", CLIENT_SECRET),
            ],
            None,
        ),
        _post(issuer, "/token", [("grant_type", CLIENT_SECRET)], app_auth),
        _post(
            issuer, "/token", [("grant_type", "client_credentials"), ("scope", PASSWORD)], app_auth
        ),
        _post(issuer, "/introspect", [("token", second["access_token"])], ("rs", RS_SECRET)),
        _post(issuer, "/introspect", [("token", issued["refresh_token"])], ("rs", RS_SECRET)),
        _post(issuer, "/introspect", [("token", second["access_token"])], ("rs", RS_SECRET + "x")),
        _post(issuer, "/revoke", [("token", second["refresh_token"])], ("rs", RS_SECRET)),
        _post(issuer, "/revoke", [("token", second["refresh_token"])], app_auth),
        issuer.handle(
            HTTPRequest("POST", "/token", "client_secret=" + CLIENT_SECRET, {}, b"", "127.0.0.9")
        ),
        issuer.handle(HTTPRequest("GET", "/token", "password=" + PASSWORD, {}, b"", "127.0.0.9")),
    ]
    texts = [repr(r.headers) + r.body.decode() for r in responses]
    texts += [repr(issuer.config), repr(issuer.store)]
    texts += log_texts(captured)
    assert_clean(texts, [CLIENT_SECRET, PASSWORD, RS_SECRET, *issued_tokens], "issuer")
    # The only response allowed to carry a token is the one that issues it.
    assert_clean([login.body.decode()], [CLIENT_SECRET, PASSWORD], "token response")


def test_issuer_wsgi_app_leaks_nothing(captured: pytest.LogCaptureFixture) -> None:
    """The issuer's WSGI adapter, on malformed input, echoes no secret."""
    app = create_wsgi_app(_issuer())
    texts: list[str] = []
    bodies = [
        b"grant_type=password&username=alice&password=" + PASSWORD.encode() + b"&password=x",
        b"grant_type=password&username=alice&password=%ff" + PASSWORD.encode(),
        b"client_secret=" + CLIENT_SECRET.encode() + b"&client_secret=" + CLIENT_SECRET.encode(),
        json.dumps({"client_secret": CLIENT_SECRET}).encode(),
    ]
    for body in bodies:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/token",
            "QUERY_STRING": "",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "REMOTE_ADDR": "127.0.0.7",
            "HTTP_AUTHORIZATION": "Basic "
            + base64.b64encode(f"app:{CLIENT_SECRET}".encode()).decode(),
        }
        seen: list[Any] = []
        out = b"".join(
            app(
                environ,
                lambda status, headers, exc_info=None, seen=seen: seen.append((status, headers)),
            )
        )
        assert not seen[0][0].startswith("5"), seen
        texts += [repr(seen), out.decode("latin-1")]
    texts += log_texts(captured)
    assert_clean(texts, [CLIENT_SECRET, PASSWORD], "issuer WSGI app")


def test_object_reprs_hide_secrets() -> None:
    """Reprs of clients, users, tokens and credentials hold no secret."""
    token = material.mint()
    objects: list[Any] = [
        AccessToken("s", "c", frozenset(), None, token=token),
        extract_token(authorization=["Bearer " + OPAQUE], method="GET"),
        Client("app", (CLIENT_SECRET,)),
        User("u-1", "alice", PASSWORD),
        IssuerConfig(issuer="https://issuer.leak.test", audience="api://leak"),
    ]
    texts = [repr(o) for o in objects] + [str(o) for o in objects]
    assert_clean(texts, [token, OPAQUE, CLIENT_SECRET, PASSWORD], "reprs")
