"""The `embedportal` command: serve the portal, run the emulator, migrate, manage users."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console

from embedportal.settings import Settings

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
    from embedportal.server import run_portal, run_workers, workers_refusal

    refusal = workers_refusal(settings, workers)
    if refusal is not None:
        err_console.print(f"[red]Cannot serve with {workers} workers:[/red] {refusal}")
        raise typer.Exit(code=2)
    if workers > 1:
        run_workers(settings, workers=workers, console=console)
    else:
        # The event loop uvicorn picks for its own workers (uvloop where installed): the token
        # API's and the push channel's socket work costs less on it.
        from uvicorn.loops.auto import auto_loop_factory

        with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
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


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's e-mail address (their sign-in name).")],
    password: Annotated[str, typer.Option(help="At least 10 characters.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
) -> None:
    """Create a user who signs in with e-mail and password."""
    from embedportal.access.users import UserInputError, create_user
    from embedportal.db.migrate import upgrade_database
    from embedportal.db.models import Role
    from embedportal.db.session import create_db_engine, create_session_factory, session_scope

    settings = load_settings()
    upgrade_database(settings.resolved_database_url)
    engine = create_db_engine(settings.resolved_database_url)
    try:
        with session_scope(create_session_factory(engine)) as session:
            user = create_user(
                session=session,
                email=email,
                password=password,
                name=name,
                role=Role.ADMIN if admin else Role.VIEWER,
                actor=None,
            )
            console.print(f"Created {user.role.value} {user.email}.")
    except UserInputError as error:
        err_console.print(f"[red]Error:[/red] {error}")
        raise typer.Exit(code=1) from None
    finally:
        engine.dispose()


def main() -> None:
    app()
