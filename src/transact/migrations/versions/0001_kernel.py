"""kernel: transactional outbox and handler inbox

Revision ID: 0001_kernel
Revises:
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_kernel"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "kernel_outbox",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_kernel_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_kernel_outbox_message_id")),
    )
    op.create_index(op.f("ix_kernel_outbox_published_at"), "kernel_outbox", ["published_at"])
    op.create_table(
        "kernel_inbox",
        sa.Column("consumer", sa.String(length=128), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id", name=op.f("pk_kernel_inbox")),
    )


def downgrade() -> None:
    op.drop_table("kernel_inbox")
    op.drop_index(op.f("ix_kernel_outbox_published_at"), table_name="kernel_outbox")
    op.drop_table("kernel_outbox")
