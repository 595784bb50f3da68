"""The documentation keeps up with the code: every setting is in docs/configuration.md."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from embedportal.emulator.settings import EmulatorSettings
from embedportal.settings import Settings

DOCS = Path(__file__).resolve().parents[1] / "docs"
SETTINGS_CLASSES: list[tuple[type[BaseSettings], str]] = [
    (Settings, "EMBEDPORTAL_"),
    (EmulatorSettings, "EMBEDPORTAL_EMULATOR_"),
]
ROW = re.compile(r"^\| `(EMBEDPORTAL_[A-Z0-9_]+)` \|(.*)$", re.MULTILINE)


def _documented() -> dict[str, str]:
    """Variable → the rest of its table row in docs/configuration.md."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return dict(ROW.findall(text))


def _fields() -> dict[str, tuple[type[BaseSettings], str]]:
    return {
        prefix + name.upper(): (cls, name)
        for cls, prefix in SETTINGS_CLASSES
        for name in cls.model_fields
    }


def _default_text(cls: type[BaseSettings], name: str) -> str | None:
    """How the default appears in the doc, for plain values; None when it is described."""
    field = cls.model_fields[name]
    if field.default_factory is not None or field.default is None:
        return None
    default = field.default
    if isinstance(default, SecretStr):
        return None
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


@pytest.mark.parametrize("variable", sorted(_fields()))
def test_every_setting_is_documented_with_its_default(variable: str) -> None:
    documented = _documented()
    assert variable in documented, f"{variable} is missing from docs/configuration.md"
    cls, name = _fields()[variable]
    default = _default_text(cls, name)
    if default is not None:
        assert f"| `{default}` |" in "|" + documented[variable], (
            f"docs/configuration.md gives {variable} another default than `{default}`"
        )


def test_the_doc_lists_no_setting_that_does_not_exist() -> None:
    stale = set(_documented()) - set(_fields())
    assert not stale, f"docs/configuration.md documents settings that do not exist: {stale}"


def test_every_setting_has_a_description_in_the_code() -> None:
    undescribed = [
        variable
        for variable, (cls, name) in _fields().items()
        if not cls.model_fields[name].description
    ]
    assert not undescribed


def test_make_run_takes_another_port_as_the_readme_says() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    root = Path(__file__).resolve().parents[1]
    planned = subprocess.run(
        [make, "-n", "--no-print-directory", "run", "PORT=9123"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "embedportal serve --port 9123" in planned
    assert "make run PORT=9000" in (root / "README.md").read_text(encoding="utf-8")


def test_every_test_docs_security_md_names_exists() -> None:
    """docs/security.md says which test proves each requirement: each must be there."""
    root = DOCS.parent
    text = (DOCS / "security.md").read_text(encoding="utf-8")
    cited = re.findall(r"`(tests/[\w/]+\.py)((?:::\w+)?)`", text)
    assert cited, "docs/security.md names no tests"
    named = re.findall(r"`::(\w+)`", text)
    missing = []
    for path, test in cited:
        source = root / path
        if not source.is_file():
            missing.append(path)
        elif test and f"def {test[2:]}(" not in source.read_text(encoding="utf-8"):
            missing.append(path + test)
    for test in named:
        if not any(f"def {test}(" in (root / p).read_text(encoding="utf-8") for p, _ in cited):
            missing.append(test)
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
