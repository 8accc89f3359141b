"""Speech on a call: the customer's audio sealed to voice, spoken keys back to telephony,
and transcripts with the card data taken out.

Audio never travels in clear: each `voice.audio` chunk is sealed with the tenant's key
and a context bound to its call and sequence number, so a chunk neither opens on
another call nor passes for another chunk of the same call. No audio is ever stored;
only a tenant's call transcription is, redacted.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field

from transact.contracts.base import Message

TranscriptionMode = Literal["digits", "free"]
CHUNK_MS: Final = 200  # audio per `voice.audio` message
MAX_CHUNK_KEYS: Final = 64


def voice_audio_context(call_id: str, seq: int) -> bytes:
    """Associated data sealing one audio chunk to its call and its place in the stream."""
    return f"voice-audio:{seq}:".encode() + call_id.encode()


def pack_chunk(keys: str, audio: bytes) -> bytes:
    """A chunk's plaintext: the keys the customer pressed in it, then its mu-law audio."""
    if len(keys) > MAX_CHUNK_KEYS:
        raise ValueError(f"at most {MAX_CHUNK_KEYS} keys a chunk")
    return bytes([len(keys)]) + keys.encode("ascii") + audio


def unpack_chunk(plain: bytes) -> tuple[str, bytes]:
    """(keys, mu-law audio) of a chunk's plaintext."""
    if not plain:
        raise ValueError("an empty chunk")
    count = plain[0]
    if count > MAX_CHUNK_KEYS or len(plain) < 1 + count:
        raise ValueError("a malformed chunk")
    return plain[1 : 1 + count].decode("ascii"), plain[1 + count :]


class VoiceAudio(Message):
    """About 200 ms of the customer's audio, for voice (a command from telephony).

    `sealed` is base64 of `Vault.seal(tenant, pack_chunk(keys, mu-law),
    voice_audio_context(call_id, seq))`. `seq` counts the call's chunks from 1, so voice
    feeds them in order and once. `mode` says what to listen for: card digits during a
    speech capture (`capture_id` set), or anything (`free`, `capture_id` None: a tenant's
    call transcription outside secure mode, asked for by `voice.transcribe`; a free chunk
    never carries keys). `last` ends the stream: the capture went back to the keypad, or
    a capture began and paused the free stream, so voice finishes what it heard.
    """

    topic = "voice.audio"
    call_id: str
    seq: Annotated[int, Field(ge=1)]
    sealed: str
    mode: TranscriptionMode = "digits"
    capture_id: str | None = None
    last: bool = False
    # The call is over: nothing of it follows (its transcription ends with this chunk).
    ending: bool = False


class VoiceKeys(Message):
    """Keys for card capture from a speech capture (a command for telephony).

    `sealed` is base64 of `Vault.seal(tenant, keys, keypad_context(call_id))`, exactly as
    telephony seals keypad keys: telephony only stamps the call's next keypad number on
    it and publishes it as `call.keypad` (one numbering per call, so keypad and speech
    never collide). `seq` counts voice's messages for the call from 1 within `epoch` (a
    voice process's own id for the call), so telephony applies them in order and once.
    `source` is `dtmf` for keys the customer pressed while speaking.
    """

    topic = "voice.keys"
    call_id: str
    capture_id: str
    epoch: Annotated[str, Field(min_length=1, max_length=64)]
    seq: Annotated[int, Field(ge=1)]
    sealed: str
    source: Literal["speech", "dtmf"] = "speech"


TranscriptSource = Literal["capture", "call"]


class VoiceTranscribe(Message):
    """Stream the customer's audio of a call to voice outside secure mode (`on`), or stop
    (a command from voice to telephony, sent at `call.started` for a tenant whose call
    transcription is on). Telephony pauses the stream during every capture."""

    topic = "voice.transcribe"
    call_id: str
    on: bool = True


class VoiceTranscript(Message):
    """What the customer said, for the agent's screen, with every card number, expiry and
    security code replaced by a label ("[card number: 16 digits]", "[expiry]"). During a
    capture the text is only ever such a label: spoken card details are never pushed.
    `source` `call`: an utterance of the tenant's call transcription outside any capture
    (redacted text, stored as such; `seq` its number in the call's transcript)."""

    topic = "voice.transcript"
    call_id: str
    capture_id: str | None = None
    field: str | None = None
    text: Annotated[str, Field(max_length=2000)]
    final: bool = True
    source: TranscriptSource = "capture"
    seq: int | None = None
