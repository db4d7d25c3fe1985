"""Property tests for RFC 6750 §2 extraction and the ASGI / WSGI middleware.

Every request, however malformed, ends in the application (200) or in one of the
documented RFC 6750 §3 responses (400, 401); the raw token never comes back in a
response, and the guard's "unexpected exception" path is never taken.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import MutableMapping
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scopegate._bearer import Credentials, extract_token, parse_authorization
from scopegate._errors import BearerError, InvalidRequestError, InvalidTokenError
from scopegate._token import AccessToken
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware
from tests.fuzz.profile import attempt, count, fuzz_settings
from tests.fuzz.strategies import B64TOKEN_ALPHABET

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
CANARY = "CanaryTok3n"
GOOD_PREFIX = "good"

# What a well-formed bearer credential looks like (RFC 6750 §2.1, RFC 9110 §5.5 OWS).
scheme = st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"])
spaces = st.integers(min_value=1, max_value=3).map(lambda n: " " * n)
ows = st.sampled_from(["", " ", "\t", " \t "])
token_body = st.text(alphabet=B64TOKEN_ALPHABET, min_size=1, max_size=40)
padded_token = st.tuples(token_body, st.integers(0, 2)).map(lambda t: t[0] + "=" * t[1])
# Latin-1 text, the only thing a header value can decode to.
latin1 = st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=60)
bad_char = st.characters(max_codepoint=0xFF).filter(
    lambda c: not B64TOKEN.fullmatch(c) and c != "="
)


@st.composite
def authorization_values(draw: st.DrawFn) -> str:
    """Header values: valid, nearly valid, other schemes, and random latin-1 text."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(ows) + draw(scheme) + draw(spaces) + CANARY + draw(padded_token) + draw(ows)
    if kind == 1:
        # A b64token with one forbidden character spliced in.
        token = CANARY + draw(token_body)
        at = draw(st.integers(0, len(token)))
        return "Bearer " + token[:at] + draw(bad_char) + token[at:]
    if kind == 2:
        return draw(st.sampled_from(["Basic", "DPoP", "Token", "Bearerx", "Bearer\t"])) + draw(
            latin1
        )
    if kind == 3:
        return "Bearer " + GOOD_PREFIX + CANARY + draw(token_body)
    return draw(latin1)


def query_strings() -> st.SearchStrategy[str]:
    """Raw query strings, often with (encoded) access_token parameters."""
    param = st.one_of(
        st.just("access_token=" + CANARY),
        st.just("access_token="),
        st.just("%61ccess_token=" + CANARY + "x"),
        st.just("access+token=" + CANARY),
        st.builds(
            lambda v: "access_token=" + v,
            st.text(alphabet="%0123456789abcdefAZ+=/~._-", max_size=30),
        ),
        st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    )
    return st.lists(param, max_size=4).map("&".join)


@fuzz_settings(dev=500, ci=4000)
@given(value=authorization_values(), max_length=st.sampled_from([16, 64, 8192]))
def test_parse_authorization_total(value: str, max_length: int) -> None:
    """One header value gives a b64token, None (other scheme) or invalid_token, and nothing else."""
    count("bearer.parse_authorization")
    token, exc = attempt(lambda: parse_authorization(value, max_length), InvalidTokenError)
    if isinstance(exc, InvalidTokenError):
        assert exc.status == 401
        assert CANARY not in str(exc) + repr(exc)
    elif token is not None:
        assert B64TOKEN.fullmatch(token)
        assert len(token) <= max_length
        assert token in value


@fuzz_settings(dev=300, ci=2000)
@given(before=ows, name=scheme, gap=spaces, token=padded_token, after=ows)
def test_wellformed_bearer_accepted(
    before: str, name: str, gap: str, token: str, after: str
) -> None:
    """Any RFC 6750 §2.1 credential (any scheme case, 1*SP, OWS around) yields exactly its token."""
    count("bearer.wellformed")
    assert parse_authorization(f"{before}{name}{gap}{token}{after}") == token


@fuzz_settings(dev=500, ci=4000)
@given(
    headers=st.lists(authorization_values(), max_size=2),
    method=st.sampled_from(["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"]),
    query=query_strings(),
    form=st.none() | query_strings().map(str.encode) | st.binary(max_size=60),
    allow_query=st.booleans(),
    allow_form=st.booleans(),
)
def test_extract_token_total(
    headers: list[str],
    method: str,
    query: str,
    form: bytes | None,
    allow_query: bool,
    allow_form: bool,
) -> None:
    """Extraction returns credentials from one method only, or a documented 400/401 error."""
    count("bearer.extract_token")
    found, exc = attempt(
        lambda: extract_token(
            authorization=headers,
            method=method,
            query_string=query,
            form_body=form,
            allow_query_token=allow_query,
            allow_form_token=allow_form,
        ),
        InvalidRequestError,
        InvalidTokenError,
    )
    if exc is not None:
        assert isinstance(exc, BearerError)
        assert exc.status in (400, 401)
        assert CANARY not in str(exc) + repr(exc)
        return
    assert isinstance(found, Credentials)
    assert CANARY not in repr(found)
    if found.token is None:
        assert found.source is None
        return
    assert B64TOKEN.fullmatch(found.token)
    if found.source == "header":
        assert len(headers) == 1
    else:
        # A header may be present, but only one with another scheme (RFC 6750 §2).
        assert len(headers) <= 1
        assert all(parse_authorization(h) is None for h in headers)
        if found.source == "query":
            assert allow_query
            assert method == "GET"
        else:
            assert found.source == "form"
            assert allow_form
            assert method == "POST"


class FakeVerifier:
    """Accepts tokens starting with ``good``; everything else is invalid_token."""

    def verify(self, token: str) -> AccessToken:
        """Verify by prefix."""
        if token.startswith(GOOD_PREFIX):
            return AccessToken("sub", "client", frozenset({"items:read"}), None, token=token)
        raise InvalidTokenError(reason="bad")

    async def averify(self, token: str) -> AccessToken:
        """Async twin."""
        return self.verify(token)


#: The body the current example sent; the app must read exactly these bytes.
SENT_BODY: list[bytes] = [b""]


async def _plain_asgi(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
    # Only the exactly-excluded path reaches the app without a verified token.
    assert scope.get("scopegate.token") is not None or scope["raw_path"] == b"/public"
    # A body buffered to look for access_token is replayed intact, chunks in order.
    received = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        received += message.get("body", b"")
        if not message.get("more_body", False):
            break
    assert received == SENT_BODY[0]
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
        }
    )
    await send({"type": "http.response.body", "body": b"ok"})


def _plain_wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    assert (
        environ.get("scopegate.token") is not None
        or environ["REQUEST_URI"].startswith("/public?")
        or environ["REQUEST_URI"] == "/public"
    )
    length = int(environ.get("CONTENT_LENGTH") or 0)
    assert environ["wsgi.input"].read(length) == SENT_BODY[0]
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


ASGI_APP = ASGIMiddleware(_plain_asgi, verifier=FakeVerifier(), exclude_paths=["/public"])
ASGI_LENIENT = ASGIMiddleware(
    _plain_asgi, verifier=FakeVerifier(), allow_query_token=True, allow_form_token=True
)
WSGI_APP = WSGIMiddleware(_plain_wsgi, verifier=FakeVerifier(), exclude_paths=["/public"])
WSGI_LENIENT = WSGIMiddleware(
    _plain_wsgi, verifier=FakeVerifier(), allow_query_token=True, allow_form_token=True
)


def _check_response(status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    """Shared assertions on any middleware response."""
    assert status in (200, 400, 401), status
    blob = body + repr(headers).encode("latin-1")
    assert CANARY.encode() not in blob
    if status != 200:
        lowered = {k.lower(): v for k, v in headers}
        assert lowered["www-authenticate"].startswith('Bearer realm="api"')
        data = json.loads(body)
        assert set(data) >= {"error", "error_description"}


requests_ = st.fixed_dictionaries(
    {
        "headers": st.lists(authorization_values(), max_size=2),
        "method": st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]),
        "path": st.sampled_from(["/", "/items", "/public", "/public/", "//public", "/%70ublic"]),
        "query": query_strings(),
        "form": st.none() | query_strings(),
        "lenient": st.booleans(),
        "cuts": st.lists(st.integers(0, 80), max_size=3),
        "extra": st.lists(
            st.tuples(
                st.sampled_from([b"origin", b"x-a", b"content-length"]), st.binary(max_size=10)
            ),
            max_size=2,
        ),
    }
)


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """Capture DEBUG logs so tests can assert nothing unexpected was logged."""
    caplog.set_level(logging.DEBUG)


@fuzz_settings(dev=400, ci=3000)
@given(request=requests_)
def test_asgi_middleware_total(request: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """The ASGI middleware answers 200 or a well-formed 400/401, never echoing the token."""
    count("bearer.asgi_middleware")
    caplog.clear()
    raw_headers = [(b"authorization", v.encode("latin-1")) for v in request["headers"]]
    body = b""
    if request["form"] is not None:
        body = request["form"].encode("latin-1")
        raw_headers.append((b"content-type", b"application/x-www-form-urlencoded"))
    raw_headers += request["extra"]
    scope = {
        "type": "http",
        "method": request["method"],
        "path": request["path"],
        "raw_path": request["path"].encode(),
        "query_string": request["query"].encode("latin-1"),
        "headers": raw_headers,
    }
    sent: list[MutableMapping[str, Any]] = []
    SENT_BODY[0] = body
    cuts = sorted({min(c, len(body)) for c in request["cuts"]})
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    chunks = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> dict[str, Any]:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    app = ASGI_LENIENT if request["lenient"] else ASGI_APP
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]]
    _check_response(start["status"], headers, b"".join(m.get("body", b"") for m in sent[1:]))
    assert "unexpected" not in caplog.text
    assert CANARY not in caplog.text


@fuzz_settings(dev=400, ci=3000)
@given(request=requests_)
def test_wsgi_middleware_total(request: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    """The WSGI middleware answers 200 or a well-formed 400/401, never echoing the token."""
    count("bearer.wsgi_middleware")
    caplog.clear()
    body = request["form"].encode("latin-1") if request["form"] is not None else b""
    SENT_BODY[0] = body
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request["method"],
        "PATH_INFO": request["path"],
        "REQUEST_URI": request["path"] + ("?" + request["query"] if request["query"] else ""),
        "QUERY_STRING": request["query"],
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)),
    }
    if request["headers"]:
        # WSGI servers merge repeated fields with ", " (see the wsgi module's caveat).
        environ["HTTP_AUTHORIZATION"] = ", ".join(request["headers"])
    if request["form"] is not None:
        environ["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["status"], captured["headers"] = int(status.split()[0]), headers
        return lambda data: None

    app = WSGI_LENIENT if request["lenient"] else WSGI_APP
    out = b"".join(app(environ, start_response))
    _check_response(captured["status"], captured["headers"], out)
    assert "unexpected" not in caplog.text
    assert CANARY not in caplog.text


@fuzz_settings(dev=200, ci=1500)
@given(
    headers=st.lists(authorization_values(), max_size=2),
    query=query_strings(),
    http_response=st.booleans(),
    lenient=st.booleans(),
)
def test_asgi_websocket_total(
    headers: list[str], query: str, http_response: bool, lenient: bool
) -> None:
    """A WebSocket handshake is accepted only with a verified token, else denied before accept."""
    count("bearer.asgi_websocket")
    reached: list[Any] = []

    async def ws_app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["scopegate.token"])
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": 1000})

    app = ASGIMiddleware(ws_app, verifier=FakeVerifier(), allow_query_token=lenient)
    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": query.encode("latin-1"),
        "headers": [(b"authorization", v.encode("latin-1")) for v in headers],
        "extensions": {"websocket.http.response": {}} if http_response else {},
    }
    sent: list[MutableMapping[str, Any]] = []
    inbox = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        return inbox.pop(0) if inbox else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    if reached:
        assert reached[0] is not None
        assert reached[0].token.startswith(GOOD_PREFIX)
        assert sent[0]["type"] == "websocket.accept"
    elif http_response:
        assert sent[0]["type"] == "websocket.http.response.start"
        assert sent[0]["status"] in (400, 401)
        assert CANARY.encode() not in repr(sent).encode()
    else:
        assert sent == [{"type": "websocket.close", "code": 1008}]
