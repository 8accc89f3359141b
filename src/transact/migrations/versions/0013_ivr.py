"""ivr flows, prompts and sessions

Self-service payment flows per tenant, tenants' own prompt recordings (8 kHz mu-law),
and one session per call a flow drives (its state, no card data; the account digits
being keyed are sealed).

Revision ID: 0013_ivr
Revises: 0012_remote_phone_captures
Create Date: 2026-11-30 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_ivr"
down_revision: str | None = "0012_remote_phone_captures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ivr_flows",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("settings", sa.Text(), nullable=False),
        sa.Column("lookup_secret", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_flows")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_ivr_flows_tenant_id")),
    )
    op.create_table(
        "ivr_prompts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("name", sa.String(length=48), nullable=False),
        sa.Column("audio", sa.LargeBinary(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "language", "name", name=op.f("pk_ivr_prompts")),
    )
    op.create_table(
        "ivr_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("flow_id", sa.String(length=64), nullable=True),
        sa.Column("flow", sa.Text(), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("key_seq", sa.Integer(), nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=24), nullable=True),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ivr_sessions")),
        sa.UniqueConstraint("tenant_id", "call_id", name=op.f("uq_ivr_sessions_tenant_id")),
    )
    op.create_index("ix_ivr_sessions_capture", "ivr_sessions", ["capture_id"])
    op.create_index("ix_ivr_sessions_deadline", "ivr_sessions", ["deadline"])
    op.create_index("ix_ivr_sessions_tenant", "ivr_sessions", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_ivr_sessions_tenant", table_name="ivr_sessions")
    op.drop_index("ix_ivr_sessions_deadline", table_name="ivr_sessions")
    op.drop_index("ix_ivr_sessions_capture", table_name="ivr_sessions")
    op.drop_table("ivr_sessions")
    op.drop_table("ivr_prompts")
    op.drop_table("ivr_flows")
