"""The PSP adapter's tables: payments, every attempt, tenants' routes, stored cards.

Never card data: a stored card is the PSP's token (sealed with the tenant's key)
plus brand, BIN and last 4. No number, expiry or security code, ever.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import metadata

payments = Table(
    "psp_payments",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("capture_id", String(64), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("agent_id", String(64), nullable=True),
    Column("brand", String(16), nullable=True),
    Column("status", String(24), nullable=False, index=True),
    Column("connector", String(32), nullable=True),
    Column("psp_reference", String(128), nullable=True),
    Column("decline_code", String(32), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("authorized_amount", BigInteger, nullable=False, default=0),
    Column("captured_amount", BigInteger, nullable=False, default=0),
    Column("refunded_amount", BigInteger, nullable=False, default=0),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

attempts = Table(
    "psp_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("payment_id", String(64), nullable=False, index=True),
    Column("seq", Integer, nullable=False),
    Column("operation", String(16), nullable=False),
    Column("connector", String(32), nullable=False),
    Column("idempotency_key", String(160), nullable=False),
    Column("outcome", String(16), nullable=False),  # "sending" until the answer is in
    Column("decline_code", String(32), nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("psp_reference", String(128), nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("transcript", Text, nullable=True),  # scrubbed by the connector
    Column("started_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("payment_id", "seq", name="uq_psp_attempts_payment_seq"),
)

routes = Table(
    "psp_routes",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("routes", Text, nullable=False),
    Column("credentials", LargeBinary, nullable=True),  # sealed with the tenant's key
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


stored_cards = Table(
    "psp_stored_cards",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False, index=True),
    Column("connector", String(32), nullable=False),  # a token works only where it was issued
    Column("token", LargeBinary, nullable=False),  # the PSP's token, sealed with the tenant's key
    Column("brand", String(16), nullable=True),
    Column("bin", String(8), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("payment_id", String(64), nullable=False),  # the payment that saved it
    Column("created_by", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=True),
    # One card per payment: a redelivered request cannot save it twice.
    UniqueConstraint("payment_id", name="uq_psp_stored_cards_payment_id"),
)


# The statements of every payment, built once. A statement given its values as
# parameters is compiled once and found again in SQLAlchemy's cache; one built with
# `.values(...)` is rebuilt and keyed anew on each call, which cost more than SQLite
# took to run it.
_INSERT_PAYMENT = payments.insert()
_PAYMENT = select(payments).where(payments.c.id == bindparam("_id"))
_PAYMENT_LOCKED = _PAYMENT.with_for_update()
_UPDATE_PAYMENT = update(payments).where(payments.c.id == bindparam("_id"))
_INSERT_ATTEMPT = attempts.insert()
_UPDATE_ATTEMPT = update(attempts).where(
    attempts.c.payment_id == bindparam("_payment"), attempts.c.seq == bindparam("_seq")
)
_AUTHORIZE_SUMMARY = (
    select(attempts.c.connector, attempts.c.outcome, attempts.c.latency_ms, attempts.c.decline_code)
    .where(attempts.c.payment_id == bindparam("_payment"), attempts.c.operation == "authorize")
    .order_by(attempts.c.seq)
)
_ROUTES = select(routes).where(routes.c.tenant_id == bindparam("_tenant"))


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Payment:
    id: str
    tenant_id: str
    capture_id: str
    amount: int
    currency: str
    reference: str
    channel: str
    agent_id: str | None
    brand: str | None
    status: str
    connector: str | None
    psp_reference: str | None
    decline_code: str | None
    attempts: int
    authorized_amount: int
    captured_amount: int
    refunded_amount: int
    created_at: datetime
    updated_at: datetime


def _payment(row: Any) -> Payment:
    values = dict(row._mapping)
    values["created_at"] = _utc(values["created_at"])
    values["updated_at"] = _utc(values["updated_at"])
    return Payment(**values)


async def insert_payment(session: AsyncSession, **values: Any) -> None:
    now = utcnow()
    await session.execute(
        _INSERT_PAYMENT,
        {
            "created_at": now,
            "updated_at": now,
            "attempts": 0,
            "authorized_amount": 0,
            "captured_amount": 0,
            "refunded_amount": 0,
            **values,
        },
    )


async def payment(session: AsyncSession, payment_id: str, *, lock: bool = False) -> Payment | None:
    """The payment, locked for the transaction (`FOR UPDATE`) when asked; SQLite ignores
    the lock, its one writer at a time already serializes."""
    query = _PAYMENT_LOCKED if lock else _PAYMENT
    row = (await session.execute(query, {"_id": payment_id})).first()
    return _payment(row) if row else None


async def save_payment(session: AsyncSession, payment_id: str, **values: Any) -> None:
    await session.execute(_UPDATE_PAYMENT, {"_id": payment_id, "updated_at": utcnow(), **values})


async def stuck(session: AsyncSession, older_than: datetime, limit: int = 50) -> list[Payment]:
    rows = (
        await session.execute(
            select(payments)
            .where(payments.c.status == "submitted", payments.c.updated_at < older_than)
            .limit(limit)
        )
    ).all()
    return [_payment(r) for r in rows]


async def created_between(
    session: AsyncSession, tenant_id: str, start: datetime, end: datetime, limit: int
) -> list[Payment]:
    """A tenant's payments created in [start, end), oldest first (reconciliation)."""
    rows = (
        await session.execute(
            select(payments)
            .where(
                payments.c.tenant_id == tenant_id,
                payments.c.created_at >= start,
                payments.c.created_at < end,
            )
            .order_by(payments.c.created_at)
            .limit(limit)
        )
    ).all()
    return [_payment(r) for r in rows]


async def next_seq(session: AsyncSession, payment_id: str) -> int:
    current = await session.scalar(
        select(func.max(attempts.c.seq)).where(attempts.c.payment_id == payment_id)
    )
    return int(current or 0) + 1


async def start_attempt(
    session: AsyncSession,
    payment_id: str,
    operation: str,
    connector: str,
    idempotency_key: str,
    *,
    seq: int | None = None,
) -> int:
    """Record an attempt as `sending`; `seq` when the caller knows it (1 for a payment
    inserted in this transaction), else the next one."""
    seq = seq if seq is not None else await next_seq(session, payment_id)
    await session.execute(
        _INSERT_ATTEMPT,
        {
            "payment_id": payment_id,
            "seq": seq,
            "operation": operation,
            "connector": connector,
            "idempotency_key": idempotency_key,
            "outcome": "sending",
            "started_at": utcnow(),
        },
    )
    return seq


async def finish_attempt(session: AsyncSession, payment_id: str, seq: int, **values: Any) -> None:
    if "transcript" in values and values["transcript"] is not None:
        values["transcript"] = json.dumps(values["transcript"], default=str)
    await session.execute(_UPDATE_ATTEMPT, {"_payment": payment_id, "_seq": seq, **values})


async def count_attempts(session: AsyncSession, payment_id: str, operation: str) -> int:
    counted = await session.scalar(
        select(func.count())
        .select_from(attempts)
        .where(attempts.c.payment_id == payment_id, attempts.c.operation == operation)
    )
    return int(counted or 0)


async def attempts_of(session: AsyncSession, payment_id: str) -> list[dict[str, Any]]:
    rows = (
        await session.execute(
            select(attempts).where(attempts.c.payment_id == payment_id).order_by(attempts.c.seq)
        )
    ).all()
    return [dict(r._mapping) for r in rows]


async def authorize_summary(session: AsyncSession, payment_id: str) -> list[dict[str, Any]]:
    """The authorization attempts of a payment, in order, without their transcripts."""
    rows = (await session.execute(_AUTHORIZE_SUMMARY, {"_payment": payment_id})).all()
    return [dict(r._mapping) for r in rows]


async def routes_of(
    session: AsyncSession, tenant_id: str
) -> tuple[dict[str, Any], bytes | None] | None:
    """The tenant's `{"mode", "routes"}` and its sealed credentials, if configured."""
    row = (await session.execute(_ROUTES, {"_tenant": tenant_id})).first()
    return (json.loads(row.routes), row.credentials) if row else None


async def set_routes(
    session: AsyncSession, tenant_id: str, config: dict[str, Any], credentials: bytes | None
) -> None:
    values = {"routes": json.dumps(config), "credentials": credentials, "updated_at": utcnow()}
    if await routes_of(session, tenant_id) is None:
        await session.execute(routes.insert().values(tenant_id=tenant_id, **values))
    else:
        await session.execute(
            update(routes).where(routes.c.tenant_id == tenant_id).values(**values)
        )


# --- stored cards ---------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCard:
    id: str
    tenant_id: str
    connector: str
    token: bytes  # sealed
    brand: str | None
    bin: str
    last4: str
    payment_id: str
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None


def _stored_card(row: Any) -> StoredCard:
    values = dict(row._mapping)
    values["created_at"] = _utc(values["created_at"])
    if values["last_used_at"] is not None:
        values["last_used_at"] = _utc(values["last_used_at"])
    return StoredCard(**values)


async def add_stored_card(session: AsyncSession, **values: Any) -> None:
    await session.execute(stored_cards.insert().values(created_at=utcnow(), **values))


async def stored_card(session: AsyncSession, card_id: str) -> StoredCard | None:
    row = (await session.execute(select(stored_cards).where(stored_cards.c.id == card_id))).first()
    return _stored_card(row) if row else None


async def stored_card_of_payment(session: AsyncSession, payment_id: str) -> StoredCard | None:
    row = (
        await session.execute(select(stored_cards).where(stored_cards.c.payment_id == payment_id))
    ).first()
    return _stored_card(row) if row else None


async def stored_cards_of(
    session: AsyncSession, tenant_id: str, limit: int = 100, before: str | None = None
) -> list[StoredCard]:
    query = select(stored_cards).where(stored_cards.c.tenant_id == tenant_id)
    if before is not None:
        query = query.where(stored_cards.c.id < before)
    rows = (await session.execute(query.order_by(stored_cards.c.id.desc()).limit(limit))).all()
    return [_stored_card(r) for r in rows]


async def used_stored_card(session: AsyncSession, card_id: str) -> None:
    await session.execute(
        update(stored_cards).where(stored_cards.c.id == card_id).values(last_used_at=utcnow())
    )


async def delete_stored_card(session: AsyncSession, card_id: str) -> bool:
    result = await session.execute(delete(stored_cards).where(stored_cards.c.id == card_id))
    return bool(result.rowcount)  # type: ignore[attr-defined]
