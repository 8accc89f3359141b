"""reporting: aggregates fed by events, the payments projection, reconciliation runs

Buckets at two grains, hours and days (payments by channel, connector, agent, outcome
and decline code; PSP attempts and latency per connector; capture and link funnel
stages), each also without the agent (and payments by agent alone), the projections
the buckets are derived from (one row per payment, capture and link: masked card only),
refunds by their natural key, and reconciliation runs with the PSP's side of them.

Revision ID: 0014_reporting
Revises: 0013_ivr
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_reporting"
down_revision: str | None = "0013_ivr"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_PAYMENT_REST = ("channel", "connector", "outcome", "decline_code", "currency")
_PAYMENT_SUMS = ("count", "amount")
_CONNECTOR_SUMS = ("attempts", "approved", "errors", "failovers", "latency_ms", "timed")
# Each cuboid: table, dimensions keyed before the period, after it, and its sums.
_BUCKETS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("reporting_payment_buckets", ("agent_id",), _PAYMENT_REST, _PAYMENT_SUMS),
    ("reporting_payment_agent_buckets", (), ("agent_id", "outcome", "currency"), _PAYMENT_SUMS),
    ("reporting_payment_total_buckets", (), _PAYMENT_REST, _PAYMENT_SUMS),
    ("reporting_connector_buckets", ("agent_id",), ("channel", "connector"), _CONNECTOR_SUMS),
    ("reporting_connector_total_buckets", (), ("channel", "connector"), _CONNECTOR_SUMS),
    ("reporting_funnel_buckets", ("agent_id",), ("channel", "funnel", "stage"), ("count",)),
    ("reporting_funnel_total_buckets", (), ("channel", "funnel", "stage"), ("count",)),
)
_LENGTHS = {
    "channel": 16,
    "agent_id": 64,
    "connector": 32,
    "outcome": 16,
    "decline_code": 32,
    "currency": 3,
    "funnel": 16,
    "stage": 40,
}


def _create_buckets(
    name: str, lead: tuple[str, ...], rest: tuple[str, ...], sums: tuple[str, ...]
) -> None:
    key = ["tenant_id", "grain", *lead, "period", *rest]
    op.create_table(
        name,
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("grain", sa.String(length=4), nullable=False),
        *(sa.Column(d, sa.String(length=_LENGTHS[d]), nullable=False) for d in lead),
        sa.Column("period", sa.DateTime(timezone=True), nullable=False),
        *(sa.Column(d, sa.String(length=_LENGTHS[d]), nullable=False) for d in rest),
        *(sa.Column(s, sa.BigInteger(), nullable=False) for s in sums),
        sa.PrimaryKeyConstraint(*key, name=op.f(f"pk_{name}")),
        sqlite_with_rowid=False,
    )


def upgrade() -> None:
    for name, lead, rest, sums in _BUCKETS:
        _create_buckets(name, lead, rest, sums)
    op.create_table(
        "reporting_payments",
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("agent_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("decline_code", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("refunded", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=128), nullable=True),
        sa.Column("psp_reference", sa.String(length=128), nullable=True),
        sa.Column("brand", sa.String(length=16), nullable=True),
        sa.Column("bin", sa.String(length=8), nullable=True),
        sa.Column("last4", sa.String(length=4), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("speech", sa.Boolean(), nullable=False),
        sa.Column("tried", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_reporting_payments")),
    )
    op.create_index(
        "ix_reporting_payments_tenant_created", "reporting_payments", ["tenant_id", "created_at"]
    )
    op.create_table(
        "reporting_refunds",
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("refunded_total", sa.BigInteger(), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payment_id", "refunded_total", name=op.f("pk_reporting_refunds")),
    )
    op.create_table(
        "reporting_captures",
        sa.Column("capture_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("capture_id", name=op.f("pk_reporting_captures")),
    )
    op.create_index("ix_reporting_captures_call", "reporting_captures", ["tenant_id", "call_id"])
    op.create_table(
        "reporting_links",
        sa.Column("link_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("link_id", name=op.f("pk_reporting_links")),
    )
    op.create_table(
        "reporting_reconciliations",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=False),
        sa.Column("period_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reporting_reconciliations")),
    )
    op.create_index(
        "ix_reporting_reconciliations_period",
        "reporting_reconciliations",
        ["tenant_id", "period_from", "period_to"],
    )
    op.create_table(
        "reporting_psp_lines",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("payment_id", sa.String(length=64), nullable=False),
        sa.Column("connector", sa.String(length=32), nullable=False),
        sa.Column("found", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("psp_reference", sa.String(length=128), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("refunded", sa.BigInteger(), nullable=True),
        sa.Column("ours_status", sa.String(length=24), nullable=True),
        sa.Column("ours_amount", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "payment_id", name=op.f("pk_reporting_psp_lines")),
    )


def downgrade() -> None:
    op.drop_table("reporting_psp_lines")
    op.drop_index("ix_reporting_reconciliations_period", table_name="reporting_reconciliations")
    op.drop_table("reporting_reconciliations")
    op.drop_table("reporting_links")
    op.drop_index("ix_reporting_captures_call", table_name="reporting_captures")
    op.drop_table("reporting_captures")
    op.drop_table("reporting_refunds")
    op.drop_index("ix_reporting_payments_tenant_created", table_name="reporting_payments")
    op.drop_table("reporting_payments")
    for name, *_ in reversed(_BUCKETS):
        op.drop_table(name)
