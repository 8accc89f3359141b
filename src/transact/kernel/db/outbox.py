"""The transactional outbox: a message is published if, and only if, its transaction commits.

Services add messages to the outbox in the same transaction as their state
change; the relay publishes committed rows in order and marks them. A relay
that dies between publishing and marking publishes again after restart; the
bus drops the repeat by message id, so each message is delivered once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import Message, utcnow
from transact.kernel.bus import Bus
from transact.kernel.db.database import Database, metadata

log = structlog.get_logger("transact.outbox")

outbox = Table(
    "kernel_outbox",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("topic", String(128), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("published_at", DateTime(timezone=True), nullable=True, index=True),
)


async def add_to_outbox(session: AsyncSession, *messages: Message) -> None:
    """Queue messages for publication when (and only if) `session` commits."""
    if not messages:
        return
    now = utcnow()
    await session.execute(
        outbox.insert(),
        [
            {"message_id": m.id, "topic": m.topic, "payload": m.encode(), "created_at": now}
            for m in messages
        ],
    )


class OutboxRelay:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        *,
        poll_interval: float = 0.2,
        batch_size: int = 100,
        retention: timedelta = timedelta(days=1),
    ) -> None:
        self._db = db
        self._bus = bus
        self._poll_interval = poll_interval
        self._batch_size = batch_size
        self._retention = retention
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        """Relay now rather than at the next poll (call after a commit that added messages)."""
        self._wakeup.set()

    async def relay_once(self) -> int:
        """Publish one batch of committed, unpublished messages; returns how many."""
        async with self._db.transaction() as session:
            rows = (
                await session.execute(
                    select(outbox.c.seq, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(self._batch_size)
                    # Several relays (one per process) share the rows without waiting.
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await self._bus.publish(Message.decode(row.payload))
            if rows:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.seq.in_([r.seq for r in rows]))
                    .values(published_at=utcnow())
                )
        return len(rows)

    async def prune(self) -> int:
        cutoff = utcnow() - self._retention
        async with self._db.transaction() as session:
            result = await session.execute(delete(outbox).where(outbox.c.published_at < cutoff))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def run(self) -> None:
        loops = 0
        while True:
            self._wakeup.clear()  # before relaying, so a notify() during it is not lost
            try:
                while await self.relay_once() == self._batch_size:
                    pass
                loops += 1
                if loops % 3000 == 0:
                    await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("outbox.relay_failed", error=type(exc).__name__, detail=str(exc)[:200])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_interval)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
