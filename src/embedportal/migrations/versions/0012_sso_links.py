"""sso links: one-time sign-on links from the organization's own application, SSO sessions,
and the origins an administrator allows to frame them

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 13:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sso_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.String(length=64), nullable=True),
        sa.Column("hide_navigation", sa.Boolean(), nullable=False),
        sa.Column("tv", sa.Boolean(), nullable=False),
        sa.Column("view_filters", sa.JSON(), nullable=False),
        sa.Column("api_key_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("used_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_sso_links_user_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["reports.id"],
            name=op.f("fk_sso_links_report_id_reports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_links")),
    )
    op.create_index(op.f("ix_sso_links_user_id"), "sso_links", ["user_id"])
    op.create_index(op.f("ix_sso_links_expires_at"), "sso_links", ["expires_at"])
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(
            sa.Column("via_sso", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("organization") as batch:
        batch.add_column(
            sa.Column("sso_frame_ancestors", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("organization") as batch:
        batch.drop_column("sso_frame_ancestors")
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("via_sso")
    op.drop_index(op.f("ix_sso_links_expires_at"), table_name="sso_links")
    op.drop_index(op.f("ix_sso_links_user_id"), table_name="sso_links")
    op.drop_table("sso_links")
