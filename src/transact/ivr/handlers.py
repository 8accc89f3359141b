"""The ivr service's bus consumers: call facts from telephony, capture's verdicts, payment
outcomes. Each becomes one input of the call's state machine (see `flow.py`).

Facts about calls that no flow drives find no session and change nothing. Inputs are
applied once: keys by their sequence number, everything else through the inbox.

Agents' calls are followed too (who holds each, whether it ended, an agent's capture on
it), for the handover API; those updates set a value, so a repeat changes nothing.
"""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.calls import (
    CallAssigned,
    CallEnded,
    CallIvrKey,
    CallPromptDone,
    CallStarted,
)
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.payments import PaymentAuthorized, PaymentDeclined, PaymentFailed
from transact.ivr import domain
from transact.ivr.flow import Ivr
from transact.kernel import Service

OUTCOMES: dict[str, domain.PaymentStatus] = {
    PaymentAuthorized.topic: "authorized",
    PaymentDeclined.topic: "declined",
    PaymentFailed.topic: "failed",
}


def capture_input(message: Message) -> domain.Input | None:
    """Capture's fact as the state machine's input (None for a capture of no flow)."""
    if isinstance(message, CaptureStarted):
        return domain.CaptureOpened(message.capture_id) if message.channel == "ivr" else None
    if isinstance(message, CaptureProgress):
        return domain.CardProgress(
            message.capture_id, message.field, message.event, message.valid, message.reason
        )
    if isinstance(message, CaptureCompleted):
        return domain.CardReady(message.capture_id, message.brand, message.last4)
    if isinstance(message, CaptureCancelled):
        return domain.CaptureEnded(message.capture_id, message.reason)
    return None


async def agent_capture(
    ivr: Ivr, message: CaptureStarted | CaptureProgress | CaptureCompleted | CaptureCancelled
) -> None:
    """An agent's phone capture holds its call until it is cancelled or its payment is
    decided: no handover meanwhile."""
    assert message.call_id is not None
    if isinstance(message, CaptureStarted) and message.channel == "phone":
        await ivr.capture_opened(message.tenant_id, message.call_id, message.capture_id)
    elif isinstance(message, CaptureCancelled):
        await ivr.capture_closed(message.tenant_id, message.call_id, message.capture_id)


def subscribe(service: Service, ivr: Ivr) -> None:
    async def on_call_started(message: Message) -> None:
        assert isinstance(message, CallStarted)
        if message.ivr:
            await ivr.call_started(message.tenant_id, message.call_id, message.ivr)

    async def on_call_assigned(message: Message) -> None:
        assert isinstance(message, CallAssigned)
        await ivr.note_call(message.tenant_id, message.call_id, agent_id=message.agent_id)

    async def on_call_ended(message: Message) -> None:
        assert isinstance(message, CallEnded)
        await ivr.note_call(message.tenant_id, message.call_id, ended=True)
        await ivr.drive(
            message.tenant_id, message.call_id, lambda _: domain.HungUp(), message_id=message.id
        )

    async def on_key(message: Message) -> None:
        assert isinstance(message, CallIvrKey)
        await ivr.key(
            message.tenant_id, message.call_id, message.seq, message.sealed, message.session_id
        )

    async def on_prompt_done(message: Message) -> None:
        assert isinstance(message, CallPromptDone)
        done = domain.PromptDone(message.mark, message.interrupted)
        await ivr.drive(message.tenant_id, message.call_id, lambda _: done, message_id=message.id)

    async def on_capture(message: Message) -> None:
        assert isinstance(
            message, CaptureStarted | CaptureProgress | CaptureCompleted | CaptureCancelled
        )
        if message.call_id:
            await agent_capture(ivr, message)
        event = capture_input(message)
        if event is None or not message.call_id:
            return
        await ivr.drive(message.tenant_id, message.call_id, lambda _: event, message_id=message.id)

    async def on_outcome(message: Message) -> None:
        assert isinstance(message, PaymentAuthorized | PaymentDeclined | PaymentFailed)
        await ivr.capture_over(message.tenant_id, message.payment_id)
        await ivr.payment_outcome(
            message.tenant_id, message.payment_id, OUTCOMES[message.topic], message.id
        )

    service.subscribe(CallStarted.topic, on_call_started)
    service.subscribe(CallAssigned.topic, on_call_assigned)
    service.subscribe(CallEnded.topic, on_call_ended)
    service.subscribe(CallIvrKey.topic, on_key)
    service.subscribe(CallPromptDone.topic, on_prompt_done)
    for topic in (
        CaptureStarted.topic,
        CaptureProgress.topic,
        CaptureCompleted.topic,
        CaptureCancelled.topic,
    ):
        service.subscribe(topic, on_capture)
    for topic in OUTCOMES:
        service.subscribe(topic, on_outcome)
