"""The transactional outbox: a message is published if, and only if, its transaction commits.

Services add messages to the outbox in the same transaction as their state
change; the relay publishes committed rows in order and marks them. A relay
that dies between publishing and marking publishes again after restart; the
bus drops the repeat by message id, so each message is delivered once.

Fast path: a running relay is told by `Database.transaction()` which messages a
transaction added, right after it commits, and publishes them at once from
memory; their rows are marked by the next sweep (every poll interval), which
also publishes whatever the fast path missed (other processes' rows, a crash
between commit and publish, messages added inside a savepoint). So a message
costs no extra database round trip on its way out, and nothing changes about
what is published or when it may be repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import timedelta
from typing import Any

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
from transact.kernel.db.database import COMMITTED_MESSAGES, Database, metadata

log = structlog.get_logger("transact.outbox")

STOP_GRACE = 5.0  # seconds a stopping relay may spend finishing its round

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

_INSERT = outbox.insert()


async def add_to_outbox(session: AsyncSession, *messages: Message) -> None:
    """Queue messages for publication when (and only if) `session` commits."""
    if not messages:
        return
    now = utcnow()
    rows = [
        {"message_id": m.id, "topic": m.topic, "payload": m.encode(), "created_at": now}
        for m in messages
    ]
    # One message (the usual case) as one row: a repeated plain statement, which
    # PostgreSQL runs directly (see pg_direct); several as one executemany.
    await session.execute(_INSERT, rows[0] if len(rows) == 1 else rows)
    # A savepoint may still roll back alone: its messages wait for the sweep.
    if not session.in_nested_transaction():
        session.info.setdefault(COMMITTED_MESSAGES, []).extend(messages)


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
        self._fast: list[Message] = []  # committed, handed over by the commit hook
        self._sent: set[str] = set()  # published from memory, rows not marked yet
        self._handed = False  # the hook handed something over since the last sweep
        self._sweep_due = True
        self._last_sweep = 0.0
        self._stopping = False

    def notify(self) -> None:
        """Relay now rather than at the next poll (call after a commit that added messages)."""
        if not self._handed:
            self._sweep_due = True  # a commit the hook did not see: sweep now
        self._wakeup.set()

    def committed(self, messages: list[Any]) -> None:
        """The commit hook: messages of a transaction that just committed."""
        self._fast.extend(messages)
        self._handed = True
        self._wakeup.set()

    async def publish_committed(self) -> int:
        """Publish what the commit hook handed over; the sweep marks their rows."""
        published = 0
        while self._fast:
            message = self._fast.pop(0)
            # On failure the row stays unpublished and the sweep sends it.
            await self._bus.publish(message)
            self._sent.add(message.id)
            published += 1
        return published

    async def relay_once(self) -> int:
        """Publish one batch of committed, unpublished messages; returns how many."""
        sent_before = set(self._sent)
        async with self._db.transaction() as session:
            rows = (
                await session.execute(
                    select(outbox.c.seq, outbox.c.message_id, outbox.c.payload)
                    .where(outbox.c.published_at.is_(None))
                    .order_by(outbox.c.seq)
                    .limit(self._batch_size)
                    # Several relays (one per process) share the rows without waiting.
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                if row.message_id in self._sent:
                    self._sent.discard(row.message_id)  # sent from memory already
                    continue
                await self._bus.publish(Message.decode(row.payload))
            if rows:
                await session.execute(
                    update(outbox)
                    .where(outbox.c.seq.in_([r.seq for r in rows]))
                    .values(published_at=utcnow())
                )
        if len(rows) < self._batch_size:
            # Every unpublished row was seen: those sent from memory and not among
            # them were marked by another relay.
            self._sent -= sent_before
        return len(rows)

    async def prune(self) -> int:
        cutoff = utcnow() - self._retention
        async with self._db.transaction() as session:
            result = await session.execute(delete(outbox).where(outbox.c.published_at < cutoff))
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def run(self) -> None:
        loops = 0
        while not self._stopping:
            self._wakeup.clear()  # before relaying, so a notify() during it is not lost
            try:
                await self.publish_committed()
                now = time.monotonic()
                if self._sweep_due or now - self._last_sweep >= self._poll_interval:
                    self._sweep_due, self._handed, self._last_sweep = False, False, now
                    while await self.relay_once() == self._batch_size:
                        pass
                    loops += 1
                    if loops % 3000 == 0:
                        await self.prune()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.error("outbox.relay_failed", error=type(exc).__name__, detail=str(exc)[:200])
            if self._stopping:
                break
            wait = max(0.0, self._last_sweep + self._poll_interval - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)
        with contextlib.suppress(Exception):
            await self.publish_committed()  # what was committed last goes out before we stop

    async def start(self) -> None:
        if self._task is None:
            self._db.after_commit = self.committed
            self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Finish the round in progress (cut short after STOP_GRACE seconds) and stop.

        Not a bare cancel: a sweep cancelled mid-way can leave a database connection
        being opened while the process winds down."""
        if self._db.after_commit == self.committed:
            self._db.after_commit = None
        if self._task is not None:
            self._stopping = True
            self._wakeup.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE)
            except TimeoutError:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            self._stopping = False
