"""The audit chain on every database engine: appends chain, and any tampering shows."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, select, update

from transact.kernel import audit
from transact.kernel.audit import audit_log
from transact.kernel.db import Database


async def write(database: Database, n: int, tenant: str = "t1") -> None:
    for i in range(n):
        async with database.transaction() as session:
            await audit.append(
                session,
                action="test.action",
                actor="user:u1",
                tenant_id=tenant,
                target=f"thing-{i}",
                details={"i": i},
            )


async def verify(database: Database) -> audit.ChainReport:
    async with database.transaction() as session:
        return await audit.verify_chain(session)


async def test_an_untouched_chain_verifies(database: Database) -> None:
    assert (await verify(database)).ok
    await write(database, 5)
    report = await verify(database)
    assert report.ok
    assert report.records == 5


async def test_concurrent_appends_keep_one_chain(database: Database) -> None:
    async def one(i: int) -> None:
        async with database.transaction() as session:
            await audit.append(session, action="test.concurrent", actor="system", target=str(i))

    await asyncio.gather(*(one(i) for i in range(20)))
    report = await verify(database)
    assert report.ok, report
    assert report.records == 20


async def test_an_edited_record_breaks_the_chain_there(database: Database) -> None:
    await write(database, 5)
    async with database.transaction() as session:
        third = (
            await session.execute(
                select(audit_log.c.seq).order_by(audit_log.c.seq).offset(2).limit(1)
            )
        ).scalar_one()
        await session.execute(
            update(audit_log).where(audit_log.c.seq == third).values(outcome="failure")
        )
    report = await verify(database)
    assert not report.ok
    assert report.broken_at == third
    assert "changed" in report.reason


async def test_a_deleted_record_breaks_the_chain(database: Database) -> None:
    await write(database, 5)
    async with database.transaction() as session:
        second = (
            await session.execute(
                select(audit_log.c.seq).order_by(audit_log.c.seq).offset(1).limit(1)
            )
        ).scalar_one()
        await session.execute(delete(audit_log).where(audit_log.c.seq == second))
    report = await verify(database)
    assert not report.ok
    assert "missing" in report.reason


async def test_a_recomputed_record_still_breaks_its_successor(database: Database) -> None:
    """Even a forger who rehashes one record cannot hide it without rewriting the rest."""
    await write(database, 3)
    async with database.transaction() as session:
        rows = (await session.execute(select(audit_log).order_by(audit_log.c.seq))).all()
        first = rows[0]
        record = {f: getattr(first, f) for f in audit._FIELDS}
        record["outcome"] = "failure"
        await session.execute(
            update(audit_log)
            .where(audit_log.c.seq == first.seq)
            .values(outcome="failure", hash=audit.record_hash(first.prev_hash, record))
        )
    report = await verify(database)
    assert report.broken_at == rows[1].seq


async def test_details_never_keep_a_card_number(database: Database) -> None:
    async with database.transaction() as session:
        await audit.append(
            session,
            action="test.careless",
            actor="system",
            details={"note": "card 4111 1111 1111 1111"},
        )
        records = await audit.records_for(session, "", limit=5)
        rows = (await session.execute(select(audit_log.c.details))).scalars().all()
    assert records == []
    assert all("4111 1111 1111 1111" not in r for r in rows)
