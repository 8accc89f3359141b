"""notifications holders and event log

Who holds which call, capture and payment (to route events that name only those),
and the numbered log of pushed events per stream that a reconnecting client resumes
from. Rows older than the resume window are pruned.

Revision ID: 0009_notifications
Revises: 0008_auth_media
Create Date: 2026-11-28 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_notifications"
down_revision: str | None = "0008_auth_media"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notifications_owners",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "kind", "ref", name=op.f("pk_notifications_owners")),
    )
    op.create_index(
        "ix_notifications_owners_since", "notifications_owners", ["since"], unique=False
    )
    op.create_table(
        "notifications_streams",
        sa.Column("stream", sa.String(length=160), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream", name=op.f("pk_notifications_streams")),
    )
    op.create_table(
        "notifications_events",
        sa.Column("stream", sa.String(length=160), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("stream", "seq", name=op.f("pk_notifications_events")),
        sa.UniqueConstraint("stream", "message_id", name=op.f("uq_notifications_events_stream")),
    )
    op.create_index(
        "ix_notifications_events_created_at", "notifications_events", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_notifications_events_created_at", table_name="notifications_events")
    op.drop_table("notifications_events")
    op.drop_table("notifications_streams")
    op.drop_index("ix_notifications_owners_since", table_name="notifications_owners")
    op.drop_table("notifications_owners")
