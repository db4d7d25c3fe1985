"""Cross-origin access (Fetch standard CORS) for the endpoints browsers may call.

Opt-in for the token endpoint (``cors_origins``): a single-page app, or the Swagger UI
of an API, posts its token request from another origin and the browser first sends a
preflight (``OPTIONS`` with ``Access-Control-Request-Method``). The metadata and the
JWKS are public documents (RFC 9700 §2.6): readable from any origin unless
``cors_origins`` narrows them too. Introspection and revocation are server-to-server and
never answer cross-origin.

Origins are compared exactly (RFC 6454 serialisation). ``Access-Control-Allow-Origin``
names the caller's origin only when it is allowed (``*`` only when configured as the one
entry), and every answer that depends on the origin says ``Vary: Origin``. No
``Access-Control-Allow-Credentials`` is ever sent: the issuer uses no cookies there, and
client credentials travel in the ``Authorization`` header, which is listed explicitly.
"""

from __future__ import annotations

from scopegate.issuer._endpoints import HTTPRequest, HTTPResponse

__all__ = ["CORSPolicy"]

_MAX_AGE = "600"
_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


class CORSPolicy:
    """Which origins may call one endpoint, with which methods and request headers.

    Args:
        origins: Exact origins, or ``("*",)``.
        methods: The endpoint's methods (``("POST",)``, ``("GET", "HEAD")``).
        headers: Request headers a caller may send (lower case).
        exposed: Response headers beyond the CORS-safelisted ones a caller may read
            (``Access-Control-Expose-Headers``), such as ``dpop-nonce``.
    """

    def __init__(
        self,
        origins: tuple[str, ...],
        methods: tuple[str, ...],
        headers: tuple[str, ...],
        exposed: tuple[str, ...] = (),
    ) -> None:
        self._any = origins == ("*",)
        self._origins = frozenset(origins)
        self._methods = frozenset(methods)
        self._headers = frozenset(headers)
        self._allow_methods = ", ".join(methods)
        self._allow_headers = ", ".join(headers)
        self._expose: tuple[tuple[str, str], ...] = (
            (("access-control-expose-headers", ", ".join(exposed)),) if exposed else ()
        )

    def _allowed(self, origin: str | None) -> str | None:
        if origin is None:
            return None
        if self._any:
            return "*"
        return origin if origin in self._origins else None

    def preflight(self, request: HTTPRequest) -> HTTPResponse | None:
        """The answer to a CORS preflight, or ``None`` if *request* is not one."""
        method = request.header("access-control-request-method")
        if request.method != "OPTIONS" or method is None:
            return None
        vary = () if self._any else (("vary", _VARY),)
        allowed = self._allowed(request.header("origin"))
        asked = {
            name.strip().lower()
            for name in (request.header("access-control-request-headers") or "").split(",")
            if name.strip()
        }
        if allowed is None or method.strip() not in self._methods or not asked <= self._headers:
            # No Access-Control-Allow-* at all: the browser refuses the actual request.
            return HTTPResponse(
                403,
                (("content-type", "application/json"), *vary),
                b'{"error":"cross_origin_request_refused"}',
            )
        return HTTPResponse(
            204,
            (
                ("access-control-allow-origin", allowed),
                ("access-control-allow-methods", self._allow_methods),
                ("access-control-allow-headers", self._allow_headers),
                ("access-control-max-age", _MAX_AGE),
                *vary,
            ),
            b"",
        )

    def decorate(self, request: HTTPRequest, response: HTTPResponse) -> HTTPResponse:
        """Add ``Access-Control-Allow-Origin`` and ``-Expose-Headers`` (allowed origins
        only) and ``Vary``."""
        if self._any:
            extra: tuple[tuple[str, str], ...] = (
                ("access-control-allow-origin", "*"),
                *self._expose,
            )
        else:
            allowed = self._allowed(request.header("origin"))
            extra = (("vary", "Origin"),)
            if allowed is not None:
                extra = (("access-control-allow-origin", allowed), *self._expose, *extra)
        return HTTPResponse(response.status, response.headers + extra, response.body)
