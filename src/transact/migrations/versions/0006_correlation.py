"""correlation calls and link codes

The live call registry. Link codes live in the cache (they expire in minutes and
must be shared by every instance), so they have no table.

Revision ID: 0006_correlation
Revises: 0005_psp_webhooks
Create Date: 2026-11-27 04:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_correlation"
down_revision: str | None = "0005_psp_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_correlation_calls_state", ["tenant_id", "state", "started_at"]),
    ("ix_correlation_calls_agent", ["tenant_id", "agent_id", "state"]),
    ("ix_correlation_calls_reference", ["tenant_id", "reference_key"]),
    ("ix_correlation_calls_to", ["tenant_id", "to_digest"]),
    ("ix_correlation_calls_from", ["tenant_id", "from_digest"]),
    ("ix_correlation_calls_sip", ["tenant_id", "sip_call_id"]),
    ("ix_correlation_calls_external", ["tenant_id", "external_id"]),
)


def upgrade() -> None:
    op.create_table(
        "correlation_calls",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=True),
        sa.Column("reference_key", sa.String(length=32), nullable=True),
        sa.Column("from_masked", sa.String(length=32), nullable=True),
        sa.Column("to_masked", sa.String(length=32), nullable=True),
        sa.Column("from_digest", sa.String(length=64), nullable=True),
        sa.Column("to_digest", sa.String(length=64), nullable=True),
        sa.Column("sip_call_id", sa.String(length=255), nullable=True),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "call_id", name=op.f("pk_correlation_calls")),
    )
    with op.batch_alter_table("correlation_calls", schema=None) as batch_op:
        for name, columns in _INDEXES:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("correlation_calls", schema=None) as batch_op:
        for name, _ in reversed(_INDEXES):
            batch_op.drop_index(name)
    op.drop_table("correlation_calls")
