"""Capture's bus consumers: keys, call facts and payment outcomes."""

from __future__ import annotations

from transact.capture.flow import Capture
from transact.contracts import Message
from transact.contracts.calls import CallAssigned, CallEnded, CallKeypad
from transact.contracts.capture import (
    CaptureCancelRequested,
    CaptureCardPosted,
    CaptureRecaptureRequested,
    CaptureRequested,
    CaptureSubmitRequested,
)
from transact.contracts.payments import (
    PaymentAuthorized,
    PaymentDeclined,
    PaymentFailed,
    PaymentRefunded,
    PaymentVoided,
)
from transact.kernel import Service

OUTCOMES = {
    PaymentAuthorized.topic: "authorized",
    PaymentDeclined.topic: "declined",
    PaymentFailed.topic: "failed",
}


def subscribe(service: Service, capture: Capture) -> None:
    async def on_keypad(message: Message) -> None:
        assert isinstance(message, CallKeypad)
        await capture.keys(message.tenant_id, message.call_id, message.seq, message.sealed)

    async def on_card_posted(message: Message) -> None:
        assert isinstance(message, CaptureCardPosted)
        await capture.link_card(message)

    async def on_requested(message: Message) -> None:
        assert isinstance(message, CaptureRequested)
        await capture.open_ivr(message)

    async def on_submit_requested(message: Message) -> None:
        assert isinstance(message, CaptureSubmitRequested)
        await capture.submit_ivr(message)

    async def on_cancel_requested(message: Message) -> None:
        assert isinstance(message, CaptureCancelRequested)
        await capture.cancel_requested(message)

    async def on_recapture_requested(message: Message) -> None:
        assert isinstance(message, CaptureRecaptureRequested)
        await capture.recapture_requested(message)

    async def on_assigned(message: Message) -> None:
        assert isinstance(message, CallAssigned)
        await capture.call_assigned(message.tenant_id, message.call_id, message.agent_id)

    async def on_ended(message: Message) -> None:
        assert isinstance(message, CallEnded)
        await capture.call_ended(message.tenant_id, message.call_id)

    async def on_outcome(message: Message) -> None:
        assert isinstance(message, PaymentAuthorized | PaymentDeclined | PaymentFailed)
        await capture.outcome(
            message.payment_id,
            OUTCOMES[message.topic],
            {
                "connector": message.connector,
                "psp_reference": message.psp_reference,
                "decline_code": message.decline_code,
                "attempts": message.attempts,
            },
        )

    async def on_refunded(message: Message) -> None:
        assert isinstance(message, PaymentRefunded)
        await capture.refunded(message.payment_id, message.refunded_total, message.fully)

    async def on_voided(message: Message) -> None:
        assert isinstance(message, PaymentVoided)
        await capture.voided(message.payment_id)

    # Every handler is idempotent by its own rules (keypad sequence numbers, state
    # checks), so at-least-once delivery needs no inbox here.
    service.subscribe(CallKeypad.topic, on_keypad)
    # The capture id is the card's idempotency key: a repeat finds its capture there.
    service.subscribe(CaptureCardPosted.topic, on_card_posted)
    service.subscribe(CaptureRequested.topic, on_requested)
    # Submitting a capture that is no longer ready does nothing.
    service.subscribe(CaptureSubmitRequested.topic, on_submit_requested)
    # Cancelling a capture that is no longer open does nothing.
    service.subscribe(CaptureCancelRequested.topic, on_cancel_requested)
    service.subscribe(CaptureRecaptureRequested.topic, on_recapture_requested)
    service.subscribe(CallAssigned.topic, on_assigned)
    service.subscribe(CallEnded.topic, on_ended)
    for topic in OUTCOMES:
        service.subscribe(topic, on_outcome)
    service.subscribe(PaymentRefunded.topic, on_refunded)
    service.subscribe(PaymentVoided.topic, on_voided)
