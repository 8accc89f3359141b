"""Reporting's use cases: fold each event into the projections and move the buckets.

Each handler runs in one transaction with its inbox mark (`first_time`), so a message
delivered twice counts once; a fact repeated under another message id changes
nothing either, because the buckets only move by what the projection's change adds
(see `domain`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from transact.contracts import Message
from transact.contracts.calls import CallKeypad
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.links import (
    LinkCancelled,
    LinkCompleted,
    LinkCreated,
    LinkExpired,
    LinkFailed,
    LinkOpened,
)
from transact.contracts.messages import MessageSent
from transact.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentFailed,
    PaymentPending,
    PaymentRefunded,
    PaymentRequested,
)
from transact.contracts.statements import Statement
from transact.kernel import Kernel
from transact.kernel.db import first_time
from transact.reporting import domain, store

CONSUMER = "reporting"
OUTCOMES: dict[str, str] = {
    PaymentAuthorized.topic: "authorized",
    PaymentDeclined.topic: "declined",
    PaymentFailed.topic: "failed",
    PaymentPending.topic: "pending",
}
LINK_STAGES: dict[str, str] = {
    LinkOpened.topic: "opened",
    LinkCompleted.topic: "paid",
    LinkExpired.topic: "expired",
    LinkFailed.topic: "failed",
    LinkCancelled.topic: "cancelled",
}

Outcome = PaymentAuthorized | PaymentDeclined | PaymentFailed | PaymentPending


class Reports:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def handle(self, message: Message) -> None:
        """Apply one event, once."""
        apply = self._appliers().get(message.topic)
        if apply is None:
            return
        async with self.kernel.db.transaction() as session:
            if await first_time(session, CONSUMER, message.id):
                await apply(session, message)

    def _appliers(self) -> dict[str, Callable[[AsyncSession, Any], Awaitable[None]]]:
        return {
            PaymentRequested.topic: self._requested,
            **{topic: self._outcome for topic in OUTCOMES},
            PaymentRefunded.topic: self._refunded,
            CaptureStarted.topic: self._capture_started,
            CaptureProgress.topic: self._capture_progress,
            CaptureCompleted.topic: self._capture_completed,
            CaptureCancelled.topic: self._capture_cancelled,
            CallKeypad.topic: self._keypad,
            LinkCreated.topic: self._link_created,
            **{topic: self._link_stage for topic in LINK_STAGES},
            MessageSent.topic: self._message_sent,
            Statement.topic: self._statement,
        }

    # --- payments ---------------------------------------------------------------------

    async def _change_payment(
        self,
        session: AsyncSession,
        tenant_id: str,
        payment_id: str,
        occurred_at: datetime,
        change: Callable[[domain.Payment], domain.Payment],
        refund: domain.Refund | None = None,
    ) -> None:
        before = await store.payment(session, payment_id, lock=True)
        refunds = await store.refunds_of(session, payment_id)
        current = before or domain.Payment(payment_id, tenant_id, created_at=occurred_at)
        if current.tenant_id != tenant_id:
            return  # a payment id is one tenant's: another's event about it is ignored
        capture = await store.capture(session, payment_id)
        after = change(current)
        if capture is not None:
            after = domain.fill(
                after,
                brand=capture.brand,
                bin=capture.bin,
                last4=capture.last4,
                agent_id=capture.agent_id,
            )
            after = dataclasses.replace(after, speech=after.speech or capture.speech)
        refunds_after = refunds
        if refund is not None and await store.add_refund(session, tenant_id, refund):
            refunds_after = [*refunds, refund]
            after = dataclasses.replace(after, refunded=max(after.refunded, refund.refunded_total))
        moved = domain.change(
            domain.payment_contribution(before, refunds),
            domain.payment_contribution(after, refunds_after),
        )
        if before is None or after != before:
            await store.save_payment(session, after, new=before is None)
        if moved:
            await store.apply(session, tenant_id, moved)

    async def _requested(self, session: AsyncSession, message: PaymentRequested) -> None:
        def change(payment: domain.Payment) -> domain.Payment:
            filled = domain.fill(
                payment,
                channel=message.channel,
                agent_id=message.agent_id,
                amount=message.amount,
                currency=message.currency,
                reference=message.reference,
                brand=message.brand,
            )
            return dataclasses.replace(
                filled, created_at=min(filled.created_at, message.occurred_at)
            )

        await self._change_payment(
            session, message.tenant_id, message.payment_id, message.occurred_at, change
        )
        await self._change_capture(
            session,
            message.tenant_id,
            message.capture_id,
            message.occurred_at,
            lambda c: dataclasses.replace(c, submitted=True),
        )

    async def _outcome(self, session: AsyncSession, message: Outcome) -> None:
        status = OUTCOMES[message.topic]
        tried = [domain.Attempt(t.connector, t.outcome, t.latency_ms) for t in message.tried]

        def change(payment: domain.Payment) -> domain.Payment:
            filled = domain.fill(
                payment,
                channel=message.channel,
                agent_id=message.agent_id,
                amount=message.amount,
                currency=message.currency,
                brand=message.brand,
            )
            return domain.decide(
                filled,
                status,
                message.occurred_at,
                connector=message.connector,
                decline_code=message.decline_code,
                psp_reference=message.psp_reference,
                attempts=message.attempts,
                tried=tried,
            )

        await self._change_payment(
            session, message.tenant_id, message.payment_id, message.occurred_at, change
        )
        if status != "pending":
            await self._change_capture(
                session,
                message.tenant_id,
                message.payment_id,
                message.occurred_at,
                lambda c: c if c.outcome else dataclasses.replace(c, outcome=status),
                create=False,
            )

    async def _refunded(self, session: AsyncSession, message: PaymentRefunded) -> None:
        refund = domain.Refund(
            message.payment_id, message.refunded_total, message.amount, message.occurred_at
        )
        await self._change_payment(
            session,
            message.tenant_id,
            message.payment_id,
            message.occurred_at,
            lambda p: domain.fill(p, connector=message.connector),
            refund,
        )

    # --- captures ---------------------------------------------------------------------

    async def _change_capture(
        self,
        session: AsyncSession,
        tenant_id: str,
        capture_id: str,
        occurred_at: datetime,
        change: Callable[[domain.Capture], domain.Capture],
        *,
        call_id: str | None = None,
        create: bool = True,
    ) -> domain.Capture | None:
        before = await store.capture(session, capture_id, lock=True)
        if before is None and not create:
            return None
        current = before or domain.Capture(capture_id, tenant_id, occurred_at, call_id=call_id)
        if current.tenant_id != tenant_id:
            return None
        after = change(current)
        if after == before:
            return after
        await store.save_capture(session, after, new=before is None)
        moved = domain.change(
            domain.capture_contribution(before), domain.capture_contribution(after)
        )
        if moved:
            await store.apply(session, tenant_id, moved)
        return after

    async def _capture_started(self, session: AsyncSession, message: CaptureStarted) -> None:
        def change(capture: domain.Capture) -> domain.Capture:
            return dataclasses.replace(
                capture,
                call_id=capture.call_id or message.call_id,
                started_at=message.occurred_at,
                channel=message.channel,
                agent_id=capture.agent_id or message.agent_id or "",
                fields=tuple(message.fields),
            )

        await self._change_capture(
            session,
            message.tenant_id,
            message.capture_id,
            message.occurred_at,
            change,
            call_id=message.call_id,
        )

    async def _capture_progress(self, session: AsyncSession, message: CaptureProgress) -> None:
        def change(capture: domain.Capture) -> domain.Capture:
            moved = domain.capture_progress(capture, message.field, message.valid)
            return dataclasses.replace(moved, agent_id=moved.agent_id or message.agent_id or "")

        await self._change_capture(
            session,
            message.tenant_id,
            message.capture_id,
            message.occurred_at,
            change,
            call_id=message.call_id,
        )

    async def _capture_completed(self, session: AsyncSession, message: CaptureCompleted) -> None:
        def change(capture: domain.Capture) -> domain.Capture:
            return dataclasses.replace(
                capture,
                completed=True,
                brand=message.brand,
                bin=message.bin,
                last4=message.last4,
                agent_id=capture.agent_id or message.agent_id or "",
            )

        await self._change_capture(
            session,
            message.tenant_id,
            message.capture_id,
            message.occurred_at,
            change,
            call_id=message.call_id,
        )
        # The payment carries the capture's id: give it the masked card, if it exists yet.
        if await store.payment(session, message.capture_id) is not None:
            await self._change_payment(
                session,
                message.tenant_id,
                message.capture_id,
                message.occurred_at,
                lambda p: p,
            )

    async def _capture_cancelled(self, session: AsyncSession, message: CaptureCancelled) -> None:
        await self._change_capture(
            session,
            message.tenant_id,
            message.capture_id,
            message.occurred_at,
            lambda c: c if c.cancelled else dataclasses.replace(c, cancelled=message.reason),
            call_id=message.call_id,
        )

    async def _keypad(self, session: AsyncSession, message: CallKeypad) -> None:
        """Spoken keys make the call's open capture (and its payment) a `speech` one.
        Only the source is read: the keys stay sealed."""
        if message.source != "speech":
            return
        capture = await store.open_capture_of_call(session, message.tenant_id, message.call_id)
        if capture is None or capture.speech:
            return
        await self._change_capture(
            session,
            message.tenant_id,
            capture.capture_id,
            message.occurred_at,
            lambda c: dataclasses.replace(c, speech=True),
        )
        if await store.payment(session, capture.capture_id) is not None:
            await self._change_payment(
                session,
                message.tenant_id,
                capture.capture_id,
                message.occurred_at,
                lambda p: dataclasses.replace(p, speech=True),
            )

    # --- links ------------------------------------------------------------------------

    async def _change_link(
        self,
        session: AsyncSession,
        tenant_id: str,
        link_id: str,
        occurred_at: datetime,
        change: Callable[[domain.Link], domain.Link],
    ) -> None:
        before = await store.link(session, link_id, lock=True)
        current = before or domain.Link(link_id, tenant_id, occurred_at)
        if current.tenant_id != tenant_id:
            return
        after = change(current)
        if after == before:
            return
        await store.save_link(session, after, new=before is None)
        moved = domain.change(domain.link_contribution(before), domain.link_contribution(after))
        if moved:
            await store.apply(session, tenant_id, moved)

    async def _link_created(self, session: AsyncSession, message: LinkCreated) -> None:
        await self._change_link(
            session,
            message.tenant_id,
            message.link_id,
            message.occurred_at,
            lambda link: dataclasses.replace(
                link,
                created_at=message.occurred_at,
                channel=message.channel,
                agent_id=link.agent_id or message.agent_id or "",
            ),
        )

    async def _link_stage(self, session: AsyncSession, message: Message) -> None:
        stage = LINK_STAGES[message.topic]
        link_id: str = getattr(message, "link_id")  # noqa: B009  (every link event has one)
        await self._change_link(
            session,
            message.tenant_id,
            link_id,
            message.occurred_at,
            lambda link: dataclasses.replace(link, stages=link.stages | {stage}),
        )

    async def _message_sent(self, session: AsyncSession, message: MessageSent) -> None:
        """A message about a link that the provider took: the link was sent."""
        if message.about is None:
            return  # not about a link
        await self._change_link(
            session,
            message.tenant_id,
            message.about,
            message.occurred_at,
            lambda link: dataclasses.replace(link, stages=link.stages | {"sent"}),
        )

    # --- reconciliation ---------------------------------------------------------------

    async def _statement(self, session: AsyncSession, message: Statement) -> None:
        run = await store.reconciliation(session, message.request_id)
        if run is None or run.tenant_id != message.tenant_id:
            return  # not ours to file
        await store.add_lines(
            session, message.request_id, [line.model_dump() for line in message.lines]
        )
        if message.last:
            await store.complete_reconciliation(session, message.request_id)
