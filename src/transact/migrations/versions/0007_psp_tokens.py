"""psp stored card tokens

Revision ID: 0007_psp_tokens
Revises: 0006_correlation
Create Date: 2026-11-27 04:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_psp_tokens"
down_revision: str | None = "0006_correlation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A PSP token (sealed) with brand, BIN and last 4: never a card number or code.
    op.create_table(
        "psp_stored_cards",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.Column("brand", sa.String(length=16), nullable=True),
        sa.Column("bin", sa.String(length=8), nullable=False),
        sa.Column("last4", sa.String(length=4), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_psp_stored_cards")),
        sa.UniqueConstraint("payment_id", name="uq_psp_stored_cards_payment_id"),
    )
    with op.batch_alter_table("psp_stored_cards", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_psp_stored_cards_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("psp_stored_cards", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_psp_stored_cards_tenant_id"))

    op.drop_table("psp_stored_cards")
