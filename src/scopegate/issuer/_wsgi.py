"""The issuer as a plain WSGI application (PEP 3333).

Example::

    from waitress import serve
    from scopegate.issuer import create_wsgi_app
    serve(create_wsgi_app(issuer), host="127.0.0.1", port=9000)

Security caveat: throttling keys on ``REMOTE_ADDR``. Behind a reverse proxy, let the
proxy (or a trusted ``ProxyFix``-style middleware) set it from a header the proxy
controls; never trust ``X-Forwarded-For`` sent by clients (RFC 9700 §4.13).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from scopegate.issuer._endpoints import HTTPRequest, HTTPResponse
from scopegate.issuer._errors import InvalidRequestError, RequestTooLargeError

if TYPE_CHECKING:
    from scopegate.issuer._issuer import Issuer

__all__ = ["create_wsgi_app"]

StartResponse = Callable[..., Any]
_REASONS = {
    200: "OK",
    204: "No Content",
    302: "Found",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def create_wsgi_app(issuer: Issuer) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """A WSGI app serving every issuer endpoint.

    Args:
        issuer: The configured :class:`~scopegate.issuer.Issuer`.

    Returns:
        The WSGI callable. Bodies above ``max_body_bytes`` get 413 unread.
    """
    limit = issuer.config.max_body_bytes
    realm = issuer.config.issuer

    def send(response: HTTPResponse, start_response: StartResponse) -> list[bytes]:
        status = f"{response.status} {_REASONS.get(response.status, 'Unknown')}"
        headers = [*response.headers, ("content-length", str(len(response.body)))]
        start_response(status, headers)
        return [response.body]

    def error(exc: InvalidRequestError, start_response: StartResponse) -> list[bytes]:
        rendered = exc.to_response(realm)
        return send(HTTPResponse(rendered.status, rendered.headers, rendered.body), start_response)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return error(InvalidRequestError("Invalid Content-Length"), start_response)
        if length > limit:
            return error(RequestTooLargeError(), start_response)
        stream = environ.get("wsgi.input")
        body = stream.read(length) if stream is not None and length > 0 else b""
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if "CONTENT_TYPE" in environ:
            headers["content-type"] = environ["CONTENT_TYPE"]
        path = environ.get("PATH_INFO", "")
        # PEP 3333 hands PATH_INFO over as latin-1-decoded bytes.
        with contextlib.suppress(UnicodeError):
            path = (environ.get("SCRIPT_NAME", "") + path).encode("latin-1").decode("utf-8")
        request = HTTPRequest(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=path,
            query=environ.get("QUERY_STRING", ""),
            headers=headers,
            body=body,
            client_address=environ.get("REMOTE_ADDR"),
        )
        return send(issuer.handle(request), start_response)

    return app
