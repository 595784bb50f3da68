"""The migrations build exactly the schema the models describe (no drift)."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from embedportal.db.base import Base
from embedportal.db.migrate import alembic_config, pending_revisions


def test_migrated_database_matches_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
        assert differences == []
        assert not pending_revisions(engine)
    finally:
        engine.dispose()


def test_0009_gives_reports_and_the_organization_their_embedding(database_url: str) -> None:
    """Down to 0008 and up again: existing reports follow the organization, which keeps embed
    tokens (app-owned), so nothing changes for anyone until an administrator chooses."""
    engine = create_engine(database_url)
    config = alembic_config(database_url)
    try:
        command.downgrade(config, "0008")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO reports (id, workspace_id, dataset_id, name, embed_url,"
                    " web_url, rls_required, rls_roles_required, is_available, synced_at,"
                    " created_at) VALUES ('r1', 'w', 'd', 'R', 'u', '', false, false, true,"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )
        command.upgrade(config, "0009")
        columns = {c["name"]: c for c in inspect(engine).get_columns("organization")}
        assert "app-owned" in str(columns["default_embedding"]["default"])
        with engine.connect() as connection:
            embedding = connection.execute(text("SELECT embedding FROM reports"))
            assert embedding.scalar_one() is None
    finally:
        engine.dispose()
