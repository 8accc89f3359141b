"""The Agent UI's one table: each tenant's UI settings (start menu, frame origins)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Column, DateTime, String, Table, Text, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import metadata

settings = Table(
    "agent_ui_settings",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("config", Text, nullable=False),  # domain.UiSettings.to_dict()
    Column("updated_at", DateTime(timezone=True), nullable=False),
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
