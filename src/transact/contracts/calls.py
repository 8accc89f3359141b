"""Call facts (telephony, correlation) that other services project."""

from __future__ import annotations

from typing import Literal

from transact.contracts.base import Message


def keypad_context(call_id: str) -> bytes:
    """Associated data sealing keypad keys to their call: a blob moved to another call
    does not open there."""
    return b"keypad:" + call_id.encode()


class CallStarted(Message):
    """A call's two legs are bridged. Numbers travel masked for display and as keyed
    digests (`number_digest`) so correlation can match a search without storing them."""

    topic = "call.started"
    call_id: str
    reference: str
    from_masked: str | None = None
    to_masked: str | None = None
    from_digest: str | None = None
    to_digest: str | None = None
    agent_hint: str | None = None  # username from the stream's customParameters.agent
    sip_call_id: str | None = None
    external_id: str | None = None


class CallEnded(Message):
    topic = "call.ended"
    call_id: str
    reason: Literal["hangup", "timeout", "error"]


class CallAssigned(Message):
    topic = "call.assigned"
    call_id: str
    agent_id: str
    previous_agent_id: str | None = None


class CallAgentCode(Message):
    """Digits the agent keyed on their own phone (agent leg), e.g. a one-time link code
    shown in the Agent UI. Never card data: the customer leg never produces this."""

    topic = "call.agent_code"
    call_id: str
    code: str


class CallKeysOutsideCapture(Message):
    """The customer pressed keys while no capture was open (e.g. keyed the card too
    early). The keys were masked and dropped; only the fact travels, once per burst."""

    topic = "call.keys_outside_capture"
    call_id: str
    source: Literal["dtmf", "speech"] = "dtmf"


class CallSecureMode(Message):
    topic = "call.secure_mode"
    call_id: str
    on: bool
    capture_id: str | None = None


class CallKeypad(Message):
    """Keys pressed (or spoken) on a call, sealed with the tenant's key: the bus cannot read them.

    `seq` counts the call's keypad messages from 1, so a consumer applies them in
    order and once.
    """

    topic = "call.keypad"
    call_id: str
    seq: int
    sealed: str  # base64 of Vault.seal(tenant, keys, keypad_context(call_id))
    source: Literal["dtmf", "speech", "page"] = "dtmf"
