"""correlation calls and link codes

Revision ID: 0006_correlation
Revises: 0005_psp_webhooks
Create Date: 2026-11-27 04:50:00.000000
"""

from collections.abc import Sequence

revision: str = "0006_correlation"
down_revision: str | None = "0005_psp_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
