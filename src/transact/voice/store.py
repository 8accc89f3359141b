"""Voice's tables: each tenant's settings (call transcription, its own recognizer), the
calls it transcribes (and who holds them, for the transcript's readers), and their
redacted transcripts.

No audio is ever stored, and no transcript text that was not redacted first: the rows
of `voice_transcripts` are written only by `CallTranscription.heard`, after `redact`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import metadata, upsert_insert

settings = Table(
    "voice_settings",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("transcribe_calls", Boolean, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The tenant's own recognizer (NULL: the deployment's), its model, and the account's
    # API key sealed with the tenant's key.
    Column("engine", String(32), nullable=True),
    Column("engine_model", String(64), nullable=True),
    Column("engine_key", LargeBinary, nullable=True),
)

# A call of a tenant whose transcription was on when the call started (`transcribed`),
# or one whose holder was learnt first (`call.assigned` may overtake `call.started`):
# a row not transcribed goes when the call ends.
calls = Table(
    "voice_calls",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    Column("agent_id", String(64), nullable=True),
    Column("transcribed", Boolean, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
)

transcripts = Table(
    "voice_transcripts",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    Column("seq", Integer, primary_key=True),  # from 1 per call
    Column("at", DateTime(timezone=True), nullable=False),
    Column("text", Text, nullable=False),  # redacted
)


@dataclass(frozen=True)
class RecognizerRow:
    engine: str | None  # None: the deployment's
    model: str | None
    sealed_key: bytes | None


@dataclass(frozen=True)
class CallRow:
    tenant_id: str
    call_id: str
    agent_id: str | None
    transcribed: bool


@dataclass(frozen=True)
class Utterance:
    seq: int
    at: datetime
    text: str


async def transcribes_calls(session: AsyncSession, tenant_id: str) -> bool:
    found = await session.scalar(
        select(settings.c.transcribe_calls).where(settings.c.tenant_id == tenant_id)
    )
    return bool(found)


async def set_transcribe_calls(session: AsyncSession, tenant_id: str, on: bool) -> None:
    await _set(session, tenant_id, transcribe_calls=on)


async def recognizer(session: AsyncSession, tenant_id: str) -> RecognizerRow:
    row = (
        await session.execute(
            select(settings.c.engine, settings.c.engine_model, settings.c.engine_key).where(
                settings.c.tenant_id == tenant_id
            )
        )
    ).first()
    if row is None:
        return RecognizerRow(None, None, None)
    return RecognizerRow(row.engine, row.engine_model, row.engine_key)


async def set_recognizer(session: AsyncSession, tenant_id: str, chosen: RecognizerRow) -> None:
    await _set(
        session,
        tenant_id,
        engine=chosen.engine,
        engine_model=chosen.model,
        engine_key=chosen.sealed_key,
    )


async def _set(session: AsyncSession, tenant_id: str, **values: Any) -> None:
    """Set `values` on the tenant's settings row, made (every other setting off) if missing;
    one statement, so two first settings at once do not collide on the key."""
    values["updated_at"] = utcnow()
    statement = upsert_insert(session, settings).values(
        tenant_id=tenant_id, **{"transcribe_calls": False, **values}
    )
    await session.execute(
        statement.on_conflict_do_update(index_elements=[settings.c.tenant_id], set_=values)
    )


async def call(session: AsyncSession, tenant_id: str, call_id: str) -> CallRow | None:
    row = (
        await session.execute(
            select(calls).where(calls.c.tenant_id == tenant_id, calls.c.call_id == call_id)
        )
    ).first()
    if row is None:
        return None
    return CallRow(row.tenant_id, row.call_id, row.agent_id, bool(row.transcribed))


async def note_call(session: AsyncSession, tenant_id: str, call_id: str, **values: Any) -> None:
    """Set `values` (agent_id, transcribed) on the call's row, made if missing."""
    changed = await session.execute(
        update(calls)
        .where(calls.c.tenant_id == tenant_id, calls.c.call_id == call_id)
        .values(**values)
    )
    if changed.rowcount == 0:  # type: ignore[attr-defined]
        row = {"agent_id": None, "transcribed": False, "started_at": utcnow(), **values}
        await session.execute(calls.insert().values(tenant_id=tenant_id, call_id=call_id, **row))


async def forget_untranscribed(session: AsyncSession, tenant_id: str, call_id: str) -> None:
    await session.execute(
        delete(calls).where(
            calls.c.tenant_id == tenant_id,
            calls.c.call_id == call_id,
            calls.c.transcribed.is_(False),
        )
    )


async def add_utterance(
    session: AsyncSession, tenant_id: str, call_id: str, text: str
) -> Utterance:
    """The call's next utterance, numbered after the last one stored (one voice process
    hears a call, so numbers do not race; a restarted one goes on from the database)."""
    last = await session.scalar(
        select(func.max(transcripts.c.seq)).where(
            transcripts.c.tenant_id == tenant_id, transcripts.c.call_id == call_id
        )
    )
    utterance = Utterance((last or 0) + 1, utcnow(), text)
    await session.execute(
        transcripts.insert().values(
            tenant_id=tenant_id,
            call_id=call_id,
            seq=utterance.seq,
            at=utterance.at,
            text=utterance.text,
        )
    )
    return utterance


async def forget_older_than(session: AsyncSession, cutoff: datetime) -> int:
    """Delete every transcript of a call that started before `cutoff` (and the call's
    row); how many calls went."""
    old = select(calls.c.tenant_id, calls.c.call_id).where(calls.c.started_at < cutoff)
    gone = [(row.tenant_id, row.call_id) for row in await session.execute(old)]
    for tenant_id, call_id in gone:
        await session.execute(
            delete(transcripts).where(
                transcripts.c.tenant_id == tenant_id, transcripts.c.call_id == call_id
            )
        )
        await session.execute(
            delete(calls).where(calls.c.tenant_id == tenant_id, calls.c.call_id == call_id)
        )
    return len(gone)


async def utterances(session: AsyncSession, tenant_id: str, call_id: str) -> list[Utterance]:
    rows = await session.execute(
        select(transcripts.c.seq, transcripts.c.at, transcripts.c.text)
        .where(transcripts.c.tenant_id == tenant_id, transcripts.c.call_id == call_id)
        .order_by(transcripts.c.seq)
    )
    return [Utterance(row.seq, row.at, row.text) for row in rows]
