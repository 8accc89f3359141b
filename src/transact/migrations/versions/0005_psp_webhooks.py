"""psp webhooks

Revision ID: 0005_psp_webhooks
Revises: 0004_psp
Create Date: 2026-11-27 03:52:38.955920
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_psp_webhooks"
down_revision: str | None = "0004_psp"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "psp_webhook_deliveries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_psp_webhook_deliveries")),
        sa.UniqueConstraint("tenant_id", "event_id", name="uq_psp_webhook_deliveries_tenant_event"),
    )
    with op.batch_alter_table("psp_webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_psp_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "psp_webhook_endpoints",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=2048), nullable=False),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_psp_webhook_endpoints")),
    )


def downgrade() -> None:
    op.drop_table("psp_webhook_endpoints")
    with op.batch_alter_table("psp_webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_psp_webhook_deliveries_due")

    op.drop_table("psp_webhook_deliveries")
