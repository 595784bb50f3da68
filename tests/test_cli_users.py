"""`embedportal users list|unlock|set-password|block|unblock|reset-two-step` (issue #11): the
same services as the admin pages, passwords never from the command line, clear messages and
exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner, Result

from embedportal.access.login import LoginFailure, authenticate, lockouts
from embedportal.access.passwords import verify_password
from embedportal.access.sessions import start_session
from embedportal.access.users import create_user
from embedportal.cli import app
from embedportal.db.base import utcnow
from embedportal.db.models import AuditEntry, Role, User, WebSession
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from embedportal.settings import Settings

PASSWORD = "the-first-password"
SECRET_KEY = "cli-test-secret-key-Zk8q2rW9vLx3mN7pT5bY1cH6"


@pytest.fixture
def env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no stray .env
    return {
        "EMBEDPORTAL_DATABASE_URL": database_url,
        "EMBEDPORTAL_ENVIRONMENT": "test",
        "EMBEDPORTAL_SECRET_KEY": SECRET_KEY,
        "COLUMNS": "200",
    }


@pytest.fixture
def cli_settings(database_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, environment="test", secret_key=SECRET_KEY, database_url=database_url
    )


@pytest.fixture
def users(database_url: str, fast_password_hashing: None) -> dict[str, int]:
    engine = create_db_engine(database_url)
    try:
        with session_scope(create_session_factory(engine)) as db:
            made = {
                email: create_user(
                    session=db, email=email, password=PASSWORD, role=role, name=name, actor=None
                )
                for email, role, name in [
                    ("root@example.com", Role.ADMIN, "Root"),
                    ("ana@example.com", Role.VIEWER, "Ana [bold]Souza[/bold]"),
                ]
            }
            start_session(session=db, user=made["ana@example.com"])
            return {email: user.id for email, user in made.items()}
    finally:
        engine.dispose()


def _run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    result = CliRunner().invoke(app, ["users", *args], env=env, input=stdin)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result


@contextmanager
def _db(database_url: str) -> Iterator[Session]:
    engine = create_db_engine(database_url)
    try:
        with session_scope(create_session_factory(engine)) as db:
            yield db
    finally:
        engine.dispose()


def _lock_out(database_url: str, settings: Settings, email: str) -> None:
    with _db(database_url) as db:
        for _attempt in range(settings.login_max_attempts):
            result = authenticate(
                session=db,
                email=email,
                password="guess",
                client_address="203.0.113.9",
                settings=settings,
                now=utcnow(),
            )
            assert isinstance(result, LoginFailure)


def test_list_shows_every_user_and_who_is_locked(
    env: dict[str, str], users: dict[str, int], database_url: str, cli_settings: Settings
) -> None:
    listed = _run(env, "list")
    assert listed.exit_code == 0
    assert "root@example.com" in listed.output and "ana@example.com" in listed.output
    assert "Ana [bold]Souza[/bold]" in listed.output  # shown as typed, not as markup
    assert "locked" not in listed.output
    assert _run(env, "list", "--locked").output.strip() == "No locked users."
    _lock_out(database_url, cli_settings, "ana@example.com")
    locked = _run(env, "list", "--locked")
    assert "ana@example.com" in locked.output and "root@example.com" not in locked.output
    assert "locked until" in locked.output and "203.0.113.9" in locked.output


def test_unlock_ends_the_lockout_and_is_audited(
    env: dict[str, str], users: dict[str, int], database_url: str, cli_settings: Settings
) -> None:
    _lock_out(database_url, cli_settings, "ana@example.com")
    result = _run(env, "unlock", "ANA@example.com")
    assert result.exit_code == 0
    assert "ana@example.com can sign in again from anywhere." in result.output
    again = _run(env, "unlock", "ana@example.com")
    assert again.exit_code == 0 and "was not locked" in again.output
    with _db(database_url) as db:
        assert lockouts(session=db, settings=cli_settings, now=utcnow()) == {}
        actions = list(db.scalars(select(AuditEntry.action)))
    assert actions.count("user.unlocked") == 1


def test_set_password_reads_stdin_and_signs_the_user_out(
    env: dict[str, str], users: dict[str, int], database_url: str
) -> None:
    result = _run(
        env, "set-password", "ana@example.com", "--password-stdin", stdin="brand-new-pw\n"
    )
    assert result.exit_code == 0, result.output
    assert "brand-new-pw" not in result.output
    with _db(database_url) as db:
        ana = db.get(User, users["ana@example.com"])
        assert ana is not None and verify_password(ana.password_hash, "brand-new-pw")
        assert db.scalar(select(WebSession)) is None
        entries = [(e.action, json_text(e.detail)) for e in db.scalars(select(AuditEntry))]
    assert ("user.password_set", json_text({"email": "ana@example.com"})) in entries
    assert not any("brand-new-pw" in detail for _action, detail in entries)


def json_text(value: object) -> str:
    return json.dumps(value, sort_keys=True)


def test_set_password_at_the_prompt_asks_twice_hidden(
    env: dict[str, str], users: dict[str, int]
) -> None:
    result = _run(env, "set-password", "ana@example.com", stdin="brand-new-pw\nbrand-new-pw\n")
    assert result.exit_code == 0, result.output
    assert "New password: \nRepeat for confirmation: \n" in result.output


def test_a_short_password_is_refused_with_the_rule(
    env: dict[str, str], users: dict[str, int]
) -> None:
    result = _run(env, "set-password", "ana@example.com", "--password-stdin", stdin="short\n")
    assert result.exit_code == 1 and "at least 12 characters" in result.output


def test_no_password_option_exists(env: dict[str, str], users: dict[str, int]) -> None:
    result = _run(env, "set-password", "ana@example.com", "--password", "brand-new-pw")
    assert result.exit_code == 2 and "No such option" in result.output


def test_block_and_unblock(env: dict[str, str], users: dict[str, int], database_url: str) -> None:
    blocked = _run(env, "block", "ana@example.com")
    assert blocked.exit_code == 0 and "is blocked and signed out everywhere" in blocked.output
    assert "already blocked" in _run(env, "block", "ana@example.com").output
    with _db(database_url) as db:
        assert db.scalar(select(WebSession)) is None
        ana = db.get(User, users["ana@example.com"])
        assert ana is not None and ana.is_blocked
    unblocked = _run(env, "unblock", "ana@example.com")
    assert unblocked.exit_code == 0 and "can sign in again" in unblocked.output


@pytest.mark.parametrize(
    "args",
    [
        ["unlock", "nobody@example.com"],
        ["block", "nobody@example.com"],
        ["unblock", "nobody@example.com"],
        ["set-password", "nobody@example.com", "--password-stdin"],
    ],
)
def test_an_unknown_user_is_a_clear_error(
    env: dict[str, str], users: dict[str, int], args: list[str]
) -> None:
    result = _run(env, *args, stdin="brand-new-pw\n")
    assert result.exit_code == 1
    assert "There is no user with the e-mail nobody@example.com." in result.output


def test_bad_settings_are_exit_code_2(env: dict[str, str], users: dict[str, int]) -> None:
    result = _run({**env, "EMBEDPORTAL_SECRET_KEY": "a" * 40}, "list")
    assert result.exit_code == 2 and "EMBEDPORTAL_SECRET_KEY looks guessable" in result.output


def test_reset_two_step_removes_it_and_is_audited(
    env: dict[str, str], users: dict[str, int], database_url: str, cli_settings: Settings
) -> None:
    from embedportal.access.two_step import is_enabled
    from tests.support.two_step import enrol

    with _db(database_url) as db:
        ana = db.get(User, users["ana@example.com"])
        assert ana is not None
        enrol(db, ana, cli_settings)
    result = _run(env, "reset-two-step", "ANA@example.com")
    assert result.exit_code == 0, result.output
    assert "Two-step sign-in of ana@example.com is reset." in result.output
    again = _run(env, "reset-two-step", "ana@example.com")
    assert again.exit_code == 0 and "had no two-step sign-in" in again.output
    with _db(database_url) as db:
        assert not is_enabled(session=db, user_id=users["ana@example.com"])
        actions = list(db.scalars(select(AuditEntry.action)))
    assert actions.count("two_step.reset") == 1
    assert _run(env, "reset-two-step", "nobody@example.com").exit_code != 0
