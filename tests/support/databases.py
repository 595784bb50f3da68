"""One fresh, migrated database per test: SQLite files by default, PostgreSQL when
EMBEDPORTAL_TEST_DATABASE_URL names a server. Migrations run once into a template that each
test copies, so a fresh database costs milliseconds, not a migration run."""

from __future__ import annotations

import queue
import shutil
import threading
import time
import uuid
from pathlib import Path

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from embedportal.db.migrate import upgrade_database


class SQLiteTemplate:
    def __init__(self, directory: Path) -> None:
        self.path = directory / "template.db"
        upgrade_database(f"sqlite:///{self.path.as_posix()}")

    def fresh(self, directory: Path) -> str:
        target = directory / f"test-{uuid.uuid4().hex[:8]}.db"
        shutil.copyfile(self.path, target)
        return f"sqlite:///{target.as_posix()}"

    def drop(self, url: str) -> None:
        Path(make_url(url).database or "").unlink(missing_ok=True)


class PostgresTemplate:
    """Databases copied from one migrated template. A copy is some 9 MB of catalogue written
    through the WAL, a fifth of a second: most of a PostgreSQL test's set-up. So a thread of
    its own keeps the next copies made (and drops the used ones) while the tests run."""

    READY_AHEAD = 2

    def __init__(self, server_url: str) -> None:
        self.server_url = make_url(server_url)
        self.template_name = f"embedportal_tpl_{uuid.uuid4().hex[:8]}"
        self._admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.template_name}"'))
        template_url = self.server_url.set(database=self.template_name)
        upgrade_database(template_url.render_as_string(hide_password=False))
        self._ready: queue.Queue[str] = queue.Queue()
        self._used: queue.Queue[str] = queue.Queue()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failure: BaseException | None = None
        self._keeper = threading.Thread(target=self._keep_copies_ready, daemon=True)
        self._keeper.start()

    def fresh(self, _directory: Path) -> str:
        deadline = time.monotonic() + 60
        while True:
            if self._failure is not None:
                raise RuntimeError("making test databases failed") from self._failure
            try:
                name = self._ready.get(timeout=0.5)
                break
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise RuntimeError("no test database was made within 60 s") from None
        self._wake.set()
        return self.server_url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        if name:
            self._used.put(name)
            self._wake.set()

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._keeper.join(timeout=60)
        leftovers = [*_drain(self._ready), *_drain(self._used), self.template_name]
        with self._admin.connect() as connection:
            for name in leftovers:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self._admin.dispose()

    def _keep_copies_ready(self) -> None:
        try:
            with self._admin.connect() as connection:
                # A crash would lose only throw-away databases: no need to wait for the disk.
                connection.execute(text("SET synchronous_commit = off"))
                while not self._stopping.is_set():
                    self._wake.clear()
                    for name in _drain(self._used):
                        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                    if self._ready.qsize() < self.READY_AHEAD:
                        name = f"embedportal_t_{uuid.uuid4().hex[:12]}"
                        connection.execute(
                            text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_name}"')
                        )
                        self._warm(name)
                        self._ready.put(name)
                    else:
                        self._wake.wait(timeout=0.5)
        except BaseException as failure:  # handed to the test that asks for a database next
            self._failure = failure

    def _warm(self, name: str) -> None:
        """Connect once: the first connection to a new database builds its catalogue cache
        file, which would otherwise cost the test's first connection tens of milliseconds."""
        url = self.server_url.set(database=name)
        with psycopg.connect(url.render_as_string(hide_password=False).replace("+psycopg", "")):
            pass


def _drain(names: queue.Queue[str]) -> list[str]:
    drained: list[str] = []
    while True:
        try:
            drained.append(names.get_nowait())
        except queue.Empty:
            return drained
