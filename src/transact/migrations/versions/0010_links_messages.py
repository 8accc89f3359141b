"""remote links and communications messages

Payment links (token hashes only), their card attempts and tenant link settings;
messages to customers (destinations masked, payloads sealed) and tenant channel
settings (secrets sealed).

Revision ID: 0010_links_messages
Revises: 0009_notifications
Create Date: 2026-11-28 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_links_messages"
down_revision: str | None = "0009_notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "remote_links",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=160), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("to_masked", sa.String(length=64), nullable=True),
        sa.Column("to_sealed", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payment_id", sa.String(length=64), nullable=True),
        sa.Column("current_attempt", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.String(length=64), nullable=True),
        sa.Column("message_status", sa.String(length=16), nullable=True),
        sa.Column("message_reason", sa.String(length=200), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_links")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_remote_links_token_hash")),
    )
    op.create_index("ix_remote_links_tenant", "remote_links", ["tenant_id", "created_at"])
    op.create_index(
        "ix_remote_links_agent", "remote_links", ["tenant_id", "agent_id", "created_at"]
    )
    op.create_index("ix_remote_links_open", "remote_links", ["status", "expires_at"])
    op.create_index("ix_remote_links_message", "remote_links", ["message_id"])
    op.create_table(
        "remote_attempts",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("link_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("agent_submits", sa.Boolean(), nullable=False),
        sa.Column("errors", sa.Text(), nullable=False),
        sa.Column("action_url", sa.String(length=2048), nullable=True),
        sa.Column("decline_code", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_attempts")),
    )
    op.create_index(op.f("ix_remote_attempts_link_id"), "remote_attempts", ["link_id"])
    op.create_table(
        "remote_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_remote_settings")),
    )
    op.create_table(
        "communications_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=True),
        sa.Column("to_masked", sa.String(length=64), nullable=False),
        sa.Column("template", sa.String(length=32), nullable=False),
        sa.Column("about", sa.String(length=64), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("payload", sa.Text(), nullable=True),
        sa.Column("rendered", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_communications_messages")),
    )
    op.create_index(
        "ix_communications_messages_due", "communications_messages", ["status", "next_attempt_at"]
    )
    op.create_index(
        "ix_communications_messages_provider", "communications_messages", ["provider_id"]
    )
    op.create_index(
        "ix_communications_messages_tenant", "communications_messages", ["tenant_id", "created_at"]
    )
    op.create_table(
        "communications_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("secrets", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_communications_settings")),
    )


def downgrade() -> None:
    op.drop_table("communications_settings")
    op.drop_index("ix_communications_messages_tenant", table_name="communications_messages")
    op.drop_index("ix_communications_messages_provider", table_name="communications_messages")
    op.drop_index("ix_communications_messages_due", table_name="communications_messages")
    op.drop_table("communications_messages")
    op.drop_table("remote_settings")
    op.drop_index(op.f("ix_remote_attempts_link_id"), table_name="remote_attempts")
    op.drop_table("remote_attempts")
    op.drop_index("ix_remote_links_message", table_name="remote_links")
    op.drop_index("ix_remote_links_open", table_name="remote_links")
    op.drop_index("ix_remote_links_agent", table_name="remote_links")
    op.drop_index("ix_remote_links_tenant", table_name="remote_links")
    op.drop_table("remote_links")
