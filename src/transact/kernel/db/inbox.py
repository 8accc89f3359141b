"""The inbox: at-least-once delivery made effectively-once for a handler.

A handler records the message id in the same transaction as its effects, so
a redelivered message finds its id already there and changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import Column, DateTime, String, Table
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import Message, utcnow
from transact.kernel.db.database import Database, metadata, upsert_insert

inbox = Table(
    "kernel_inbox",
    metadata,
    Column("consumer", String(128), primary_key=True),
    Column("message_id", String(64), primary_key=True),
    Column("processed_at", DateTime(timezone=True), nullable=False),
)

M = TypeVar("M", bound=Message)


async def first_time(session: AsyncSession, consumer: str, message_id: str) -> bool:
    """Record that `consumer` handled `message_id`; False when it already had."""
    statement = (
        upsert_insert(session, inbox)
        .values(consumer=consumer, message_id=message_id, processed_at=utcnow())
        .on_conflict_do_nothing(index_elements=["consumer", "message_id"])
    )
    result = await session.execute(statement)
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def handle_once(
    db: Database, consumer: str, handler: Callable[[AsyncSession, M], Awaitable[None]]
) -> Callable[[M], Awaitable[None]]:
    """Wrap a handler so its effects and its inbox mark commit together, once per message."""

    async def wrapped(message: M) -> None:
        async with db.transaction() as session:
            if await first_time(session, consumer, message.id):
                await handler(session, message)

    return wrapped
