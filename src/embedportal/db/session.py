"""Engines and sessions, built from settings (nothing is created at import)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

POSTGRES_CONNECT_TIMEOUT_SECONDS = 5


def create_db_engine(database_url: str, *, connections: int | None = None) -> Engine:
    """The engine for ``database_url``. ``connections``: a pool of exactly that many, for a
    caller that must never queue behind the requests' pool (the health check)."""
    url = make_url(database_url)
    in_memory = not url.database or url.database == ":memory:"
    pool: dict[str, Any] = {}
    if connections is not None and not in_memory:
        pool = {"pool_size": connections, "max_overflow": 0}
    if url.get_backend_name() == "sqlite":
        if not in_memory:
            Path(url.database or "").parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **pool
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # A pooled connection is checked before use, so one the server dropped (a restart,
    # pg_terminate_backend) is replaced instead of failing the request; a server that does not
    # answer at all fails a connect within seconds (then 503, web/errors.py), not minutes.
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
        connect_args["connect_timeout"] = POSTGRES_CONNECT_TIMEOUT_SECONDS
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **pool)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers go on while the one writer commits; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
