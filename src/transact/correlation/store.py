"""Correlation's own table: the call registry, keyed by tenant and call id.

Phone numbers are never stored: only telephony's masked display form and the keyed
digests a search is matched against.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, String, Table, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select

from transact.contracts import utcnow
from transact.correlation.domain import (
    MAX_CALL_ID,
    MAX_EXTERNAL,
    MAX_MASKED,
    MAX_REFERENCE,
    MAX_TENANT_ID,
    Call,
    CallState,
)
from transact.kernel.db import first_row, metadata

calls = Table(
    "correlation_calls",
    metadata,
    # The tenant is part of the key: a call id another tenant's telephony reports can
    # never touch this tenant's call.
    Column("tenant_id", String(MAX_TENANT_ID), primary_key=True),
    Column("call_id", String(MAX_CALL_ID), primary_key=True),
    Column("state", String(8), nullable=False),
    Column("reference", String(MAX_REFERENCE), nullable=True),
    Column("reference_key", String(MAX_REFERENCE), nullable=True),
    Column("from_masked", String(MAX_MASKED), nullable=True),
    Column("to_masked", String(MAX_MASKED), nullable=True),
    Column("from_digest", String(64), nullable=True),
    Column("to_digest", String(64), nullable=True),
    Column("sip_call_id", String(MAX_EXTERNAL), nullable=True),
    Column("external_id", String(MAX_EXTERNAL), nullable=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_reason", String(16), nullable=True),
    Column("agent_id", String(64), nullable=True),
    Column("assigned_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_correlation_calls_state", "tenant_id", "state", "started_at"),
    Index("ix_correlation_calls_agent", "tenant_id", "agent_id", "state"),
    Index("ix_correlation_calls_reference", "tenant_id", "reference_key"),
    Index("ix_correlation_calls_to", "tenant_id", "to_digest"),
    Index("ix_correlation_calls_from", "tenant_id", "from_digest"),
    Index("ix_correlation_calls_sip", "tenant_id", "sip_call_id"),
    Index("ix_correlation_calls_external", "tenant_id", "external_id"),
)

_COLUMNS = (
    "state",
    "reference",
    "from_masked",
    "to_masked",
    "from_digest",
    "to_digest",
    "sip_call_id",
    "external_id",
    "started_at",
    "ended_at",
    "end_reason",
    "agent_id",
    "assigned_at",
)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we stored was UTC.
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _call(row: Any) -> Call:
    return Call(
        tenant_id=row.tenant_id,
        call_id=row.call_id,
        state=CallState(row.state),
        reference=row.reference,
        from_masked=row.from_masked,
        to_masked=row.to_masked,
        from_digest=row.from_digest,
        to_digest=row.to_digest,
        sip_call_id=row.sip_call_id,
        external_id=row.external_id,
        started_at=_utc(row.started_at),
        ended_at=_utc(row.ended_at),
        end_reason=row.end_reason,
        agent_id=row.agent_id,
        assigned_at=_utc(row.assigned_at),
    )


def _values(call: Call) -> dict[str, Any]:
    values = {name: getattr(call, name) for name in _COLUMNS}
    values["state"] = call.state.value
    values["reference_key"] = call.reference_key
    values["updated_at"] = utcnow()
    return values


async def get(
    session: AsyncSession, tenant_id: str, call_id: str, *, lock: bool = False
) -> Call | None:
    found = await first_row(
        session,
        select(calls).where(calls.c.tenant_id == tenant_id, calls.c.call_id == call_id),
        lock=lock,
    )
    return _call(found) if found else None


async def insert_if_absent(session: AsyncSession, call: Call) -> bool:
    """Insert a new call; False (and nothing written) when the call is already there.

    Several instances may see the same `call.started` at once: the database, not a
    read before the write, decides which one creates the row.
    """
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(calls)
        .values(tenant_id=call.tenant_id, call_id=call.call_id, **_values(call))
        .on_conflict_do_nothing(index_elements=["tenant_id", "call_id"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def save(session: AsyncSession, call: Call) -> None:
    await session.execute(
        update(calls)
        .where(calls.c.tenant_id == call.tenant_id, calls.c.call_id == call.call_id)
        .values(**_values(call))
    )


async def live(
    session: AsyncSession, tenant_id: str, *, agent_id: str | None = None, limit: int = 100
) -> list[Call]:
    """The tenant's live calls, newest first; only `agent_id`'s when given."""
    query = select(calls).where(
        calls.c.tenant_id == tenant_id, calls.c.state == CallState.LIVE.value
    )
    if agent_id is not None:
        query = query.where(calls.c.agent_id == agent_id)
    query = query.order_by(calls.c.started_at.desc(), calls.c.call_id).limit(limit)
    return [_call(r) for r in (await session.execute(query)).all()]


async def _counted(session: AsyncSession, query: Select[Any]) -> tuple[int, Call | None]:
    """How many calls `query` matches (the caller wants exactly one), and the first."""
    count = await session.scalar(select(func.count()).select_from(query.subquery()))
    first = (await session.execute(query.limit(1))).first()
    return int(count or 0), _call(first) if first else None


async def live_by_reference(
    session: AsyncSession, tenant_id: str, key: str
) -> tuple[int, Call | None]:
    query = select(calls).where(
        calls.c.tenant_id == tenant_id,
        calls.c.reference_key == key,
        calls.c.state == CallState.LIVE.value,
    )
    return await _counted(session, query.order_by(calls.c.started_at.desc()))


async def any_with_reference(session: AsyncSession, tenant_id: str, key: str) -> bool:
    """Whether any call, live or ended, ever carried the reference."""
    found = await session.scalar(
        select(calls.c.call_id)
        .where(calls.c.tenant_id == tenant_id, calls.c.reference_key == key)
        .limit(1)
    )
    return found is not None


async def search(
    session: AsyncSession,
    tenant_id: str,
    *,
    to_digest: str | None,
    from_digest: str | None,
    started_after: datetime | None,
    started_before: datetime | None,
) -> tuple[int, Call | None]:
    """Live calls matching every criterion given."""
    query = select(calls).where(
        calls.c.tenant_id == tenant_id, calls.c.state == CallState.LIVE.value
    )
    if to_digest is not None:
        query = query.where(calls.c.to_digest == to_digest)
    if from_digest is not None:
        query = query.where(calls.c.from_digest == from_digest)
    if started_after is not None:
        query = query.where(calls.c.started_at >= started_after)
    if started_before is not None:
        query = query.where(calls.c.started_at <= started_before)
    return await _counted(session, query.order_by(calls.c.started_at.desc()))


async def by_external_ref(
    session: AsyncSession, tenant_id: str, *, sip_call_id: str | None, external_id: str | None
) -> list[Call]:
    """Calls carrying the SIP Call-ID or the CTI's id: live ones first, then newest."""
    query = select(calls).where(calls.c.tenant_id == tenant_id)
    if sip_call_id is not None:
        query = query.where(calls.c.sip_call_id == sip_call_id)
    if external_id is not None:
        query = query.where(calls.c.external_id == external_id)
    live_first = (calls.c.state == CallState.LIVE.value).desc()
    query = query.order_by(live_first, calls.c.started_at.desc()).limit(2)
    return [_call(r) for r in (await session.execute(query)).all()]
