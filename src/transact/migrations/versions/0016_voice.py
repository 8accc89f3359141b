"""voice call transcription

Each tenant's call transcription setting (off by default), the calls transcribed (and
their holder, who may read the transcript) and the redacted utterances. No audio.

Revision ID: 0016_voice
Revises: 0015_ivr_handover
Create Date: 2026-12-02 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016_voice"
down_revision: str | None = "0015_ivr_handover"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "voice_settings",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("transcribe_calls", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_voice_settings")),
    )
    op.create_table(
        "voice_calls",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=True),
        sa.Column("transcribed", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "call_id", name=op.f("pk_voice_calls")),
    )
    op.create_table(
        "voice_transcripts",
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "call_id", "seq", name=op.f("pk_voice_transcripts")),
    )


def downgrade() -> None:
    op.drop_table("voice_transcripts")
    op.drop_table("voice_calls")
    op.drop_table("voice_settings")
