"""Card capture facts: counts and verdicts only, never digits."""

from __future__ import annotations

from typing import Literal

from transact.contracts.base import Message

CancelReason = Literal["agent", "call_ended", "expired", "failed"]


class CaptureStarted(Message):
    topic = "capture.started"
    capture_id: str
    call_id: str | None
    channel: Literal["phone", "link"]
    agent_id: str | None
    fields: list[str]


class CaptureProgress(Message):
    topic = "capture.progress"
    capture_id: str
    call_id: str | None
    agent_id: str | None = None
    field: str
    event: str
    digits: int
    complete: bool
    valid: bool | None
    reason: str | None = None
    brand: str | None = None
    last4: str | None = None


class CaptureCompleted(Message):
    topic = "capture.completed"
    capture_id: str
    call_id: str | None
    agent_id: str | None = None
    brand: str
    bin: str
    last4: str


class CaptureCancelled(Message):
    topic = "capture.cancelled"
    capture_id: str
    call_id: str | None
    agent_id: str | None = None
    reason: CancelReason
