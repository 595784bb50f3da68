"""sign-in hardening: throttles per (account, client address), per address and per account
instead of one lock on the user row; an absolute end for every session

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 14:00:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)
# Sessions that exist when this runs get the default lifetime from their sign-in.
EXISTING_SESSION_LIFETIME = timedelta(days=30)


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("account", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", UTC_DATETIME, nullable=False),
        sa.Column("locked_until", UTC_DATETIME, nullable=True),
        sa.Column("succeeded_at", UTC_DATETIME, nullable=True),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_login_throttles_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_login_throttles")),
    )
    with op.batch_alter_table("login_throttles") as batch:
        batch.create_index(batch.f("ix_login_throttles_account"), ["account"], unique=False)
        batch.create_index(batch.f("ix_login_throttles_user_id"), ["user_id"], unique=False)
        batch.create_index(batch.f("ix_login_throttles_updated_at"), ["updated_at"], unique=False)
    # Never by copying the table (batch mode's way on SQLite): with foreign keys on, dropping
    # the old `users` would cascade to every session, membership and grant. SQLite (3.35+)
    # drops a plain column in place.
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("failed_login_count")
        batch.drop_column("locked_until")

    # Copying `web_sessions` is safe: no table refers to it.
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("expires_at", UTC_DATETIME, nullable=True))
    sessions = sa.table(
        "web_sessions",
        sa.column("id", sa.String()),
        sa.column("created_at", UTC_DATETIME),
        sa.column("expires_at", UTC_DATETIME),
    )
    connection = op.get_bind()
    for session_id, created_at in connection.execute(
        sa.select(sessions.c.id, sessions.c.created_at)
    ).all():
        started = created_at or datetime.now(UTC)
        connection.execute(
            sa.update(sessions)
            .where(sessions.c.id == session_id)
            .values(expires_at=started + EXISTING_SESSION_LIFETIME)
        )
    with op.batch_alter_table("web_sessions") as batch:
        batch.alter_column("expires_at", existing_type=UTC_DATETIME, nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("expires_at")
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.add_column(
            sa.Column("failed_login_count", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("locked_until", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("login_throttles") as batch:
        batch.drop_index(batch.f("ix_login_throttles_updated_at"))
        batch.drop_index(batch.f("ix_login_throttles_user_id"))
        batch.drop_index(batch.f("ix_login_throttles_account"))
    op.drop_table("login_throttles")
