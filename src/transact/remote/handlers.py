"""Remote's bus consumers: card capture's verdicts, the PSP adapter's outcomes, the
delivery of the messages that carried links, and agents' phone captures (which an agent
may turn into a link). Each is idempotent by its own rules (an attempt or a phone capture
only moves forward), so at-least-once delivery needs no inbox here."""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.calls import CallAssigned
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.messages import MessageDelivered, MessageFailed, MessageSent
from transact.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentFailed,
    PaymentPending,
    PaymentRequested,
)
from transact.kernel import Service
from transact.remote.domain import AttemptStatus
from transact.remote.flow import Remote

OUTCOMES = {
    PaymentAuthorized.topic: AttemptStatus.AUTHORIZED,
    PaymentDeclined.topic: AttemptStatus.DECLINED,
    PaymentFailed.topic: AttemptStatus.FAILED,
}
MESSAGE_STATUS = {
    MessageSent.topic: "sent",
    MessageDelivered.topic: "delivered",
    MessageFailed.topic: "failed",
}


def subscribe(service: Service, remote: Remote) -> None:
    async def on_progress(message: Message) -> None:
        assert isinstance(message, CaptureProgress)
        if message.call_id is None and message.event in ("rejected", "failed") and message.reason:
            await remote.field_rejected(message.capture_id, message.field, message.reason)

    async def on_completed(message: Message) -> None:
        assert isinstance(message, CaptureCompleted)
        if message.call_id is None:
            await remote.capture_completed(message.capture_id)

    async def on_cancelled(message: Message) -> None:
        assert isinstance(message, CaptureCancelled)
        if message.call_id is None:
            ended = AttemptStatus.INVALID if message.reason == "invalid" else AttemptStatus.EXPIRED
            await remote.advance(message.capture_id, ended)
        elif message.agent_id is not None:  # an agent's phone capture (not self-service)
            await remote.phone_ended(
                message.tenant_id,
                message.capture_id,
                message.call_id,
                message.agent_id,
                message.reason,
            )

    async def on_started(message: Message) -> None:
        assert isinstance(message, CaptureStarted)
        await remote.phone_started(message)

    async def on_assigned(message: Message) -> None:
        assert isinstance(message, CallAssigned)
        await remote.phone_reassigned(message.tenant_id, message.call_id, message.agent_id)

    async def on_requested(message: Message) -> None:
        assert isinstance(message, PaymentRequested)
        if message.channel == "link":
            await remote.advance(message.payment_id, AttemptStatus.SUBMITTED)
        elif message.channel == "phone":
            await remote.phone_submitted(
                message.tenant_id,
                message.capture_id,
                message.agent_id,
                message.amount,
                message.currency,
                message.reference,
            )

    async def on_pending(message: Message) -> None:
        assert isinstance(message, PaymentPending)
        if message.action == "authentication_required" and message.action_url:
            await remote.advance(
                message.payment_id, AttemptStatus.CHALLENGE, action_url=message.action_url
            )

    async def on_outcome(message: Message) -> None:
        assert isinstance(message, PaymentAuthorized | PaymentDeclined | PaymentFailed)
        await remote.advance(
            message.payment_id, OUTCOMES[message.topic], decline_code=message.decline_code
        )

    async def on_message(message: Message) -> None:
        assert isinstance(message, MessageSent | MessageDelivered | MessageFailed)
        reason = message.reason if isinstance(message, MessageFailed) else None
        await remote.message_status(message.message_id, MESSAGE_STATUS[message.topic], reason)

    service.subscribe(CaptureProgress.topic, on_progress)
    service.subscribe(CaptureCompleted.topic, on_completed)
    service.subscribe(CaptureCancelled.topic, on_cancelled)
    service.subscribe(CaptureStarted.topic, on_started)
    service.subscribe(CallAssigned.topic, on_assigned)
    service.subscribe(PaymentRequested.topic, on_requested)
    service.subscribe(PaymentPending.topic, on_pending)
    for topic in OUTCOMES:
        service.subscribe(topic, on_outcome)
    for topic in MESSAGE_STATUS:
        service.subscribe(topic, on_message)
