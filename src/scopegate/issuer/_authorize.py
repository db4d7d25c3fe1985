"""The authorization endpoint (RFC 6749 §3.1, §4.1) with a minimal login form.

``GET /authorize?response_type=code&client_id=...&redirect_uri=...&code_challenge=...
&code_challenge_method=S256&state=...&scope=...&resource=...`` validates the request and
shows a login form for the issuer's users; the form posts back to ``/authorize``. After
a correct password the browser is sent (303, RFC 9700 §4.12) to the redirect URI with
``code``, ``state`` and ``iss`` (RFC 9207).

Rules, in the order they are applied:

1. ``client_id`` and ``redirect_uri`` are checked first. An unknown or disabled client,
   or a redirect URI that is not *exactly* one of the client's registered ones (no
   prefix, pattern, port, scheme, slash, user-information or fragment leniency), gets an
   error page and never a redirect: the issuer must not be an open redirector (RFC 6749
   §4.1.2.1, §10.15; RFC 9700 §4.1).
2. Every other problem is reported *to the redirect URI* with ``error``, ``state`` and
   ``iss`` (RFC 6749 §4.1.2.1): ``response_type`` other than ``code``
   (``unsupported_response_type``), a client not registered for the grant
   (``unauthorized_client``), a missing ``code_challenge`` or a method other than
   ``S256`` (``invalid_request``, RFC 7636 §4.4.1; plain is refused, RFC 9700 §2.1.1),
   scopes (``invalid_scope``), resources (``invalid_target``, RFC 8707 §2), repeated
   parameters or a malformed ``dpop_jkt`` (``invalid_request``).
3. The form carries a one-time token naming the pending request, and the response sets
   a cookie (``HttpOnly``, ``SameSite=Strict``, the endpoint's path) whose hash is
   stored with it: a post is honoured only with both, once (CSRF, RFC 6749 §10.12). A
   failed password shows the form again with a new token; after a few, the request ends
   with ``access_denied``.
4. The password is checked by :class:`~scopegate.issuer._login.ResourceOwnerLogin`, the
   password grant's throttled check (per username and per address, reserved before the
   hash).
5. The code is 256 random bits, stored hashed for ``authorization_code_ttl`` seconds
   (default 60), bound to the client, redirect URI, PKCE challenge, scopes and
   resources, and redeemable once (:class:`~scopegate.issuer._grants.AuthorizationCodeGrant`).
   With ``dpop_jkt`` (RFC 9449 §10, the thumbprint of the client's DPoP key) it is
   bound to that key too: only a token request with a proof made with it redeems it.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlencode, urlsplit

from scopegate._jose import is_thumbprint
from scopegate.issuer._clients import Client, ClientStore
from scopegate.issuer._config import IssuerConfig
from scopegate.issuer._endpoints import (
    HTTPRequest,
    HTTPResponse,
    collect_params,
    parse_form,
    split_form,
)
from scopegate.issuer._errors import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuthError,
    StoreUnavailableError,
    TooManyRequestsError,
)
from scopegate.issuer._grants import narrows, new_grant_audience, resolve_scope
from scopegate.issuer._login import ResourceOwnerLogin
from scopegate.issuer._pages import error_page, login_page
from scopegate.issuer._store import (
    AuthorizationCodeRecord,
    IssuerStore,
    LoginRequestRecord,
    token_hash,
)

__all__ = ["AuthorizationEndpoint"]

logger = logging.getLogger("scopegate.issuer")
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")  # BASE64URL(SHA-256), RFC 7636 §4.2
_MAX_QUERY = 8192
_MAX_STATE = 1024
_LOGIN_TTL = 600  # seconds a login form stays usable
_MAX_TRIES = 5  # wrong passwords per pending request before access_denied
_COOKIE_PREFIX = "sg_login_"
_BAD_LOGIN = "Invalid username or password."
_DESCRIPTIONS = {
    "invalid_request": "The authorization request is invalid",
    "unauthorized_client": "The client may not use the authorization code grant",
    "unsupported_response_type": "Only response_type=code is supported",
    "access_denied": "The resource owner denied the request",
    "server_error": "The authorization server encountered an unexpected error",
    "temporarily_unavailable": "The authorization server is temporarily unavailable",
}


class _RedirectError(Exception):
    """An error for the client, sent to its (validated) redirect URI."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description or _DESCRIPTIONS.get(error, "The request was refused")


def _form_target(redirect_uri: str) -> str:
    """The CSP source expression of a registered redirect URI (its origin or scheme)."""
    parts = urlsplit(redirect_uri)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{parts.scheme}:"


def _cookie_name(request_token: str) -> str:
    return _COOKIE_PREFIX + token_hash(request_token)[:16]


def _read_cookie(header: str | None, name: str) -> str | None:
    # Several Cookie fields (HTTP/2) reach the core joined with ", " (RFC 9110 §5.3);
    # our values are URL-safe base64, so both separators can be split on.
    for item in re.split(r"[;,]", header or ""):
        key, sep, value = item.strip().partition("=")
        if sep and key == name:
            return value
    return None


class AuthorizationEndpoint:
    """``/authorize``: validate, show the login form, redirect with a code.

    Args:
        config: The issuer settings (``issuer`` for ``iss``, TTLs, scope policy).
        clients: The client registry.
        login: The throttled password check; ``None`` when the issuer has no users (the
            grant is then unavailable: ``unsupported_response_type``).
        store: Where pending login requests and codes live.
        clock: Seconds since the epoch.
        path: This endpoint's path (the form's ``action`` and the cookie's ``Path``).
    """

    def __init__(
        self,
        config: IssuerConfig,
        clients: ClientStore,
        login: ResourceOwnerLogin | None,
        store: IssuerStore,
        clock: Callable[[], float],
        path: str,
    ) -> None:
        self._config = config
        self._clients = clients
        self._login = login
        self._store = store
        self._clock = clock
        self._path = path
        self._secure = config.issuer.startswith("https:")

    def handle(self, request: HTTPRequest) -> HTTPResponse:
        """Answer one request; never raises."""
        try:
            if request.method == "GET":
                return self._start(request, self._clock())
            if request.method == "POST":
                return self._submit(request, self._clock())
            page = error_page(405, "This page answers GET and POST only.")
            return HTTPResponse(405, (*page.headers, ("allow", "GET, POST")), page.body)
        except StoreUnavailableError as exc:
            logger.error("issuer state store unavailable, answered 503: %s", exc)
            return error_page(
                503, "The sign-in service is temporarily unavailable.", (("retry-after", "5"),)
            )
        except Exception:
            logger.exception("unexpected error in the authorization endpoint")
            return error_page(500, "The sign-in service failed unexpectedly.")

    # -- GET: the authorization request ------------------------------------------------

    def _start(self, request: HTTPRequest, now: float) -> HTTPResponse:
        if len(request.query) > _MAX_QUERY:
            return error_page(400, "The authorization request is too long.")
        try:
            pairs = split_form(request.query, max_fields=64)
        except InvalidRequestError:
            return error_page(400, "The authorization request is malformed.")
        # RFC 6749 §4.1.2.1: without a trustworthy client and redirect URI, say so here.
        client_ids = [value for name, value in pairs if name == "client_id"]
        redirect_uris = [value for name, value in pairs if name == "redirect_uri"]
        if len(client_ids) != 1 or len(redirect_uris) != 1:
            return error_page(400, "The request must name one client and one redirect URI.")
        client = self._clients.get_client(client_ids[0]) if client_ids[0] else None
        if client is None or client.disabled:
            return error_page(400, "The client is unknown.")
        redirect_uri = redirect_uris[0]
        if redirect_uri not in client.redirect_uris:
            # Exact string match only (RFC 9700 §4.1.3): no prefix, port or slash leniency.
            return error_page(400, "The redirect URI is not registered for this client.")
        states = [value for name, value in pairs if name == "state"]
        state = states[0] if len(states) == 1 and 0 < len(states[0]) <= _MAX_STATE else None
        try:
            form = collect_params(pairs)
            return self._validated(client, redirect_uri, form, form.resources, now)
        except _RedirectError as error:
            return self._error_redirect(redirect_uri, error, state, 302)
        except OAuthError as error:
            return self._error_redirect(
                redirect_uri, _RedirectError(error.error, error.description), state, 302
            )

    def _validated(
        self,
        client: Client,
        redirect_uri: str,
        form: dict[str, str],
        resources: tuple[str, ...],
        now: float,
    ) -> HTTPResponse:
        state = form.get("state")
        if state is not None and len(state) > _MAX_STATE:
            raise _RedirectError("invalid_request", "The state parameter is too long")
        response_type = form.get("response_type")
        if response_type is None:
            raise _RedirectError("invalid_request", "The response_type parameter is required")
        if response_type != "code" or self._login is None:
            raise _RedirectError("unsupported_response_type")
        if "authorization_code" not in client.grant_types:
            raise _RedirectError("unauthorized_client")
        challenge = form.get("code_challenge")
        if challenge is None:
            raise _RedirectError("invalid_request", "code_challenge is required (PKCE)")
        if form.get("code_challenge_method") != "S256":
            raise _RedirectError("invalid_request", "code_challenge_method must be S256")
        if not _CHALLENGE.fullmatch(challenge):
            raise _RedirectError("invalid_request", "The code_challenge is malformed")
        scope = form.get("scope")
        # Checked against the client now; against the user's scopes after the login.
        resolve_scope(
            scope,
            client.scopes,
            client.effective_default_scopes,
            narrow=narrows(self._config, client),
        )
        dpop_jkt = form.get("dpop_jkt")
        if dpop_jkt is not None and not is_thumbprint(dpop_jkt):
            raise _RedirectError("invalid_request", "The dpop_jkt parameter is malformed")
        audience = new_grant_audience(self._config, client, resources)
        pending = LoginRequestRecord(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=challenge,
            scope=scope,
            audience=audience,
            browser_hash="",
            expires_at=int(now) + _LOGIN_TTL,
            dpop_jkt=dpop_jkt,
        )
        return self._show_form(client, pending, now)

    def _show_form(
        self,
        client: Client,
        pending: LoginRequestRecord,
        now: float,
        *,
        username: str = "",
        error: str | None = None,
    ) -> HTTPResponse:
        """Store *pending* under a fresh one-time token and render the form for it."""
        request_token = secrets.token_urlsafe(32)
        browser = secrets.token_urlsafe(32)
        record = replace(pending, browser_hash=token_hash(browser))
        self._store.save_login_request(token_hash(request_token), record, now)
        max_age = max(1, record.expires_at - int(now))
        cookie = (
            f"{_cookie_name(request_token)}={browser}; Path={self._path or '/'}; "
            f"Max-Age={max_age}; HttpOnly; SameSite=Strict" + ("; Secure" if self._secure else "")
        )
        # What the client may get (not the raw request, which may hold refused scopes).
        try:
            scopes = resolve_scope(
                pending.scope,
                client.scopes,
                client.effective_default_scopes,
                narrow=narrows(self._config, client),
            )
        except InvalidScopeError:  # the client lost scopes since the request: the
            scopes = frozenset()  # login will end in invalid_scope anyway
        return login_page(
            action=self._path or "/",
            client_id=client.client_id,
            scopes=scopes,
            request_token=request_token,
            form_targets=(_form_target(pending.redirect_uri),),
            username=username,
            error=error,
            extra_headers=(("set-cookie", cookie),),
            status=400 if error else 200,
        )

    # -- POST: the login form ----------------------------------------------------------

    def _submit(self, request: HTTPRequest, now: float) -> HTTPResponse:
        try:
            form = parse_form(request, self._config.max_body_bytes)
        except OAuthError:
            return error_page(400, "The sign-in form was not submitted correctly.")
        request_token = form.get("request_token")
        if request_token is None or len(request_token) > 128:
            return error_page(400, "The sign-in form was not submitted correctly.")
        cookie_name = _cookie_name(request_token)
        browser = _read_cookie(request.header("cookie"), cookie_name)
        expired = error_page(
            400,
            "This sign-in request has expired, was already used, or was started in "
            "another browser.",
            (("set-cookie", self._clear_cookie(cookie_name)),),
        )
        if browser is None:
            return expired
        pending = self._store.take_login_request(token_hash(request_token), now)
        if pending is None or not hmac.compare_digest(
            pending.browser_hash.encode(), token_hash(browser).encode()
        ):
            return expired
        client = self._clients.get_client(pending.client_id)
        if client is None or client.disabled or pending.redirect_uri not in client.redirect_uris:
            return expired
        clear = (("set-cookie", self._clear_cookie(cookie_name)),)
        if form.get("action") == "cancel":
            return self._error_redirect(
                pending.redirect_uri, _RedirectError("access_denied"), pending.state, 303, clear
            )
        assert self._login is not None  # a pending request exists only with users
        username, password = form.get("username"), form.get("password")
        try:
            if username is None or password is None:
                raise InvalidGrantError()
            user = self._login.authenticate(username, password, request.client_address, now)
        except InvalidGrantError:
            tries = pending.tries + 1
            if tries >= _MAX_TRIES:
                return self._error_redirect(
                    pending.redirect_uri,
                    _RedirectError("access_denied"),
                    pending.state,
                    303,
                    clear,
                )
            retry = replace(pending, tries=tries)
            response = self._show_form(
                client, retry, now, username=username or "", error=_BAD_LOGIN
            )
            return HTTPResponse(response.status, (*response.headers, *clear), response.body)
        except TooManyRequestsError as exc:
            return error_page(
                429,
                "Too many failed sign-ins from this address; wait and start again.",
                (("retry-after", str(exc.retry_after)), *clear),
            )
        try:
            scopes = resolve_scope(
                pending.scope,
                client.scopes & user.scopes,
                user.effective_default_scopes,
                narrow=narrows(self._config, client),
            )
        except InvalidScopeError as error:
            return self._error_redirect(
                pending.redirect_uri,
                _RedirectError(error.error, error.description),
                pending.state,
                303,
                clear,
            )
        code = secrets.token_urlsafe(32)
        family_id = secrets.token_urlsafe(16)
        keep_until = now + self._config.authorization_code_ttl + self._config.access_token_ttl
        self._store.start_family(family_id, user.subject, keep_until, now)
        record = AuthorizationCodeRecord(
            client_id=client.client_id,
            redirect_uri=pending.redirect_uri,
            code_challenge=pending.code_challenge,
            scopes=tuple(sorted(scopes)),
            audience=pending.audience,
            subject=user.subject,
            username=user.username,
            auth_time=int(now),
            acr=user.acr or self._config.acr,
            family_id=family_id,
            expires_at=int(now) + self._config.authorization_code_ttl,
            dpop_jkt=pending.dpop_jkt,
        )
        self._store.save_authorization_code(token_hash(code), record, keep_until, now)
        params = {"code": code}
        if pending.state is not None:
            params["state"] = pending.state
        params["iss"] = self._config.issuer  # RFC 9207 §2
        return _redirect(pending.redirect_uri, params, 303, clear)

    def _clear_cookie(self, name: str) -> str:
        return f"{name}=; Path={self._path or '/'}; Max-Age=0; HttpOnly; SameSite=Strict" + (
            "; Secure" if self._secure else ""
        )

    def _error_redirect(
        self,
        redirect_uri: str,
        error: _RedirectError,
        state: str | None,
        status: int,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> HTTPResponse:
        """RFC 6749 §4.1.2.1 (with RFC 9207 ``iss``); *redirect_uri* is already vetted."""
        params = {"error": error.error, "error_description": error.description}
        if state is not None:
            params["state"] = state
        params["iss"] = self._config.issuer
        return _redirect(redirect_uri, params, status, extra)


def _redirect(
    uri: str, params: dict[str, str], status: int, extra: tuple[tuple[str, str], ...]
) -> HTTPResponse:
    # RFC 6749 §3.1.2: a registered query component is kept; parameters are appended.
    location = uri + ("&" if urlsplit(uri).query else "?" if not uri.endswith("?") else "")
    location += urlencode(params)
    headers = (
        ("location", location),
        ("cache-control", "no-store"),
        ("pragma", "no-cache"),
        ("referrer-policy", "no-referrer"),
        *extra,
    )
    return HTTPResponse(status, headers, b"")
