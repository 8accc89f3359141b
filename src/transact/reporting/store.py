"""Reporting's own tables: buckets (cuboids), the projections they derive from, reconciliations.

Dashboards read the buckets only (a few thousand rows for a month, whatever the
number of payments); the payments projection serves the CSV export and the
reconciliation, one tenant and period at a time. No card data anywhere: brand, BIN
and last 4 are all a payment row knows of its card.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import first_row, metadata, upsert_insert
from transact.reporting import domain

# Rows written per statement: far below SQLite's bound-parameter limit.
BATCH = 400
# Rows per executemany call of one prepared statement (no parameter limit applies).
BULK = 5000


# The type of each bucket dimension, whichever cuboid keeps it.
_DIMENSION_TYPES: dict[str, int] = {
    "channel": 16,
    "agent_id": 64,
    "connector": 32,
    "outcome": 16,  # authorized/declined/failed/refunded
    "decline_code": 32,
    "currency": 3,
    "funnel": 16,  # capture / link
    "stage": 40,
}
PAYMENT_SUMS = ("count", "amount")
# `failovers`: attempts after which we moved on; `timed`: attempts whose latency is known.
CONNECTOR_SUMS = ("attempts", "approved", "errors", "failovers", "latency_ms", "timed")
SUMS: dict[str, tuple[str, ...]] = {
    "payments": PAYMENT_SUMS,
    "connectors": CONNECTOR_SUMS,
    "funnels": ("count",),
}
TABLE_NAMES = {
    "payments": "reporting_payment_buckets",
    "payment_agents": "reporting_payment_agent_buckets",
    "payment_totals": "reporting_payment_total_buckets",
    "connectors": "reporting_connector_buckets",
    "connector_totals": "reporting_connector_total_buckets",
    "funnels": "reporting_funnel_buckets",
    "funnel_totals": "reporting_funnel_total_buckets",
}


def _bucket_table(cuboid: domain.Cuboid) -> Table:
    """A cuboid's table, keyed tenant, grain, lead dimensions, period, the rest, and
    clustered on that key (no rowid on SQLite; PostgreSQL reads the key's index): a
    dashboard reads one tenant's periods in order, at one grain, and nothing else."""

    def dimension(name: str) -> Column[Any]:
        return Column(name, String(_DIMENSION_TYPES[name]), primary_key=True)

    return Table(
        TABLE_NAMES[cuboid.name],
        metadata,
        Column("tenant_id", String(64), primary_key=True),
        Column("grain", String(4), primary_key=True),  # hour / day
        *(dimension(name) for name in cuboid.lead),
        Column("period", DateTime(timezone=True), primary_key=True),  # its first hour
        *(dimension(name) for name in cuboid.rest),
        *(Column(name, BigInteger, nullable=False) for name in SUMS[cuboid.kind]),
        sqlite_with_rowid=False,
    )


BUCKETS: dict[str, Table] = {c.name: _bucket_table(c) for c in domain.CUBOIDS}
CUBOIDS: dict[str, domain.Cuboid] = {c.name: c for c in domain.CUBOIDS}
payment_buckets = BUCKETS["payments"]
connector_buckets = BUCKETS["connectors"]
funnel_buckets = BUCKETS["funnels"]

payments = Table(
    "reporting_payments",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True), nullable=True),
    Column("channel", String(16), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("connector", String(32), nullable=False),
    Column("decline_code", String(32), nullable=False),
    Column("amount", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("refunded", BigInteger, nullable=False),
    Column("reference", String(128), nullable=True),
    Column("psp_reference", String(128), nullable=True),
    Column("brand", String(16), nullable=True),
    Column("bin", String(8), nullable=True),
    Column("last4", String(4), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("speech", Boolean, nullable=False),
    Column("tried", Text, nullable=True),  # JSON: connector, outcome, latency per attempt
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_reporting_payments_tenant_created", "tenant_id", "created_at"),
)

refunds = Table(
    "reporting_refunds",
    metadata,
    Column("payment_id", String(64), primary_key=True),
    Column("refunded_total", BigInteger, primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
)

captures = Table(
    "reporting_captures",
    metadata,
    Column("capture_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("call_id", String(128), nullable=True),
    Column("state", Text, nullable=False),  # domain.Capture.to_dict()
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_reporting_captures_call", "tenant_id", "call_id"),
)

links = Table(
    "reporting_links",
    metadata,
    Column("link_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("state", Text, nullable=False),  # domain.Link.to_dict()
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

reconciliations = Table(
    "reporting_reconciliations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("period_from", DateTime(timezone=True), nullable=False),
    Column("period_to", DateTime(timezone=True), nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Index("ix_reporting_reconciliations_period", "tenant_id", "period_from", "period_to"),
)

psp_lines = Table(
    "reporting_psp_lines",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("payment_id", String(64), primary_key=True),
    Column("connector", String(32), nullable=False),
    Column("found", Boolean, nullable=False),
    Column("status", String(16), nullable=True),
    Column("psp_reference", String(128), nullable=True),
    Column("amount", BigInteger, nullable=True),
    Column("refunded", BigInteger, nullable=True),
    Column("ours_status", String(24), nullable=True),
    Column("ours_amount", BigInteger, nullable=True),
)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def utc(moment: datetime) -> datetime:
    """Stored in UTC always: SQLite compares the text, so one offset for every row."""
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- buckets --------------------------------------------------------------------------


async def _add_rows(
    session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]], sums: Sequence[str]
) -> None:
    """Add `rows` to the buckets: one prepared upsert run for every row (executemany)."""
    if not rows:
        return
    keys = [c.name for c in table.primary_key.columns]
    statement = upsert_insert(session, table)
    statement = statement.on_conflict_do_update(
        index_elements=keys,
        set_={name: table.c[name] + statement.excluded[name] for name in sums},
    )
    for start in range(0, len(rows), BULK):
        await session.execute(statement, list(rows[start : start + BULK]))


async def apply(session: AsyncSession, tenant_id: str, deltas: domain.Deltas) -> None:
    """Move every cuboid's buckets by `deltas` (increments, so concurrent writers add up).
    Rows go in key order: concurrent writers on PostgreSQL lock them in the same order
    (no deadlock), and a big fill appends to the tables' b-trees."""
    for name, moved in domain.roll_up(deltas).items():
        cuboid, table = CUBOIDS[name], BUCKETS[name]
        sums = SUMS[cuboid.kind]
        rows = [
            {
                "tenant_id": tenant_id,
                "grain": key[0],
                "period": key[1],
                **dict(zip(cuboid.dimensions, key[2:], strict=True)),
                **{sum_name: int(values[sum_name]) for sum_name in sums},
            }
            for key, values in moved.items()
        ]
        order = [c.name for c in table.primary_key.columns]
        rows.sort(key=lambda row: tuple(row[column] for column in order))
        await _add_rows(session, table, rows, sums)


# --- payments projection ----------------------------------------------------------------


def _tried_json(tried: Iterable[domain.Attempt]) -> str | None:
    listed = [t.to_dict() for t in tried]
    return json.dumps(listed) if listed else None


def payment_values(payment: domain.Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.payment_id,
        "tenant_id": payment.tenant_id,
        "created_at": utc(payment.created_at),
        "decided_at": utc(payment.decided_at) if payment.decided_at else None,
        "channel": payment.channel,
        "agent_id": payment.agent_id,
        "status": payment.status,
        "connector": payment.connector,
        "decline_code": payment.decline_code,
        "amount": payment.amount,
        "currency": payment.currency,
        "refunded": payment.refunded,
        "reference": payment.reference,
        "psp_reference": payment.psp_reference,
        "brand": payment.brand,
        "bin": payment.bin,
        "last4": payment.last4,
        "attempts": payment.attempts,
        "speech": payment.speech,
        "tried": _tried_json(payment.tried),
        "updated_at": utcnow(),
    }


def payment_of(row: Any) -> domain.Payment:
    tried = json.loads(row.tried) if row.tried else []
    return domain.Payment(
        payment_id=row.payment_id,
        tenant_id=row.tenant_id,
        created_at=_utc(row.created_at) or utcnow(),
        decided_at=_utc(row.decided_at),
        channel=row.channel,
        agent_id=row.agent_id,
        status=row.status,
        connector=row.connector,
        decline_code=row.decline_code,
        amount=row.amount,
        currency=row.currency,
        refunded=row.refunded,
        reference=row.reference,
        psp_reference=row.psp_reference,
        brand=row.brand,
        bin=row.bin,
        last4=row.last4,
        attempts=row.attempts,
        speech=bool(row.speech),
        tried=tuple(domain.Attempt(**t) for t in tried),
    )


async def payment(
    session: AsyncSession, payment_id: str, *, lock: bool = False
) -> domain.Payment | None:
    row = await first_row(
        session, select(payments).where(payments.c.payment_id == payment_id), lock=lock
    )
    return payment_of(row) if row else None


async def save_payment(session: AsyncSession, payment: domain.Payment, *, new: bool) -> None:
    values = payment_values(payment)
    if new:
        await session.execute(payments.insert().values(**values))
    else:
        await session.execute(
            update(payments).where(payments.c.payment_id == payment.payment_id).values(**values)
        )


async def insert_payments(session: AsyncSession, rows: Sequence[domain.Payment]) -> None:
    """Many new projection rows at once (the benchmark's fill)."""
    for start in range(0, len(rows), BATCH):
        await session.execute(
            payments.insert(), [payment_values(p) for p in rows[start : start + BATCH]]
        )


async def refunds_of(session: AsyncSession, payment_id: str) -> list[domain.Refund]:
    rows = (
        await session.execute(
            select(refunds)
            .where(refunds.c.payment_id == payment_id)
            .order_by(refunds.c.refunded_total)
        )
    ).all()
    return [
        domain.Refund(r.payment_id, r.refunded_total, r.amount, _utc(r.occurred_at) or utcnow())
        for r in rows
    ]


async def add_refund(session: AsyncSession, tenant_id: str, refund: domain.Refund) -> bool:
    """Record a refund once by its natural key; False when it was known already."""
    statement = (
        upsert_insert(session, refunds)
        .values(
            payment_id=refund.payment_id,
            refunded_total=refund.refunded_total,
            tenant_id=tenant_id,
            amount=refund.amount,
            occurred_at=utc(refund.occurred_at),
        )
        .on_conflict_do_nothing(index_elements=["payment_id", "refunded_total"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def payments_page(
    session: AsyncSession,
    tenant_id: str,
    start: datetime,
    end: datetime,
    *,
    after: tuple[datetime, str] | None = None,
    limit: int = 1000,
) -> list[domain.Payment]:
    """A page of a tenant's payments created in [start, end), oldest first, after the
    (created_at, payment_id) of the last page's last row (keyset pagination: each page
    is a short query in its own transaction, nothing held open in between)."""
    query = select(payments).where(
        payments.c.tenant_id == tenant_id,
        payments.c.created_at >= start,
        payments.c.created_at < end,
    )
    if after is not None:
        moment, last_id = after
        query = query.where(
            (payments.c.created_at > moment)
            | ((payments.c.created_at == moment) & (payments.c.payment_id > last_id))
        )
    rows = (
        await session.execute(
            query.order_by(payments.c.created_at, payments.c.payment_id).limit(limit)
        )
    ).all()
    return [payment_of(row) for row in rows]


# --- captures and links -----------------------------------------------------------------


async def capture(
    session: AsyncSession, capture_id: str, *, lock: bool = False
) -> domain.Capture | None:
    row = await first_row(
        session, select(captures).where(captures.c.capture_id == capture_id), lock=lock
    )
    if row is None:
        return None
    return domain.Capture.from_dict(
        row.capture_id, row.tenant_id, row.call_id, json.loads(row.state)
    )


async def open_capture_of_call(
    session: AsyncSession, tenant_id: str, call_id: str
) -> domain.Capture | None:
    """The call's latest capture still open (keys being keyed), if any."""
    rows = (
        await session.execute(
            select(captures).where(captures.c.tenant_id == tenant_id, captures.c.call_id == call_id)
        )
    ).all()
    found = [
        domain.Capture.from_dict(r.capture_id, r.tenant_id, r.call_id, json.loads(r.state))
        for r in rows
    ]
    still_open = [c for c in found if c.open]
    return max(still_open, key=lambda c: c.first_seen) if still_open else None


async def save_capture(session: AsyncSession, capture: domain.Capture, *, new: bool) -> None:
    values = {
        "tenant_id": capture.tenant_id,
        "call_id": capture.call_id,
        "state": json.dumps(capture.to_dict()),
        "updated_at": utcnow(),
    }
    if new:
        await session.execute(captures.insert().values(capture_id=capture.capture_id, **values))
    else:
        await session.execute(
            update(captures).where(captures.c.capture_id == capture.capture_id).values(**values)
        )


async def link(session: AsyncSession, link_id: str, *, lock: bool = False) -> domain.Link | None:
    row = await first_row(session, select(links).where(links.c.link_id == link_id), lock=lock)
    if row is None:
        return None
    return domain.Link.from_dict(row.link_id, row.tenant_id, json.loads(row.state))


async def save_link(session: AsyncSession, link: domain.Link, *, new: bool) -> None:
    values = {
        "tenant_id": link.tenant_id,
        "state": json.dumps(link.to_dict()),
        "updated_at": utcnow(),
    }
    if new:
        await session.execute(links.insert().values(link_id=link.link_id, **values))
    else:
        await session.execute(update(links).where(links.c.link_id == link.link_id).values(**values))


# --- dashboard queries ------------------------------------------------------------------


def _wanted(kind: str, query: domain.Query) -> dict[str, str]:
    """The dimensions `query` filters `kind` by, with their values."""
    filters = {"channel": query.channel, "agent_id": query.agent}
    if kind != "funnels":  # a capture has no connector: the filter does not narrow funnels
        filters["connector"] = query.connector
    return {name: value for name, value in filters.items() if value is not None}


def _source(
    cuboid: domain.Cuboid,
    tenant_id: str,
    query: domain.Query,
    columns: Sequence[str],
    *,
    hourly: bool = False,
    agents: Sequence[str] | None = None,
) -> Any:
    """The cuboid's buckets of `query`'s range and filters: day rows for whole days,
    hour rows for the hours at either end (or all hours, `hourly`). `agents` turns the
    read of an agent-keyed cuboid without an agent filter into one seek per agent."""
    table = BUCKETS[cuboid.name]
    where = [table.c[name] == value for name, value in _wanted(cuboid.kind, query).items()]
    if agents is not None:
        where.append(table.c.agent_id.in_(list(agents)))
    parts = [
        select(*(table.c[name] for name in columns)).where(
            table.c.tenant_id == tenant_id,
            table.c.grain == span.grain,
            table.c.period >= span.start,
            table.c.period < span.end,
            *where,
        )
        for span in domain.spans(query.start, query.end, hourly=hourly)
    ]
    return (parts[0] if len(parts) == 1 else union_all(*parts)).subquery()


async def _agents_seen(session: AsyncSession, tenant_id: str, query: domain.Query) -> list[str]:
    """Every agent id (`""`: none) with payments in the period, whatever the filters."""
    unfiltered = replace(query, channel=None, connector=None, agent=None)
    source = _source(CUBOIDS["payment_agents"], tenant_id, unfiltered, ["agent_id"])
    return list((await session.execute(select(source.c.agent_id).distinct())).scalars())


async def _grouped(
    session: AsyncSession,
    kind: str,
    tenant_id: str,
    query: domain.Query,
    by: Sequence[str],
    sums: Sequence[str],
) -> list[Any]:
    """Sums of `kind`'s buckets grouped by `by`, read from the smallest cuboid that has
    every dimension grouped and filtered by."""
    cuboid = domain.cuboid_for(kind, {*by, *_wanted(kind, query)} - {"period"})
    agents = None
    if "agent_id" in cuboid.lead and query.agent is None:
        agents = await _agents_seen(session, tenant_id, query)
    hourly = "period" in by and query.granularity == "hour"
    source = _source(cuboid, tenant_id, query, [*by, *sums], hourly=hourly, agents=agents)
    columns = [source.c[name] for name in by]
    statement = select(*columns, *(func.sum(source.c[n]).label(n) for n in sums)).group_by(*columns)
    return list((await session.execute(statement)).all())


async def payment_rows(
    session: AsyncSession, tenant_id: str, query: domain.Query, *by: str
) -> list[Any]:
    """Counts and sums of payment buckets grouped by `by` (always with outcome and
    currency); `period` is the hour, or the day for the whole days of a `day` query."""
    return await _grouped(
        session, "payments", tenant_id, query, (*by, "outcome", "currency"), PAYMENT_SUMS
    )


async def payment_rows_declines(
    session: AsyncSession, tenant_id: str, query: domain.Query
) -> list[Any]:
    rows = await _grouped(
        session, "payments", tenant_id, query, ("decline_code", "outcome"), ("count",)
    )
    return [row for row in rows if row.outcome in ("declined", "failed")]


async def connector_rows(session: AsyncSession, tenant_id: str, query: domain.Query) -> list[Any]:
    return await _grouped(session, "connectors", tenant_id, query, ("connector",), CONNECTOR_SUMS)


async def funnel_rows(session: AsyncSession, tenant_id: str, query: domain.Query) -> list[Any]:
    """Funnel stages; a connector filter does not apply (a capture has no connector)."""
    return await _grouped(session, "funnels", tenant_id, query, ("funnel", "stage"), ("count",))


async def dimension_values(
    session: AsyncSession, tenant_id: str, query: domain.Query
) -> dict[str, list[str]]:
    """The channels, connectors and agents seen in the period (the filters' choices,
    whatever the filters)."""
    unfiltered = replace(query, channel=None, connector=None, agent=None)
    found: dict[str, list[str]] = {}
    for name in ("channel", "connector", "agent_id"):
        cuboid = domain.cuboid_for("payments", {name})
        source = _source(cuboid, tenant_id, unfiltered, [name])
        rows = (await session.execute(select(source.c[name]).distinct())).scalars().all()
        found[name] = sorted(v for v in rows if v)
    return found


# --- reconciliation ---------------------------------------------------------------------


async def start_reconciliation(
    session: AsyncSession, run_id: str, tenant_id: str, start: datetime, end: datetime
) -> None:
    await session.execute(
        reconciliations.insert().values(
            id=run_id, tenant_id=tenant_id, period_from=start, period_to=end, requested_at=utcnow()
        )
    )


async def latest_reconciliation(
    session: AsyncSession, tenant_id: str, start: datetime, end: datetime
) -> Any | None:
    return (
        await session.execute(
            select(reconciliations)
            .where(
                reconciliations.c.tenant_id == tenant_id,
                reconciliations.c.period_from == start,
                reconciliations.c.period_to == end,
            )
            .order_by(reconciliations.c.requested_at.desc())
            .limit(1)
        )
    ).first()


async def reconciliation(session: AsyncSession, run_id: str) -> Any | None:
    return await first_row(session, select(reconciliations).where(reconciliations.c.id == run_id))


async def add_lines(session: AsyncSession, run_id: str, lines: Sequence[dict[str, Any]]) -> None:
    if not lines:
        return
    ids = [line["payment_id"] for line in lines]
    await session.execute(
        delete(psp_lines).where(psp_lines.c.run_id == run_id, psp_lines.c.payment_id.in_(ids))
    )
    await session.execute(psp_lines.insert(), [{"run_id": run_id, **line} for line in lines])


async def complete_reconciliation(session: AsyncSession, run_id: str) -> None:
    await session.execute(
        update(reconciliations).where(reconciliations.c.id == run_id).values(completed_at=utcnow())
    )


async def lines_of(session: AsyncSession, run_id: str) -> dict[str, dict[str, Any]]:
    rows = (await session.execute(select(psp_lines).where(psp_lines.c.run_id == run_id))).all()
    return {r.payment_id: dict(r._mapping) for r in rows}
