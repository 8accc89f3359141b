"""ivr handover: agents' calls handed to a flow and back

A call may now have several ivr sessions over its life (an agent may hand it over again
once the last session has ended), at most one of them live; a session records the agent
who handed the call over. `ivr_calls` is the ivr service's view of agents' calls (who
holds each, whether it ended, an open agent capture), which the handover API checks.

Revision ID: 0015_ivr_handover
Revises: 0014_reporting
Create Date: 2026-12-01 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_ivr_handover"
down_revision: str | None = "0014_reporting"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = sa.text("stage != 'ended'")


def upgrade() -> None:
    # Batch mode: SQLite drops a constraint by rebuilding the table.
    with op.batch_alter_table("ivr_sessions") as batch:
        batch.drop_constraint("uq_ivr_sessions_tenant_id", type_="unique")
        batch.add_column(sa.Column("agent_id", sa.String(length=64), nullable=True))
    op.create_index("ix_ivr_sessions_call", "ivr_sessions", ["tenant_id", "call_id"])
    op.create_index(
        "uq_ivr_sessions_live_call",
        "ivr_sessions",
        ["tenant_id", "call_id"],
        unique=True,
        postgresql_where=LIVE,
        sqlite_where=LIVE,
    )
    op.create_table(
        "ivr_calls",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.Column("capture_id", sa.String(length=64), nullable=True),
        sa.Column("closed_capture_id", sa.String(length=64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "call_id", name=op.f("pk_ivr_calls")),
    )
    op.create_index("ix_ivr_calls_capture", "ivr_calls", ["capture_id"])


def downgrade() -> None:
    op.drop_index("ix_ivr_calls_capture", table_name="ivr_calls")
    op.drop_table("ivr_calls")
    op.drop_index("uq_ivr_sessions_live_call", table_name="ivr_sessions")
    op.drop_index("ix_ivr_sessions_call", table_name="ivr_sessions")
    # Calls with more than one session keep only their latest under the old rule.
    op.execute(
        "DELETE FROM ivr_sessions WHERE EXISTS (SELECT 1 FROM ivr_sessions later"
        " WHERE later.tenant_id = ivr_sessions.tenant_id"
        " AND later.call_id = ivr_sessions.call_id"
        " AND later.created_at > ivr_sessions.created_at)"
    )
    with op.batch_alter_table("ivr_sessions") as batch:
        batch.drop_column("agent_id")
        batch.create_unique_constraint("uq_ivr_sessions_tenant_id", ["tenant_id", "call_id"])
