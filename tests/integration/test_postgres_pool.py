"""Pooled PostgreSQL connections are checked as they are handed out, cheaply: a dead one
is replaced before any statement uses it, and a busy pool sends no ping at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text

from transact.kernel.db import Database
from transact.kernel.db import database as database_module

pytestmark = pytest.mark.postgres


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    yield database
    await database.close()


@pytest.fixture
def pings(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every ping the pool sends, recorded; it still goes to the server."""
    sent: list[Any] = []
    real = db.engine.dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        sent.append(dbapi_conn)
        return real(dbapi_conn)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    return sent


async def backend_pid(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(text("SELECT pg_backend_pid()")))


async def test_transactions_one_after_another_send_no_ping(db: Database, pings: list[Any]) -> None:
    first = await backend_pid(db)
    for _ in range(20):
        assert await backend_pid(db) == first, "the pooled connection is reused"
    assert pings == []


async def test_a_connection_left_idle_is_pinged_before_it_is_used(
    db: Database, pings: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "PING_IF_IDLE_FOR", 0.05)
    first = await backend_pid(db)
    await asyncio.sleep(0.1)
    assert await backend_pid(db) == first
    assert len(pings) == 1


async def test_a_backend_the_server_ended_is_replaced_before_a_statement_fails(
    db: Database, postgres_url: str, pings: list[Any]
) -> None:
    doomed = await backend_pid(db)
    admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", doomed)
    finally:
        await admin.close()
    await asyncio.sleep(0.2)  # the server's goodbye reaches the pooled socket

    replaced = await backend_pid(db)
    assert replaced != doomed
    assert pings == [], "a closed socket is seen without a round trip"


async def test_a_connection_that_fails_its_ping_is_replaced(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "PING_IF_IDLE_FOR", 0.0)
    first = await backend_pid(db)
    real = db.engine.dialect.do_ping
    failed: list[Any] = []

    def unanswered_once(dbapi_conn: Any) -> bool:
        if not failed:
            failed.append(dbapi_conn)
            raise ConnectionResetError("no answer")  # as a silently dropped network would
        return real(dbapi_conn)

    monkeypatch.setattr(db.engine.dialect, "do_ping", unanswered_once)
    assert await backend_pid(db) != first, "the transaction ran on a new connection"
    assert len(failed) == 1


@pytest.fixture
def checkouts(db: Database) -> list[Any]:
    """Every connection the pool hands out."""
    handed: list[Any] = []
    event.listen(db.engine.sync_engine, "checkout", lambda conn, *_: handed.append(conn))
    return handed


async def test_a_connection_is_kept_from_one_transaction_to_the_next(
    db: Database, checkouts: list[Any]
) -> None:
    first = await backend_pid(db)
    for _ in range(20):
        assert await backend_pid(db) == first
    assert len(checkouts) == 1, "the pool was asked once"


async def test_a_few_connections_are_kept_and_the_rest_go_back_to_the_pool(
    db: Database,
) -> None:
    together = database_module.KEEP_CONNECTIONS + 3
    entered = asyncio.Event()
    inside = 0

    async def one() -> None:
        nonlocal inside
        async with db.transaction() as session:
            await session.execute(text("SELECT 1"))
            inside += 1
            if inside == together:
                entered.set()
            await entered.wait()  # all open at once, so each has its own connection

    await asyncio.gather(*(one() for _ in range(together)))
    assert db.engine.pool.checkedout() == database_module.KEEP_CONNECTIONS  # type: ignore[attr-defined]
    await db.close()
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_kept_connection_left_by_a_failed_transaction_is_clean(db: Database) -> None:
    first = await backend_pid(db)
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(text("CREATE TEMP TABLE scratch (n int)"))
            raise RuntimeError("the handler failed")
    async with db.transaction() as session:
        assert int(await session.scalar(text("SELECT pg_backend_pid()"))) == first
        gone = await session.scalar(text("SELECT to_regclass('pg_temp.scratch') IS NULL"))
    assert gone, "the failed transaction was rolled back before the connection was kept"
