"""FastMCP integration: scopegate verification as a FastMCP auth provider.

Install with ``pip install 'scopegate[fastmcp]'``.

:class:`ScopegateAuthProvider` is a FastMCP ``RemoteAuthProvider``: give it to
``FastMCP(auth=...)`` and FastMCP serves the RFC 9728 metadata (scopegate's document, at
the path-inserted and the root well-known URL), answers 401/403 with its own challenges
(``scope`` and ``resource_metadata`` included) and calls scopegate's verifier for every
token. On top of FastMCP's behaviour it gives scopegate's verification (caches, single
flights, the audience always checked, DPoP-bound tokens refused as Bearer), the SDK's
resource check on every token, and **503 + ``Retry-After``** when the authorization
server is unreachable, where FastMCP's own verifiers answer 401 (and make the client
throw its good token away) or 500.

What it cannot give: an HTTP 403 for a *tool* (FastMCP hides a tool or answers an
``isError`` result instead, so no client steps up). For per-tool scopes wrap FastMCP's
app, built **without** ``auth``, in :class:`scopegate.integrations.mcp.MCPGate`::

    app = MCPGate(mcp.http_app(path="/mcp"), verifier=..., options=..., tool_scopes=...)

Example::

    from fastmcp import FastMCP
    from scopegate import JWTVerifier
    from scopegate.integrations.fastmcp import ScopegateAuthProvider

    auth = ScopegateAuthProvider(
        JWTVerifier(issuer="https://auth.example.com", audience="https://mcp.example.com/mcp"),
        base_url="https://mcp.example.com",              # resource = base_url + MCP path
        authorization_servers=["https://auth.example.com"],
        required_scopes=["items:read"],
    )
    mcp = FastMCP("items", auth=auth)
    app = mcp.http_app(path="/mcp")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scopegate._extras import missing_extra

try:
    from fastmcp.server.auth import AccessToken as FastMCPAccessToken
    from fastmcp.server.auth import RemoteAuthProvider, TokenVerificationError, TokenVerifier
    from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
    from mcp.server.auth.middleware.bearer_auth import BearerAuthBackend
    from starlette.authentication import AuthCredentials, BaseUser
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import HTTPConnection, Request
    from starlette.responses import Response
    from starlette.routing import Route
except ImportError as exc:  # pragma: no cover - exercised by a test that hides fastmcp
    raise missing_extra(__name__, "FastMCP") from exc

from scopegate._errors import ConfigurationError, ServiceUnavailableError
from scopegate._guard import _check_audience
from scopegate._resource import ProtectedResource
from scopegate._verifier import TokenVerifier as ScopegateVerifier
from scopegate.integrations import mcp as mcp_integration

__all__ = ["ScopegateAuthProvider", "ScopegateTokenVerifier", "VerificationUnavailableError"]


class VerificationUnavailableError(TokenVerificationError):
    """FastMCP's "could not verify" error, carrying scopegate's 503.

    Attributes:
        error: The :class:`~scopegate.ServiceUnavailableError` (``retry_after``).
    """

    def __init__(self, error: ServiceUnavailableError) -> None:
        self.error = error
        super().__init__(error.description)


class ScopegateTokenVerifier(TokenVerifier):
    """A scopegate verifier as a FastMCP ``TokenVerifier``.

    Returns FastMCP's ``AccessToken`` (claims, subject, ``resource`` = the token's
    audience entry for the resource) or ``None``; an unreachable authorization server
    raises :class:`VerificationUnavailableError` (FastMCP's ``TokenVerificationError``),
    never ``None``. Use it alone as ``FastMCP(auth=...)`` only if you need no RFC 9728
    metadata; :class:`ScopegateAuthProvider` is the complete provider.

    Args:
        verifier: A :class:`~scopegate.TokenVerifier`.
        resource: The resource identifier tokens must be issued for (set by
            :class:`ScopegateAuthProvider` from its base URL and the MCP path).
        required_scopes: Scopes every request needs (FastMCP answers 403 without them
            and names them in its 401).
        base_url: This server's public base URL.
    """

    def __init__(
        self,
        verifier: ScopegateVerifier,
        *,
        resource: str | None = None,
        required_scopes: Sequence[str] | None = None,
        base_url: str | None = None,
    ) -> None:
        if isinstance(required_scopes, str):
            raise ConfigurationError("required_scopes must be a list of scopes, not a str")
        super().__init__(
            base_url=base_url, required_scopes=list(required_scopes) if required_scopes else None
        )
        self._adapter = mcp_integration.MCPTokenVerifier(verifier, resource=resource)
        self.verifier = verifier

    @property
    def resource(self) -> str | None:
        """The resource identifier tokens are checked against."""
        return self._adapter.resource

    @resource.setter
    def resource(self, value: str | None) -> None:
        self._adapter.resource = value

    async def verify_token(self, token: str) -> FastMCPAccessToken | None:
        """FastMCP's token for *token*, or ``None`` when it is not acceptable.

        Raises:
            VerificationUnavailableError: The verifier could not reach what it needs.
        """
        try:
            verified = await self._adapter.averify(token)
        except mcp_integration.VerifierUnavailableError as exc:
            raise VerificationUnavailableError(exc.error) from exc
        if verified is None:
            return None
        sdk = mcp_integration.sdk_access_token(verified, self.resource, cls=FastMCPAccessToken)
        assert isinstance(sdk, FastMCPAccessToken)
        return sdk


class _UnavailableAwareBackend(BearerAuthBackend):
    """The SDK's bearer backend, turning "could not verify" into a Starlette auth error."""

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        try:
            result: tuple[AuthCredentials, BaseUser] | None = await super().authenticate(conn)
        except VerificationUnavailableError as exc:
            raise mcp_integration.VerifierUnavailableError(exc.error) from exc
        except TokenVerificationError as exc:
            # Another verifier's outage: a 503 with the default Retry-After.
            raise mcp_integration.VerifierUnavailableError(ServiceUnavailableError()) from exc
        return result


class ScopegateAuthProvider(RemoteAuthProvider):
    """A FastMCP auth provider verifying tokens with scopegate (RFC 9728 resource server).

    Args:
        verifier: A :class:`~scopegate.TokenVerifier`; its audience must include the
            resource identifier, ``base_url`` + the MCP path (checked when FastMCP
            builds the app).
        base_url: This server's public base URL (``https://mcp.example.com``).
        authorization_servers: Issuer identifiers listed in the metadata, exactly as
            each authorization server spells its ``issuer``.
        required_scopes: Scopes every request needs; FastMCP names them in its 401
            and answers 403 without them.
        scopes_supported: Scopes listed in the metadata (default: *required_scopes*).
        resource_name: The metadata's ``resource_name``.
        resource_documentation: The metadata's ``resource_documentation``.
        realm: The ``realm`` of the 503 challenge.

    Raises:
        ConfigurationError: An unusable URL or scope.
    """

    def __init__(
        self,
        verifier: ScopegateVerifier,
        *,
        base_url: str,
        authorization_servers: Sequence[str],
        required_scopes: Sequence[str] | None = None,
        scopes_supported: Sequence[str] | None = None,
        resource_name: str | None = None,
        resource_documentation: str | None = None,
        realm: str = "api",
    ) -> None:
        if not isinstance(base_url, str):
            raise ConfigurationError("base_url must be a str")
        if isinstance(authorization_servers, str):
            raise ConfigurationError("authorization_servers must be a list of issuers")
        self._base = base_url.rstrip("/")
        self._servers = tuple(authorization_servers)
        scopes = list(scopes_supported if scopes_supported is not None else required_scopes or ())
        # Validated once, by the class that serves the document.
        self._describe: dict[str, Any] = {
            "authorization_servers": self._servers,
            "scopes_supported": scopes,
            "resource_name": resource_name,
            "resource_documentation": resource_documentation,
        }
        self.protected_resource = ProtectedResource(resource=self._base, **self._describe)
        self._on_error = mcp_integration.unavailable_handler(realm)
        super().__init__(
            token_verifier=ScopegateTokenVerifier(
                verifier, required_scopes=required_scopes, base_url=base_url
            ),
            # FastMCP types these as URLs; scopegate serves the metadata itself, verbatim.
            authorization_servers=list(self._servers),  # type: ignore[arg-type]
            base_url=base_url,
            scopes_supported=scopes,
            resource_name=resource_name,
            required_scopes=list(required_scopes) if required_scopes else None,
        )
        self.scopegate_verifier = verifier

    def set_mcp_path(self, mcp_path: str | None) -> None:
        """Fix the resource identifier to ``base_url`` + *mcp_path* (FastMCP calls this)."""
        super().set_mcp_path(mcp_path)
        suffix = "/" + mcp_path.lstrip("/") if mcp_path else ""
        resource = self._base + suffix
        self.protected_resource = ProtectedResource(resource=resource, **self._describe)
        _check_audience(self.scopegate_verifier, resource)
        verifier = self.token_verifier
        assert isinstance(verifier, ScopegateTokenVerifier)
        verifier.resource = resource

    def get_routes(self, mcp_path: str | None = None) -> list[Route]:
        """The RFC 9728 metadata, at the path-inserted and the root well-known URL."""
        self.set_mcp_path(mcp_path)
        response = self.protected_resource.response()

        async def metadata(request: Request) -> Response:
            return Response(
                response.body, status_code=response.status, headers=dict(response.headers)
            )

        return [
            Route(path, metadata, methods=["GET", "HEAD"])
            for path in sorted(self.protected_resource.paths)
        ]

    def get_middleware(self) -> list[Any]:
        """FastMCP's auth middleware, answering 503 when the verifier cannot decide."""
        return [
            Middleware(
                AuthenticationMiddleware,
                backend=_UnavailableAwareBackend(self),
                on_error=self._on_error,
            ),
            Middleware(AuthContextMiddleware),
        ]
