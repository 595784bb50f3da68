"""The `embedportal` command run in-process: clear messages and exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from embedportal.cli import app
from embedportal.db.models import Role, User
from embedportal.db.session import create_db_engine, create_session_factory, session_scope


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    # No stray .env from the working directory.
    monkeypatch.chdir(tmp_path)
    return {"EMBEDPORTAL_DATABASE_URL": database_url, "EMBEDPORTAL_ENVIRONMENT": "development"}


def _create(env: dict[str, str], *args: str, password: str = "long-enough-pw") -> tuple[int, str]:
    """`users create` with the password on standard input, as a script would give it."""
    result = CliRunner().invoke(
        app, ["users", "create", *args, "--password-stdin"], env=env, input=password + "\n"
    )
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def _users(database_url: str) -> list[tuple[str, Role, str]]:
    engine = create_db_engine(database_url)
    try:
        with session_scope(create_session_factory(engine)) as db:
            return [(u.email, u.role, u.name) for u in db.scalars(select(User))]
    finally:
        engine.dispose()


def test_creates_an_administrator(env: dict[str, str], database_url: str) -> None:
    code, output = _create(env, "--email", "Root@Example.com", "--admin", "--name", "Root")
    assert code == 0, output
    assert "Created admin root@example.com." in output
    assert _users(database_url) == [("root@example.com", Role.ADMIN, "Root")]


def test_creates_a_viewer_by_default(env: dict[str, str], database_url: str) -> None:
    code, _ = _create(env, "--email", "viewer@example.com")
    assert code == 0
    assert _users(database_url)[0][1] == Role.VIEWER


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-address", "long-enough-pw", "not a valid e-mail"),
        ("a@example.com", "short", "at least 12 characters"),
    ],
)
def test_bad_input_is_a_clear_message(
    env: dict[str, str], database_url: str, email: str, password: str, message: str
) -> None:
    code, output = _create(env, "--email", email, password=password)
    assert code == 1
    assert "Error:" in output and message in output
    assert _users(database_url) == []


def test_a_duplicate_is_refused(env: dict[str, str], database_url: str) -> None:
    assert _create(env, "--email", "a@example.com")[0] == 0
    code, output = _create(env, "--email", "A@example.com", password="other-long-pw")
    assert code == 1
    assert "A user with the e-mail a@example.com already exists." in output
    assert len(_users(database_url)) == 1


def test_a_missing_option_is_a_usage_error(env: dict[str, str]) -> None:
    code, output = _create(env, "--name", "Ana")
    assert code == 2 and "--email" in output


def test_a_password_is_never_a_command_line_argument(env: dict[str, str]) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "create", "--email", "a@example.com", "--password", "long-enough-pw"],
        env=env,
    )
    assert result.exit_code == 2 and "No such option" in result.output


def test_the_password_prompt_is_hidden_and_asked_twice(
    env: dict[str, str], database_url: str
) -> None:
    result = CliRunner().invoke(
        app,
        ["users", "create", "--email", "a@example.com"],
        env=env,
        input="long-enough-pw\nlong-enough-pw\n",
    )
    assert result.exit_code == 0, result.output
    assert "long-enough-pw" not in result.output  # the prompt does not echo it
    assert "Password: \nRepeat for confirmation: \n" in result.output
    assert _users(database_url) == [("a@example.com", Role.VIEWER, "")]


def test_an_empty_password_on_stdin_is_refused(env: dict[str, str], database_url: str) -> None:
    code, output = _create(env, "--email", "a@example.com", password="")
    assert code == 2 and "No password on standard input." in output
    assert _users(database_url) == []


def test_invalid_settings_are_reported_not_raised(env: dict[str, str]) -> None:
    code, output = _create(
        {**env, "EMBEDPORTAL_ENVIRONMENT": "production"},
        "--email",
        "a@example.com",
    )
    assert code == 2
    assert "EMBEDPORTAL_SECRET_KEY must be set" in output


# --- serve --workers: refused clearly where several processes cannot work ---------------------


def _serve(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["serve", *args], env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, " ".join(result.output.split())


def test_workers_without_redis_are_refused_with_the_reason(env: dict[str, str]) -> None:
    code, output = _serve(env, "--workers", "2")
    assert code == 2
    assert "EMBEDPORTAL_REDIS_URL" in output
    assert "token cache" in output


def test_workers_on_an_in_memory_database_are_refused(env: dict[str, str]) -> None:
    code, output = _serve(
        {
            **env,
            "EMBEDPORTAL_DATABASE_URL": "sqlite://",
            "EMBEDPORTAL_REDIS_URL": "redis://127.0.0.1:1/0",
        },
        "--workers",
        "3",
    )
    assert code == 2
    assert "in-memory SQLite" in output


def test_zero_workers_are_refused(env: dict[str, str]) -> None:
    code, output = _serve(env, "--workers", "0")
    assert code == 2
    assert "at least 1" in output


def test_workers_inherit_the_parents_settings_through_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from pydantic import SecretStr

    from embedportal.server import worker_environment
    from embedportal.settings import Settings

    monkeypatch.chdir(tmp_path)
    base = Settings(_env_file=None)  # type: ignore[call-arg]
    parent = base.model_copy(
        update={
            "port": 9100,
            "powerbi_client_secret": SecretStr("emulator-secret"),
            "powerbi_api_url": "http://127.0.0.1:9101",
            "capacity_controller": False,
        }
    )
    variables = worker_environment(parent, base)
    assert variables == {
        "EMBEDPORTAL_PORT": "9100",
        "EMBEDPORTAL_POWERBI_CLIENT_SECRET": "emulator-secret",
        "EMBEDPORTAL_POWERBI_API_URL": "http://127.0.0.1:9101",
        "EMBEDPORTAL_CAPACITY_CONTROLLER": "False",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    worker = Settings(_env_file=None)  # type: ignore[call-arg]
    assert worker.port == 9100
    assert worker.capacity_controller is False
    assert worker.powerbi_client_secret is not None
    assert worker.powerbi_client_secret.get_secret_value() == "emulator-secret"
