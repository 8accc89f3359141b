"""The audit trail: append-only, each record chained to the previous one by hash.

Any service appends inside its own transaction, so an action and its audit
record commit together. Changing, deleting or reordering a record breaks the
chain, which `verify_chain` (and `transact audit verify`) detects. Details
must never hold card data; they are masked once more on the way in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db.database import metadata
from transact.kernel.sensitive import redact_card_numbers

GENESIS = "0" * 64
_AUDIT_LOCK = 0x6175646974  # serializes appends on PostgreSQL; SQLite serializes writers itself

audit_log = Table(
    "kernel_audit",
    metadata,
    Column(
        "seq", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("at", String(32), nullable=False),
    Column("tenant_id", String(64), nullable=True, index=True),
    Column("actor", String(160), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(160), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("details", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

_FIELDS = ("at", "tenant_id", "actor", "action", "target", "outcome", "ip", "details")


# Built once, so that SQLAlchemy compiles them once (see psp.store).
_LAST_HASH = select(audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)
# PostgreSQL: lock, read the last hash, hash and insert in one round trip (migration 0017).
_APPEND = text(
    "SELECT kernel_audit_append(:at, :tenant_id, :actor, :action, :target, :outcome, :ip,"
    " :details, :canonical, :lock, :genesis)"
)
_INSERT = audit_log.insert()


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(record: dict[str, Any]) -> str:
    return json.dumps([record[f] for f in _FIELDS], separators=(",", ":"))


def record_hash(prev_hash: str, record: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + _canonical(record)).encode()).hexdigest()


async def append(
    session: AsyncSession,
    *,
    action: str,
    actor: str,
    tenant_id: str | None = None,
    target: str = "",
    outcome: str = "success",
    ip: str = "",
    details: dict[str, Any] | None = None,
) -> str:
    """Add one record in the caller's transaction; returns its hash."""
    record = {
        "at": _stamp(utcnow()),
        "tenant_id": tenant_id,
        "actor": actor[:160],
        "action": action,
        "target": target[:160],
        "outcome": outcome,
        "ip": ip[:64],
        "details": redact_card_numbers(json.dumps(details or {}, sort_keys=True, default=str)),
    }
    if session.get_bind().dialect.name == "postgresql":
        arguments = {"canonical": _canonical(record), "lock": _AUDIT_LOCK, "genesis": GENESIS}
        chained: str = await session.scalar(_APPEND, {**record, **arguments})
        return chained
    prev = await session.scalar(_LAST_HASH)
    prev_hash = prev or GENESIS
    digest = record_hash(prev_hash, record)
    await session.execute(_INSERT, {**record, "prev_hash": prev_hash, "hash": digest})
    return digest


@dataclass(frozen=True)
class ChainReport:
    records: int
    broken_at: int | None  # seq of the first record that does not verify
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None


async def _rows(session: AsyncSession) -> AsyncIterator[Any]:
    result = await session.stream(select(audit_log).order_by(audit_log.c.seq))
    async for row in result:
        yield row


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Walk the whole chain; report the first record that was changed, removed or moved."""
    expected_prev = GENESIS
    count = 0
    async for row in _rows(session):
        count += 1
        record = {f: getattr(row, f) for f in _FIELDS}
        if row.prev_hash != expected_prev:
            return ChainReport(count, row.seq, "a record before this one is missing or moved")
        if record_hash(row.prev_hash, record) != row.hash:
            return ChainReport(count, row.seq, "this record was changed after it was written")
        expected_prev = row.hash
    return ChainReport(count, None)


async def records_for(
    session: AsyncSession, tenant_id: str, *, limit: int = 100, before: int | None = None
) -> list[dict[str, Any]]:
    query = select(audit_log).where(audit_log.c.tenant_id == tenant_id)
    if before is not None:
        query = query.where(audit_log.c.seq < before)
    rows = (await session.execute(query.order_by(audit_log.c.seq.desc()).limit(limit))).all()
    return [
        {
            "seq": r.seq,
            "at": r.at,
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "outcome": r.outcome,
            "ip": r.ip,
            "details": json.loads(r.details),
        }
        for r in rows
    ]
