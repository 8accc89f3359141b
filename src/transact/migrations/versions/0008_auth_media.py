"""auth media tokens

Revision ID: 0008_auth_media
Revises: 0007_psp_tokens
Create Date: 2026-11-27 04:50:00.000000
"""

from collections.abc import Sequence

revision: str = "0008_auth_media"
down_revision: str | None = "0007_psp_tokens"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
