"""Telephony's bus consumers: card capture switches secure mode and asks for feedback tones;
a self-service flow plays prompts and ends its calls.

The sockets of a call live in one process, so every telephony instance hears every
capture event and every command (a broadcast group of its own) and acts on the calls
it holds.
"""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.calls import CallHandover, CallHangup, CallPlay
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureInputChanged,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.voice import VoiceKeys, VoiceTranscribe
from transact.kernel import Service
from transact.telephony.bridge import Switchboard
from transact.telephony.clips import ClipStore

ACCEPTED_EVENTS = frozenset({"completed"})
REJECTED_EVENTS = frozenset({"rejected", "failed"})
REOPENED_EVENTS = frozenset({"recapture"})


KEYPAD_CHANNELS = frozenset({"phone", "ivr"})


def subscribe(service: Service, board: Switchboard, group: str, clips: ClipStore) -> None:
    async def on_started(message: Message) -> None:
        assert isinstance(message, CaptureStarted)
        if message.call_id and message.channel in KEYPAD_CHANNELS:
            await board.secure_mode(
                message.tenant_id, message.call_id, True, message.capture_id, message.input
            )

    async def on_input_changed(message: Message) -> None:
        assert isinstance(message, CaptureInputChanged)
        if message.call_id:
            await board.switch_input(
                message.tenant_id, message.call_id, message.capture_id, message.input
            )

    async def on_speech_keys(message: Message) -> None:
        assert isinstance(message, VoiceKeys)
        await board.speech_keys(message)

    async def on_transcribe(message: Message) -> None:
        assert isinstance(message, VoiceTranscribe)
        await board.transcribe(message.tenant_id, message.call_id, message.on)

    async def on_finished(message: Message) -> None:
        assert isinstance(message, CaptureCompleted | CaptureCancelled)
        if message.call_id:
            await board.secure_mode(message.tenant_id, message.call_id, False, message.capture_id)

    async def on_progress(message: Message) -> None:
        assert isinstance(message, CaptureProgress)
        if not message.call_id:
            return
        if message.event in REOPENED_EVENTS:
            # The agent asked for a field again after the card was complete (secure mode
            # went off with `capture.completed`): the customer keys again, securely.
            await board.secure_mode(message.tenant_id, message.call_id, True, message.capture_id)
            return
        if message.event in ACCEPTED_EVENTS and message.valid:
            await board.feedback(message.tenant_id, message.call_id, accepted=True)
        elif message.event in REJECTED_EVENTS or (
            message.event in ACCEPTED_EVENTS and message.valid is False
        ):
            await board.feedback(message.tenant_id, message.call_id, accepted=False)

    async def on_play(message: Message) -> None:
        assert isinstance(message, CallPlay)
        if board.find(message.tenant_id, message.call_id) is None:
            return  # another instance holds this call
        audio = await clips.audio(message.clips)
        if audio is None:
            # Unplayable: say so at once, so the flow does not wait for a mark in vain.
            await board.skip_prompt(message.tenant_id, message.call_id, message.mark)
            return
        await board.play(
            message.tenant_id,
            message.call_id,
            audio,
            message.mark,
            barge_in=message.barge_in,
            handover=message.handover,
        )

    async def on_handover(message: Message) -> None:
        assert isinstance(message, CallHandover)
        await board.hand_over(message.tenant_id, message.call_id, message.session_id, on=message.on)

    async def on_hangup(message: Message) -> None:
        assert isinstance(message, CallHangup)
        await board.hang_up(message.tenant_id, message.call_id)

    # Idempotent by state: switching to the mode a call is already in does nothing.
    # A repeated progress event would repeat a tone, which costs the customer a beep.
    service.subscribe(CaptureStarted.topic, on_started, group)
    service.subscribe(CaptureCompleted.topic, on_finished, group)
    service.subscribe(CaptureCancelled.topic, on_finished, group)
    service.subscribe(CaptureProgress.topic, on_progress, group)
    service.subscribe(CaptureInputChanged.topic, on_input_changed, group)
    # Keys voice heard: numbered in order and once per call (`Switchboard.speech_keys`).
    service.subscribe(VoiceKeys.topic, on_speech_keys, group)
    # Idempotent by state: a call already streaming (or not) to voice stays so.
    service.subscribe(VoiceTranscribe.topic, on_transcribe, group)
    # A repeated play command plays the prompt twice; a repeated hang-up finds no call.
    service.subscribe(CallPlay.topic, on_play, group)
    service.subscribe(CallHangup.topic, on_hangup, group)
    # Idempotent by state: a session's handover goes on once and off once, never again.
    service.subscribe(CallHandover.topic, on_handover, group)
