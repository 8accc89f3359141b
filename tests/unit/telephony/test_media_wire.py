"""The hot path's hand-made wire messages say exactly what the library calls said."""

from __future__ import annotations

import base64
import binascii
import json

import pytest

from transact.telephony import domain


@pytest.mark.parametrize("stream_sid", ["MZ1", 'a"b\\c', "é\u2028x", "", "tab\there"])
@pytest.mark.parametrize("audio", [b"", b"\x00\xff" * 80, bytes(range(256))])
def test_media_messages_are_the_json_dumps_text(stream_sid: str, audio: bytes) -> None:
    expected = json.dumps(
        {
            "event": "media",
            "streamSid": stream_sid,
            "media": {"payload": base64.b64encode(audio).decode()},
        }
    )
    assert domain.media_message(stream_sid, audio) == expected


@pytest.mark.parametrize(
    "payload",
    [
        "",
        "=",
        "==",
        "QQ==",
        "QQ=",
        "Q",
        "QUJD",
        "QU JD",
        "é",
        "QQ==QQ==",
        "QUJD\n",
        "____",
        "QQ===",
    ],
)
def test_payloads_are_checked_as_b64decode_validate_checks_them(payload: str) -> None:
    raw = json.dumps({"event": "media", "media": {"payload": payload}})
    try:
        expected: bytes | None = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    if expected is None:
        with pytest.raises(domain.ProtocolError, match="not base64"):
            domain.parse_message(raw)
    else:
        _, message = domain.parse_message(raw)
        assert isinstance(message, domain.Media)
        assert message.payload == expected
