"""Fuzzing what a caller's telephony platform controls: the media-stream wire messages,
the audio bytes inside them (fed to the DTMF detector) and WAV files (prompts).

Whatever arrives, the answer is a value or the module's own clear error
(`ProtocolError`, `AudioFormatError`), never another exception: an unexpected one
would end the leg with a 1011 and a traceback in the log instead of a clean close.
"""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transact.kernel.audio import AudioFormatError, parse_wav, ulaw_decode
from transact.telephony import domain
from transact.telephony.dtmf import KEYS, DtmfDetector

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values of any shape, a few levels deep: what a broken or hostile platform sends.
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "other"])


def refusal(error: Exception) -> str:
    """The text of a clear refusal; anything but the module's own error fails the test."""
    return str(error)


def parses_cleanly(raw: str | bytes) -> None:
    """The one property: a parsed message of a known kind, or a ProtocolError."""
    try:
        seq, message = domain.parse_message(raw)
    except domain.ProtocolError as exc:
        said = refusal(exc)
        assert said, "the error says what is wrong"
        return
    assert seq is None or seq >= 0
    assert isinstance(
        message,
        domain.Start | domain.Media | domain.Dtmf | domain.Mark | domain.Stop | domain.Ignored,
    )


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_never_crash_the_message_parser(raw: bytes) -> None:
    parses_cleanly(raw)


@FUZZ
@given(
    events,
    st.dictionaries(
        st.sampled_from(["start", "media", "dtmf", "mark", "sequenceNumber", "streamSid", "extra"]),
        json_values,
    ),
)
def test_wire_shaped_messages_with_random_fields_parse_or_are_refused(
    event: str, fields: dict[str, Any]
) -> None:
    parses_cleanly(json.dumps({"event": event, **fields}))


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(
            ["callSid", "streamSid", "customParameters", "mediaFormat", "tracks", "accountSid"]
        ),
        json_values,
    ),
    st.dictionaries(st.sampled_from(["payload", "chunk", "timestamp", "track"]), json_values),
    st.dictionaries(st.sampled_from(["digit", "track"]), json_values),
)
def test_every_section_with_random_contents_parses_or_is_refused(
    start: dict[str, Any], media: dict[str, Any], dtmf: dict[str, Any]
) -> None:
    parses_cleanly(json.dumps({"event": "start", "sequenceNumber": "1", "start": start}))
    parses_cleanly(json.dumps({"event": "media", "media": media}))
    parses_cleanly(json.dumps({"event": "dtmf", "dtmf": dtmf}))


@given(st.sampled_from("[{"), st.integers(min_value=500, max_value=domain.MAX_MESSAGE_BYTES))
@settings(max_examples=20, deadline=None)
def test_deep_nesting_is_a_protocol_error_not_a_recursion_error(opener: str, depth: int) -> None:
    """Found by this fuzzing: 64 KiB of `[` blew the JSON decoder's recursion limit."""
    raw = opener * depth if opener == "[" else '{"a":' * (depth // 5)
    parses_cleanly(raw)


@FUZZ
@given(st.binary(max_size=4000), st.integers(min_value=1, max_value=700))
def test_random_audio_bytes_never_crash_the_dtmf_detector(audio: bytes, chunk: int) -> None:
    """Random mu-law payloads, fed in chunks of any size as frames arrive."""
    detector = DtmfDetector()
    samples = ulaw_decode(audio)
    assert samples.dtype == np.int16
    assert len(samples) == len(audio)
    events = []
    for start in range(0, len(samples), chunk):
        events += detector.feed(samples[start : start + chunk])
    events += detector.flush()
    assert all(event.key in KEYS for event in events)
    assert all(event.start >= 0 for event in events)


@FUZZ
@given(st.binary(max_size=3000))
def test_random_media_payloads_decode_and_reach_the_detector(audio: bytes) -> None:
    """The whole path of one inbound frame: wire message, base64, mu-law, detector."""
    wire = json.dumps({"event": "media", "media": {"payload": base64.b64encode(audio).decode()}})
    _, message = domain.parse_message(wire)
    assert isinstance(message, domain.Media)
    assert message.payload == audio
    DtmfDetector().feed(ulaw_decode(message.payload))


@FUZZ
@given(st.lists(st.integers(min_value=-(2**15), max_value=2**15 - 1), max_size=3000))
def test_random_linear_samples_never_crash_the_dtmf_detector(samples: list[int]) -> None:
    detector = DtmfDetector()
    keys = detector.feed(np.array(samples, dtype=np.int16)) + detector.flush()
    assert all(event.key in KEYS for event in keys)


def _wav_header(tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * bits // 8, 1, bits)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


@FUZZ
@given(st.binary(max_size=1024))
def test_random_bytes_are_no_wav_file_and_say_so(raw: bytes) -> None:
    try:
        parse_wav(raw)
    except AudioFormatError as exc:
        said = refusal(exc)
        assert said


@FUZZ
@given(
    st.sampled_from([1, 3, 7, 0xFFFE, 0]),
    st.integers(min_value=0, max_value=3),
    st.sampled_from([8000, 16000, 0]),
    st.sampled_from([8, 16, 0, 24]),
    st.binary(max_size=400),
    st.integers(min_value=0, max_value=80),
)
def test_mangled_wav_headers_parse_or_are_refused(
    tag: int, channels: int, rate: int, bits: int, data: bytes, cut: int
) -> None:
    raw = _wav_header(tag, channels, rate, bits, data)
    for candidate in (raw, raw[: len(raw) - cut], raw[:12] + raw[12 + cut :]):
        try:
            samples = parse_wav(candidate)
        except AudioFormatError as exc:
            said = refusal(exc)
            assert said
            continue
        assert samples.dtype == np.int16
