"""What the two MCP examples (mcp_app.py, fastmcp_app.py) share: scopes, data, options."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from _common import ITEMS, PUBLIC_PATHS

from scopegate import GuardOptions, options_from_env

__all__ = ["BASE_SCOPE", "PUBLIC_PATHS", "TOOL_SCOPES", "gate_options", "items_json"]

#: Every request to /mcp needs it; the 401 challenge names it (the scope to ask for first).
BASE_SCOPE = "items:read"

#: Per-tool scopes, checked on each tools/call.
TOOL_SCOPES = {"list_items": ["items:read"], "create_item": ["items:write"]}


def items_json() -> str:
    """The result of list_items: the items as a JSON list."""
    return json.dumps(ITEMS)


def gate_options(environ: Mapping[str, str], **settings: Any) -> GuardOptions:
    """The gate's options from SCOPEGATE_* (SCOPEGATE_RESOURCE: the /mcp URL).

    The RFC 9728 metadata lists both scopes unless SCOPEGATE_SCOPES_SUPPORTED says
    otherwise.
    """
    options = options_from_env(environ, **settings)
    resource = options.resource
    if resource is not None and not resource.scopes_supported:
        resource = dataclasses.replace(resource, scopes_supported=["items:read", "items:write"])
        options = dataclasses.replace(options, resource=resource)
    return options
