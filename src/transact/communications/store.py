"""Communications' own tables: messages (destinations masked, payloads sealed) and settings.

A message's payload (the destination and its template's values, which hold a link's
secret URL) is kept sealed with the tenant's key while it may still be sent, and
dropped once it is sent or given up. An outbox message keeps its rendered text,
sealed, so the demo page can show it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Index, Integer, String, Table, Text, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from transact.communications.domain import Status
from transact.contracts import utcnow
from transact.kernel.db import first_row, metadata

messages = Table(
    "communications_messages",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("channel", String(8), nullable=False),
    Column("provider", String(16), nullable=True),
    Column("to_masked", String(64), nullable=False),
    Column("template", String(32), nullable=False),
    Column("about", String(64), nullable=True),
    Column("agent_id", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("provider_id", String(128), nullable=True),
    Column("reason", String(200), nullable=True),
    Column("payload", Text, nullable=True),  # base64 sealed {"to", "values"}; gone when final
    Column("rendered", Text, nullable=True),  # base64 sealed text, outbox messages only
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_communications_messages_due", "status", "next_attempt_at"),
    Index("ix_communications_messages_provider", "provider_id"),
    Index("ix_communications_messages_tenant", "tenant_id", "created_at"),
)

settings = Table(
    "communications_settings",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("config", Text, nullable=False),  # domain.Settings.to_dict(): no secrets
    Column("secrets", Text, nullable=True),  # base64 sealed {"email_password", "sms_auth_token"}
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


def _utc(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything we stored was UTC.
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Row:
    id: str
    tenant_id: str
    channel: str
    provider: str | None
    to_masked: str
    template: str
    about: str | None
    agent_id: str | None
    status: Status
    attempts: int
    next_attempt_at: datetime | None
    provider_id: str | None
    reason: str | None
    payload: str | None
    rendered: str | None
    created_at: datetime


def _row(r: Any) -> Row:
    created = _utc(r.created_at)
    assert created is not None
    return Row(
        id=r.id,
        tenant_id=r.tenant_id,
        channel=r.channel,
        provider=r.provider,
        to_masked=r.to_masked,
        template=r.template,
        about=r.about,
        agent_id=r.agent_id,
        status=Status(r.status),
        attempts=r.attempts,
        next_attempt_at=_utc(r.next_attempt_at),
        provider_id=r.provider_id,
        reason=r.reason,
        payload=r.payload,
        rendered=r.rendered,
        created_at=created,
    )


async def insert(session: AsyncSession, **values: Any) -> None:
    now = utcnow()
    await session.execute(
        messages.insert().values(
            status=Status.QUEUED.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            **values,
        )
    )


async def get(session: AsyncSession, message_id: str, *, lock: bool = False) -> Row | None:
    found = await first_row(session, select(messages).where(messages.c.id == message_id), lock=lock)
    return _row(found) if found else None


async def by_provider_id(session: AsyncSession, provider_id: str) -> Row | None:
    found = (
        await session.execute(
            select(messages).where(messages.c.provider_id == provider_id).with_for_update()
        )
    ).first()
    return _row(found) if found else None


async def claim(session: AsyncSession, message_id: str, now: datetime, lease: datetime) -> bool:
    """Take a due message for sending; False when another worker has it or it is not due.

    The lease (`next_attempt_at` while sending) lets a sweep take back a message whose
    worker died mid-send.
    """
    result = await session.execute(
        update(messages)
        .where(
            messages.c.id == message_id,
            or_(
                messages.c.status == Status.QUEUED.value,
                messages.c.status == Status.SENDING.value,
            ),
            messages.c.next_attempt_at <= now,
        )
        .values(status=Status.SENDING.value, next_attempt_at=lease, updated_at=now)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def due(session: AsyncSession, now: datetime, limit: int = 20) -> list[str]:
    """Messages waiting for a (first or next) try, and those whose sender's lease ran out."""
    rows = await session.execute(
        select(messages.c.id)
        .where(
            messages.c.status.in_((Status.QUEUED.value, Status.SENDING.value)),
            messages.c.next_attempt_at <= now,
        )
        .order_by(messages.c.next_attempt_at)
        .limit(limit)
    )
    return [r.id for r in rows]


async def save(session: AsyncSession, message_id: str, **values: Any) -> None:
    if isinstance(values.get("status"), Status):
        values["status"] = values["status"].value
    await session.execute(
        update(messages).where(messages.c.id == message_id).values(updated_at=utcnow(), **values)
    )


async def recent(
    session: AsyncSession, *, tenant_id: str | None, provider: str | None, limit: int
) -> list[Row]:
    query = select(messages)
    if tenant_id is not None:
        query = query.where(messages.c.tenant_id == tenant_id)
    if provider is not None:
        query = query.where(messages.c.provider == provider)
    query = query.order_by(messages.c.created_at.desc()).limit(limit)
    return [_row(r) for r in (await session.execute(query)).all()]


async def settings_of(session: AsyncSession, tenant_id: str) -> tuple[dict[str, Any], str | None]:
    found = (
        await session.execute(select(settings).where(settings.c.tenant_id == tenant_id))
    ).first()
    if found is None:
        return {}, None
    return json.loads(found.config), found.secrets


async def set_settings(
    session: AsyncSession, tenant_id: str, config: dict[str, Any], secrets: str | None
) -> None:
    values = {"config": json.dumps(config), "secrets": secrets, "updated_at": utcnow()}
    changed = await session.execute(
        update(settings).where(settings.c.tenant_id == tenant_id).values(**values)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(settings.insert().values(tenant_id=tenant_id, **values))
