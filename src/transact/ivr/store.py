"""The ivr service's own tables: flows, tenants' prompt recordings, sessions, and its view
of agents' calls.

A session row holds the flow as it was when the call began (a flow edited mid-call
does not change that call) and the domain's state; the account digits a caller is
keying are sealed in it, and nothing else in it is secret. A call has at most one live
session (an agent may hand the same call over again once the last one has ended).

`ivr_calls` is what the handover API must know of a call before taking it from its
agent: who holds it, whether it has ended, whether the agent has a capture open on it.
It is built from `call.assigned`, `call.ended`, `capture.*` and payment outcomes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import utcnow
from transact.kernel.db import first_row, metadata

flows = Table(
    "ivr_flows",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("name", String(64), nullable=False),
    Column("settings", Text, nullable=False),  # domain.Flow.to_dict()
    Column("lookup_secret", Text, nullable=True),  # sealed: signs account lookups
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("tenant_id", "name"),
)

prompts = Table(
    "ivr_prompts",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("language", String(8), primary_key=True),
    Column("name", String(48), primary_key=True),
    Column("audio", LargeBinary, nullable=False),  # 8 kHz mu-law
    Column("seconds", Float, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

sessions = Table(
    "ivr_sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("call_id", String(128), nullable=False),
    Column("flow_id", String(64), nullable=True),
    Column("flow", Text, nullable=False),  # the flow's settings when the call began
    Column("stage", String(16), nullable=False),
    Column("state", Text, nullable=False),  # domain.Session.to_dict(), account digits sealed
    Column("key_seq", Integer, nullable=False),
    Column("capture_id", String(64), nullable=True),
    Column("outcome", String(24), nullable=True),
    Column("deadline", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("agent_id", String(64), nullable=True),  # a handed-over call: its agent
    Index("ix_ivr_sessions_call", "tenant_id", "call_id"),
    # One live session per call, whatever races the handover API sees.
    Index(
        "uq_ivr_sessions_live_call",
        "tenant_id",
        "call_id",
        unique=True,
        postgresql_where=text("stage != 'ended'"),
        sqlite_where=text("stage != 'ended'"),
    ),
    Index("ix_ivr_sessions_capture", "capture_id"),
    Index("ix_ivr_sessions_deadline", "deadline"),
    Index("ix_ivr_sessions_tenant", "tenant_id", "created_at"),
)


calls = Table(
    "ivr_calls",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("call_id", String(128), primary_key=True),
    Column("agent_id", String(64), nullable=True),
    Column("ended", Boolean, nullable=False),
    Column("capture_id", String(64), nullable=True),  # the agent's capture open on it
    # The last capture seen to end: its `capture.started`, if late, opens nothing.
    Column("closed_capture_id", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Index("ix_ivr_calls_capture", "capture_id"),
)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- flows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FlowRow:
    id: str
    tenant_id: str
    name: str
    settings: dict[str, Any]
    lookup_secret: str | None
    created_at: datetime
    updated_at: datetime


def _flow(r: Any) -> FlowRow:
    return FlowRow(
        id=r.id,
        tenant_id=r.tenant_id,
        name=r.name,
        settings=json.loads(r.settings),
        lookup_secret=r.lookup_secret,
        created_at=_utc(r.created_at) or utcnow(),
        updated_at=_utc(r.updated_at) or utcnow(),
    )


async def insert_flow(session: AsyncSession, row: FlowRow) -> None:
    await session.execute(
        flows.insert().values(
            id=row.id,
            tenant_id=row.tenant_id,
            name=row.name,
            settings=json.dumps(row.settings),
            lookup_secret=row.lookup_secret,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )
    )


async def update_flow(
    session: AsyncSession, flow_id: str, settings: dict[str, Any], lookup_secret: str | None
) -> None:
    await session.execute(
        update(flows)
        .where(flows.c.id == flow_id)
        .values(
            name=settings["name"],
            settings=json.dumps(settings),
            lookup_secret=lookup_secret,
            updated_at=utcnow(),
        )
    )


async def delete_flow(session: AsyncSession, tenant_id: str, flow_id: str) -> bool:
    result = await session.execute(
        delete(flows).where(flows.c.tenant_id == tenant_id, flows.c.id == flow_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def flow(session: AsyncSession, tenant_id: str, flow_id: str) -> FlowRow | None:
    found = (
        await session.execute(
            select(flows).where(flows.c.tenant_id == tenant_id, flows.c.id == flow_id)
        )
    ).first()
    return _flow(found) if found else None


async def flow_named(session: AsyncSession, tenant_id: str, name: str) -> FlowRow | None:
    found = (
        await session.execute(
            select(flows).where(flows.c.tenant_id == tenant_id, flows.c.name == name)
        )
    ).first()
    return _flow(found) if found else None


async def flows_of(session: AsyncSession, tenant_id: str) -> list[FlowRow]:
    rows = await session.execute(
        select(flows).where(flows.c.tenant_id == tenant_id).order_by(flows.c.name)
    )
    return [_flow(r) for r in rows]


# --- prompts --------------------------------------------------------------------------


@dataclass(frozen=True)
class PromptInfo:
    language: str
    name: str
    seconds: float
    bytes: int
    updated_at: datetime


async def put_prompt(
    session: AsyncSession, tenant_id: str, language: str, name: str, audio: bytes, seconds: float
) -> None:
    keys = (
        prompts.c.tenant_id == tenant_id,
        prompts.c.language == language,
        prompts.c.name == name,
    )
    exists = (await session.execute(select(prompts.c.name).where(*keys))).first()
    values = {"audio": audio, "seconds": seconds, "updated_at": utcnow()}
    if exists:
        await session.execute(update(prompts).where(*keys).values(**values))
    else:
        await session.execute(
            prompts.insert().values(tenant_id=tenant_id, language=language, name=name, **values)
        )


async def delete_prompt(session: AsyncSession, tenant_id: str, language: str, name: str) -> bool:
    result = await session.execute(
        delete(prompts).where(
            prompts.c.tenant_id == tenant_id,
            prompts.c.language == language,
            prompts.c.name == name,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def prompt_list(session: AsyncSession, tenant_id: str) -> list[PromptInfo]:
    rows = await session.execute(
        select(
            prompts.c.language,
            prompts.c.name,
            prompts.c.seconds,
            prompts.c.audio,
            prompts.c.updated_at,
        )
        .where(prompts.c.tenant_id == tenant_id)
        .order_by(prompts.c.language, prompts.c.name)
    )
    return [
        PromptInfo(r.language, r.name, r.seconds, len(r.audio), _utc(r.updated_at) or utcnow())
        for r in rows
    ]


async def recordings(
    session: AsyncSession, tenant_id: str, language: str, names: set[str]
) -> dict[str, bytes]:
    """The tenant's recordings among `names`, by name."""
    if not names:
        return {}
    rows = await session.execute(
        select(prompts.c.name, prompts.c.audio).where(
            prompts.c.tenant_id == tenant_id,
            prompts.c.language == language,
            prompts.c.name.in_(sorted(names)),
        )
    )
    return {r.name: bytes(r.audio) for r in rows}


async def prompt_names(session: AsyncSession, tenant_id: str, language: str) -> set[str]:
    rows = await session.execute(
        select(prompts.c.name).where(
            prompts.c.tenant_id == tenant_id, prompts.c.language == language
        )
    )
    return {r.name for r in rows}


# --- sessions -------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionRow:
    id: str
    tenant_id: str
    call_id: str
    flow_id: str | None
    flow: dict[str, Any]
    state: dict[str, Any]
    key_seq: int
    created_at: datetime
    updated_at: datetime
    agent_id: str | None = None


def _session(r: Any) -> SessionRow:
    return SessionRow(
        id=r.id,
        tenant_id=r.tenant_id,
        call_id=r.call_id,
        flow_id=r.flow_id,
        flow=json.loads(r.flow),
        state=json.loads(r.state),
        key_seq=r.key_seq,
        created_at=_utc(r.created_at) or utcnow(),
        updated_at=_utc(r.updated_at) or utcnow(),
        agent_id=r.agent_id,
    )


async def insert_session(session: AsyncSession, row: SessionRow, **columns: Any) -> None:
    await session.execute(
        sessions.insert().values(
            id=row.id,
            tenant_id=row.tenant_id,
            call_id=row.call_id,
            flow_id=row.flow_id,
            flow=json.dumps(row.flow),
            state=json.dumps(row.state),
            key_seq=row.key_seq,
            created_at=row.created_at,
            updated_at=row.updated_at,
            agent_id=row.agent_id,
            **columns,
        )
    )


async def save_session(
    session: AsyncSession, session_id: str, state: dict[str, Any], **columns: Any
) -> None:
    await session.execute(
        update(sessions)
        .where(sessions.c.id == session_id)
        .values(state=json.dumps(state), updated_at=utcnow(), **columns)
    )


async def session_for_call(
    session: AsyncSession, tenant_id: str, call_id: str, *, lock: bool = False
) -> SessionRow | None:
    """The call's latest session (its live one, if it has one)."""
    found = await first_row(
        session,
        select(sessions)
        .where(sessions.c.tenant_id == tenant_id, sessions.c.call_id == call_id)
        .order_by(sessions.c.created_at.desc(), sessions.c.id),
        lock=lock,
    )
    return _session(found) if found else None


async def session_locked(
    session: AsyncSession, tenant_id: str, session_id: str
) -> SessionRow | None:
    found = await first_row(
        session,
        select(sessions).where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id),
        lock=True,
    )
    return _session(found) if found else None


async def session_by_id(
    session: AsyncSession, tenant_id: str, session_id: str
) -> SessionRow | None:
    found = (
        await session.execute(
            select(sessions).where(sessions.c.tenant_id == tenant_id, sessions.c.id == session_id)
        )
    ).first()
    return _session(found) if found else None


async def session_for_capture(
    session: AsyncSession, tenant_id: str, capture_id: str
) -> SessionRow | None:
    found = (
        await session.execute(
            select(sessions).where(
                sessions.c.tenant_id == tenant_id, sessions.c.capture_id == capture_id
            )
        )
    ).first()
    return _session(found) if found else None


async def due(session: AsyncSession, now: datetime, limit: int = 50) -> list[tuple[str, str, str]]:
    """(tenant, call, session) of sessions whose deadline has passed."""
    rows = await session.execute(
        select(sessions.c.tenant_id, sessions.c.call_id, sessions.c.id)
        .where(sessions.c.deadline.is_not(None), sessions.c.deadline <= now)
        .order_by(sessions.c.deadline)
        .limit(limit)
    )
    return [(r.tenant_id, r.call_id, r.id) for r in rows]


async def recent_sessions(
    session: AsyncSession, tenant_id: str, limit: int = 100
) -> list[SessionRow]:
    rows = await session.execute(
        select(sessions)
        .where(sessions.c.tenant_id == tenant_id)
        .order_by(sessions.c.created_at.desc())
        .limit(limit)
    )
    return [_session(r) for r in rows]


# --- agents' calls (for handovers) ----------------------------------------------------------


@dataclass(frozen=True)
class CallRow:
    tenant_id: str
    call_id: str
    agent_id: str | None
    ended: bool
    capture_id: str | None


async def call(session: AsyncSession, tenant_id: str, call_id: str) -> CallRow | None:
    found = (
        await session.execute(
            select(calls).where(calls.c.tenant_id == tenant_id, calls.c.call_id == call_id)
        )
    ).first()
    if found is None:
        return None
    return CallRow(found.tenant_id, found.call_id, found.agent_id, found.ended, found.capture_id)


async def note_call(session: AsyncSession, tenant_id: str, call_id: str, **values: Any) -> None:
    """Record what a call fact says (`agent_id`, `ended`, `capture_id`), creating the row."""
    keys = (calls.c.tenant_id == tenant_id, calls.c.call_id == call_id)
    now = utcnow()
    if (await session.execute(select(calls.c.call_id).where(*keys))).first() is None:
        row = {"agent_id": None, "ended": False, "capture_id": None, **values}
        await session.execute(
            calls.insert().values(tenant_id=tenant_id, call_id=call_id, updated_at=now, **row)
        )
    else:
        await session.execute(update(calls).where(*keys).values(updated_at=now, **values))


async def capture_over(session: AsyncSession, tenant_id: str, capture_id: str) -> None:
    """The agent's capture ended (cancelled, or its payment decided): the call is free."""
    await session.execute(
        update(calls)
        .where(calls.c.tenant_id == tenant_id, calls.c.capture_id == capture_id)
        .values(capture_id=None, updated_at=utcnow())
    )


async def capture_opened(
    session: AsyncSession, tenant_id: str, call_id: str, capture_id: str
) -> None:
    found = await call_closed_capture(session, tenant_id, call_id)
    if found != capture_id:  # not one that has ended already (facts may come out of order)
        await note_call(session, tenant_id, call_id, capture_id=capture_id)


async def capture_closed(
    session: AsyncSession, tenant_id: str, call_id: str, capture_id: str
) -> None:
    await note_call(session, tenant_id, call_id, closed_capture_id=capture_id)
    await capture_over(session, tenant_id, capture_id)


async def call_closed_capture(session: AsyncSession, tenant_id: str, call_id: str) -> str | None:
    found = (
        await session.execute(
            select(calls.c.closed_capture_id).where(
                calls.c.tenant_id == tenant_id, calls.c.call_id == call_id
            )
        )
    ).first()
    return found.closed_capture_id if found else None
