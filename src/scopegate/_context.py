"""The verified token of the request being handled, for code far from the request object.

The adapters (ASGI and WSGI middleware, framework integrations) set a
:class:`contextvars.ContextVar` around the application call and reset it afterwards, so
:func:`current_token` works in handlers, in helpers they call, and in sync endpoints that a
framework runs in a thread pool (``contextvars`` are copied into ``anyio.to_thread``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar, Token

from scopegate._token import AccessToken

__all__ = ["current_token", "reset_current_token", "set_current_token"]

_current: ContextVar[AccessToken | None] = ContextVar("scopegate.token", default=None)


def current_token() -> AccessToken | None:
    """Return the verified access token of the current request, or ``None``.

    ``None`` means no middleware ran for this request, the path is excluded, or the
    request was anonymous in ``optional`` mode.

    Example:
        >>> current_token() is None   # outside any request
        True
    """
    return _current.get()


#: Set the token for the running context; pass the result to :func:`reset_current_token`.
#: (The context variable's own methods: no wrapper frame on the per-request path.)
set_current_token: Callable[[AccessToken | None], Token[AccessToken | None]] = _current.set

#: Undo :func:`set_current_token`, so a reused thread or task never sees a stale token.
reset_current_token: Callable[[Token[AccessToken | None]], None] = _current.reset
