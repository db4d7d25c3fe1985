"""Authorization server metadata discovery (RFC 8414, OpenID Connect Discovery 1.0).

Usage, for any component that needs an endpoint of the configured issuer::

    metadata = ServerMetadata("https://as.example", kind="auto", runner=runner,
                              error=IntrospectionUnavailableError)
    url = metadata.endpoint("introspection_endpoint")          # sync (threads, WSGI)
    url = await metadata.aendpoint("introspection_endpoint")   # asyncio
    # or inside a flow of your own:  url = yield from metadata.endpoint_flow(name)

* :func:`metadata_flow` fetches the document once (a :data:`~scopegate._flow.Flow`).
  ``kind="oauth"`` reads RFC 8414 ``/.well-known/oauth-authorization-server`` (inserted
  before the issuer's path, §3.1), ``kind="oidc"`` reads
  ``<issuer>/.well-known/openid-configuration``, ``kind="auto"`` tries RFC 8414 first
  and falls back to OIDC only when the first answers 4xx (a 5xx or a transport failure
  is an outage, not a missing document).
* The document's ``issuer`` must equal the configured issuer exactly (RFC 8414 §3.3;
  a mix-up would let one AS speak for another).
* :class:`ServerMetadata` caches the document for ``ttl`` seconds, coalesces concurrent
  fetches, keeps serving the last good document when a refresh fails, and validates
  endpoint URLs with :func:`check_endpoint_url`.

URL policy (:func:`check_endpoint_url`): endpoints, the issuer used for discovery and
``jwks_uri`` must be ``https`` URLs without a fragment, except that plain ``http`` is
accepted for loopback hosts (``localhost``, ``127.0.0.0/8``, ``::1``) so a local issuer
works in development and tests. Every failure raises the ``error`` class given
(``KeySetUnavailableError`` by default): a 503, never ``invalid_token``, with one of
these ``reason`` codes::

    discovery_unreachable      transport failure or timeout
    discovery_http_status      not 200 (after the OIDC fallback, if any)
    discovery_malformed        not application/json, or not a strict JSON object
    discovery_issuer_mismatch  the document's issuer is not the configured one
    discovery_bad_endpoint     the requested endpoint is missing or not an allowed URL
    discovery_unavailable      a recent failure is not retried yet (retry_interval)
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from scopegate import _observe
from scopegate._errors import ConfigurationError, KeySetUnavailableError, ServiceUnavailableError
from scopegate._flow import Flight, Flow, HTTPRunner, arun, run
from scopegate._jsonstrict import StrictJSONError, loads_object

__all__ = [
    "DiscoveryKind",
    "ServerMetadata",
    "check_endpoint_url",
    "discovery_urls",
    "metadata_flow",
    "redacted",
]

logger = logging.getLogger("scopegate.discovery")

DiscoveryKind = Literal["auto", "oauth", "oidc"]
_OAUTH = "/.well-known/oauth-authorization-server"
_OIDC = "/.well-known/openid-configuration"


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redacted(url: str) -> str:
    """*url* without userinfo, query or fragment, for log lines (either may hold secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "<unparsable URL>"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def check_endpoint_url(url: object) -> bool:
    """True when *url* may be used to reach the authorization server.

    ``https`` with a host and no fragment; ``http`` only for a loopback host.
    """
    if not isinstance(url, str) or not url.isascii() or any(c in url for c in " \r\n\t"):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if not host or parts.fragment:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and _is_loopback(host))


def discovery_urls(issuer: str, kind: DiscoveryKind = "auto") -> list[str]:
    """The metadata URLs tried for *issuer*, in order.

    Raises:
        ConfigurationError: *issuer* is not a usable URL (see :func:`check_endpoint_url`)
            or has a query.
    """
    if not check_endpoint_url(issuer) or urlsplit(issuer).query:
        raise ConfigurationError(
            "issuer must be an https URL without query or fragment (http only for loopback) "
            "to discover its metadata"
        )
    if kind not in ("auto", "oauth", "oidc"):
        raise ConfigurationError("discovery must be 'auto', 'oauth' or 'oidc'")
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    # RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
    oauth = urlunsplit((parts.scheme, parts.netloc, _OAUTH + path, "", ""))
    oidc = issuer.rstrip("/") + _OIDC
    return {"oauth": [oauth], "oidc": [oidc], "auto": [oauth, oidc]}[kind]


def metadata_flow(
    issuer: str,
    kind: DiscoveryKind = "auto",
    *,
    error: type[ServiceUnavailableError] = KeySetUnavailableError,
) -> Flow[dict[str, Any]]:
    """Fetch and check the metadata document of *issuer* (RFC 8414 §3, OIDC Discovery §4).

    Args:
        issuer: The configured issuer identifier.
        kind: ``"oauth"``, ``"oidc"`` or ``"auto"`` (RFC 8414, then OIDC on a 4xx).
        error: The 503 error class raised on any failure.

    Returns:
        The metadata object, its ``issuer`` equal to *issuer*.

    Raises:
        ConfigurationError: *issuer* is not a usable URL.
        ServiceUnavailableError: (the *error* class) unreachable, non-200, non-JSON,
            oversized, or ``issuer`` mismatch.
    """
    urls = discovery_urls(issuer, kind)
    for index, url in enumerate(urls):
        request = httpx.Request("GET", url, headers={"accept": "application/json"})
        try:
            response = yield request
        except httpx.HTTPError as exc:
            raise error(reason="discovery_unreachable") from exc
        if 400 <= response.status_code < 500 and index + 1 < len(urls):
            continue
        if response.status_code != 200:
            raise error(reason="discovery_http_status")
        document = _json_document(response, error, "discovery_malformed")
        if document.get("issuer") != issuer:
            raise error(reason="discovery_issuer_mismatch")
        return document
    raise error(reason="discovery_http_status")  # pragma: no cover - loop always returns


def _json_document(
    response: httpx.Response, error: type[ServiceUnavailableError], reason: str
) -> dict[str, Any]:
    ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/json" and not ctype.endswith("+json"):
        raise error(reason=reason)
    try:
        return loads_object(response.content)
    except StrictJSONError as exc:
        raise error(reason=reason) from exc


class ServerMetadata:
    """The cached metadata document of one issuer.

    Args:
        issuer: The issuer identifier (an https URL, or http on loopback).
        kind: Which well-known document(s) to read (see :func:`metadata_flow`).
        runner: The :class:`HTTPRunner` for :meth:`get` / :meth:`aget` (a private
            5-second runner when omitted).
        ttl: Seconds a fetched document is used before it is fetched again.
        retry_interval: Seconds before a failed fetch is tried again.
        error: The 503 error class raised when no document is available.
        timer: Monotonic seconds (tests).

    A failed refresh keeps serving the previous document (retrying at most every
    ``retry_interval`` seconds); without a previous document the error is raised.
    Concurrent fetches are coalesced (threads and tasks alike). Trouble is logged on
    ``scopegate.discovery`` once per incident (WARNING, then DEBUG), the recovery at INFO.
    """

    def __init__(
        self,
        issuer: str,
        *,
        kind: DiscoveryKind = "auto",
        runner: HTTPRunner | None = None,
        ttl: float = 3600,
        retry_interval: float = 5,
        error: type[ServiceUnavailableError] = KeySetUnavailableError,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.urls = discovery_urls(issuer, kind)
        self.issuer = issuer
        self.kind: DiscoveryKind = kind
        self.ttl = ttl
        self.retry_interval = retry_interval
        self.error = error
        self._runner = runner
        self._timer = timer
        self._document: dict[str, Any] | None = None
        self._fetched_at = float("-inf")
        self._failed_at: float | None = None
        self._flight = Flight()
        where = redacted(issuer)
        self._incident = _observe.Incident(logger, f"metadata discovery for {where}")
        # A document that came but lacks a usable endpoint is a trouble of its own.
        self._endpoints = _observe.Incident(
            logger, f"metadata of {where}", failure="is unusable", recovery="is usable again"
        )

    def __repr__(self) -> str:
        return f"ServerMetadata({self.issuer!r}, kind={self.kind!r})"

    @property
    def runner(self) -> HTTPRunner:
        """The runner used to fetch the document (created on first use)."""
        if self._runner is None:
            self._runner = HTTPRunner()
        return self._runner

    def cached(self) -> dict[str, Any] | None:
        """The fresh cached document, or ``None`` when it must be (re)fetched."""
        if self._document is not None and self._timer() - self._fetched_at < self.ttl:
            return self._document
        return None

    def invalidate(self) -> None:
        """Forget the document; the next use fetches it again."""
        self._fetched_at = float("-inf")

    def flow(self) -> Flow[dict[str, Any]]:
        """The document: cached when fresh, else fetched once for concurrent callers."""
        document = self.cached()
        if document is not None:
            return document
        result: dict[str, Any] = yield self._flight.join("doc", self._fetch_flow, self.runner)
        return result

    def _fetch_flow(self) -> Flow[dict[str, Any]]:
        document = self.cached()
        if document is not None:
            return document  # fetched by a flight that ended between our miss and now
        now = self._timer()
        if self._failed_at is not None and now - self._failed_at < self.retry_interval:
            return self._stale_or_raise(None)
        started = _observe.timer()
        try:
            document = yield from metadata_flow(self.issuer, self.kind, error=self.error)
        except ServiceUnavailableError as exc:
            self._failed_at = self._timer()
            if _observe.HOOKS:
                self._report("failed", exc.reason, started)
            self._incident.failed(
                "%s; %s",
                exc.reason,
                "using the previous document" if self._document is not None else "no document",
            )
            return self._stale_or_raise(exc)
        self._document, self._fetched_at, self._failed_at = document, self._timer(), None
        if _observe.HOOKS:
            self._report("ok", None, started)
        self._incident.recovered()
        return document

    def _report(self, outcome: str, reason: str | None, started: float) -> None:
        _observe.report(
            "discovery_fetch", outcome, reason, _observe.timer() - started, kind=self.kind
        )

    def _stale_or_raise(self, exc: ServiceUnavailableError | None) -> dict[str, Any]:
        if self._document is not None:
            return self._document
        if exc is not None:
            raise exc
        raise self.error(reason="discovery_unavailable", retry_after=self.retry_interval)

    def endpoint_flow(self, name: str) -> Flow[str]:
        """The URL of endpoint *name* (e.g. ``"jwks_uri"``, ``"introspection_endpoint"``).

        Raises:
            ServiceUnavailableError: (the *error* class) no document, or the member is
                missing or not an acceptable URL.
        """
        document = yield from self.flow()
        return self.pick(document, name)

    def pick(self, document: dict[str, Any], name: str) -> str:
        """Endpoint *name* of *document*, checked with :func:`check_endpoint_url`."""
        url = document.get(name)
        if not isinstance(url, str) or not check_endpoint_url(url):
            # The member's name is one of ours (jwks_uri...), never the document's value.
            self._endpoints.failed("discovery_bad_endpoint (no usable %s)", name)
            if document is self._document:
                # The document is the fault: treat it as a failed fetch, so it is fetched
                # again after retry_interval (as Retry-After announces) instead of being
                # served for the whole TTL; until then it is not refetched per request.
                self.invalidate()
                self._failed_at = self._timer()
            raise self.error(reason="discovery_bad_endpoint", retry_after=self.retry_interval)
        self._endpoints.recovered()
        return url

    def get(self) -> dict[str, Any]:
        """The document (threads)."""
        document = self.cached()
        return document if document is not None else run(self.flow())

    async def aget(self) -> dict[str, Any]:
        """The document (asyncio)."""
        document = self.cached()
        return document if document is not None else await arun(self.flow())

    def endpoint(self, name: str) -> str:
        """The URL of endpoint *name* (threads; see :meth:`endpoint_flow`)."""
        return run(self.endpoint_flow(name))

    async def aendpoint(self, name: str) -> str:
        """The URL of endpoint *name* (asyncio; see :meth:`endpoint_flow`)."""
        return await arun(self.endpoint_flow(name))
