"""embed for your organization: how each report is embedded, and the organization's default

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 06:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Added in place on SQLite (no copy of a table other tables refer to).
    with op.batch_alter_table("reports", recreate="never") as batch:
        batch.add_column(sa.Column("embedding", sa.String(length=20), nullable=True))
    with op.batch_alter_table("organization", recreate="never") as batch:
        batch.add_column(
            sa.Column(
                "default_embedding",
                sa.String(length=20),
                nullable=False,
                server_default="app-owned",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("organization", recreate="never") as batch:
        batch.drop_column("default_embedding")
    with op.batch_alter_table("reports", recreate="never") as batch:
        batch.drop_column("embedding")
