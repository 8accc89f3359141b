"""capture and idempotency

Revision ID: 0003_capture
Revises: 0002_auth_audit
Create Date: 2026-11-27 03:01:12.251961
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_capture"
down_revision: str | None = "0002_auth_audit"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "capture_calls",
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("keypad_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_capture_calls")),
    )
    op.create_table(
        "capture_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("cancel_reason", sa.String(length=32), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("vault_ref", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_capture_sessions")),
    )
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_capture_sessions_call_id"), ["call_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_capture_sessions_tenant_id"), ["tenant_id"], unique=False
        )
        batch_op.create_index(
            "uq_capture_sessions_open_call",
            ["call_id"],
            unique=True,
            postgresql_where=sa.text("status IN ('capturing', 'ready')"),
            sqlite_where=sa.text("status IN ('capturing', 'ready')"),
        )

    op.create_table(
        "capture_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_capture_settings")),
    )
    op.create_table(
        "kernel_idempotency",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "tenant_id", "key", name=op.f("pk_kernel_idempotency")),
    )


def downgrade() -> None:
    op.drop_table("kernel_idempotency")
    op.drop_table("capture_settings")
    with op.batch_alter_table("capture_sessions", schema=None) as batch_op:
        batch_op.drop_index(
            "uq_capture_sessions_open_call",
            postgresql_where=sa.text("status IN ('capturing', 'ready')"),
            sqlite_where=sa.text("status IN ('capturing', 'ready')"),
        )
        batch_op.drop_index(batch_op.f("ix_capture_sessions_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_capture_sessions_call_id"))

    op.drop_table("capture_sessions")
    op.drop_table("capture_calls")
