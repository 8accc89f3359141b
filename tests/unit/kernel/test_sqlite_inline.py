"""SQLite run on the event loop: no worker thread, and a locked database never blocks
the loop (it is waited for asynchronously, then reported as SQLite reports it)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from transact.kernel.db import Database, sqlite_inline


@pytest.fixture
async def url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}"
    setup = Database(url)
    async with setup.transaction() as session:
        await session.execute(text("CREATE TABLE t (n INTEGER)"))
    await setup.close()
    return url


async def _count(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(text("SELECT count(*) FROM t")) or 0)


async def test_the_url_users_know_runs_the_inline_driver_without_a_thread(url: str) -> None:
    db = Database(url)
    try:
        assert db.engine.dialect.driver == sqlite_inline.DRIVER
        threads = threading.active_count()
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
        assert await _count(db) == 1
        assert threading.active_count() == threads
    finally:
        await db.close()


async def test_a_database_locked_elsewhere_is_waited_for_while_the_loop_runs_on(
    url: str,
) -> None:
    # Two engines on one file stand for two processes: the second's write must wait
    # for the first's transaction, which can only finish if the loop is not blocked.
    holder, waiter = Database(url), Database(url)
    ticks = 0
    release = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not release.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    async def hold_the_lock() -> None:
        async with holder.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            await release.wait()

    try:
        holding = asyncio.create_task(hold_the_lock())
        await asyncio.sleep(0.05)
        ticking = asyncio.create_task(ticker())

        async def write_then_report() -> int:
            async with waiter.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
            return ticks

        writing = asyncio.create_task(write_then_report())
        await asyncio.sleep(0.3)
        assert not writing.done()  # still waiting for the lock...
        assert ticks >= 10  # ...while the loop goes on
        release.set()
        await holding
        await writing
        await ticking
        assert await _count(waiter) == 2
    finally:
        release.set()
        await holder.close()
        await waiter.close()


async def test_a_lock_never_released_is_reported_as_sqlite_reports_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_SECONDS", 0.2)
    holder, waiter = Database(url), Database(url)
    release = asyncio.Event()

    async def hold_the_lock() -> None:
        async with holder.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            await release.wait()

    holding = asyncio.create_task(hold_the_lock())
    try:
        await asyncio.sleep(0.05)
        with pytest.raises(OperationalError, match="database is locked"):
            async with waiter.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
    finally:
        release.set()
        await holding
        await holder.close()
        await waiter.close()
    # Nothing of the refused transaction was kept; the holder's row was.
    check = Database(url)
    try:
        assert await _count(check) == 1
    finally:
        await check.close()


async def test_rows_survive_a_large_read_and_many_parameters(url: str) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (:n)"), [{"n": i} for i in range(500)])
        async with db.transaction() as session:
            rows = (await session.execute(text("SELECT n FROM t ORDER BY n"))).all()
        assert [r.n for r in rows] == list(range(500))
    finally:
        await db.close()


async def test_a_transactions_statements_run_without_a_greenlet_each(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.ext.asyncio import session as async_session

    spawned: list[str] = []
    real = async_session.greenlet_spawn

    async def counted(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        spawned.append(getattr(fn, "__name__", str(fn)))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(async_session, "greenlet_spawn", counted)
    db = Database(url)
    try:
        async with db.transaction() as session:
            assert isinstance(session, sqlite_inline.InlineSession)
            for n in range(10):
                await session.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
            total = await session.scalar(text("SELECT sum(n) FROM t"))
            assert total == 45
        # The connection with its BEGIN IMMEDIATE, the commit and the close: not one
        # hand-off per statement.
        assert len(spawned) <= 4, spawned
        assert await _count(db) == 10
    finally:
        await db.close()


async def test_a_savepoint_rolls_back_alone_and_a_released_one_is_kept(url: str) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(RuntimeError):
                async with session.begin_nested():
                    assert session.in_nested_transaction()
                    await session.execute(text("INSERT INTO t VALUES (2)"))
                    raise RuntimeError("only this part goes")
            assert not session.in_nested_transaction()
            async with session.begin_nested():
                await session.execute(text("INSERT INTO t VALUES (3)"))
        async with db.transaction() as session:
            kept = (await session.execute(text("SELECT n FROM t ORDER BY n"))).scalars().all()
        assert kept == [1, 3]
    finally:
        await db.close()


async def test_the_write_turns_connection_is_kept_and_a_failed_transaction_leaves_it_clean(
    url: str,
) -> None:
    db = Database(url)
    try:
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            first = session.core
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t VALUES (2)"))
                raise RuntimeError("rolled back")
        async with db.transaction() as session:
            assert session.core is first  # no check-out and check-in per transaction
            await session.execute(text("INSERT INTO t VALUES (3)"))
        assert await _count(db) == 2
    finally:
        await db.close()
