"""Notifications' use cases: number an event into the streams of those it concerns, and
read a stream back for a client that resumes.

Every instance runs `record` for every event (each is its own broadcast group, since
each holds its own sockets). The database makes that safe: holders are upserted, and
`store.append` gives one message one id per stream whichever instance comes first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import Message, utcnow
from transact.kernel import Kernel
from transact.notifications import domain, store
from transact.notifications.domain import Rule
from transact.notifications.store import Entry

log = structlog.get_logger("transact.notifications")

OWNER_POLL_SECONDS = 0.05
# Holders are kept long after a call (a refund days later still reaches its agent).
OWNER_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class Delivery:
    """One numbered event for one stream, rendered for its sockets."""

    stream: str
    seq: int
    topic: str
    text: str


class Notifications:
    def __init__(self, kernel: Kernel) -> None:
        self.db = kernel.db
        self.window = timedelta(seconds=kernel.settings.push_resume_window)

    # --- writing ------------------------------------------------------------------------

    async def record(self, message: Message) -> list[Delivery]:
        """Route the event and append it to its streams; what to push, once committed."""
        rule = domain.rule_for(message.topic)
        event = domain.view(message)
        if rule is None or event is None or not domain.acceptable(message):
            return []
        body = domain.body_text(event)
        named = domain.named_agents(rule, message)
        waited = 0.0
        while True:
            async with self.db.transaction() as session:
                audience = named or await self._holders(session, rule, message)
                if audience is not None or not domain.should_wait_for_owner(
                    rule, message.occurred_at, utcnow(), waited
                ):
                    if audience is None and rule.await_owner:
                        # Supervisors still see it; no agent is known to hold the payment.
                        log.info("notifications.holder_unknown", topic=message.topic)
                    return await self._append(session, rule, message, audience or (), body)
            # The event that names the holder (e.g. `payment.requested` before its
            # outcome) may still be on its way through another consumer.
            await asyncio.sleep(OWNER_POLL_SECONDS)
            waited += OWNER_POLL_SECONDS

    async def _holders(
        self, session: AsyncSession, rule: Rule, message: Message
    ) -> tuple[str, ...] | None:
        """The holder of the first ref that has one recorded: () for "nobody", None when
        nothing is recorded for any of them yet."""
        for kind, ref in domain.owner_refs(rule, message):
            known, agent = await store.holder(session, message.tenant_id, kind.value, ref)
            if known:
                return (agent,) if agent else ()
        return None

    async def _append(
        self,
        session: AsyncSession,
        rule: Rule,
        message: Message,
        audience: tuple[str, ...],
        body: str,
    ) -> list[Delivery]:
        claim = domain.claim(rule, message, audience)
        if claim is not None:
            await store.record_claim(session, claim)
        names = domain.streams_for(message.tenant_id, audience)
        ids = await store.append(session, names, message.id, message.topic, body, utcnow())
        return [
            Delivery(name, ids[name], message.topic, domain.event_text(ids[name], body))
            for name in names
        ]

    # --- reading ------------------------------------------------------------------------

    async def head(self, stream: str) -> int:
        async with self.db.transaction() as session:
            return await store.head(session, stream)

    async def entries(
        self, stream: str, after: int, *, until: int | None = None, limit: int = 500
    ) -> list[Entry]:
        """Events of the stream after `after`, within the resume window, oldest first."""
        async with self.db.transaction() as session:
            return await store.entries(
                session,
                stream,
                after,
                until=until,
                newer_than=utcnow() - self.window,
                limit=limit,
            )

    async def prune(self) -> None:
        now = utcnow()
        async with self.db.transaction() as session:
            gone = await store.prune(
                session, events_before=now - self.window, owners_before=now - OWNER_RETENTION
            )
        if gone:
            log.debug("notifications.pruned", events=gone)
