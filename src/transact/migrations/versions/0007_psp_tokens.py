"""psp stored card tokens

Revision ID: 0007_psp_tokens
Revises: 0006_correlation
Create Date: 2026-11-27 04:50:00.000000
"""

from collections.abc import Sequence

revision: str = "0007_psp_tokens"
down_revision: str | None = "0006_correlation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
