"""The layered fixtures: database_url → settings → app → client → login_as."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from embedportal.access import passwords
from embedportal.access.catalogue import apply_catalogue, fetch_catalogue
from embedportal.access.grants import grant_report
from embedportal.access.organization import effective_connection
from embedportal.access.users import create_user
from embedportal.app import create_app
from embedportal.db.models import Group, GroupMembership, Report, Role, User
from embedportal.db.session import session_scope
from embedportal.health import HealthChecker
from embedportal.powerbi import PowerBIClient
from embedportal.settings import Settings
from tests.emulator.harness import Emulator, running_emulator
from tests.support.databases import PostgresTemplate, SQLiteTemplate
from tests.support.portal import (
    DEFAULT_PASSWORD,
    TEST_SECRET_KEY,
    Grant,
    LoginAs,
    MakeHealthChecker,
    MakeUser,
    SyncedReports,
    csrf_of,
    portal_settings_for,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    for as long as its session fixture lives, which would break later asyncio-based tests."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="session")
def database_template(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SQLiteTemplate | PostgresTemplate]:
    server_url = os.environ.get("EMBEDPORTAL_TEST_DATABASE_URL")
    if server_url:
        template = PostgresTemplate(server_url)
        yield template
        template.close()
    else:
        yield SQLiteTemplate(tmp_path_factory.mktemp("db-template"))


@pytest.fixture
def database_url(
    database_template: SQLiteTemplate | PostgresTemplate, tmp_path: Path
) -> Iterator[str]:
    url = database_template.fresh(tmp_path)
    yield url
    database_template.drop(url)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change settings for the app under test."""
    return {}


@pytest.fixture
def settings(database_url: str, tmp_path: Path, settings_overrides: dict[str, object]) -> Settings:
    values: dict[str, object] = {
        "environment": "test",
        "secret_key": TEST_SECRET_KEY,
        "database_url": database_url,
        "data_dir": tmp_path,
        "demo": False,
        # Redis is shared by every test run on the machine (pub/sub ignores database numbers).
        "redis_prefix": f"embedportal-test-{uuid.uuid4().hex}",
        # Tests drive the capacity controller themselves (tests/capacity/test_controller.py);
        # one running behind every app could pause the emulator that other tests share.
        "capacity_controller": False,
        # Likewise the mail sender: tests that send mail call `app.state.mail_sender` themselves.
        "mail_sender": False,
        **settings_overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


@pytest.fixture
def redis_url() -> str:
    """The Redis test server; the Makefile (and so CI) always sets it."""
    url = os.environ.get("EMBEDPORTAL_TEST_REDIS_URL")
    if not url:
        pytest.skip("EMBEDPORTAL_TEST_REDIS_URL is not set (make test sets it)")
    return url


# --- Users and signing in ---------------------------------------------------------------------


@pytest.fixture
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id hashes at the cheapest parameters: tests create many users, and the
    production parameters cost a quarter of a second per hash on a CI machine."""
    monkeypatch.setattr(
        passwords, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def user_passwords() -> dict[str, str]:
    """E-mail → password of every user make_user created, for login_as."""
    return {}


@pytest.fixture
def make_user(
    app: FastAPI, fast_password_hashing: None, user_passwords: dict[str, str]
) -> MakeUser:
    """make_user(email=..., role="viewer"|"admin", password=..., **fields) → a committed User.
    Extra fields (is_blocked, rls_roles, language, ...) are set as given, unvalidated."""
    counter = iter(range(1, 1_000_000))

    def make(
        email: str | None = None,
        role: Role | str = Role.VIEWER,
        password: str = DEFAULT_PASSWORD,
        **fields: object,
    ) -> User:
        address = email or f"user{next(counter)}@example.com"
        with session_scope(app.state.session_factory) as db:
            user = create_user(
                session=db, email=address, password=password, role=Role(role), actor=None
            )
            for name, value in fields.items():
                if not hasattr(User, name):
                    raise AttributeError(f"User has no field {name!r}")
                setattr(user, name, value)
        user_passwords[user.email] = password
        return user

    return make


@pytest.fixture
def login_as(client: TestClient, user_passwords: dict[str, str]) -> LoginAs:
    """login_as(user_or_email, password=None) signs in through the real /login form on
    `client` (cookies and CSRF as a browser has them) and returns the client."""

    def sign_in(user: User | str, password: str | None = None) -> TestClient:
        email = (user if isinstance(user, str) else user.email).lower()
        client.cookies.clear()
        token = csrf_of(client, "/login")
        response = client.post(
            "/login",
            data={
                "email": email,
                "password": password or user_passwords.get(email, DEFAULT_PASSWORD),
                "csrf_token": token,
            },
            follow_redirects=False,
        )
        assert response.status_code == 303, (
            f"signing in as {email} failed ({response.status_code}): {response.text[:300]}"
        )
        return client

    return sign_in


# --- The Power BI emulator over real HTTP, and the portal pointed at it (refs #7) ----------------


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """One emulator for the whole session, served by uvicorn over real HTTP: the portal reaches
    it exactly as `serve` reaches its embedded emulator. Its counters only grow, so tests
    compare `emulator.stats()` before and after."""
    with running_emulator() as running:
        yield running


@pytest.fixture
def emulator_settings_overrides(emulator: Emulator) -> dict[str, object]:
    """Use as `settings_overrides` in a module whose tests involve Power BI."""
    return portal_settings_for(emulator)


@pytest.fixture
def synced_reports(app: FastAPI) -> SyncedReports:
    """Sync the emulator's demo workspace into the portal (through the real Power BI client);
    report name → id. Needs `settings_overrides` pointing at the emulator."""

    async def sync() -> None:
        with session_scope(app.state.session_factory) as db:
            connection = effective_connection(session=db, settings=app.state.settings)
        assert connection.connection is not None  # no workspace set: every one it can see
        async with PowerBIClient(connection.connection) as powerbi:
            catalogue = await fetch_catalogue(client=powerbi, workspace_id=connection.workspace_id)
        with session_scope(app.state.session_factory) as db:
            apply_catalogue(session=db, catalogue=catalogue, actor=None)

    asyncio.run(sync())
    with session_scope(app.state.session_factory) as db:
        return {report.name: report.id for report in db.scalars(select(Report))}


@pytest.fixture
def grant(app: FastAPI) -> Grant:
    """grant(report_id, user=<User or e-mail> | group=<group name>, roles=[...]): let a user or
    a group (created if new, members= e-mails) open a report."""

    def give(
        report_id: str,
        *,
        user: User | str | None = None,
        group: str | None = None,
        members: Sequence[User | str] = (),
        roles: Sequence[str] = (),
    ) -> None:
        with session_scope(app.state.session_factory) as db:
            report = db.get(Report, report_id)
            assert report is not None, f"unknown report {report_id}"

            def find(who: User | str) -> User:
                email = who if isinstance(who, str) else who.email
                found = db.scalar(select(User).where(User.email == email))
                assert found is not None, f"unknown user {email}"
                return found

            target_group = None
            if group is not None:
                target_group = db.scalar(select(Group).where(Group.name == group))
                if target_group is None:
                    target_group = Group(name=group)
                    db.add(target_group)
                    db.flush()
                for member in members:
                    found = find(member)
                    if db.get(GroupMembership, (target_group.id, found.id)) is None:
                        db.add(GroupMembership(group_id=target_group.id, user_id=found.id))
                db.flush()
            grant_report(
                session=db,
                report=report,
                user=find(user) if user is not None else None,
                group=target_group,
                roles=list(roles),
                actor=None,
            )

    return give


@pytest.fixture
def make_health_checker() -> Iterator[MakeHealthChecker]:
    """HealthChecker(**kwargs), its probe's database connection given back after the test."""
    made: list[HealthChecker] = []

    def make(**kwargs: object) -> HealthChecker:
        checker = HealthChecker(**kwargs)  # type: ignore[arg-type]
        made.append(checker)
        return checker

    yield make
    for checker in made:
        checker.close_database_probe()
