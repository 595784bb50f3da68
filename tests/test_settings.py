"""Settings: environment variables with the EMBEDPORTAL_ prefix, and no unsafe production."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from embedportal.settings import DEVELOPMENT_SECRET_KEY, Settings

GOOD_KEY = "k" * 48


def _settings(**values: Any) -> Settings:
    """Settings from the given values and the environment, never from a .env file."""
    return Settings(_env_file=None, **values)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [
        "EMBEDPORTAL_ENVIRONMENT",
        "EMBEDPORTAL_SECRET_KEY",
        "EMBEDPORTAL_PORT",
        "EMBEDPORTAL_DATABASE_URL",
        "EMBEDPORTAL_LOGIN_MAX_ATTEMPTS",
    ]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("environment", ["production", "test"])
@pytest.mark.parametrize("key", [None, DEVELOPMENT_SECRET_KEY, "too-short-a-secret"])
def test_outside_development_the_secret_must_be_set_and_long(
    environment: str, key: str | None
) -> None:
    values: dict[str, object] = {"environment": environment}
    if key is not None:
        values["secret_key"] = key
    with pytest.raises(ValidationError, match="EMBEDPORTAL_SECRET_KEY must be set"):
        _settings(**values)


def test_a_long_random_secret_is_accepted_in_production() -> None:
    settings = _settings(environment="production", secret_key=GOOD_KEY)
    assert settings.secret_key.get_secret_value() == GOOD_KEY
    assert GOOD_KEY not in repr(settings)


def test_development_allows_the_built_in_secret() -> None:
    settings = _settings()
    assert settings.environment == "development"
    assert settings.secret_key.get_secret_value() == DEVELOPMENT_SECRET_KEY


def test_environment_variables_use_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDPORTAL_PORT", "9123")
    monkeypatch.setenv("EMBEDPORTAL_LOGIN_MAX_ATTEMPTS", "7")
    monkeypatch.setenv("EMBEDPORTAL_ENVIRONMENT", "production")
    monkeypatch.setenv("EMBEDPORTAL_SECRET_KEY", GOOD_KEY)
    monkeypatch.setenv("PORT", "1")  # unprefixed: ignored
    settings = _settings()
    assert (settings.port, settings.login_max_attempts) == (9123, 7)
    assert settings.environment == "production"


def test_a_dotenv_file_is_read(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("EMBEDPORTAL_SESSION_IDLE_MINUTES=15\n")
    assert Settings(_env_file=env_file).session_idle_minutes == 15


def test_the_database_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    settings = _settings(data_dir=tmp_path)
    assert settings.resolved_database_url == f"sqlite:///{tmp_path.as_posix()}/embedportal.db"
    assert settings.resolved_emulator_port == settings.port + 1


@pytest.mark.parametrize(
    "values",
    [{"port": 0}, {"session_idle_minutes": 0}, {"default_language": "fr"}, {"environment": "x"}],
)
def test_out_of_range_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        _settings(**values)
