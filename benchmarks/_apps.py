"""The applications under test, shared by the in-process and the HTTP benchmarks.

Every app answers ``GET /bare`` and ``GET /protected`` with a short text body. Bare apps
have no authentication at all (their ``/protected`` is open, same route and handler);
protected ones run the same handler behind the authentication layer, and the handler
reads the verified token (and, where the peer checks a scope, requires ``items:read``
too) so that the work per request is comparable.

The ``*_app()`` factories build the apps from the key material in
``$SCOPEGATE_BENCH_DIR`` (see :mod:`_fixtures`) for the server processes
(``uvicorn --factory``, ``gunicorn "_apps:flask_bare_app()"``).
"""

from __future__ import annotations

import gc
import os
import time
from typing import Any

import _fixtures

SCOPE = "items:read"


# --- verifiers ------------------------------------------------------------------------


def scopegate_verifier(material: _fixtures.Material, *, cached: bool = True) -> Any:
    """scopegate's JWT verifier on the static JWKS, default settings otherwise."""
    from scopegate._jwt import JWTVerifier

    return JWTVerifier(
        issuer=_fixtures.ISSUER,
        audience=_fixtures.AUDIENCE,
        keys=material.jwks,
        cache_verified=cached,
    )


# --- ASGI (Starlette) -----------------------------------------------------------------


def _starlette_routes(*, protected_scope: bool) -> list[Any]:
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def bare(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def protected(request: Request) -> PlainTextResponse:
        token = request.scope.get("scopegate.token")
        return PlainTextResponse(token.subject if token is not None else "anonymous")

    handler = protected
    if protected_scope:
        from scopegate._scopes import require_scope

        handler = require_scope(SCOPE)(protected)
    return [Route("/bare", bare), Route("/protected", handler)]


def starlette_bare(material: _fixtures.Material | None = None) -> Any:
    """Starlette, no authentication."""
    from starlette.applications import Starlette

    return Starlette(routes=_starlette_routes(protected_scope=False))


def starlette_scopegate(
    material: _fixtures.Material, *, cached: bool = True, require_scope: bool = False
) -> Any:
    """Starlette behind ``scopegate.asgi.BearerAuthMiddleware`` (pure ASGI)."""
    from starlette.applications import Starlette

    from scopegate.asgi import BearerAuthMiddleware

    inner = Starlette(routes=_starlette_routes(protected_scope=require_scope))
    return BearerAuthMiddleware(
        inner, verifier=scopegate_verifier(material, cached=cached), exclude_paths=("/bare",)
    )


def starlette_authmw_pyjwt(material: _fixtures.Material) -> Any:
    """The anchor: Starlette's AuthenticationMiddleware with a PyJWT backend, no cache."""
    import jwt
    from starlette.applications import Starlette
    from starlette.authentication import (
        AuthCredentials,
        AuthenticationBackend,
        AuthenticationError,
        SimpleUser,
        requires,
    )
    from starlette.middleware import Middleware
    from starlette.middleware.authentication import AuthenticationMiddleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    key = material.public_key("RS256")

    class Backend(AuthenticationBackend):
        async def authenticate(self, conn: Any) -> Any:
            auth = conn.headers.get("authorization")
            if not auth:
                return None
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer":
                return None
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=["RS256"],
                    audience=_fixtures.AUDIENCE,
                    issuer=_fixtures.ISSUER,
                )
            except jwt.PyJWTError as exc:
                raise AuthenticationError("invalid token") from exc
            return AuthCredentials(claims.get("scope", "").split()), SimpleUser(claims["sub"])

    @requires(SCOPE)
    async def protected(request: Request) -> PlainTextResponse:
        return PlainTextResponse(request.user.username)

    async def bare(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/bare", bare), Route("/protected", protected)],
        middleware=[Middleware(AuthenticationMiddleware, backend=Backend())],
    )


# --- WSGI (Flask) ---------------------------------------------------------------------


def flask_bare(material: _fixtures.Material | None = None) -> Any:
    """Flask, no authentication."""
    from flask import Flask

    app = Flask("bench_bare")

    @app.get("/bare")
    def bare() -> str:
        return "ok"

    @app.get("/protected")
    def protected() -> str:
        return "ok"

    return app


def flask_scopegate(
    material: _fixtures.Material, *, cached: bool = True, style: str = "integration"
) -> Any:
    """Flask protected by scopegate; the view requires ``items:read`` as the Authlib peer does.

    ``style="integration"``: [E]'s ``ScopeGate`` extension and its ``@require_scope``
    (decorator style, like Authlib's). ``style="middleware"``: ``scopegate.wsgi``'s
    ``BearerAuthMiddleware`` around the app and the core ``@require_scope``.
    """
    from flask import Flask

    verifier = scopegate_verifier(material, cached=cached)
    app = Flask(f"bench_scopegate_{style}")

    @app.get("/bare")
    def bare() -> str:
        return "ok"

    if style == "integration":
        from scopegate.integrations.flask import ScopeGate, current_token, require_scope

        @app.get("/protected")
        @require_scope(SCOPE)
        def protected() -> str:
            return current_token.subject or "anonymous"

        ScopeGate(app, verifier=verifier)
        return app

    from scopegate._context import current_token as core_token
    from scopegate._scopes import require_scope as core_require_scope
    from scopegate.wsgi import BearerAuthMiddleware

    @app.get("/protected")
    @core_require_scope(SCOPE)
    def protected_mw() -> str:
        token = core_token()
        return token.subject if token is not None and token.subject else "anonymous"

    app.wsgi_app = BearerAuthMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, verifier=verifier, exclude_paths=("/bare",)
    )
    return app


def flask_authlib(material: _fixtures.Material) -> Any:
    """The peer: Flask + Authlib ``ResourceProtector`` with the RFC 9068 validator.

    ``get_jwks`` returns a ``KeySet`` imported once (returning the JWKS dict, as Authlib's
    docstring shows, would re-import the keys on every request and be far slower).
    """
    from authlib.integrations.flask_oauth2 import ResourceProtector, current_token
    from authlib.oauth2.rfc9068 import JWTBearerTokenValidator
    from flask import Flask
    from joserfc.jwk import KeySet

    keyset = KeySet.import_key_set(material.jwks)  # type: ignore[arg-type]

    class Validator(JWTBearerTokenValidator):  # type: ignore[misc]
        def get_jwks(self) -> Any:
            return keyset

    require_oauth = ResourceProtector()
    require_oauth.register_token_validator(
        Validator(issuer=_fixtures.ISSUER, resource_server=_fixtures.AUDIENCE)
    )
    app = Flask("bench_authlib")

    @app.get("/bare")
    def bare() -> str:
        return "ok"

    @app.get("/protected")
    @require_oauth(SCOPE)  # type: ignore[untyped-decorator]  # Authlib is untyped
    def protected() -> str:
        return str(current_token["sub"])

    return app


# --- factories for server processes -------------------------------------------------


def _material() -> _fixtures.Material:
    return _fixtures.load(unique=0)


def starlette_bare_app() -> Any:
    return starlette_bare()


def starlette_scopegate_app() -> Any:
    return starlette_scopegate(_material(), require_scope=True)


def starlette_authmw_app() -> Any:
    return starlette_authmw_pyjwt(_material())


def flask_bare_app() -> Any:
    return flask_bare()


def flask_scopegate_app() -> Any:
    return flask_scopegate(_material())


def flask_scopegate_mw_app() -> Any:
    return flask_scopegate(_material(), style="middleware")


def flask_authlib_app() -> Any:
    return flask_authlib(_material())


# --- factories for the issue-18 suites (token-size matrix, profile under load) ------------

#: Environment variable read by :func:`starlette_scopegate_sized_app`: the verified-token
#: cache size of the token-size matrix server (default 1000, so 3000 strided unique tokens
#: per variant always miss).
CACHE_SIZE_ENV = "SCOPEGATE_BENCH_CACHE_SIZE"
#: The route of :func:`starlette_scopegate_gc_app` that reports the GC counters (no auth).
GC_PATH = "/__gc"


def starlette_scopegate_sized_app() -> Any:
    """Starlette + scopegate (+ ``@require_scope``) with ``cache_size`` from the environment."""
    from starlette.applications import Starlette

    from scopegate._jwt import JWTVerifier
    from scopegate.asgi import BearerAuthMiddleware

    material = _material()
    verifier = JWTVerifier(
        issuer=_fixtures.ISSUER,
        audience=_fixtures.AUDIENCE,
        keys=material.jwks,
        cache_size=int(os.environ.get(CACHE_SIZE_ENV, "1000")),
    )
    inner = Starlette(routes=_starlette_routes(protected_scope=True))
    return BearerAuthMiddleware(inner, verifier=verifier, exclude_paths=("/bare",))


class GCCounters:
    """CPython GC activity seen through :data:`gc.callbacks`: collections, objects
    collected, and the CPU time of each collection (``time.thread_time``) per generation."""

    def __init__(self) -> None:
        self.collections = [0, 0, 0]
        self.collected = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.max_pause = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any], _clock: Any = time.thread_time) -> None:
        if phase == "start":
            self._started = _clock()
            return
        gen = int(info.get("generation", 0))
        spent = _clock() - self._started
        self.collections[gen] += 1
        self.collected[gen] += int(info.get("collected", 0))
        self.seconds[gen] += spent
        if spent > self.max_pause[gen]:
            self.max_pause[gen] = spent

    def snapshot(self) -> dict[str, Any]:
        return {
            "collections": list(self.collections),
            "collected": list(self.collected),
            "seconds": list(self.seconds),
            "max_pause_s": list(self.max_pause),
            "threshold": list(gc.get_threshold()),
        }


def starlette_scopegate_gc_app() -> Any:
    """Starlette + scopegate as :func:`starlette_scopegate_app` (default cache), plus GC
    counters installed in :data:`gc.callbacks` and reported as JSON on ``GET /__gc``
    (excluded from authentication; read by the profile-under-load suite)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from scopegate.asgi import BearerAuthMiddleware

    counters = GCCounters()
    gc.callbacks.append(counters)

    async def gc_stats(request: Request) -> JSONResponse:
        return JSONResponse(counters.snapshot())

    routes = [*_starlette_routes(protected_scope=True), Route(GC_PATH, gc_stats)]
    inner = Starlette(routes=routes)
    app = BearerAuthMiddleware(
        inner, verifier=scopegate_verifier(_material()), exclude_paths=("/bare", GC_PATH)
    )
    if os.environ.get("SCOPEGATE_BENCH_GC_FREEZE") == "1":
        # Everything built so far (modules, the app, the keys) leaves the collector's
        # generations: full collections then walk only what requests created.
        gc.collect()
        gc.freeze()
    return app
