"""Call facts (telephony, correlation) that other services project."""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from pydantic import Field

from transact.contracts.base import Message

EndReason = Literal["hangup", "timeout", "error", "completed"]
# How the customer gives card details in secure mode: keys on the phone, or spoken
# (telephony streams the customer's audio, sealed, to voice; the agent hears none of it).
InputMode = Literal["keypad", "speech"]
MAX_PLAY_CLIPS = 400


def keypad_context(call_id: str) -> bytes:
    """Associated data sealing keypad keys to their call: a blob moved to another call
    does not open there."""
    return b"keypad:" + call_id.encode()


def ivr_key_context(call_id: str) -> bytes:
    """Associated data sealing a self-service call's menu keys to their call."""
    return b"ivr-key:" + call_id.encode()


def audio_clip_digest(audio: bytes) -> str:
    """The name of a clip of 8 kHz mu-law audio: its SHA-256, so a name never changes
    meaning and any instance may fetch and check it."""
    return hashlib.sha256(audio).hexdigest()


def audio_clip_key(digest: str) -> str:
    """The cache key a clip named in `call.play` is stored under (by whoever plays it)."""
    return f"audio:clip:{digest}"


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
    # customParameters.ivr: the self-service flow that drives this call (no agent leg).
    ivr: str | None = None


class CallEnded(Message):
    """`completed`: Transact ended the call on purpose (a self-service flow finished)."""

    topic = "call.ended"
    call_id: str
    reason: EndReason


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
    input: InputMode = "keypad"


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


class CallIvrKey(Message):
    """A key the caller pressed on a self-service call outside secure mode (a menu
    choice, an account number), for the flow driving the call. Sealed like keypad
    keys, because a caller may key a card number before being asked for it.

    `seq` counts the call's menu keys from 1, apart from `call.keypad`'s numbering.
    """

    topic = "call.ivr_key"
    call_id: str
    seq: int
    sealed: str  # base64 of Vault.seal(tenant, key, ivr_key_context(call_id))
    # On a call an agent handed over: the flow's session the key is for. The numbering
    # starts again from 1 with each handover, so a late key of an earlier one is told apart.
    session_id: str | None = None


class CallPlay(Message):
    """Play audio to the caller (a command for telephony): the clips in order, each
    named by `audio_clip_digest` and stored in the cache under `audio_clip_key`, then
    the `mark`. With `barge_in`, a key pressed while it plays stops it."""

    topic = "call.play"
    call_id: str
    clips: Annotated[list[str], Field(min_length=1, max_length=MAX_PLAY_CLIPS)]
    mark: Annotated[str, Field(min_length=1, max_length=64)]
    barge_in: bool = True
    # The handover (`call.handover` session) this prompt belongs to: telephony applies
    # the handover first if that command has not reached it yet, so a prompt never
    # plays on a bridged call, and drops the prompt once that handover has ended.
    handover: str | None = None


class CallPromptDone(Message):
    """The platform played a prompt to its `mark`, or a key stopped it (`interrupted`)."""

    topic = "call.prompt_done"
    call_id: str
    mark: str
    interrupted: bool = False


class CallHangup(Message):
    """End the call (a command for telephony): a self-service flow has finished."""

    topic = "call.hangup"
    call_id: str


class CallHandover(Message):
    """An agent's call handed to a self-service flow and back (a command for telephony).

    `on`: the flow's session `session_id` drives the customer leg (prompts, menu keys,
    the card in secure mode); the agent hears only a soft hold tone, the customer does
    not hear the agent. Off: the bridge is back; with no agent leg left, the call ends.
    Applied once per session: a repeat, or an `on` after its `off`, changes nothing.
    """

    topic = "call.handover"
    call_id: str
    session_id: str
    on: bool
