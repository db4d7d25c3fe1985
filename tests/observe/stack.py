"""One protected API served by both middlewares, and clients that send real requests.

``Stack(verifier, **options)`` puts the same small API behind
:class:`scopegate.asgi.BearerAuthMiddleware` and :class:`scopegate.wsgi.BearerAuthMiddleware`
with the guard options given; ``stack.client("asgi")`` / ``stack.client("wsgi")`` send
requests through them with httpx (``ASGITransport`` on a private event loop,
``WSGITransport``). Routes: ``/ok`` (any token), ``/scoped`` (``items:write``),
``/stepup`` (``items:read`` with ``acr_values=["mfa"]``), ``/recent`` (``items:read``
with ``max_age=60``).

``Records`` collects every record handed to the hooks while it is installed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import httpx

from scopegate import Record, add_hook, remove_hook, require_scope
from scopegate.asgi import BearerAuthMiddleware as ASGIMiddleware
from scopegate.wsgi import BearerAuthMiddleware as WSGIMiddleware

BASE = "https://api.test"
KINDS = ("asgi", "wsgi")


async def _ok_asgi(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": b"ok"})


@require_scope("items:write")
async def _scoped_asgi(scope: Any, receive: Any, send: Any) -> None:
    await _ok_asgi(scope, receive, send)


@require_scope("items:read", acr_values=["mfa"])
async def _stepup_asgi(scope: Any, receive: Any, send: Any) -> None:
    await _ok_asgi(scope, receive, send)


@require_scope("items:read", max_age=60)
async def _recent_asgi(scope: Any, receive: Any, send: Any) -> None:
    await _ok_asgi(scope, receive, send)


_ASGI_ROUTES = {"/scoped": _scoped_asgi, "/stepup": _stepup_asgi, "/recent": _recent_asgi}


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    """The unprotected ASGI API."""
    if scope["type"] != "http":
        return
    await _ASGI_ROUTES.get(scope["path"], _ok_asgi)(scope, receive, send)


def _ok_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("X-App", "1")])
    return [b"ok"]


_WSGI_ROUTES = {
    "/scoped": require_scope("items:write")(_ok_wsgi),
    "/stepup": require_scope("items:read", acr_values=["mfa"])(_ok_wsgi),
    "/recent": require_scope("items:read", max_age=60)(_ok_wsgi),
}


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    """The unprotected WSGI API."""
    return _WSGI_ROUTES.get(environ["PATH_INFO"], _ok_wsgi)(environ, start_response)


async def _drain() -> None:
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    await asyncio.gather(*tasks, return_exceptions=True)


class Client:
    """Sends requests through one middleware (ASGI on a private loop, or WSGI)."""

    def __init__(self, kind: str, app: Any) -> None:
        self.kind = kind
        if kind == "asgi":
            self._loop = asyncio.new_event_loop()
            self._async = httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE)
        else:
            self._sync = httpx.Client(transport=httpx.WSGITransport(app), base_url=BASE)

    def request(
        self,
        method: str,
        path: str,
        headers: Iterable[tuple[str, str]] | dict[str, str] = (),
        params: dict[str, str] | str | None = None,
    ) -> httpx.Response:
        """One request; the whole response."""
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers)
        if self.kind == "asgi":
            return self._loop.run_until_complete(
                self._async.request(method, path, headers=pairs, params=params)
            )
        return self._sync.request(method, path, headers=pairs, params=params)

    def get(self, path: str = "/ok", headers: Any = (), params: Any = None) -> httpx.Response:
        return self.request("GET", path, headers, params)

    def close(self, *resources: Any) -> None:
        """Close the client, and *resources* (verifiers, caches, stores: their HTTP and
        Redis clients) on the loop that used them."""
        if self.kind == "asgi":
            for resource in resources:
                aclose = getattr(resource, "aclose", None)
                if aclose is not None:
                    self._loop.run_until_complete(aclose())
            self._loop.run_until_complete(self._async.aclose())
            # Finish what asyncio scheduled for abandoned async generators (a body cut
            # short at the size cap) before the loop goes.
            self._loop.run_until_complete(_drain())
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
        else:
            for resource in resources:
                close = getattr(resource, "close", None)
                if close is not None:
                    close()
            self._sync.close()


class Stack:
    """The API behind both middlewares with one verifier and one set of options."""

    def __init__(self, verifier: Any, **options: Any) -> None:
        self.verifier = verifier
        self.apps = {
            "asgi": ASGIMiddleware(asgi_app, verifier=verifier, **options),
            "wsgi": WSGIMiddleware(wsgi_app, verifier=verifier, **options),
        }

    def client(self, kind: str) -> Client:
        return Client(kind, self.apps[kind])


class Records:
    """Every record emitted while installed (a hook appending to a list)."""

    def __init__(self) -> None:
        self.all: list[Record] = []

    def __call__(self, record: Record) -> None:
        self.all.append(record)

    def __enter__(self) -> Records:
        add_hook(self)
        return self

    def __exit__(self, *exc: object) -> None:
        remove_hook(self)

    def named(self, name: str) -> list[Record]:
        return [r for r in self.all if r.name == name]

    def clear(self) -> None:
        self.all.clear()


def records_of(name: str, records: Iterable[Record]) -> Iterator[Record]:
    return (r for r in records if r.name == name)


Build = Callable[[], Any]
