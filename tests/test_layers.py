"""Imports go downward only: the services and the clients never reach up into the web layer,
and the bottom modules (translation, settings) depend on nothing of the portal."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import embedportal

PACKAGE = Path(embedportal.__file__).resolve().parent
BELOW_WEB = ("access", "tokens", "capacity", "powerbi", "db", "mail")
SELF_CONTAINED = ("i18n.py",)


def imported_modules(path: Path, package: tuple[str, ...] | None = None) -> Iterator[str]:
    """Every module a file imports, absolute names (relative imports resolved against the
    file's package, by default where it sits in embedportal)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package_parts = package or ("embedportal", *path.relative_to(PACKAGE).parent.parts)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package_parts[: len(package_parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield module
            yield from (f"{module}.{alias.name}" for alias in node.names)


@pytest.mark.parametrize("layer", BELOW_WEB)
def test_lower_layers_never_import_web(layer: str) -> None:
    offenders = sorted(
        f"{path.relative_to(PACKAGE)} imports {module}"
        for path in (PACKAGE / layer).rglob("*.py")
        for module in imported_modules(path)
        if module == "embedportal.web" or module.startswith("embedportal.web.")
    )
    assert offenders == []


@pytest.mark.parametrize("name", SELF_CONTAINED)
def test_bottom_modules_import_nothing_of_the_portal(name: str) -> None:
    offenders = sorted(
        module for module in imported_modules(PACKAGE / name) if module.startswith("embedportal")
    )
    assert offenders == []


def test_the_checker_sees_an_upward_import(tmp_path: Path) -> None:
    """A negative control: the walk above finds every spelling of an import."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from embedportal.web import deps\nimport embedportal.web.push\nfrom ..web import errors\n"
    )
    found = set(imported_modules(probe, package=("embedportal", "access")))
    assert {"embedportal.web.deps", "embedportal.web.push", "embedportal.web.errors"} <= found
