"""Capture's own tables: sessions (never card data), its view of calls, tenant capture settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
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
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import first_row, metadata

OPEN = ("capturing", "ready")

sessions = Table(
    "capture_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("call_id", String(128), nullable=True, index=True),
    Column("agent_id", String(64), nullable=True),
    Column("channel", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("status", String(24), nullable=False),
    Column("cancel_reason", String(32), nullable=True),
    Column("state", Text, nullable=False),  # domain.Session.to_dict(): counts and verdicts only
    Column("vault_ref", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("outcome", Text, nullable=True),
    # One open capture per call, whatever races the API sees.
    Index(
        "uq_capture_sessions_open_call",
        "call_id",
        unique=True,
        postgresql_where=text("status IN ('capturing', 'ready')"),
        sqlite_where=text("status IN ('capturing', 'ready')"),
    ),
)

calls = Table(
    "capture_calls",
    metadata,
    Column("call_id", String(128), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("agent_id", String(64), nullable=True),
    Column("ended", Boolean, nullable=False, default=False),
    Column("keypad_seq", Integer, nullable=False, default=0),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

settings = Table(
    "capture_settings",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("policy", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    id: str
    tenant_id: str
    call_id: str | None
    agent_id: str | None
    channel: str
    amount: int
    currency: str
    reference: str
    status: str
    cancel_reason: str | None
    state: dict[str, Any]
    vault_ref: str
    expires_at: datetime
    created_at: datetime
    outcome: dict[str, Any] | None


def _row(r: Any) -> Row:
    return Row(
        id=r.id,
        tenant_id=r.tenant_id,
        call_id=r.call_id,
        agent_id=r.agent_id,
        channel=r.channel,
        amount=r.amount,
        currency=r.currency,
        reference=r.reference,
        status=r.status,
        cancel_reason=r.cancel_reason,
        state=json.loads(r.state),
        vault_ref=r.vault_ref,
        expires_at=_utc(r.expires_at),
        created_at=_utc(r.created_at),
        outcome=json.loads(r.outcome) if r.outcome else None,
    )


async def insert(session: AsyncSession, row: Row) -> None:
    now = utcnow()
    await session.execute(
        sessions.insert().values(
            id=row.id,
            tenant_id=row.tenant_id,
            call_id=row.call_id,
            agent_id=row.agent_id,
            channel=row.channel,
            amount=row.amount,
            currency=row.currency,
            reference=row.reference,
            status=row.status,
            cancel_reason=None,
            state=json.dumps(row.state),
            vault_ref=row.vault_ref,
            expires_at=row.expires_at,
            created_at=now,
            updated_at=now,
        )
    )


async def get(session: AsyncSession, capture_id: str, *, lock: bool = False) -> Row | None:
    found = await first_row(session, select(sessions).where(sessions.c.id == capture_id), lock=lock)
    return _row(found) if found else None


async def listed(
    session: AsyncSession,
    tenant_id: str,
    *,
    agent_id: str | None = None,
    call_id: str | None = None,
    statuses: tuple[str, ...] = (),
    limit: int = 100,
) -> list[Row]:
    """A tenant's payments, newest first; narrowed to one agent, call or statuses."""
    query = select(sessions).where(sessions.c.tenant_id == tenant_id)
    if agent_id is not None:
        query = query.where(sessions.c.agent_id == agent_id)
    if call_id is not None:
        query = query.where(sessions.c.call_id == call_id)
    if statuses:
        query = query.where(sessions.c.status.in_(statuses))
    query = query.order_by(sessions.c.created_at.desc(), sessions.c.id.desc()).limit(limit)
    return [_row(r) for r in (await session.execute(query)).all()]


async def open_for_call(session: AsyncSession, tenant_id: str, call_id: str) -> Row | None:
    found = (
        await session.execute(
            select(sessions)
            .where(
                sessions.c.tenant_id == tenant_id,
                sessions.c.call_id == call_id,
                sessions.c.status.in_(OPEN),
            )
            .with_for_update()
        )
    ).first()
    return _row(found) if found else None


async def save(session: AsyncSession, capture_id: str, **values: Any) -> None:
    for name in ("state", "outcome"):
        if name in values and values[name] is not None:
            values[name] = json.dumps(values[name])
    await session.execute(
        update(sessions).where(sessions.c.id == capture_id).values(updated_at=utcnow(), **values)
    )


async def overdue(session: AsyncSession, now: datetime, limit: int = 100) -> list[Row]:
    rows = (
        await session.execute(
            select(sessions)
            .where(sessions.c.status.in_(OPEN), sessions.c.expires_at < now)
            .limit(limit)
        )
    ).all()
    return [_row(r) for r in rows]


@dataclass(frozen=True)
class Call:
    call_id: str
    tenant_id: str
    agent_id: str | None
    ended: bool
    keypad_seq: int


async def call(session: AsyncSession, call_id: str, *, lock: bool = False) -> Call | None:
    found = await first_row(session, select(calls).where(calls.c.call_id == call_id), lock=lock)
    if found is None:
        return None
    return Call(found.call_id, found.tenant_id, found.agent_id, found.ended, found.keypad_seq)


async def upsert_call(session: AsyncSession, call_id: str, tenant_id: str, **values: Any) -> None:
    existing = await call(session, call_id, lock=True)
    if existing is None:
        await session.execute(
            calls.insert().values(
                call_id=call_id,
                tenant_id=tenant_id,
                agent_id=values.get("agent_id"),
                ended=values.get("ended", False),
                keypad_seq=values.get("keypad_seq", 0),
                updated_at=utcnow(),
            )
        )
    else:
        await session.execute(
            update(calls).where(calls.c.call_id == call_id).values(updated_at=utcnow(), **values)
        )


async def policy_of(session: AsyncSession, tenant_id: str) -> dict[str, Any] | None:
    found = (
        await session.execute(select(settings.c.policy).where(settings.c.tenant_id == tenant_id))
    ).scalar()
    return json.loads(found) if found else None


async def set_policy(session: AsyncSession, tenant_id: str, policy: dict[str, Any]) -> None:
    if await policy_of(session, tenant_id) is None:
        await session.execute(
            settings.insert().values(
                tenant_id=tenant_id, policy=json.dumps(policy), updated_at=utcnow()
            )
        )
    else:
        await session.execute(
            update(settings)
            .where(settings.c.tenant_id == tenant_id)
            .values(policy=json.dumps(policy), updated_at=utcnow())
        )
