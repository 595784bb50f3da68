"""branding: the organization's primary colour, and its logo, favicon and sign-in background

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("organization") as batch:
        batch.add_column(
            sa.Column("brand_color", sa.String(length=7), nullable=False, server_default="")
        )
    op.create_table(
        "brand_images",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_brand_images")),
    )


def downgrade() -> None:
    op.drop_table("brand_images")
    with op.batch_alter_table("organization") as batch:
        batch.drop_column("brand_color")
