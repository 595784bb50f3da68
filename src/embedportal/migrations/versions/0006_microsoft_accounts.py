"""sign in with Microsoft: the organization's sign-in methods and app registration, and each
user's Entra account with their refresh token (encrypted)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 19:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    # Copying `organization` (batch mode on SQLite) is safe: no table refers to it.
    with op.batch_alter_table("organization") as batch:
        batch.add_column(
            sa.Column(
                "sign_in_methods", sa.String(length=20), nullable=False, server_default="password"
            )
        )
        batch.add_column(
            sa.Column(
                "microsoft_tenant_id", sa.String(length=64), nullable=False, server_default=""
            )
        )
        batch.add_column(
            sa.Column(
                "microsoft_client_id", sa.String(length=64), nullable=False, server_default=""
            )
        )
        batch.add_column(
            sa.Column(
                "microsoft_client_secret_encrypted", sa.Text(), nullable=False, server_default=""
            )
        )
        batch.add_column(
            sa.Column("microsoft_signup_tenants", sa.Text(), nullable=False, server_default="")
        )
    op.create_table(
        "microsoft_accounts",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("object_id", sa.String(length=64), nullable=False),
        sa.Column("refresh_token_encrypted", sa.Text(), nullable=False),
        sa.Column("linked_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_microsoft_accounts_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_microsoft_accounts")),
        sa.UniqueConstraint(
            "tenant_id", "object_id", name=op.f("uq_microsoft_accounts_tenant_object")
        ),
    )


def downgrade() -> None:
    op.drop_table("microsoft_accounts")
    with op.batch_alter_table("organization") as batch:
        batch.drop_column("microsoft_signup_tenants")
        batch.drop_column("microsoft_client_secret_encrypted")
        batch.drop_column("microsoft_client_id")
        batch.drop_column("microsoft_tenant_id")
        batch.drop_column("sign_in_methods")
