"""Notifications' own tables: who holds which call, capture and payment, and the numbered
log of pushed events per stream that a reconnecting client resumes from.

Both live in the database, not in one process, so every instance routes an event the
same way and any instance can replay what another pushed. The log holds only what
`domain.view` lets a browser see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from transact.kernel.db import metadata
from transact.notifications.domain import (
    MAX_AGENT_ID,
    MAX_REF,
    MAX_STREAM,
    MAX_TENANT_ID,
    Claim,
)

owners = Table(
    "notifications_owners",
    metadata,
    Column("tenant_id", String(MAX_TENANT_ID), primary_key=True),
    Column("kind", String(16), primary_key=True),
    Column("ref", String(MAX_REF), primary_key=True),
    Column("agent_id", String(MAX_AGENT_ID), nullable=True),  # None: known to be nobody's
    # When the event that said so happened: an older claim never overwrites a newer one.
    Column("since", DateTime(timezone=True), nullable=False),
    Index("ix_notifications_owners_since", "since"),
)

streams = Table(
    "notifications_streams",
    metadata,
    Column("stream", String(MAX_STREAM), primary_key=True),
    # The last id given out; its row is the lock that keeps a stream's ids in commit order.
    Column("last_seq", BigInteger, nullable=False),
)

events = Table(
    "notifications_events",
    metadata,
    Column("stream", String(MAX_STREAM), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("message_id", String(64), nullable=False),
    Column("topic", String(64), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # One message is one id per stream, however many instances append it.
    UniqueConstraint("stream", "message_id"),
    Index("ix_notifications_events_created_at", "created_at"),
)


@dataclass(frozen=True)
class Entry:
    seq: int
    topic: str
    body: str


def _insert(session: AsyncSession, table: Table) -> postgresql.Insert | sqlite.Insert:
    """An INSERT with the engine's ON CONFLICT clause available."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


async def record_claim(session: AsyncSession, found: Claim) -> None:
    """Upsert who holds the ref, unless a claim from a later event is already there
    (two transfers delivered out of order end with the later holder)."""
    statement = _insert(session, owners).values(
        tenant_id=found.tenant_id,
        kind=found.kind.value,
        ref=found.ref,
        agent_id=found.agent_id,
        since=found.since,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["tenant_id", "kind", "ref"],
        set_={"agent_id": statement.excluded.agent_id, "since": statement.excluded.since},
        where=owners.c.since <= statement.excluded.since,
    )
    await session.execute(statement)


async def holder(
    session: AsyncSession, tenant_id: str, kind: str, ref: str
) -> tuple[bool, str | None]:
    """(known, agent id): whether anything is recorded for the ref, and its holder."""
    row = (
        await session.execute(
            select(owners.c.agent_id).where(
                owners.c.tenant_id == tenant_id, owners.c.kind == kind, owners.c.ref == ref
            )
        )
    ).first()
    return (False, None) if row is None else (True, row.agent_id)


async def _lock_streams(session: AsyncSession, names: list[str]) -> dict[str, int]:
    """Each stream's last id, the rows locked (in name order) until the transaction ends;
    a stream seen for the first time is created at 0."""
    query = (
        select(streams.c.stream, streams.c.last_seq)
        .where(streams.c.stream.in_(names))
        .order_by(streams.c.stream)
        .with_for_update()
    )
    found = {row.stream: int(row.last_seq) for row in await session.execute(query)}
    missing = [name for name in names if name not in found]
    if missing:
        # Two instances may create one at once: the database keeps one, the other waits.
        create = _insert(session, streams).values([{"stream": n, "last_seq": 0} for n in missing])
        await session.execute(create.on_conflict_do_nothing())
        found = {row.stream: int(row.last_seq) for row in await session.execute(query)}
    return found


async def append(
    session: AsyncSession,
    names: list[str],
    message_id: str,
    topic: str,
    body: str,
    now: datetime,
) -> dict[str, int]:
    """The event's id in each stream: the next one, or the one it already has.

    Every instance appends every event it hears. The streams' row locks make them take
    turns, and the one that comes second finds the message there and gets its ids: so
    ids are given out, and committed, strictly in order, one per message and stream.
    Four statements however many streams (each a round trip that costs on SQLite).
    """
    last = await _lock_streams(session, names)
    query = select(events.c.stream, events.c.seq).where(
        events.c.message_id == message_id, events.c.stream.in_(names)
    )
    ids = {row.stream: int(row.seq) for row in await session.execute(query)}
    new = {name: last[name] + 1 for name in names if name not in ids}
    if new:
        await session.execute(
            update(streams)
            .where(streams.c.stream == bindparam("name"))
            .values(last_seq=bindparam("seq")),
            [{"name": name, "seq": seq} for name, seq in new.items()],
        )
        await session.execute(
            events.insert(),
            [
                {
                    "stream": name,
                    "seq": seq,
                    "message_id": message_id,
                    "topic": topic,
                    "body": body,
                    "created_at": now,
                }
                for name, seq in new.items()
            ],
        )
    return {**ids, **new}


async def head(session: AsyncSession, stream: str) -> int:
    """The stream's last id; 0 for a stream nothing was ever pushed to."""
    last = await session.scalar(select(streams.c.last_seq).where(streams.c.stream == stream))
    return int(last or 0)


async def entries(
    session: AsyncSession,
    stream: str,
    after: int,
    *,
    until: int | None,
    newer_than: datetime,
    limit: int,
) -> list[Entry]:
    """Events after id `after` (up to `until`), oldest first; those older than
    `newer_than` count as gone even before the pruner deletes them."""
    query = select(events.c.seq, events.c.topic, events.c.body).where(
        events.c.stream == stream, events.c.seq > after, events.c.created_at >= newer_than
    )
    if until is not None:
        query = query.where(events.c.seq <= until)
    rows = (await session.execute(query.order_by(events.c.seq).limit(limit))).all()
    return [Entry(int(r.seq), r.topic, r.body) for r in rows]


async def prune(session: AsyncSession, *, events_before: datetime, owners_before: datetime) -> int:
    """Forget events too old to resume from and holders of long-finished calls."""
    gone = await session.execute(delete(events).where(events.c.created_at < events_before))
    await session.execute(delete(owners).where(owners.c.since < owners_before))
    return int(gone.rowcount or 0)  # type: ignore[attr-defined]
