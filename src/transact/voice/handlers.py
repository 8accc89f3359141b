"""Voice's bus consumers: the customer's audio from telephony, and capture's and
telephony's facts that say which field is asked for, and when to forget a call; the
calls that start (transcribed when their tenant says so) and who holds them."""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.calls import CallAssigned, CallEnded, CallSecureMode, CallStarted
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.voice import VoiceAudio
from transact.kernel import Service
from transact.voice.flow import Voice


def subscribe(service: Service, voice: Voice) -> None:
    async def on_audio(message: Message) -> None:
        assert isinstance(message, VoiceAudio)
        await voice.audio(message)

    async def on_started(message: Message) -> None:
        assert isinstance(message, CaptureStarted)
        if message.call_id:
            voice.capture_started(
                message.tenant_id, message.call_id, message.capture_id, message.fields
            )

    async def on_secure_mode(message: Message) -> None:
        assert isinstance(message, CallSecureMode)
        voice.secure_mode(
            message.tenant_id,
            message.call_id,
            message.on,
            message.capture_id,
            speech=message.input == "speech",
        )

    async def on_progress(message: Message) -> None:
        assert isinstance(message, CaptureProgress)
        if message.call_id:
            await voice.progress(
                message.tenant_id,
                message.call_id,
                message.capture_id,
                message.field,
                message.event,
                message.complete,
                message.valid,
                message.last4,
                message.reason,
            )

    async def on_completed(message: Message) -> None:
        assert isinstance(message, CaptureCompleted)
        if message.call_id:
            voice.capture_ended(message.tenant_id, message.call_id, message.capture_id, final=False)

    async def on_cancelled(message: Message) -> None:
        assert isinstance(message, CaptureCancelled)
        if message.call_id:
            voice.capture_ended(message.tenant_id, message.call_id, message.capture_id, final=True)

    async def on_call_ended(message: Message) -> None:
        assert isinstance(message, CallEnded)
        voice.call_ended(message.tenant_id, message.call_id)
        await voice.transcription.call_ended(message.tenant_id, message.call_id)

    async def on_call_started(message: Message) -> None:
        assert isinstance(message, CallStarted)
        await voice.transcription.call_started(message.tenant_id, message.call_id)

    async def on_call_assigned(message: Message) -> None:
        assert isinstance(message, CallAssigned)
        await voice.transcription.call_assigned(
            message.tenant_id, message.call_id, message.agent_id
        )

    # A call's recognizer lives in one process, so one group: run one voice instance
    # (or shard calls between groups). Audio is numbered: a repeat is dropped, a chunk
    # that overtook another waits for it (`InOrder`). The facts are idempotent by state.
    service.subscribe(VoiceAudio.topic, on_audio)
    service.subscribe(CaptureStarted.topic, on_started)
    service.subscribe(CallSecureMode.topic, on_secure_mode)
    service.subscribe(CaptureProgress.topic, on_progress)
    service.subscribe(CaptureCompleted.topic, on_completed)
    service.subscribe(CaptureCancelled.topic, on_cancelled)
    service.subscribe(CallEnded.topic, on_call_ended)
    # Idempotent by state: a repeated start asks telephony again (it ignores a repeat), a
    # repeated assignment writes the same holder.
    service.subscribe(CallStarted.topic, on_call_started)
    service.subscribe(CallAssigned.topic, on_call_assigned)
