"""One wording for a missing optional dependency, naming the extra that installs it."""

from __future__ import annotations

import pytest

from scopegate._extras import install_hint, missing_extra


def test_install_hint_names_the_extra() -> None:
    assert install_hint("RedisCache", "redis-py", "redis") == (
        "RedisCache needs redis-py: pip install 'scopegate[redis]'"
    )


@pytest.mark.parametrize("name", ["flask", "django", "fastapi", "starlette", "mcp", "fastmcp"])
def test_an_integration_is_installed_by_the_extra_of_its_name(name: str) -> None:
    error = missing_extra(f"scopegate.integrations.{name}", "the framework")
    assert isinstance(error, ImportError)
    assert str(error).endswith(f"pip install 'scopegate[{name}]'")


def test_every_named_extra_exists() -> None:
    """The extras the hints name are declared in pyproject.toml."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    named = ("redis", "otel", "prometheus", "issuer")
    integrations = ("flask", "django", "fastapi", "starlette", "mcp", "fastmcp")
    for name in named + integrations:
        assert name in extras, name
