"""The authorization endpoint's HTML: the login form and the error page.

Server-rendered, no JavaScript, no external resources. Every value shown is escaped
(``html.escape`` with quotes), and every page is sent with headers that keep it out of
frames, caches and other origins' reach:

- ``Content-Security-Policy``: nothing may load (``default-src 'none'``) except the one
  inline style block, allowed by its hash; the form may post only to this page and
  continue to the client's registered redirect origin (browsers apply ``form-action`` to
  the redirect that follows a form post); no ``<base>``; no framing.
- ``X-Frame-Options: DENY`` (clickjacking, RFC 6749 §10.13), ``Cache-Control: no-store``,
  ``Referrer-Policy: no-referrer`` (the authorization URL carries ``state``),
  ``X-Content-Type-Options: nosniff``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from html import escape

from scopegate.issuer._endpoints import HTTPResponse

__all__ = ["error_page", "html_headers", "login_page"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:26rem;margin:3rem auto;padding:0 1rem}"
    "label{display:block;margin:.8rem 0 .2rem}"
    "input[type=text],input[type=password]{width:100%;padding:.4rem;box-sizing:border-box}"
    ".actions{margin-top:1.2rem;display:flex;gap:.6rem}"
    ".error{color:#a00}.scopes{font-family:monospace}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


def html_headers(form_targets: Iterable[str] = ()) -> tuple[tuple[str, str], ...]:
    """The security headers of every page (see the module docstring).

    Args:
        form_targets: CSP source expressions the form may lead to besides this origin
            (the registered redirect URI's origin, ``scheme://host:port``).
    """
    form_action = " ".join(["'self'", *form_targets])
    policy = (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return (
        ("content-type", "text/html; charset=utf-8"),
        ("content-security-policy", policy),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
        ("pragma", "no-cache"),
        ("referrer-policy", "no-referrer"),
        ("x-content-type-options", "nosniff"),
    )


def _page(title: str, body: str) -> bytes:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    ).encode()


def error_page(
    status: int,
    message: str,
    extra_headers: tuple[tuple[str, str], ...] = (),
) -> HTTPResponse:
    """A page for errors that must not be redirected (RFC 6749 §4.1.2.1, first paragraph).

    Args:
        status: The HTTP status.
        message: A fixed text; it is escaped anyway.
        extra_headers: E.g. ``Retry-After``, or a cookie to clear.
    """
    body = _page(
        "Sign-in request refused",
        f"<h1>Sign-in request refused</h1><p>{escape(message)}</p>"
        "<p>Return to the application and start again.</p>",
    )
    return HTTPResponse(status, html_headers() + extra_headers, body)


def login_page(
    *,
    action: str,
    client_id: str,
    scopes: Iterable[str],
    request_token: str,
    form_targets: Iterable[str],
    username: str = "",
    error: str | None = None,
    extra_headers: tuple[tuple[str, str], ...] = (),
    status: int = 200,
) -> HTTPResponse:
    """The login form for one pending authorization request.

    Args:
        action: The path the form posts to (the authorization endpoint).
        client_id: The client asking, shown to the user.
        scopes: The scopes it asks for, shown to the user.
        request_token: The one-time token binding the post to the pending request.
        form_targets: See :func:`html_headers`.
        username: Filled in again after a failed attempt.
        error: A fixed message after a failed attempt.
        extra_headers: The cookie binding the request to this browser.
        status: 200, or 400 after a failed attempt.
    """
    scope_text = " ".join(sorted(scopes))
    notice = f'<p class="error" role="alert">{escape(error)}</p>' if error else ""
    body = _page(
        "Sign in",
        "<h1>Sign in</h1>"
        f"<p>The application <strong>{escape(client_id)}</strong> asks for access"
        + (f' (<span class="scopes">{escape(scope_text)}</span>)' if scope_text else "")
        + ".</p>"
        + notice
        + f'<form method="post" action="{escape(action)}" autocomplete="on">'
        f'<input type="hidden" name="request_token" value="{escape(request_token)}">'
        '<label for="username">Username</label>'
        '<input type="text" id="username" name="username" autocomplete="username" '
        f'autocapitalize="none" spellcheck="false" required value="{escape(username)}">'
        '<label for="password">Password</label>'
        '<input type="password" id="password" name="password" '
        'autocomplete="current-password" required>'
        '<div class="actions"><button type="submit" name="action" value="login">Sign in'
        '</button><button type="submit" name="action" value="cancel" formnovalidate>Cancel'
        "</button></div></form>",
    )
    return HTTPResponse(status, html_headers(form_targets) + extra_headers, body)
