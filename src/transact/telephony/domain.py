"""Telephony's pure rules: the wire messages, ordering, pairing, key merging, references.

Nothing here does I/O; the media plane (`bridge.py`) and the WebSocket routes
(`api.py`) apply these rules to live sockets.
"""

from __future__ import annotations

import binascii
import json
import re
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

MAX_MESSAGE_BYTES: Final = 64 * 1024
REORDER_WINDOW: Final = 4  # messages held back waiting for a missing sequence number
MERGE_WINDOW_MS: Final = 500  # an in-band and an out-of-band report of one key
AGENT_CODE_LENGTH: Final = 6
AGENT_CODE_GAP_MS: Final = 5000
REFERENCE_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I to read out
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")

LegKind = Literal["customer", "agent"]
EndReason = Literal["hangup", "timeout", "error", "completed"]  # completed: we hung up


class ProtocolError(ValueError):
    """The other side broke the Media Streams protocol; the text is safe to send back."""


# --- wire messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    call_sid: str
    stream_sid: str
    params: dict[str, str]
    encoding: str


@dataclass(frozen=True)
class Media:
    payload: bytes
    chunk: int | None
    timestamp_ms: int | None


@dataclass(frozen=True)
class Dtmf:
    digit: str


@dataclass(frozen=True)
class Mark:
    name: str


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Ignored:
    """`connected`, and events we do not know: tolerated so the platform may add some."""

    event: str


Inbound = Start | Media | Dtmf | Mark | Stop | Ignored

DTMF_DIGITS: Final = frozenset("0123456789*#ABCD")


def parse_message(raw: str | bytes) -> tuple[int | None, Inbound]:
    """One text frame from the platform: (sequence number, message)."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("message too large")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError("message is not valid JSON") from None
    except RecursionError:
        # 64 KiB of "[" nests deeper than the JSON decoder's recursion allows.
        raise ProtocolError("message nests too deeply") from None
    if not isinstance(data, dict) or not isinstance(data.get("event"), str):
        raise ProtocolError("message has no event")
    return _sequence(data), _message(data)


def _sequence(data: dict[str, Any]) -> int | None:
    raw = data.get("sequenceNumber")
    if raw is None:
        return None
    try:
        seq = int(raw)
    except (TypeError, ValueError):
        raise ProtocolError("sequenceNumber is not a number") from None
    if seq < 0:
        raise ProtocolError("sequenceNumber is negative")
    return seq


def _message(data: dict[str, Any]) -> Inbound:
    event = data["event"]
    if event == "start":
        return _start(data)
    if event == "media":
        return _media(data)
    if event == "dtmf":
        digit = _section(data, "dtmf").get("digit")
        if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
            raise ProtocolError("dtmf.digit is not a keypad key")
        return Dtmf(digit.upper())
    if event == "mark":
        name = _section(data, "mark").get("name")
        return Mark(name if isinstance(name, str) else "")
    if event == "stop":
        return Stop()
    return Ignored(event[:32])


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    section = data.get(name)
    if not isinstance(section, dict):
        raise ProtocolError(f"{name} message has no {name} object")
    return section


def _start(data: dict[str, Any]) -> Start:
    start = _section(data, "start")
    call_sid = start.get("callSid")
    stream_sid = start.get("streamSid") or data.get("streamSid")
    if not isinstance(call_sid, str) or not 1 <= len(call_sid) <= 64:
        raise ProtocolError("start.callSid is missing")
    if not isinstance(stream_sid, str) or not 1 <= len(stream_sid) <= 64:
        raise ProtocolError("start.streamSid is missing")
    raw_params = start.get("customParameters") or {}
    if not isinstance(raw_params, dict):
        raise ProtocolError("start.customParameters is not an object")
    params = {str(k)[:64]: str(v)[:256] for k, v in raw_params.items()}
    fmt = start.get("mediaFormat") or {}
    encoding = fmt.get("encoding", "audio/x-mulaw") if isinstance(fmt, dict) else ""
    if encoding != "audio/x-mulaw" or (
        isinstance(fmt, dict) and fmt.get("sampleRate", 8000) != 8000
    ):
        raise ProtocolError("only audio/x-mulaw at 8000 Hz is supported")
    return Start(call_sid, stream_sid, params, encoding)


def _media(data: dict[str, Any]) -> Media:
    media = _section(data, "media")
    payload = media.get("payload")
    if not isinstance(payload, str):
        raise ProtocolError("media.payload is missing")
    try:
        # What b64decode(payload, validate=True) does, without its wrappers (50 a second
        # per leg).
        audio = binascii.a2b_base64(payload, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("media.payload is not base64") from None
    return Media(audio, _optional_int(media.get("chunk")), _optional_int(media.get("timestamp")))


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def media_message(stream_sid: str, audio: bytes) -> str:
    # Every leg sends one every 20 ms: formatted, not built by json.dumps (the same text;
    # base64 needs no escaping).
    return (
        f'{{"event": "media", "streamSid": {_json_string(stream_sid)}, '
        f'"media": {{"payload": "{b64(audio)}"}}}}'
    )


@lru_cache(maxsize=4096)
def _json_string(text: str) -> str:
    return json.dumps(text)


def mark_message(stream_sid: str, name: str) -> str:
    return json.dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    return json.dumps({"event": "clear", "streamSid": stream_sid})


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


# --- ordering --------------------------------------------------------------------------


@dataclass
class Reorder:
    """Puts messages back in sequence order, waiting at most `window` messages for a gap.

    Frames can arrive late or swapped; a frame that never comes must not stall the
    call, so once `window` later messages are waiting the gap is skipped. A message
    older than what was already released is dropped (it would play out of place).
    """

    window: int = REORDER_WINDOW
    next_seq: int | None = None
    held: dict[int, Inbound] = field(default_factory=dict)
    dropped: int = 0

    def push(self, seq: int | None, message: Inbound) -> list[Inbound]:
        if seq is None:
            return [message]
        if self.next_seq is None:
            self.next_seq = seq
        if seq < self.next_seq or seq in self.held:
            self.dropped += 1
            return []
        self.held[seq] = message
        return self._release(force=len(self.held) > self.window)

    def flush(self) -> list[Inbound]:
        return self._release(force=True, everything=True)

    def _release(self, *, force: bool, everything: bool = False) -> list[Inbound]:
        out: list[Inbound] = []
        while self.held:
            assert self.next_seq is not None
            if self.next_seq not in self.held:
                if not (force or everything):
                    break
                self.next_seq = min(self.held)  # skip the gap
                force = everything or len(self.held) > self.window
            out.append(self.held.pop(self.next_seq))
            self.next_seq += 1
        return out


# --- keys ------------------------------------------------------------------------------


@dataclass
class KeyMerger:
    """One press reported in-band (tone) and out-of-band (`dtmf` message) counts once."""

    window_ms: int = MERGE_WINDOW_MS
    recent: list[tuple[str, str, int]] = field(default_factory=list)  # key, source, at

    def accept(self, key: str, source: Literal["inband", "outband"], at_ms: int) -> bool:
        self.recent = [r for r in self.recent if at_ms - r[2] <= self.window_ms]
        for other_key, other_source, _ in self.recent:
            if other_key == key and other_source != source:
                self.recent.remove((other_key, other_source, _))
                return False
        self.recent.append((key, source, at_ms))
        return True


@dataclass
class AgentCode:
    """Collects the digits an agent keys on their own phone into a one-time link code."""

    length: int = AGENT_CODE_LENGTH
    gap_ms: int = AGENT_CODE_GAP_MS
    digits: str = ""
    last_ms: int = 0

    def press(self, key: str, at_ms: int) -> str | None:
        if at_ms - self.last_ms > self.gap_ms:
            self.digits = ""
        self.last_ms = at_ms
        if key == "*":
            self.digits = ""
            return None
        if key == "#":
            code, self.digits = self.digits, ""
            return code or None
        if not key.isdigit():
            return None
        self.digits += key
        if len(self.digits) == self.length:
            code, self.digits = self.digits, ""
            return code
        return None


# --- references and numbers ------------------------------------------------------------


def new_reference() -> str:
    """A short reference a person can read out, e.g. `K7-3Q9` (about 30 bits)."""
    chars = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))
    return f"{chars[:2]}-{chars[2:]}"


def clean_reference(value: str | None) -> str | None:
    """A reference the platform passed in customParameters, if it is a sane one."""
    if not value:
        return None
    value = value.strip().upper()
    return value if re.fullmatch(r"[A-Z0-9][A-Z0-9-]{2,15}", value) else None


def ivr_flow(value: str | None) -> str | None:
    """The self-service flow named by customParameters.ivr, or None for an agent call."""
    if value is None or value == "":
        return None
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", value):
        raise ProtocolError("customParameters.ivr is not a flow name (letters, digits, _ and -)")
    return value


def e164(value: str | None) -> str | None:
    if not value:
        return None
    number = re.sub(r"[\s().-]", "", value)
    return number if _E164.match(number) else None


def mask_number(number: str) -> str:
    """`+44******1234`: enough for a person to recognise, not to dial."""
    return number[:3] + "*" * (len(number) - 7) + number[-4:]
