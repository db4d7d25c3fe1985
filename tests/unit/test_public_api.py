"""The package root: a sorted public __all__ and no framework imports."""

from __future__ import annotations

import subprocess
import sys

import scopegate


def test_all_is_sorted_and_importable() -> None:
    """__all__ is sorted (isort style, as ruff's RUF022), public, and every name resolves."""
    names = list(scopegate.__all__)

    def isort_key(name: str) -> tuple[int, str]:
        kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
        return (kind, name)

    assert names == sorted(names, key=isort_key)
    assert len(names) == len(set(names))
    for name in names:
        assert not name.startswith("_") or name == "__version__"
        assert hasattr(scopegate, name), name


def test_import_pulls_in_no_web_framework() -> None:
    """`import scopegate` loads no web framework, server or redis client."""
    code = (
        "import sys, scopegate\n"
        "bad = {'starlette', 'fastapi', 'flask', 'werkzeug', 'django', 'uvicorn', 'waitress',"
        " 'redis', 'mcp', 'fastmcp'}\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
