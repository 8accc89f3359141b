"""Remote card capture's own tables: links (token hashes, never tokens), card attempts (no
card data: statuses, field verdicts, the PSP's challenge URL) and tenant settings.

The destination a link was sent to is kept sealed with the tenant's key (a resend needs
it) and shown only masked.
"""

from __future__ import annotations

import json
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
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import first_row, metadata
from transact.remote.domain import (
    OPEN,
    Attempt,
    AttemptStatus,
    Link,
    LinkStatus,
    PhoneCapture,
    PhoneStatus,
)

links = Table(
    "remote_links",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("agent_id", String(64), nullable=True),
    Column("created_by", String(160), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("reference", String(128), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("to_masked", String(64), nullable=True),
    Column("to_sealed", Text, nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("opened_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("payment_id", String(64), nullable=True),
    Column("current_attempt", String(64), nullable=True),
    Column("message_id", String(64), nullable=True),
    Column("message_status", String(16), nullable=True),
    Column("message_reason", String(200), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The phone capture an agent turned into this link.
    Column("source_payment_id", String(64), nullable=True),
    Index("ix_remote_links_tenant", "tenant_id", "created_at"),
    Index("ix_remote_links_agent", "tenant_id", "agent_id", "created_at"),
    Index("ix_remote_links_open", "status", "expires_at"),
    Index("ix_remote_links_message", "message_id"),
)

attempts = Table(
    "remote_attempts",
    metadata,
    Column("id", String(64), primary_key=True),  # the capture id, also the payment id
    Column("link_id", String(64), nullable=False, index=True),
    Column("tenant_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("agent_submits", Boolean, nullable=False),  # the card waits for the agent
    Column("errors", Text, nullable=False),  # {field: capture's reason}; never card data
    Column("action_url", String(2048), nullable=True),
    Column("decline_code", String(32), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Remote's own view of agents' phone captures, projected from capture's events, so an
# agent can turn an open one into a link without remote reading capture's tables.
phone_captures = Table(
    "remote_phone_captures",
    metadata,
    Column("id", String(64), primary_key=True),  # the capture id, also the payment id
    Column("tenant_id", String(64), nullable=False),
    Column("call_id", String(128), nullable=True),
    Column("agent_id", String(64), nullable=True),
    Column("amount", BigInteger, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("reference", String(128), nullable=True),
    Column("status", String(16), nullable=False),
    Column("link_id", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_remote_phone_captures_call", "tenant_id", "call_id"),
    Index("ix_remote_phone_captures_updated", "updated_at"),
)

settings = Table(
    "remote_settings",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("config", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we stored was UTC.
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _link(r: Any) -> Link:
    expires, created = _utc(r.expires_at), _utc(r.created_at)
    assert expires is not None
    assert created is not None
    return Link(
        id=r.id,
        tenant_id=r.tenant_id,
        agent_id=r.agent_id,
        created_by=r.created_by,
        amount=r.amount,
        currency=r.currency,
        reference=r.reference,
        channel=r.channel,
        to_masked=r.to_masked,
        status=LinkStatus(r.status),
        attempts=r.attempts,
        max_attempts=r.max_attempts,
        expires_at=expires,
        created_at=created,
        opened_at=_utc(r.opened_at),
        completed_at=_utc(r.completed_at),
        payment_id=r.payment_id,
        current_attempt=r.current_attempt,
        message_id=r.message_id,
        message_status=r.message_status,
        message_reason=r.message_reason,
        source_payment_id=r.source_payment_id,
    )


async def insert_link(
    session: AsyncSession, link: Link, token_hash: str, to_sealed: str | None
) -> None:
    await session.execute(
        links.insert().values(
            id=link.id,
            tenant_id=link.tenant_id,
            agent_id=link.agent_id,
            created_by=link.created_by,
            token_hash=token_hash,
            amount=link.amount,
            currency=link.currency,
            reference=link.reference,
            channel=link.channel,
            to_masked=link.to_masked,
            to_sealed=to_sealed,
            status=link.status.value,
            attempts=0,
            max_attempts=link.max_attempts,
            expires_at=link.expires_at,
            created_at=link.created_at,
            message_id=link.message_id,
            message_status="queued" if link.message_id else None,
            updated_at=link.created_at,
            source_payment_id=link.source_payment_id,
        )
    )


async def link(session: AsyncSession, link_id: str, *, lock: bool = False) -> Link | None:
    found = await first_row(session, select(links).where(links.c.id == link_id), lock=lock)
    return _link(found) if found else None


async def link_by_token(session: AsyncSession, token_hash: str) -> Link | None:
    found = (
        await session.execute(
            select(links).where(links.c.token_hash == token_hash).with_for_update()
        )
    ).first()
    return _link(found) if found else None


async def link_by_message(session: AsyncSession, message_id: str) -> Link | None:
    found = (
        await session.execute(
            select(links).where(links.c.message_id == message_id).with_for_update()
        )
    ).first()
    return _link(found) if found else None


async def sealed_destination(session: AsyncSession, link_id: str) -> str | None:
    found = await session.scalar(select(links.c.to_sealed).where(links.c.id == link_id))
    return str(found) if found else None


async def save_link(session: AsyncSession, link_id: str, **values: Any) -> None:
    if isinstance(values.get("status"), LinkStatus):
        values["status"] = values["status"].value
    await session.execute(
        update(links).where(links.c.id == link_id).values(updated_at=utcnow(), **values)
    )


async def links_of(
    session: AsyncSession,
    tenant_id: str,
    *,
    agent_id: str | None,
    status: str | None,
    limit: int,
) -> list[Link]:
    query = select(links).where(links.c.tenant_id == tenant_id)
    if agent_id is not None:
        query = query.where(links.c.agent_id == agent_id)
    if status is not None:
        query = query.where(links.c.status == status)
    query = query.order_by(links.c.created_at.desc(), links.c.id).limit(limit)
    return [_link(r) for r in (await session.execute(query)).all()]


async def overdue(session: AsyncSession, now: datetime, limit: int = 100) -> list[Link]:
    rows = await session.execute(
        select(links)
        .where(links.c.status.in_([s.value for s in OPEN]), links.c.expires_at <= now)
        .limit(limit)
        .with_for_update()
    )
    return [_link(r) for r in rows.all()]


def _attempt(r: Any) -> Attempt:
    return Attempt(
        id=r.id,
        link_id=r.link_id,
        tenant_id=r.tenant_id,
        status=AttemptStatus(r.status),
        agent_submits=r.agent_submits,
        errors=json.loads(r.errors),
        action_url=r.action_url,
        decline_code=r.decline_code,
    )


async def insert_attempt(session: AsyncSession, attempt: Attempt) -> None:
    now = utcnow()
    await session.execute(
        attempts.insert().values(
            id=attempt.id,
            link_id=attempt.link_id,
            tenant_id=attempt.tenant_id,
            status=attempt.status.value,
            agent_submits=attempt.agent_submits,
            errors="{}",
            created_at=now,
            updated_at=now,
        )
    )


async def attempt(session: AsyncSession, attempt_id: str, *, lock: bool = False) -> Attempt | None:
    found = await first_row(session, select(attempts).where(attempts.c.id == attempt_id), lock=lock)
    return _attempt(found) if found else None


async def save_attempt(session: AsyncSession, attempt_id: str, **values: Any) -> None:
    if isinstance(values.get("status"), AttemptStatus):
        values["status"] = values["status"].value
    if "errors" in values:
        values["errors"] = json.dumps(values["errors"])
    await session.execute(
        update(attempts).where(attempts.c.id == attempt_id).values(updated_at=utcnow(), **values)
    )


async def settings_of(session: AsyncSession, tenant_id: str) -> dict[str, Any] | None:
    found = await session.scalar(select(settings.c.config).where(settings.c.tenant_id == tenant_id))
    return json.loads(found) if found else None


async def set_settings(session: AsyncSession, tenant_id: str, config: dict[str, Any]) -> None:
    values = {"config": json.dumps(config), "updated_at": utcnow()}
    changed = await session.execute(
        update(settings).where(settings.c.tenant_id == tenant_id).values(**values)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(settings.insert().values(tenant_id=tenant_id, **values))


def _phone(r: Any) -> PhoneCapture:
    return PhoneCapture(
        id=r.id,
        tenant_id=r.tenant_id,
        call_id=r.call_id,
        agent_id=r.agent_id,
        amount=r.amount,
        currency=r.currency,
        reference=r.reference,
        status=PhoneStatus(r.status),
        link_id=r.link_id,
    )


async def phone_capture(
    session: AsyncSession, capture_id: str, *, lock: bool = False
) -> PhoneCapture | None:
    found = await first_row(
        session, select(phone_captures).where(phone_captures.c.id == capture_id), lock=lock
    )
    return _phone(found) if found else None


async def insert_phone_capture(session: AsyncSession, capture: PhoneCapture) -> None:
    now = utcnow()
    await session.execute(
        phone_captures.insert().values(
            id=capture.id,
            tenant_id=capture.tenant_id,
            call_id=capture.call_id,
            agent_id=capture.agent_id,
            amount=capture.amount,
            currency=capture.currency,
            reference=capture.reference,
            status=capture.status.value,
            link_id=capture.link_id,
            created_at=now,
            updated_at=now,
        )
    )


async def save_phone_capture(session: AsyncSession, capture_id: str, **values: Any) -> None:
    if isinstance(values.get("status"), PhoneStatus):
        values["status"] = values["status"].value
    await session.execute(
        update(phone_captures)
        .where(phone_captures.c.id == capture_id)
        .values(updated_at=utcnow(), **values)
    )


async def reassign_phone_captures(
    session: AsyncSession, tenant_id: str, call_id: str, agent_id: str
) -> None:
    """A transferred call takes its open capture to the agent who now holds it."""
    await session.execute(
        update(phone_captures)
        .where(
            phone_captures.c.tenant_id == tenant_id,
            phone_captures.c.call_id == call_id,
            phone_captures.c.status == PhoneStatus.CAPTURING.value,
        )
        .values(agent_id=agent_id, updated_at=utcnow())
    )


async def forget_phone_captures(session: AsyncSession, before: datetime) -> int:
    """Drop what no agent can turn into a link any more (a capture lives an hour at most)."""
    gone = await session.execute(
        phone_captures.delete().where(phone_captures.c.updated_at < before)
    )
    return int(gone.rowcount)  # type: ignore[attr-defined]
