"""a tenant's own speech recognizer

`voice_settings` gains the recognizer a tenant chose over the deployment's: its name
(NULL: the deployment's), the model, and the account's API key sealed with the tenant's
key (never stored in clear).

Revision ID: 0018_voice_recognizer
Revises: 0017_audit_append
Create Date: 2026-11-28 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_voice_recognizer"
down_revision: str | None = "0017_audit_append"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("voice_settings") as table:
        table.add_column(sa.Column("engine", sa.String(32), nullable=True))
        table.add_column(sa.Column("engine_model", sa.String(64), nullable=True))
        table.add_column(sa.Column("engine_key", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("voice_settings") as table:
        table.drop_column("engine_key")
        table.drop_column("engine_model")
        table.drop_column("engine")
