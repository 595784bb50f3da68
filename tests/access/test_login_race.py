"""The lock-out cannot be raced (issue #11, item 1): parallel attempts, real threads, a real
database (SQLite by default, PostgreSQL with EMBEDPORTAL_TEST_DATABASE_URL).

The reproduction: 30 parallel sign-ins for one account, 29 with wrong passwords and the right
one 21st. Before, every attempt read "not locked" before any had been counted, so 15 wrong
passwords were checked, the lock was set and reset on the way, and the right one signed in.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from embedportal.access import login as login_module
from embedportal.access.login import LoginFailure, LoginFailureReason, authenticate
from embedportal.access.read_cache import ReadCache
from embedportal.access.users import create_user
from embedportal.db.base import utcnow
from embedportal.db.models import LoginThrottle, User
from embedportal.db.session import create_db_engine, create_session_factory, session_scope
from embedportal.settings import Settings

PASSWORD = "the-right-password"
ADDRESS = "203.0.113.50"
ATTEMPTS = 30
RIGHT_ONE = 20  # the 21st
WAIT_SECONDS = 20


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> sessionmaker[Session]:
    return create_session_factory(engine)


@pytest.fixture
def account(factory: sessionmaker[Session], fast_password_hashing: None) -> str:
    with session_scope(factory) as db:
        user = create_user(session=db, email="admin@example.com", password=PASSWORD, actor=None)
        return user.email


@dataclass
class VerifySpy:
    """Counts the checks against the account's real hash; can hold them while in flight."""

    real_hash: str
    hold: threading.Event | None = None
    real_checks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = login_module.verify_password

        def spy(password_hash: str, password: str) -> bool:
            if password_hash == self.real_hash:
                with self.lock:
                    self.real_checks += 1
                if self.hold is not None:
                    # Stuck in argon2 as long as the test wants: the attempt is in flight.
                    assert self.hold.wait(WAIT_SECONDS)
            return real(password_hash, password)

        monkeypatch.setattr(login_module, "verify_password", spy)


def _real_hash(factory: sessionmaker[Session], email: str) -> str:
    with session_scope(factory) as db:
        user = db.scalar(select(User).where(User.email == email))
        assert user is not None
        return user.password_hash


def _attempt(
    factory: sessionmaker[Session], settings: Settings, email: str, password: str
) -> Callable[[], User | LoginFailure]:
    def run() -> User | LoginFailure:
        with session_scope(factory) as db:
            return authenticate(
                session=db,
                email=email,
                password=password,
                client_address=ADDRESS,
                settings=settings,
                now=utcnow(),
            )

    return run


def _reserved(factory: sessionmaker[Session]) -> int:
    """Failures counted so far for the (account, address) pair."""
    with session_scope(factory) as db:
        rows = db.scalars(select(LoginThrottle.failures).where(LoginThrottle.scope == "pair"))
        return max(rows, default=0)


def _wait_for(condition: Callable[[], bool]) -> None:
    event = threading.Event()
    for _tick in range(WAIT_SECONDS * 50):
        if condition():
            return
        event.wait(0.02)
    raise AssertionError("the condition never came true")


def test_the_right_password_21st_of_30_parallel_attempts_does_not_sign_in(
    factory: sessionmaker[Session],
    settings: Settings,
    account: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20 wrong attempts are in flight (those that got a turn held inside argon2) when the right
    one comes, then 9 more wrong ones: the account is locked for this address, so it waits."""
    spy = VerifySpy(_real_hash(factory, account), hold=threading.Event())
    spy.install(monkeypatch)
    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        wrong_first = [
            pool.submit(_attempt(factory, settings, account, f"wrong-{n}"))
            for n in range(RIGHT_ONE)
        ]
        # The limit is reached while every attempt that got a turn is still checking its
        # password: counted before the check, not after.
        _wait_for(lambda: _reserved(factory) >= settings.login_max_attempts)
        right = pool.submit(_attempt(factory, settings, account, PASSWORD))
        wrong_after = [
            pool.submit(_attempt(factory, settings, account, f"late-{n}"))
            for n in range(ATTEMPTS - RIGHT_ONE - 1)
        ]
        right_result = right.result(timeout=WAIT_SECONDS)
        spy.hold.set()  # type: ignore[union-attr]
        results = [future.result(timeout=WAIT_SECONDS) for future in wrong_first + wrong_after]
    assert isinstance(right_result, LoginFailure)
    assert right_result.reason == LoginFailureReason.LOCKED
    assert not any(isinstance(result, User) for result in results)
    # Exactly as many passwords were checked as the limit allows, however many raced.
    assert spy.real_checks == settings.login_max_attempts
    reasons = [result.reason for result in results if isinstance(result, LoginFailure)]
    assert reasons.count(LoginFailureReason.INVALID) == settings.login_max_attempts - 1
    assert reasons.count(LoginFailureReason.LOCKED) == ATTEMPTS - settings.login_max_attempts


@pytest.mark.parametrize("round_number", range(3))
def test_simultaneous_attempts_never_check_more_passwords_than_allowed(
    factory: sessionmaker[Session],
    settings: Settings,
    account: str,
    monkeypatch: pytest.MonkeyPatch,
    round_number: int,
) -> None:
    """All 30 released at once, in whatever order the machine runs them: the right password
    signs in only if its turn came before the limit, and then it starts the count again."""
    spy = VerifySpy(_real_hash(factory, account))
    spy.install(monkeypatch)
    start = threading.Barrier(ATTEMPTS)
    passwords = [f"wrong-{n}" for n in range(ATTEMPTS)]
    passwords[RIGHT_ONE] = PASSWORD

    def attempt(password: str) -> User | LoginFailure:
        start.wait(WAIT_SECONDS)
        return _attempt(factory, settings, account, password)()

    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        results = list(pool.map(attempt, passwords, timeout=WAIT_SECONDS * 2))
    signed_in = [result for result in results if isinstance(result, User)]
    assert len(signed_in) <= 1
    if signed_in:
        # It had one of the first turns; the count started again after it, so at most the
        # limit's worth of wrong ones were checked on either side of it.
        assert spy.real_checks <= 2 * settings.login_max_attempts
    else:
        assert spy.real_checks == settings.login_max_attempts
    locked = [r for r in results if isinstance(r, LoginFailure) and r.locked_until is not None]
    assert len(locked) >= ATTEMPTS - 2 * settings.login_max_attempts


def test_failed_attempts_leave_the_read_cache_alone(
    factory: sessionmaker[Session], settings: Settings, account: str
) -> None:
    """The token API's cache of sessions and access: a flood of wrong passwords (which write
    only throttles and audit entries) must not empty it for every open viewer."""
    cache = ReadCache(ttl_seconds=60)
    cache.watch_commits(factory)
    cache.put("k", "v", generation=cache.generation)
    for _try in range(settings.login_max_attempts + 2):
        assert isinstance(_attempt(factory, settings, account, "wrong")(), LoginFailure)
    assert cache.get("k") == "v"
