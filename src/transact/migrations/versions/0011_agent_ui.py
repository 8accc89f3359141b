"""agent ui settings

Each tenant's Agent UI settings: the ways to pay its start menu offers, its currencies
and the origins allowed to frame the UI (CSP frame-ancestors).

Revision ID: 0011_agent_ui
Revises: 0010_links_messages
Create Date: 2026-11-29 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_agent_ui"
down_revision: str | None = "0010_links_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "agent_ui_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_agent_ui_settings")),
    )


def downgrade() -> None:
    op.drop_table("agent_ui_settings")
