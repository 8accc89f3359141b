"""The outbox relay's fast path: committed messages go out from memory at once, on every
engine and bus; the sweep marks their rows later and sends whatever the fast path missed."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.contract.conftest import FAST, BusFactory
from tests.contract.messages import Ping
from tests.waiting import eventually
from transact.contracts import Message
from transact.kernel.db import Database, OutboxRelay, add_to_outbox
from transact.kernel.db.outbox import outbox

SLOW_SWEEP = 30.0  # longer than any test: only the fast path can deliver in time


class CountingBus:
    """Counts what the relay publishes, by message id (the bus itself drops repeats)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.published: Counter[str] = Counter()

    async def publish(self, message: Message) -> bool:
        self.published[message.id] += 1
        return bool(await self.inner.publish(message))


def unique(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))


async def unpublished(database: Database) -> int:
    async with database.transaction() as session:
        count = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
    return int(count or 0)


async def test_a_committed_message_is_published_without_waiting_for_a_sweep(
    database: Database, make_bus: BusFactory
) -> None:
    bus = await make_bus(FAST)
    received: list[int] = []

    async def consumer(message: Message) -> None:
        assert isinstance(message, Ping)
        received.append(message.n)

    bus.subscribe("test.ping", "reader", consumer)
    await bus.start()
    counting = CountingBus(bus)
    relay = OutboxRelay(database, counting, poll_interval=SLOW_SWEEP)  # type: ignore[arg-type]
    await relay.start()
    try:
        await asyncio.sleep(0.05)  # the first sweep (at start) is over
        for n in range(3):
            async with database.transaction() as session:
                await add_to_outbox(session, Ping(tenant_id="t", n=n))
        with pytest.raises(RuntimeError):
            async with database.transaction() as session:
                await add_to_outbox(session, Ping(tenant_id="t", n=99))
                raise RuntimeError("rolled back")
        async with database.transaction() as session:
            # Inside a savepoint that rolls back alone: never published.
            with pytest.raises(RuntimeError):
                async with session.begin_nested():
                    await add_to_outbox(session, Ping(tenant_id="t", n=98))
                    raise RuntimeError("savepoint rolled back")
        await eventually(lambda: len(received) >= 3, within=10)
        await asyncio.sleep(0.2)
        # (A loaded Redis consumer may see a message twice: the bus is at-least-once.)
        assert unique(received) == [0, 1, 2], "in commit order, nothing rolled back"
        assert await unpublished(database) == 3, "marked by the next sweep, not before"
        assert await relay.relay_once() == 3  # the sweep: marks, sends nothing again
        assert sorted(counting.published.values()) == [1, 1, 1], "each published once"
        assert await unpublished(database) == 0
    finally:
        await relay.stop()
    assert database.after_commit is None, "a stopped relay takes no more messages"


async def test_a_message_added_in_a_kept_savepoint_goes_out_with_the_sweep(
    database: Database, make_bus: BusFactory
) -> None:
    bus = await make_bus(FAST)
    received: list[int] = []

    async def consumer(message: Message) -> None:
        assert isinstance(message, Ping)
        received.append(message.n)

    bus.subscribe("test.ping", "reader", consumer)
    await bus.start()
    relay = OutboxRelay(database, bus, poll_interval=0.1)
    await relay.start()
    try:
        async with database.transaction() as session, session.begin_nested():
            await add_to_outbox(session, Ping(tenant_id="t", n=7))
        relay.notify()
        await eventually(lambda: unique(received) == [7], within=10)
        await eventually(lambda: relay._sent == set(), within=10)
    finally:
        await relay.stop()
    assert await unpublished(database) == 0


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)
async def test_concurrent_transactions_in_one_process_all_commit(database: Database) -> None:
    """SQLite has one writer: this process's transactions queue for it in turn, each
    whole (BEGIN IMMEDIATE), none failing with "database is locked"."""
    from sqlalchemy import text

    async with database.transaction() as session:
        await session.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
        await session.execute(text("INSERT INTO counter VALUES (0)"))

    async def bump() -> None:
        async with database.transaction() as session:
            n = await session.scalar(text("SELECT n FROM counter"))
            await asyncio.sleep(0)  # let the others try to get in between
            await session.execute(text("UPDATE counter SET n = :n"), {"n": int(n or 0) + 1})

    await asyncio.gather(*(bump() for _ in range(60)))
    async with database.transaction() as session:
        assert await session.scalar(text("SELECT n FROM counter")) == 60
