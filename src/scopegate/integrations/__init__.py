"""Framework integrations, each a thin adapter over :class:`scopegate.BearerGuard`.

Import the one you use by path; each needs its extra and says so if it is missing:

* :mod:`scopegate.integrations.starlette` (``pip install 'scopegate[starlette]'``):
  middleware filling ``request.auth`` / ``request.user``, scope decorators.
* :mod:`scopegate.integrations.fastapi` (``scopegate[fastapi]``): a ``Security``
  dependency with an OpenAPI client-credentials scheme.
* :mod:`scopegate.integrations.flask` (``scopegate[flask]``): the ``ScopeGate``
  extension, view decorators and ``current_token``.
* :mod:`scopegate.integrations.django` (``scopegate[django]``): sync/async middleware,
  view decorators and a class-based-view mixin.
* :mod:`scopegate.integrations.mcp` (``scopegate[mcp]``): ``MCPGate`` in front of an MCP
  streamable-HTTP app (RFC 9728 metadata, per-tool scopes with step-up 403s), and the
  MCP SDK's ``TokenVerifier`` adapter.
* :mod:`scopegate.integrations.fastmcp` (``scopegate[fastmcp]``): a FastMCP auth provider.

Plain ASGI and WSGI applications use :mod:`scopegate.asgi` and :mod:`scopegate.wsgi`.
"""
