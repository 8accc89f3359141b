"""Merchant webhook tables: each tenant's endpoint and every delivery we owe it.

Payloads are the JSON we send, built from payment outcomes only: never card data.
The signing secret is stored sealed with the tenant's key, never in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import metadata

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
CANCELLED = "cancelled"

endpoints = Table(
    "psp_webhook_endpoints",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("url", String(2048), nullable=False),
    Column("secret", LargeBinary, nullable=False),  # sealed with the tenant's key
    Column("enabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

deliveries = Table(
    "psp_webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tenant_id", String(64), nullable=False),
    Column("event_id", String(64), nullable=False),  # the bus message id
    Column("event_type", String(64), nullable=False),
    Column("payment_id", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # the exact body sent on every attempt
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", String(64), nullable=True),  # a status or an error class, no text
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    # One delivery per event and tenant: a redelivered bus message cannot add a second.
    UniqueConstraint("tenant_id", "event_id", name="uq_psp_webhook_deliveries_tenant_event"),
    Index("ix_psp_webhook_deliveries_due", "status", "next_attempt_at"),
)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; every stored moment is UTC.
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Endpoint:
    tenant_id: str
    url: str
    secret: bytes  # sealed
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Job:
    """A delivery claimed for one attempt; `attempts` already counts this one."""

    id: int
    tenant_id: str
    event_id: str
    payload: str
    attempts: int


def _endpoint(row: Any) -> Endpoint:
    values = dict(row._mapping)
    values["created_at"] = _utc(values["created_at"])
    values["updated_at"] = _utc(values["updated_at"])
    values["enabled"] = bool(values["enabled"])
    return Endpoint(**values)


async def endpoint(session: AsyncSession, tenant_id: str) -> Endpoint | None:
    row = (
        await session.execute(select(endpoints).where(endpoints.c.tenant_id == tenant_id))
    ).first()
    return _endpoint(row) if row else None


async def endpoints_of(session: AsyncSession, tenant_ids: set[str]) -> dict[str, Endpoint]:
    if not tenant_ids:
        return {}
    rows = (
        await session.execute(select(endpoints).where(endpoints.c.tenant_id.in_(tenant_ids)))
    ).all()
    return {row.tenant_id: _endpoint(row) for row in rows}


async def set_endpoint(
    session: AsyncSession, tenant_id: str, url: str, secret: bytes, enabled: bool
) -> None:
    now = utcnow()
    values = {"url": url, "secret": secret, "enabled": enabled, "updated_at": now}
    if await endpoint(session, tenant_id) is None:
        await session.execute(
            endpoints.insert().values(tenant_id=tenant_id, created_at=now, **values)
        )
    else:
        await session.execute(
            update(endpoints).where(endpoints.c.tenant_id == tenant_id).values(**values)
        )


async def delete_endpoint(session: AsyncSession, tenant_id: str) -> bool:
    result = await session.execute(delete(endpoints).where(endpoints.c.tenant_id == tenant_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def add_delivery(
    session: AsyncSession,
    *,
    tenant_id: str,
    event_id: str,
    event_type: str,
    payment_id: str,
    payload: str,
) -> None:
    now = utcnow()
    await session.execute(
        deliveries.insert().values(
            tenant_id=tenant_id,
            event_id=event_id,
            event_type=event_type,
            payment_id=payment_id,
            payload=payload,
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )


async def cancel_pending(session: AsyncSession, tenant_id: str, reason: str) -> int:
    result = await session.execute(
        update(deliveries)
        .where(deliveries.c.tenant_id == tenant_id, deliveries.c.status == PENDING)
        .values(status=CANCELLED, last_error=reason, updated_at=utcnow())
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def claim_due(
    session: AsyncSession, *, limit: int, lease: timedelta, max_attempts: int
) -> tuple[list[Job], list[int]]:
    """Claim due deliveries for one attempt each: (jobs to send, ids given up on).

    The claim counts the attempt and pushes `next_attempt_at` out by `lease`, and
    commits before anything is sent: no lock is held across the HTTP call, and a
    worker that dies mid-send leaves a row that falls due again when the lease ends.
    """
    now = utcnow()
    rows = (
        await session.execute(
            select(deliveries.c.id, deliveries.c.tenant_id, deliveries.c.event_id)
            .add_columns(deliveries.c.payload, deliveries.c.attempts)
            .where(deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now)
            .order_by(deliveries.c.next_attempt_at)
            .limit(limit)
            # Several workers (one per process) share the rows without waiting; SQLite
            # has no row locks, and its BEGIN IMMEDIATE serializes the claim instead.
            .with_for_update(skip_locked=True)
        )
    ).all()
    jobs: list[Job] = []
    exhausted: list[int] = []
    for row in rows:
        if row.attempts >= max_attempts:
            # Its last attempt was claimed and never answered (the worker died).
            exhausted.append(row.id)
            continue
        jobs.append(Job(row.id, row.tenant_id, row.event_id, row.payload, row.attempts + 1))
    if exhausted:
        await session.execute(
            update(deliveries)
            .where(deliveries.c.id.in_(exhausted))
            .values(status=FAILED, last_error="interrupted", updated_at=now)
        )
    for job in jobs:
        await session.execute(
            update(deliveries)
            .where(deliveries.c.id == job.id)
            .values(attempts=job.attempts, next_attempt_at=now + lease, updated_at=now)
        )
    return jobs, exhausted


async def record_attempt(
    session: AsyncSession,
    job: Job,
    *,
    status: str,
    status_code: int | None,
    error: str | None,
    next_attempt_at: datetime | None,
) -> bool:
    """Write one attempt's result; False when the row moved on meanwhile (cancelled,
    or re-claimed after the lease ran out), in which case that newer state stands."""
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "last_status_code": status_code,
        "last_error": error,
        "updated_at": now,
    }
    if next_attempt_at is not None:
        values["next_attempt_at"] = next_attempt_at
    if status == DELIVERED:
        values["delivered_at"] = now
    result = await session.execute(
        update(deliveries)
        .where(
            deliveries.c.id == job.id,
            deliveries.c.status == PENDING,
            deliveries.c.attempts == job.attempts,
        )
        .values(**values)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def recent(session: AsyncSession, tenant_id: str, limit: int) -> list[dict[str, Any]]:
    """The newest deliveries, described without their payload."""
    rows = (
        await session.execute(
            select(
                deliveries.c.id,
                deliveries.c.event_id,
                deliveries.c.event_type,
                deliveries.c.payment_id,
                deliveries.c.status,
                deliveries.c.attempts,
                deliveries.c.last_status_code,
                deliveries.c.last_error,
                deliveries.c.next_attempt_at,
                deliveries.c.created_at,
                deliveries.c.delivered_at,
            )
            .where(deliveries.c.tenant_id == tenant_id)
            .order_by(deliveries.c.id.desc())
            .limit(limit)
        )
    ).all()
    described = []
    for row in rows:
        values = dict(row._mapping)
        for key in ("next_attempt_at", "created_at", "delivered_at"):
            values[key] = _utc(values[key])
        described.append(values)
    return described


async def prune(session: AsyncSession, older_than: datetime) -> int:
    """Forget finished deliveries (delivered, failed, cancelled) older than the cutoff."""
    result = await session.execute(
        delete(deliveries).where(
            deliveries.c.status != PENDING, deliveries.c.updated_at < older_than
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
