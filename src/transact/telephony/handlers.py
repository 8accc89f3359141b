"""Telephony's bus consumers: card capture switches secure mode and asks for feedback tones.

The sockets of a call live in one process, so every telephony instance hears every
capture event (a broadcast group of its own) and acts on the calls it holds.
"""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.kernel import Service
from transact.telephony.bridge import Switchboard

ACCEPTED_EVENTS = frozenset({"completed"})
REJECTED_EVENTS = frozenset({"rejected", "failed"})


def subscribe(service: Service, board: Switchboard, group: str) -> None:
    async def on_started(message: Message) -> None:
        assert isinstance(message, CaptureStarted)
        if message.call_id and message.channel == "phone":
            await board.secure_mode(message.tenant_id, message.call_id, True, message.capture_id)

    async def on_finished(message: Message) -> None:
        assert isinstance(message, CaptureCompleted | CaptureCancelled)
        if message.call_id:
            await board.secure_mode(message.tenant_id, message.call_id, False, message.capture_id)

    async def on_progress(message: Message) -> None:
        assert isinstance(message, CaptureProgress)
        if not message.call_id:
            return
        if message.event in ACCEPTED_EVENTS and message.valid:
            await board.feedback(message.tenant_id, message.call_id, accepted=True)
        elif message.event in REJECTED_EVENTS or (
            message.event in ACCEPTED_EVENTS and message.valid is False
        ):
            await board.feedback(message.tenant_id, message.call_id, accepted=False)

    # Idempotent by state: switching to the mode a call is already in does nothing.
    # A repeated progress event would repeat a tone, which costs the customer a beep.
    service.subscribe(CaptureStarted.topic, on_started, group)
    service.subscribe(CaptureCompleted.topic, on_finished, group)
    service.subscribe(CaptureCancelled.topic, on_finished, group)
    service.subscribe(CaptureProgress.topic, on_progress, group)
