"""Service-level fixtures: a database session on a fresh, migrated database."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session

from embedportal.access.login import LoginFailure, authenticate, lockouts
from embedportal.access.users import create_user
from embedportal.db.base import utcnow
from embedportal.db.models import Role, User
from embedportal.db.session import create_db_engine, create_session_factory
from embedportal.settings import Settings

PASSWORD = "a-long-enough-password"


@pytest.fixture
def db(database_url: str, fast_password_hashing: None) -> Iterator[Session]:
    """One session for the whole test; changes are flushed, and visible to the test."""
    engine = create_db_engine(database_url)
    session = create_session_factory(engine)()
    try:
        yield session
    finally:
        session.close()
        engine.dispose()


NewUser = Callable[..., User]


@pytest.fixture
def new_user(db: Session) -> NewUser:
    def make(email: str, role: Role = Role.VIEWER, **fields: object) -> User:
        user = create_user(session=db, email=email, password=PASSWORD, role=role, actor=None)
        for name, value in fields.items():
            setattr(user, name, value)
        db.flush()
        return user

    return make


LockOut = Callable[..., None]


@pytest.fixture
def lock_out(db: Session, settings: Settings) -> LockOut:
    """Lock ``user`` out from ``address`` the way an attacker would: wrong passwords."""

    def make(user: User, address: str = "203.0.113.9") -> None:
        for _attempt in range(settings.login_max_attempts):
            result = authenticate(
                session=db,
                email=user.email,
                password="not-the-password",
                client_address=address,
                settings=settings,
                now=utcnow(),
            )
            assert isinstance(result, LoginFailure)
        assert user.id in lockouts(session=db, settings=settings, now=utcnow())

    return make
