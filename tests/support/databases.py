"""One fresh, migrated database per test: SQLite files by default, PostgreSQL when
EMBEDPORTAL_TEST_DATABASE_URL names a server. Migrations run once into a template that each
test copies, so a fresh database costs milliseconds, not a migration run."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

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
    def __init__(self, server_url: str) -> None:
        self.server_url = make_url(server_url)
        self.template_name = f"embedportal_tpl_{uuid.uuid4().hex[:8]}"
        self._admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{self.template_name}"'))
        template_url = self.server_url.set(database=self.template_name)
        upgrade_database(template_url.render_as_string(hide_password=False))

    def fresh(self, _directory: Path) -> str:
        name = f"embedportal_t_{uuid.uuid4().hex[:12]}"
        with self._admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_name}"'))
        return self.server_url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        with self._admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{self.template_name}" WITH (FORCE)'))
        self._admin.dispose()
