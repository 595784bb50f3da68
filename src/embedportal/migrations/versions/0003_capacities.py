"""capacities: the Power BI capacities the connection sees (Azure coordinates once configured),
and each report's capacity

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:45:34.611506
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capacities",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("display_name", sa.String(length=300), nullable=False),
        sa.Column("sku", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=40), nullable=False),
        sa.Column("region", sa.String(length=100), nullable=False),
        sa.Column("seen_at", embedportal.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("subscription_id", sa.String(length=64), nullable=True),
        sa.Column("resource_group", sa.String(length=90), nullable=True),
        sa.Column("resource_name", sa.String(length=63), nullable=True),
        sa.Column("provider", sa.String(length=40), nullable=True),
        sa.Column("idle_pause_minutes", sa.Integer(), nullable=True),
        sa.Column("starting_message", sa.Text(), nullable=False),
        sa.Column(
            "hourly_price", sa.Numeric(precision=12, scale=4, asdecimal=False), nullable=True
        ),
        sa.Column("created_at", embedportal.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", embedportal.db.base.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capacities")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.add_column(sa.Column("capacity_id", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_reports_capacity_id"), ["capacity_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_capacity_id"))
        batch_op.drop_column("capacity_id")

    op.drop_table("capacities")
