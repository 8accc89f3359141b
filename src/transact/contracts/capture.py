"""Card capture facts: counts and verdicts only, never digits."""

from __future__ import annotations

import re
from typing import Literal

from transact.contracts.base import Message
from transact.contracts.calls import InputMode

# "invalid": a card typed on the hosted payment page broke a rule; the page asks again.
# "ivr": a self-service flow replaced it (the caller chose to key the card again).
# "call_busy": another capture was already open on the call.
# "replaced_by_link": the agent turned the phone capture into a payment link.
CancelReason = Literal[
    "agent", "call_ended", "expired", "failed", "invalid", "ivr", "call_busy", "replaced_by_link"
]
CaptureChannel = Literal["phone", "link", "ivr"]


MAX_HOLDER_LENGTH = 64


def holder_name(text: str | None) -> str | None:
    """A cardholder's name as a PSP takes it: spaces made single, 2-64 characters of
    letters (any script), spaces and ' - . ,, at least two letters; None otherwise."""
    if not isinstance(text, str):
        return None
    name = " ".join(text.split())
    if not 2 <= len(name) <= MAX_HOLDER_LENGTH:
        return None
    if not all(ch.isalpha() or ch in " '-.,\u2019" for ch in name):
        return None
    return name if sum(ch.isalpha() for ch in name) >= 2 else None


MIN_POSTCODE_LENGTH = 3
MAX_POSTCODE_LENGTH = 10
_POSTCODE = re.compile(r"[A-Z0-9](?:[A-Z0-9 -]*[A-Z0-9])?")


def billing_postcode(text: str | None) -> str | None:
    """A billing postcode typed on a page, as PSPs take it for address checks: trimmed,
    upper case, runs of spaces made one; 3-10 ASCII letters, digits, spaces and
    hyphens, starting and ending with a letter or digit ("SW1A 1AA", "90210-1234").
    None otherwise. (A phone keypad keys digits only: capture keeps that rule.)"""
    if not isinstance(text, str) or not text.isascii():
        return None
    postcode = " ".join(text.split()).upper()
    if not MIN_POSTCODE_LENGTH <= len(postcode) <= MAX_POSTCODE_LENGTH:
        return None
    return postcode if _POSTCODE.fullmatch(postcode) else None


def link_card_context(capture_id: str) -> bytes:
    """Associated data sealing a card typed on the payment page to its capture."""
    return b"link-card:" + capture_id.encode()


class CaptureStarted(Message):
    topic = "capture.started"
    capture_id: str
    call_id: str | None
    channel: CaptureChannel
    agent_id: str | None
    fields: list[str]
    # What the capture is for (minor units): remote offers an open phone capture as a
    # link for the same sum. Absent from captures opened before these were carried.
    amount: int | None = None
    currency: str | None = None
    reference: str | None = None
    # Keys on the phone, or spoken (see `CaptureInputChanged`).
    input: InputMode = "keypad"


class CaptureInputChanged(Message):
    """The agent switched an open phone capture between keypad and speech; the fields
    already complete stay as they are."""

    topic = "capture.input_changed"
    capture_id: str
    call_id: str | None
    agent_id: str | None = None
    input: InputMode


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
    # The payment link that took its place (reason `replaced_by_link`).
    link_id: str | None = None


class CaptureCardPosted(Message):
    """A whole card typed on the hosted payment page (a command for capture, from remote).

    `sealed` is base64 of `Vault.seal(tenant, json {"pan", "expiry", "cvv"[, "postcode"]
    [, "holder"]}, link_card_context(capture_id))` ("holder": the name on the card, see
    `holder_name`; "postcode": the billing postcode, see `billing_postcode`): the bus
    cannot read it. Capture validates it by its
    own rules, seals it in the vault and, when `submit`, requests the payment at once;
    otherwise the capture waits `ready` for the agent's submit. The capture id is chosen
    by remote, so it can follow the capture's events; a repeat changes nothing.
    """

    topic = "capture.card_posted"
    capture_id: str
    link_id: str
    agent_id: str | None
    amount: int
    currency: str
    reference: str
    fields: list[str]
    sealed: str
    submit: bool = True


class CaptureRequested(Message):
    """Open a keypad capture on a self-service call (a command for capture, from ivr).

    The capture id is chosen by the asker, so it can follow the capture's events; a
    repeat changes nothing. `replaces` names an open capture of the same call to
    cancel first (reason `ivr`): the caller chose to key the card again. `fields` and
    `max_attempts` override the tenant's capture policy. A call that already has
    another open capture gets this one cancelled at once (reason `call_busy`).
    """

    topic = "capture.requested"
    capture_id: str
    call_id: str
    amount: int
    currency: str
    reference: str
    fields: list[str] | None = None
    max_attempts: int | None = None
    replaces: str | None = None


class CaptureSubmitRequested(Message):
    """Authorize a ready self-service capture now (a command for capture, from ivr):
    the caller confirmed. Capture answers with `payment.requested`, as for an agent."""

    topic = "capture.submit_requested"
    capture_id: str
    call_id: str


class CaptureCancelRequested(Message):
    """Close an open phone capture, its card data wiped (a command for capture, from
    remote): the agent turned it into the payment link `link_id`, so the customer pays on
    the page instead. Capture answers with `capture.cancelled` (the same reason); a
    capture no longer open (submitted, ended) is left as it is, and a repeat changes
    nothing."""

    topic = "capture.cancel_requested"
    capture_id: str
    reason: Literal["replaced_by_link"] = "replaced_by_link"
    link_id: str | None = None


class CaptureRecaptureRequested(Message):
    """Ask for one field of an open capture again (a command for capture, from voice): the
    customer said "no" to the read-back of the card number. Like an agent's re-ask; a
    capture no longer open, or a field not reached yet, is left as it is."""

    topic = "capture.recapture_requested"
    capture_id: str
    field: str
    reason: Literal["readback"] = "readback"
