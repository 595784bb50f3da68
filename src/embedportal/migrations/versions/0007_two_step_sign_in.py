"""two-step sign-in: authenticator secrets, recovery codes, and the organization's rule for
administrators

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "two_step_credentials",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("secret_encrypted", sa.Text(), nullable=False),
        sa.Column("enabled_at", UTC_DATETIME, nullable=True),
        sa.Column("last_used_step", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_two_step_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_two_step_credentials")),
    )
    op.create_table(
        "two_step_recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_two_step_recovery_codes_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_two_step_recovery_codes")),
    )
    with op.batch_alter_table("two_step_recovery_codes") as batch:
        batch.create_index(batch.f("ix_two_step_recovery_codes_user_id"), ["user_id"], unique=False)
    # Adding a nullable column is done in place on SQLite: no copy of the table.
    with op.batch_alter_table("organization", recreate="never") as batch:
        batch.add_column(sa.Column("require_two_step_for_admins", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("organization", recreate="never") as batch:
        batch.drop_column("require_two_step_for_admins")
    with op.batch_alter_table("two_step_recovery_codes") as batch:
        batch.drop_index(batch.f("ix_two_step_recovery_codes_user_id"))
    op.drop_table("two_step_recovery_codes")
    op.drop_table("two_step_credentials")
