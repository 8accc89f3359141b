"""The database contract: migrations, outbox and inbox behave the same on every engine."""

from __future__ import annotations

import asyncio

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from tests.contract.conftest import FAST, BusFactory
from tests.contract.messages import Ping
from tests.waiting import eventually
from transact.contracts import Message
from transact.kernel.db import Database, OutboxRelay, add_to_outbox, first_time, handle_once
from transact.kernel.db.migrations import alembic_config, current_revision
from transact.kernel.db.outbox import outbox
from transact.runtime import all_metadata


async def test_migrations_build_exactly_the_declared_schema(database: Database) -> None:
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, all_metadata())

    async with database.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        assert await conn.run_sync(current_revision) is not None


async def test_migrating_again_changes_nothing(database: Database) -> None:
    await database.migrate()
    await database.migrate()
    async with database.engine.connect() as conn:
        revision = await conn.run_sync(current_revision)
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_concurrent_migrations_do_not_collide(database: Database) -> None:
    other = Database(database.url)
    try:
        await asyncio.gather(database.migrate(), other.migrate())
    finally:
        await other.close()


async def test_transaction_rolls_back_on_error(database: Database) -> None:
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await add_to_outbox(session, Ping(tenant_id="t"))
            raise RuntimeError("handler failed")
    async with database.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(outbox))
    assert count == 0


async def test_inbox_admits_a_message_id_once_per_consumer(database: Database) -> None:
    async with database.transaction() as session:
        assert await first_time(session, "capture", "m1") is True
        assert await first_time(session, "capture", "m1") is False
        assert await first_time(session, "psp", "m1") is True
    async with database.transaction() as session:
        assert await first_time(session, "capture", "m1") is False


async def test_handle_once_applies_a_redelivered_message_once(database: Database) -> None:
    applied: list[str] = []

    async def effect(session, message: Message) -> None:  # type: ignore[no-untyped-def]
        await session.execute(text("SELECT 1"))
        applied.append(message.id)

    handler = handle_once(database, "test", effect)
    message = Ping(tenant_id="t")
    await handler(message)
    await handler(message)
    await asyncio.gather(handler(Ping(tenant_id="t", n=2)), handler(message))
    assert applied.count(message.id) == 1
    assert len(applied) == 2


async def test_handle_once_forgets_a_message_whose_handler_failed(database: Database) -> None:
    calls: list[int] = []

    async def fails_first(session, message: Message) -> None:  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("transient")

    handler = handle_once(database, "test", fails_first)
    message = Ping(tenant_id="t")
    with pytest.raises(RuntimeError):
        await handler(message)
    await handler(message)
    assert len(calls) == 2, "the failed attempt did not mark the message as handled"


class CrashAfterPublish:
    """A bus that publishes, then the relay 'dies' before it can mark the row."""

    def __init__(self, inner):  # type: ignore[no-untyped-def]
        self.inner = inner

    async def publish(self, message: Message) -> bool:
        await self.inner.publish(message)
        raise ConnectionResetError("relay process killed")


async def test_outbox_publishes_committed_messages_once_across_a_relay_restart(
    database: Database, make_bus: BusFactory
) -> None:
    bus = await make_bus(FAST)
    received: list[str] = []

    async def consumer(message: Message) -> None:
        received.append(message.id)

    bus.subscribe("test.ping", "reader", consumer)
    await bus.start()

    committed = [Ping(tenant_id="t", n=n) for n in range(3)]
    async with database.transaction() as session:
        await add_to_outbox(session, *committed)
    with pytest.raises(RuntimeError):
        async with database.transaction() as session:
            await add_to_outbox(session, Ping(tenant_id="t", n=99))
            raise RuntimeError("never committed")

    dying = OutboxRelay(database, CrashAfterPublish(bus))  # type: ignore[arg-type]
    with pytest.raises(ConnectionResetError):
        await dying.relay_once()

    restarted = OutboxRelay(database, bus, poll_interval=0.05)
    await restarted.start()
    try:
        await eventually(lambda: len(received) >= 3)
        await asyncio.sleep(0.3)
    finally:
        await restarted.stop()

    assert sorted(received) == sorted(m.id for m in committed), "each committed message once"
    async with database.transaction() as session:
        pending = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
    assert pending == 0


async def test_outbox_relay_keeps_commit_order(database: Database, make_bus: BusFactory) -> None:
    bus = await make_bus(FAST)
    received: list[int] = []

    async def consumer(message: Message) -> None:
        assert isinstance(message, Ping)
        received.append(message.n)

    bus.subscribe("test.ping", "reader", consumer)
    await bus.start()
    for n in range(5):
        async with database.transaction() as session:
            await add_to_outbox(session, Ping(tenant_id="t", n=n))
    relay = OutboxRelay(database, bus)
    assert await relay.relay_once() == 5
    assert await relay.relay_once() == 0
    await eventually(lambda: len(received) >= 5)
    assert received == [0, 1, 2, 3, 4]


async def test_two_relays_share_the_outbox_without_duplicates(
    database: Database, make_bus: BusFactory
) -> None:
    bus = await make_bus(FAST)
    received: list[str] = []

    async def consumer(message: Message) -> None:
        received.append(message.id)

    bus.subscribe("test.ping", "reader", consumer)
    await bus.start()
    sent = [Ping(tenant_id="t", n=n) for n in range(40)]
    async with database.transaction() as session:
        await add_to_outbox(session, *sent)
    first, second = (
        OutboxRelay(database, bus, batch_size=7),
        OutboxRelay(database, bus, batch_size=7),
    )

    async def drain(relay: OutboxRelay) -> None:
        while await relay.relay_once():
            pass

    await asyncio.gather(drain(first), drain(second))
    await eventually(lambda: len(received) >= 40)
    await asyncio.sleep(0.2)
    assert sorted(received) == sorted(m.id for m in sent)
