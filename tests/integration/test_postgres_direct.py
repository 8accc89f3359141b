"""PostgreSQL sessions run a repeated plain statement straight on asyncpg (`pg_direct`):
what it writes, reads and raises is what SQLAlchemy's own path gives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from transact.kernel.db import Database

pytestmark = pytest.mark.postgres

things = Table(
    "direct_things",
    MetaData(),
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("n", BigInteger, nullable=False, default=7),
    Column("flag", Boolean, nullable=False, default=False),
    Column("at", DateTime(timezone=True), nullable=True),
    Column("blob", LargeBinary, nullable=True),
)
INSERT = things.insert()
BY_NAME = select(things).where(things.c.name == bindparam("_name"))
COUNT = select(func.count()).select_from(things)
RENAME = update(things).where(things.c.name == bindparam("_name"))
REMOVE = delete(things).where(things.c.n >= bindparam("_n"))
LOCK = text("SELECT pg_try_advisory_xact_lock(:k) AS got")
AT = datetime(2026, 11, 27, 16, 30, 5, 123456, tzinfo=UTC)


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    database = Database(postgres_url)
    async with database.engine.begin() as conn:
        await conn.run_sync(things.metadata.create_all)
    yield database
    await database.close()


@pytest.fixture
def through_sqlalchemy(db: Database) -> list[str]:
    """The statements that went through SQLAlchemy's cursor (the direct path does not)."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement.split()[0])

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return seen


async def add(db: Database, name: str, **values: Any) -> None:
    async with db.transaction() as session:
        await session.execute(INSERT, {"name": name, **values})


async def test_from_its_second_run_a_statement_runs_directly(
    db: Database, through_sqlalchemy: list[str]
) -> None:
    for name in ("a", "b", "c"):
        await add(db, name, at=AT, blob=b"\x00\xff")
    assert through_sqlalchemy == ["INSERT"], "only the first run took SQLAlchemy's path"

    async with db.transaction() as session:
        first = (await session.execute(BY_NAME, {"_name": "a"})).first()
        second = (await session.execute(BY_NAME, {"_name": "b"})).first()
        assert await session.scalar(COUNT) == 3
        assert await session.scalar(COUNT) == 3
    assert through_sqlalchemy == ["INSERT", "SELECT", "SELECT"]
    assert first is not None
    assert second is not None
    # The direct row reads as SQLAlchemy's does: by name, by position, as a mapping.
    assert (second.name, second.n, second.flag, second.at, second.blob) == (
        "b",
        7,
        False,
        AT,
        b"\x00\xff",
    )
    assert tuple(second)[2:] == tuple(first)[2:]
    assert second[1] == "b"
    assert first._mapping.keys() == second._mapping.keys()


async def test_column_defaults_and_row_counts_are_sqlalchemys(db: Database) -> None:
    for name in ("a", "b", "c", "d"):
        await add(db, name, n=10 if name > "b" else 1)
    async with db.transaction() as session:
        for _ in range(2):  # the second run is direct
            renamed = await session.execute(RENAME, {"_name": "a", "flag": True})
        assert renamed.rowcount == 1
        missing = await session.execute(RENAME, {"_name": "zz", "flag": True})
        assert missing.rowcount == 0
        rows = (await session.execute(select(things.c.name, things.c.n, things.c.flag))).all()
    assert sorted(rows) == [("a", 1, True), ("b", 1, False), ("c", 10, False), ("d", 10, False)]
    for _ in range(2):
        async with db.transaction() as session:
            gone = await session.execute(REMOVE, {"_n": 10})
    assert gone.rowcount == 0  # the first run removed both


async def test_a_direct_statement_opens_the_transaction_that_a_failure_rolls_back(
    db: Database,
) -> None:
    await add(db, "warm-up")
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(INSERT, {"name": "lost"})  # direct, and the first statement
            raise RuntimeError("the handler failed")
    async with db.transaction() as session:
        names = (await session.execute(select(things.c.name))).scalars().all()
    assert names == ["warm-up"]


async def test_a_constraint_violation_is_sqlalchemys_integrity_error(db: Database) -> None:
    await add(db, "a")
    await add(db, "b")
    with pytest.raises(IntegrityError):
        await add(db, "a")
    async with db.transaction() as session:
        with pytest.raises(IntegrityError):
            async with session.begin_nested():
                await session.execute(INSERT, {"name": "b"})
        await session.execute(INSERT, {"name": "c"})  # the savepoint kept the rest
    async with db.transaction() as session:
        assert await session.scalar(COUNT) == 3


async def test_text_reads_come_back_by_name(db: Database, through_sqlalchemy: list[str]) -> None:
    for _ in range(3):
        async with db.transaction() as session:
            row = (await session.execute(LOCK, {"k": 42})).first()
            assert row is not None
            assert row.got is True
    assert through_sqlalchemy == ["SELECT"]


async def test_returning_and_fresh_statements_keep_sqlalchemys_path(
    db: Database, through_sqlalchemy: list[str]
) -> None:
    returning = INSERT.returning(things.c.id)
    ids = []
    for name in ("a", "b", "c"):
        async with db.transaction() as session:
            ids.append(await session.scalar(returning, {"name": name}))
            await session.execute(select(things).where(things.c.name == name))
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert through_sqlalchemy == ["INSERT", "SELECT"] * 3


async def test_with_statement_logging_on_every_statement_keeps_sqlalchemys_path(
    db: Database, through_sqlalchemy: list[str]
) -> None:
    db.engine.sync_engine.echo = True  # what echo logs, the direct path would not
    try:
        for name in ("a", "b", "c"):
            await add(db, name)
    finally:
        db.engine.sync_engine.echo = False
    assert through_sqlalchemy == ["INSERT"] * 3
