"""OAuth 2.0 Protected Resource Metadata (RFC 9728): what this API tells its clients.

A :class:`ProtectedResource` describes the API once: its resource identifier (its
public URL, RFC 8707 §2), the authorization servers that issue tokens for it, its
scopes, its name and documentation. The guard serves the metadata document at the
well-known URL (RFC 9728 §3.1) and points every 401 and 403 challenge at it with
``resource_metadata`` (§5.1), so a client that knows only the API's URL finds the
authorization server, the scopes to ask for, and the ``resource`` to request a token
for; MCP clients rely on exactly this.

Everything comes from configuration, never from the request's ``Host`` or forwarded
headers: a request cannot make the API advertise another issuer or another resource.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scopegate._discovery import check_endpoint_url
from scopegate._errors import ConfigurationError, HTTPResponse
from scopegate._jose import is_scope_token
from scopegate._settings import boolean, whole

__all__ = ["WELL_KNOWN", "ProtectedResource"]

#: RFC 9728 §3: the well-known path segment, inserted before the resource's own path.
WELL_KNOWN = "/.well-known/oauth-protected-resource"


def _url(name: str, value: object) -> str:
    if not check_endpoint_url(value):
        raise ConfigurationError(
            f"{name} must be an https URL without fragment (http only for loopback hosts)"
        )
    assert isinstance(value, str)
    if urlsplit(value).query:
        raise ConfigurationError(f"{name} must not have a query")
    return value


def _texts(name: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigurationError(f"{name} must be a list of strings")
    items = tuple(value)
    if not all(isinstance(item, str) and item for item in items):
        raise ConfigurationError(f"{name} must contain non-empty strings")
    return items


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtectedResource:
    """This API as RFC 9728 describes it.

    Attributes:
        resource: The resource identifier: the API's public URL, https (http only for
            loopback), no query or fragment, no trailing slash needed. Tokens must be
            issued for it (its audience defaults to it).
        authorization_servers: Issuer identifiers of the authorization servers whose
            tokens the API accepts (RFC 8414 issuers).
        scopes_supported: Scopes the API understands.
        resource_name: A human-readable name.
        resource_documentation: A URL of documentation for developers.
        max_age: Seconds clients and caches may keep the document (``Cache-Control``).
        dpop_signing_alg_values_supported: DPoP proof algorithms accepted (RFC 9449).
        dpop_bound_access_tokens_required: Whether only DPoP-bound tokens are accepted.

    Raises:
        ConfigurationError: A URL that is not acceptable, or a mistyped value.

    Example:
        >>> resource = ProtectedResource(
        ...     resource="https://api.example/mcp",
        ...     authorization_servers=["https://auth.example"],
        ... )
        >>> resource.metadata_url
        'https://api.example/.well-known/oauth-protected-resource/mcp'
    """

    resource: str
    authorization_servers: Sequence[str] = ()
    scopes_supported: Sequence[str] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None
    max_age: int = 3600
    dpop_signing_alg_values_supported: Sequence[str] = ()
    dpop_bound_access_tokens_required: bool = False
    metadata_url: str = field(init=False)
    paths: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        resource = _url("resource", self.resource)
        servers = tuple(
            _url("authorization_servers", server)
            for server in _texts("authorization_servers", self.authorization_servers)
        )
        scopes = _texts("scopes_supported", self.scopes_supported)
        if not all(is_scope_token(scope) for scope in scopes):
            raise ConfigurationError("scopes_supported must be RFC 6749 scope-tokens")
        if self.resource_name is not None and (
            not isinstance(self.resource_name, str) or not self.resource_name
        ):
            raise ConfigurationError("resource_name must be a non-empty string")
        if self.resource_documentation is not None:
            _url("resource_documentation", self.resource_documentation)
        whole("max_age", self.max_age)
        algs = _texts("dpop_signing_alg_values_supported", self.dpop_signing_alg_values_supported)
        boolean("dpop_bound_access_tokens_required", self.dpop_bound_access_tokens_required)
        parts = urlsplit(resource)
        path = parts.path.rstrip("/")
        origin = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
        # RFC 9728 §3.1: the well-known segment goes between the host and the path.
        object.__setattr__(self, "metadata_url", origin + WELL_KNOWN + path)
        # The root form too, which clients try when the resource has a path.
        object.__setattr__(self, "paths", frozenset({WELL_KNOWN + path, WELL_KNOWN}))
        object.__setattr__(self, "authorization_servers", servers)
        object.__setattr__(self, "scopes_supported", scopes)
        object.__setattr__(self, "dpop_signing_alg_values_supported", algs)

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the resource: the API's public base URL."""
        parts = urlsplit(self.resource)
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))

    def document(
        self,
        bearer_methods: Sequence[str] = ("header",),
        *,
        dpop_algorithms: Sequence[str] = (),
        dpop_required: bool = False,
    ) -> dict[str, Any]:
        """The metadata document (RFC 9728 §2); members without a value are left out.

        The DPoP members default to what the guard accepts (*dpop_algorithms*,
        *dpop_required*) unless this description sets them.
        """
        document: dict[str, Any] = {"resource": self.resource}
        if self.authorization_servers:
            document["authorization_servers"] = list(self.authorization_servers)
        if self.scopes_supported:
            document["scopes_supported"] = list(self.scopes_supported)
        document["bearer_methods_supported"] = list(bearer_methods)
        if self.resource_name is not None:
            document["resource_name"] = self.resource_name
        if self.resource_documentation is not None:
            document["resource_documentation"] = self.resource_documentation
        algorithms = self.dpop_signing_alg_values_supported or dpop_algorithms
        if algorithms:
            document["dpop_signing_alg_values_supported"] = list(algorithms)
        if self.dpop_bound_access_tokens_required or dpop_required:
            document["dpop_bound_access_tokens_required"] = True
        return document

    def response(
        self,
        bearer_methods: Sequence[str] = ("header",),
        *,
        dpop_algorithms: Sequence[str] = (),
        dpop_required: bool = False,
    ) -> HTTPResponse:
        """The document as the JSON response every adapter serves (RFC 9728 §3.2)."""
        document = self.document(
            bearer_methods, dpop_algorithms=dpop_algorithms, dpop_required=dpop_required
        )
        body = json.dumps(document, separators=(",", ":")).encode()
        return HTTPResponse(
            200,
            (
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                ("cache-control", f"public, max-age={self.max_age}"),
                # Browser-based clients (MCP inspectors) read it cross-origin; it is public.
                ("access-control-allow-origin", "*"),
            ),
            body,
        )
