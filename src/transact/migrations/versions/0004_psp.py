"""psp

Revision ID: 0004_psp
Revises: 0003_capture
Create Date: 2026-11-27 03:35:28.811072
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_psp"
down_revision: str | None = "0003_capture"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "psp_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("operation", sa.String(length=16), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=160), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("decline_code", sa.String(length=32), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("psp_reference", sa.String(length=128), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("transcript", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_psp_attempts")),
        sa.UniqueConstraint("payment_id", "seq", name="uq_psp_attempts_payment_seq"),
    )
    with op.batch_alter_table("psp_attempts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_psp_attempts_payment_id"), ["payment_id"], unique=False
        )

    op.create_table(
        "psp_payments",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("brand", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=True),
        sa.Column("psp_reference", sa.String(length=128), nullable=True),
        sa.Column("decline_code", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("authorized_amount", sa.BigInteger(), nullable=False),
        sa.Column("captured_amount", sa.BigInteger(), nullable=False),
        sa.Column("refunded_amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_psp_payments")),
    )
    with op.batch_alter_table("psp_payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_psp_payments_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_psp_payments_tenant_id"), ["tenant_id"], unique=False)

    op.create_table(
        "psp_routes",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("routes", sa.Text(), nullable=False),
        sa.Column("credentials", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_psp_routes")),
    )


def downgrade() -> None:
    op.drop_table("psp_routes")
    with op.batch_alter_table("psp_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_psp_payments_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_psp_payments_status"))

    op.drop_table("psp_payments")
    with op.batch_alter_table("psp_attempts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_psp_attempts_payment_id"))

    op.drop_table("psp_attempts")
