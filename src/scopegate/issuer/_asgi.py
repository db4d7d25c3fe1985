"""The issuer as a Starlette (ASGI) application.

Example::

    from scopegate.issuer import create_asgi_app, Issuer
    app = create_asgi_app(issuer)      # uvicorn module:app

The issuer core is synchronous (password hashing, Redis calls), so each request runs in
Starlette's thread pool; the event loop only moves bytes.

Every path goes to :meth:`Issuer.handle`, which matches paths exactly: ``/token/`` is a
404 like any unknown path. Starlette's slash redirect is off, because a redirect built
from the client's ``Host`` header would make OAuth clients re-post their credentials to
another host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scopegate._extras import install_hint

try:
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover
    raise ImportError(install_hint("the issuer's ASGI app", "Starlette", "issuer")) from exc

from scopegate.issuer._endpoints import HTTPRequest, HTTPResponse
from scopegate.issuer._errors import RequestTooLargeError

if TYPE_CHECKING:
    from scopegate.issuer._issuer import Issuer

__all__ = ["create_asgi_app"]

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _to_starlette(response: HTTPResponse) -> Response:
    out = Response(content=response.body, status_code=response.status)
    del out.headers["content-length"]
    for name, value in response.headers:
        out.headers.append(name, value)
    out.headers["content-length"] = str(len(response.body))
    return out


def _headers(raw: list[tuple[bytes, bytes]]) -> dict[str, str]:
    # Repeated fields are joined as RFC 9110 §5.3 describes (as WSGI servers do), so two
    # Authorization headers reach the core as one ambiguous value (400), never "last wins".
    headers: dict[str, str] = {}
    for key, value in raw:
        name, text = key.decode("latin-1").lower(), value.decode("latin-1")
        headers[name] = f"{headers[name]}, {text}" if name in headers else text
    return headers


def create_asgi_app(issuer: Issuer) -> Starlette:
    """A Starlette app serving every issuer endpoint.

    Args:
        issuer: The configured :class:`~scopegate.issuer.Issuer`.

    Returns:
        The ASGI application. Bodies above ``max_body_bytes`` get 413 without being
        read in full.
    """
    limit = issuer.config.max_body_bytes
    realm = issuer.config.issuer

    async def endpoint(request: Request) -> Response:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                error = RequestTooLargeError().to_response(realm)
                return _to_starlette(HTTPResponse(error.status, error.headers, error.body))
        client = request.client
        neutral = HTTPRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers=_headers(request.headers.raw),
            body=bytes(body),
            client_address=client.host if client else None,
        )
        response = await run_in_threadpool(issuer.handle, neutral)
        return _to_starlette(response)

    app = Starlette(routes=[Route("/{path:path}", endpoint, methods=_METHODS)])
    app.router.redirect_slashes = False
    return app
