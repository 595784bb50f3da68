"""e-mail: the outbox the background sender delivers from, and single-use password links
(invitations and resets)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import embedportal.db.base

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC_DATETIME = embedportal.db.base.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("text_body", sa.Text(), nullable=False),
        sa.Column("html_body", sa.Text(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("pending", "sent", "failed", name="mailstate", native_enum=False, length=10),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
        sa.Column("claimed_by", sa.String(length=120), nullable=True),
        sa.Column("claimed_until", UTC_DATETIME, nullable=True),
        sa.Column("sent_at", UTC_DATETIME, nullable=True),
        sa.Column("delivered_to", sa.String(length=10), nullable=False),
        sa.Column("last_error", sa.String(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    with op.batch_alter_table("mail_outbox") as batch:
        batch.create_index(batch.f("ix_mail_outbox_created_at"), ["created_at"], unique=False)
        batch.create_index(
            "ix_mail_outbox_state_next_attempt_at", ["state", "next_attempt_at"], unique=False
        )
    op.create_table(
        "password_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=12), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("expires_at", UTC_DATETIME, nullable=False),
        sa.Column("used_at", UTC_DATETIME, nullable=True),
        sa.Column("password_fingerprint", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_password_links_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_password_links")),
    )
    with op.batch_alter_table("password_links") as batch:
        batch.create_index(batch.f("ix_password_links_user_id"), ["user_id"], unique=False)
        batch.create_index(batch.f("ix_password_links_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("password_links") as batch:
        batch.drop_index(batch.f("ix_password_links_expires_at"))
        batch.drop_index(batch.f("ix_password_links_user_id"))
    op.drop_table("password_links")
    with op.batch_alter_table("mail_outbox") as batch:
        batch.drop_index("ix_mail_outbox_state_next_attempt_at")
        batch.drop_index(batch.f("ix_mail_outbox_created_at"))
    op.drop_table("mail_outbox")
