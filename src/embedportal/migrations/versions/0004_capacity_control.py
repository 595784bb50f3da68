"""capacity control: the activity ledger, the weekly schedule, the capacity audit, on-demand
requests, the controller lease, the global "nobody may turn on a capacity" block, and what the
controller remembers of each capacity

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("capacities") as batch:
        batch.add_column(sa.Column("running_since", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("manually_paused_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("sku_changed_at", UTC_DATETIME, nullable=True))
        batch.add_column(sa.Column("operation", sa.String(length=20), nullable=True))
        batch.add_column(sa.Column("operation_started_at", UTC_DATETIME, nullable=True))
    with op.batch_alter_table("organization") as batch:
        batch.add_column(
            sa.Column(
                "nobody_may_start_capacity",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
    op.create_table(
        "capacity_schedule_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("capacity_id", sa.String(length=64), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("at_minute", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("sku", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(["capacity_id"], ["capacities.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("capacity_id", "weekday", "at_minute"),
    )
    op.create_index(
        "ix_capacity_schedule_entries_capacity_id",
        "capacity_schedule_entries",
        ["capacity_id"],
    )
    op.create_table(
        "capacity_activity",
        sa.Column("capacity_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("minute", UTC_DATETIME, nullable=False),
        sa.Column("kinds", sa.String(length=100), nullable=False),
        sa.Column("last_counted_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["capacity_id"], ["capacities.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("capacity_id", "user_id", "minute"),
    )
    op.create_index(
        "ix_capacity_activity_counted", "capacity_activity", ["capacity_id", "last_counted_at"]
    )
    op.create_index("ix_capacity_activity_minute", "capacity_activity", ["minute"])
    op.create_table(
        "capacity_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", UTC_DATETIME, nullable=False),
        sa.Column("capacity_id", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.Column("sku_before", sa.String(length=20), nullable=False),
        sa.Column("sku_after", sa.String(length=20), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["capacity_id"], ["capacities.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_capacity_events_at", "capacity_events", ["at"])
    op.create_index("ix_capacity_events_capacity_id", "capacity_events", ["capacity_id"])
    op.create_table(
        "capacity_resume_requests",
        sa.Column("capacity_id", sa.String(length=64), nullable=False),
        sa.Column("requested_at", UTC_DATETIME, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("user_email", sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(["capacity_id"], ["capacities.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("capacity_id"),
    )
    op.create_table(
        "controller_leases",
        sa.Column("name", sa.String(length=60), nullable=False),
        sa.Column("holder", sa.String(length=120), nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("controller_leases")
    op.drop_table("capacity_resume_requests")
    op.drop_index("ix_capacity_events_capacity_id", table_name="capacity_events")
    op.drop_index("ix_capacity_events_at", table_name="capacity_events")
    op.drop_table("capacity_events")
    op.drop_index("ix_capacity_activity_minute", table_name="capacity_activity")
    op.drop_index("ix_capacity_activity_counted", table_name="capacity_activity")
    op.drop_table("capacity_activity")
    op.drop_index(
        "ix_capacity_schedule_entries_capacity_id", table_name="capacity_schedule_entries"
    )
    op.drop_table("capacity_schedule_entries")
    with op.batch_alter_table("organization") as batch:
        batch.drop_column("nobody_may_start_capacity")
    with op.batch_alter_table("capacities") as batch:
        batch.drop_column("operation_started_at")
        batch.drop_column("operation")
        batch.drop_column("sku_changed_at")
        batch.drop_column("manually_paused_at")
        batch.drop_column("running_since")
