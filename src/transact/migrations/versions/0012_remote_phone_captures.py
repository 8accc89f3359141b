"""remote phone captures

Remote's own view of agents' phone captures (projected from capture's events), so an
agent can turn an open one into a payment link; and the capture a link took the place
of, on the link.

Revision ID: 0012_remote_phone_captures
Revises: 0011_agent_ui
Create Date: 2026-11-30 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_remote_phone_captures"
down_revision: str | None = "0011_agent_ui"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "remote_phone_captures",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("link_id", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_remote_phone_captures")),
    )
    op.create_index(
        "ix_remote_phone_captures_call", "remote_phone_captures", ["tenant_id", "call_id"]
    )
    op.create_index("ix_remote_phone_captures_updated", "remote_phone_captures", ["updated_at"])
    op.add_column(
        "remote_links", sa.Column("source_payment_id", sa.String(length=64), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("remote_links") as batch:
        batch.drop_column("source_payment_id")
    op.drop_index("ix_remote_phone_captures_updated", table_name="remote_phone_captures")
    op.drop_index("ix_remote_phone_captures_call", table_name="remote_phone_captures")
    op.drop_table("remote_phone_captures")
