"""The snippets of docs/testing.md run exactly as written, as a user's own pytest session."""

from __future__ import annotations

import posixpath
import re
import subprocess
import sys
from pathlib import Path

import pytest

import scopegate

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
_SNIPPET = re.compile(r"<!-- snippet: ([a-z-]+) -->\n```python\n(.*?)```", re.DOTALL)


def snippets() -> dict[str, str]:
    """Every marked code block of docs/testing.md by name."""
    return dict(_SNIPPET.findall(DOC.read_text()))


def run_user_session(tmp_path: Path, files: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Write *files* into a fresh project and run pytest there (plugin via entry point)."""
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_docs_have_the_snippets() -> None:
    """The testing guide contains the marked snippets and the five-line tests are short."""
    found = snippets()
    assert {"fastapi-app", "fastapi-test", "flask-app", "flask-test", "starlette-test"} <= set(
        found
    )
    for name in ("fastapi-test", "flask-test"):
        lines = [line for line in found[name].splitlines() if line.strip()]
        assert len(lines) <= 5, name


needs_root_exports = pytest.mark.skipif(
    not hasattr(scopegate, "AccessToken"),
    reason="scopegate.AccessToken is not exported from the package root yet",
)


@needs_root_exports
def test_fastapi_snippets_pass(tmp_path: Path) -> None:
    """The FastAPI app and its five-line test (and the failure tests) pass as documented."""
    found = snippets()
    result = run_user_session(
        tmp_path,
        {
            "myapi.py": found["fastapi-app"],
            "test_items.py": found["fastapi-test"],
            "test_failures.py": found["fastapi-failures"],
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_flask_snippets_pass(tmp_path: Path) -> None:
    """The Flask app and its five-line test pass as documented."""
    found = snippets()
    result = run_user_session(
        tmp_path, {"myflaskapi.py": found["flask-app"], "test_items.py": found["flask-test"]}
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_starlette_snippet_passes(tmp_path: Path) -> None:
    """The Starlette snippet passes as documented."""
    result = run_user_session(tmp_path, {"test_items.py": snippets()["starlette-test"]})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_snippet_fails_when_the_scope_is_missing(tmp_path: Path) -> None:
    """The five-line test is meaningful: the same test with the wrong scope fails."""
    found = snippets()
    broken = found["flask-test"].replace('scopes=["items:read"]', 'scopes=["items:write"]')
    result = run_user_session(
        tmp_path, {"myflaskapi.py": found["flask-app"], "test_items.py": broken}
    )
    assert result.returncode == 1
    assert "1 failed" in result.stdout


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_docs_links_resolve() -> None:
    """Every relative link between docs pages points to an existing page and heading."""
    docs = DOC.parent
    pages = {p.relative_to(docs).as_posix(): p.read_text() for p in docs.rglob("*.md")}
    anchors = {
        name: {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
        for name, text in pages.items()
    }
    broken = []
    for name, text in pages.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if "://" in target:
                continue
            page, _, anchor = target.partition("#")
            if page:
                page = posixpath.normpath(posixpath.join(posixpath.dirname(name), page))
            else:
                page = name
            if page not in pages or (anchor and anchor not in anchors[page]):
                broken.append(f"{name} -> {target}")
    assert broken == []
    expected = {
        "index.md",
        "starlette.md",
        "fastapi.md",
        "flask.md",
        "django.md",
        "asgi.md",
        "wsgi.md",
        "configuration.md",
        "errors.md",
        "scaling.md",
        "issuer.md",
        "security.md",
        "troubleshooting.md",
        "testing.md",
        "providers.md",
    }
    assert expected <= set(pages)
