"""Property tests for the issuer's HTTP adapters (WSGI and Starlette/ASGI).

The adapters read the body (with a size cap), the headers and the client address before
the sans-io core sees anything. Whatever the transport hands them (odd
``Content-Length`` values, chunked bodies over the cap, repeated fields, non-UTF-8
paths) the answer is a documented OAuth response, never a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
from collections.abc import MutableMapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scopegate.issuer import create_wsgi_app
from scopegate.issuer._asgi import create_asgi_app
from tests.fuzz.profile import count, fuzz_settings
from tests.fuzz.test_issuer_fuzz import ISSUER, SECRET

GOOD = "Basic " + base64.b64encode(f"svc:{SECRET}".encode()).decode()
OTHER = "Basic " + base64.b64encode(b"post:wrong").decode()
FORM = "application/x-www-form-urlencoded"
WSGI_APP = create_wsgi_app(ISSUER)
ASGI_APP = create_asgi_app(ISSUER)
LIMIT = ISSUER.config.max_body_bytes
ALLOWED = (200, 400, 401, 404, 405, 413, 429)


def call_wsgi(environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Run the WSGI app once."""
    seen: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.append((int(status.split()[0]), dict(headers)))
        return lambda data: None

    body = b"".join(WSGI_APP(environ, start_response))
    return seen[0][0], seen[0][1], body


def call_asgi(
    method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, dict[str, str], bytes]:
    """Run the Starlette app once with the body split into *chunks*."""
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks or [b""])
    ]
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("10.9.8.7", 1234),
        "server": ("issuer.fuzz.test", 443),
    }
    asyncio.run(ASGI_APP(scope, receive, send))
    start = sent[0]
    out_headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]}
    return start["status"], out_headers, b"".join(m.get("body", b"") for m in sent[1:])


def check(status: int, headers: dict[str, str], body: bytes) -> None:
    """A documented answer: no 5xx, JSON, no secret echoed."""
    assert status in ALLOWED, (status, body[:200])
    assert SECRET.encode() not in body
    json.loads(body)


@fuzz_settings(dev=150, ci=1500)
@given(
    content_length=st.sampled_from(
        ["", "0", "-1", "abc", "1e3", " 12 ", str(LIMIT + 1), "99999999999"]
    )
    | st.integers(0, 200).map(str),
    body=st.binary(max_size=200),
    method=st.sampled_from(["POST", "GET", "post", "DELETE"]),
    path=st.sampled_from(
        ["/token", "/introspect", "/revoke", "/jwks.json", "/x", "/t\xc3\xa9", "/\xff"]
    ),
    remote=st.none() | st.just("10.1.2.3"),
    authorization=st.none() | st.sampled_from([GOOD, OTHER, f"{GOOD}, {OTHER}", "Basic"]),
)
def test_wsgi_adapter_total(
    content_length: str,
    body: bytes,
    method: str,
    path: str,
    remote: str | None,
    authorization: str | None,
) -> None:
    """The WSGI adapter answers every environ with a documented status, never 5xx."""
    count("issuer.wsgi_adapter")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "CONTENT_TYPE": FORM,
        "CONTENT_LENGTH": content_length,
        "wsgi.input": io.BytesIO(body),
    }
    if remote is not None:
        environ["REMOTE_ADDR"] = remote
    if authorization is not None:
        environ["HTTP_AUTHORIZATION"] = authorization
    check(*call_wsgi(environ))


@fuzz_settings(dev=100, ci=1000)
@given(
    chunks=st.lists(st.binary(max_size=40), max_size=4)
    | st.just([b"grant_type=client_credentials"])
    | st.just([b"x" * (LIMIT // 2), b"y" * (LIMIT // 2 + 10)]),
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [b"authorization", b"content-type", b"content-length", b"x-forwarded-for"]
            ),
            st.sampled_from([GOOD.encode(), OTHER.encode(), FORM.encode(), b"5", b"\xff\xfe"]),
        ),
        max_size=4,
    ),
    path=st.sampled_from(["/token", "/introspect", "/revoke"]),
)
def test_asgi_adapter_total(
    chunks: list[bytes], headers: list[tuple[bytes, bytes]], path: str
) -> None:
    """The Starlette adapter answers any header list and chunked body with no 5xx."""
    count("issuer.asgi_adapter")
    status, out_headers, body = call_asgi("POST", path, headers, chunks)
    check(status, out_headers, body)
    if sum(len(c) for c in chunks) > LIMIT:
        assert status == 413


def _form_headers(*authorizations: str) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", FORM.encode())] + [
        (b"authorization", value.encode()) for value in authorizations
    ]


def test_asgi_repeated_authorization_is_invalid_request() -> None:
    """Two Authorization fields are ambiguous credentials: 400, not "the last one wins".

    RFC 9110 §5.3 forbids repeating a non-list field; a proxy that reads the first value
    and an issuer that reads the last would disagree on who the client is (the resource
    server side already refuses this with 400, attacks.md A-5).
    """
    for values in [(GOOD, OTHER), (OTHER, GOOD)]:
        status, _, body = call_asgi(
            "POST", "/token", _form_headers(*values), [b"grant_type=client_credentials"]
        )
        assert status == 400, (values, status, body)
        assert json.loads(body)["error"] == "invalid_request"
