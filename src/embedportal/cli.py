"""The `embedportal` command: serve the portal, run the emulator, migrate, manage users."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from embedportal.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from embedportal.db.models import User

app = typer.Typer(
    name="embedportal",
    help="Self-hosted Power BI portal: reports for people without a Power BI licence.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
users_app = typer.Typer(help="Manage portal users.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")

console = Console()
err_console = Console(stderr=True)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, or a clear message and exit code 2."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(str(part) for part in problem["loc"]) or "settings"
            err_console.print(f"[red]Invalid setting[/red] {where}: {problem['msg']}")
        raise typer.Exit(code=2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Portal port (default 8000).")] = None,
    emulator_port: Annotated[
        int | None, typer.Option(help="Built-in emulator's port (default: port + 1).")
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Worker processes on the one port (more than 1 needs EMBEDPORTAL_REDIS_URL "
            "and a database shared by processes, e.g. PostgreSQL)."
        ),
    ] = 1,
) -> None:
    """Migrate the database and serve the portal (with the built-in emulator when no Power BI
    credentials are configured)."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if emulator_port is not None:
        overrides["emulator_port"] = emulator_port
    settings = load_settings(**overrides)
    from embedportal.server import (
        emulator_refusal,
        run_portal,
        run_workers,
        serving_loop,
        workers_refusal,
    )

    refusal = workers_refusal(settings, workers)
    if refusal is not None:
        err_console.print(f"[red]Cannot serve with {workers} workers:[/red] {refusal}")
        raise typer.Exit(code=2)
    refusal = emulator_refusal(settings)
    if refusal is not None:
        err_console.print(f"[red]Cannot start the built-in emulator:[/red] {refusal}")
        raise typer.Exit(code=2)
    if workers > 1:
        run_workers(settings, workers=workers, console=console)
    else:
        with asyncio.Runner(loop_factory=serving_loop) as runner:
            runner.run(run_portal(settings, console=console))


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
) -> None:
    """Run the built-in Power BI emulator alone (Entra, Power BI REST, ARM and the embed iframe)."""
    from embedportal.server import run_emulator_only

    asyncio.run(run_emulator_only(host=host, port=port, console=console))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all database migrations."""
    from embedportal.db.migrate import upgrade_database

    settings = load_settings()
    upgrade_database(settings.resolved_database_url)
    console.print("Database is up to date.")


@contextmanager
def _database() -> Iterator[tuple[Settings, Session]]:
    """Settings and a unit of work on the migrated database (committed when the block ends)."""
    from embedportal.db.migrate import upgrade_database
    from embedportal.db.session import create_db_engine, create_session_factory, session_scope

    settings = load_settings()
    upgrade_database(settings.resolved_database_url)
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            yield settings, session
    finally:
        engine.dispose()


def _fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"[red]Error:[/red] {escape(message)}")
    raise typer.Exit(code=code)


def _read_password(*, from_stdin: bool, prompt: str) -> str:
    """A password from standard input (one line) or a hidden prompt typed twice; never from
    the command line, where other users see it in the process list and it stays in history."""
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            _fail("No password on standard input.", code=2)
        return line
    typed: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
    return typed


def _user_named(session: Session, email: str) -> User:
    from embedportal.access.users import find_user_by_email

    user = find_user_by_email(session=session, email=email)
    if user is None:
        _fail(f"There is no user with the e-mail {email.strip()}.")
    return user


PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin",
        help="Read the password from the first line of standard input instead of a prompt.",
    ),
]
EmailArgument = Annotated[str, typer.Argument(help="The user's e-mail address.")]


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's e-mail address (their sign-in name).")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    password_stdin: PasswordStdin = False,
) -> None:
    """Create a user who signs in with e-mail and password (at least 12 characters, asked for
    at a hidden prompt or read with --password-stdin)."""
    from embedportal.access.users import UserInputError, create_user
    from embedportal.db.models import Role

    password = _read_password(from_stdin=password_stdin, prompt="Password")
    with _database() as (_settings, session):
        try:
            user = create_user(
                session=session,
                email=email,
                password=password,
                name=name,
                role=Role.ADMIN if admin else Role.VIEWER,
                actor=None,
            )
        except UserInputError as error:
            _fail(str(error))
        console.print(f"Created {user.role.value} {escape(user.email)}.")


@users_app.command("list")
def users_list(
    locked: Annotated[
        bool, typer.Option("--locked", help="Only users whose sign-in is locked now.")
    ] = False,
) -> None:
    """List the users: role, whether blocked or locked, last sign-in (UTC)."""
    from embedportal.access.login import lockouts
    from embedportal.access.users import all_users
    from embedportal.db.base import utcnow

    with _database() as (settings, session):
        now = utcnow()
        held = lockouts(session=session, settings=settings, now=now)
        table = Table("E-mail", "Name", "Role", "Status", "Last sign-in (UTC)", box=None)
        shown = 0
        for user in all_users(session=session):
            lockout = held.get(user.id)
            if locked and lockout is None:
                continue
            if user.is_blocked:
                status = "blocked"
            elif lockout is not None:
                status = f"locked until {lockout.until:%Y-%m-%d %H:%M}"
                if lockout.addresses:
                    status += f" from {', '.join(lockout.addresses)}"
            else:
                status = "active"
            last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
            table.add_row(
                escape(user.email), escape(user.name), user.role.value, escape(status), last
            )
            shown += 1
        if shown:
            console.print(table)
        else:
            console.print("No locked users." if locked else "No users yet.")


@users_app.command("unlock")
def users_unlock(email: EmailArgument) -> None:
    """End a user's sign-in lock-out from every address at once."""
    from embedportal.access.users import unlock_user

    with _database() as (_settings, session):
        user = _user_named(session, email)
        ended = unlock_user(session=session, user=user, actor=None)
        if ended:
            console.print(f"{escape(user.email)} can sign in again from anywhere.")
        else:
            console.print(f"{escape(user.email)} was not locked.")


@users_app.command("reset-two-step")
def users_reset_two_step(email: EmailArgument) -> None:
    """Remove a user's two-step sign-in (a lost phone): their password alone signs them in
    until they set it up again."""
    from embedportal.access.two_step import reset_two_step

    with _database() as (_settings, session):
        user = _user_named(session, email)
        if reset_two_step(session=session, user=user, actor=None):
            console.print(f"Two-step sign-in of {escape(user.email)} is reset.")
        else:
            console.print(f"{escape(user.email)} had no two-step sign-in.")


@users_app.command("set-password")
def users_set_password(email: EmailArgument, password_stdin: PasswordStdin = False) -> None:
    """Set a user's password (they are signed out everywhere and any lock-out ends)."""
    from embedportal.access.users import UserInputError, set_password

    with _database() as (settings, session):
        user = _user_named(session, email)
        password = _read_password(from_stdin=password_stdin, prompt="New password")
        try:
            set_password(
                session=session,
                user=user,
                password=password,
                actor=None,
                default_language=settings.default_language,
            )
        except UserInputError as error:
            _fail(str(error))
        console.print(f"The password of {escape(user.email)} is set.")


def _set_blocked(email: str, *, blocked: bool) -> None:
    from embedportal.access.users import UserInputError, set_blocked

    with _database() as (_settings, session):
        user = _user_named(session, email)
        was = user.is_blocked
        try:
            set_blocked(session=session, user=user, blocked=blocked, actor=None)
        except UserInputError as error:
            _fail(str(error))
        if was == blocked:
            console.print(
                f"{escape(user.email)} was already {'blocked' if blocked else 'unblocked'}."
            )
        elif blocked:
            console.print(f"{escape(user.email)} is blocked and signed out everywhere.")
        else:
            console.print(f"{escape(user.email)} is unblocked and can sign in again.")


@users_app.command("block")
def users_block(email: EmailArgument) -> None:
    """Block a user: signed out everywhere, no sign-in until unblocked."""
    _set_blocked(email, blocked=True)


@users_app.command("unblock")
def users_unblock(email: EmailArgument) -> None:
    """Let a blocked user sign in again."""
    _set_blocked(email, blocked=False)


def main() -> None:
    app()
