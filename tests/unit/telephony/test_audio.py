"""G.711 mu-law and the WAV reader/writer."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from transact.kernel.errors import TransactError
from transact.telephony.audio import (
    DBM0_PEAK,
    AudioFormatError,
    read_wav,
    ulaw_decode,
    ulaw_encode,
    ulaw_round_trip,
    write_wav,
)

DIGITAL_MILLIWATT = bytes([0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E])  # G.711 Table 5


def test_the_digital_milliwatt_is_0_dbm0() -> None:
    samples = ulaw_decode(DIGITAL_MILLIWATT).astype(np.float64)
    level = 20 * np.log10(np.sqrt(np.mean(samples**2)) * np.sqrt(2) / DBM0_PEAK)
    assert abs(level) < 0.01


def test_decoding_follows_g711() -> None:
    codes = ulaw_decode(bytes(range(256)))
    assert codes[0x00] == -32124  # the largest negative step
    assert codes[0x80] == 32124
    assert codes[0xFF] == codes[0x7F] == 0
    assert codes[0xFE] == 8  # 2 in G.711's 14-bit units
    assert codes[0xF0] == 120  # segment 1's last value: 30 in 14-bit units
    assert codes[0xEF] == 132  # segment 2's first: 33
    positive = codes[0x80:][::-1]
    assert (np.diff(positive.astype(int)) > 0).all()
    assert (codes[:0x80] == -codes[0x80:]).all()


def test_encoding_inverts_decoding() -> None:
    codes = np.frombuffer(bytes(range(256)), dtype=np.uint8)
    again = np.frombuffer(ulaw_encode(ulaw_decode(codes.tobytes())), dtype=np.uint8)
    assert (again[codes != 0x7F] == codes[codes != 0x7F]).all()  # -0 comes back as +0
    assert again[0x7F] == 0xFF


def test_the_round_trip_error_is_within_half_a_step() -> None:
    samples = np.arange(-32768, 32768, dtype=np.int64)
    error = np.abs(ulaw_round_trip(samples.astype(np.int16)).astype(np.int64) - samples)
    segment_step = np.maximum(8, 2 ** (np.floor(np.log2(np.abs(samples) + 132)).astype(int) - 4))
    inside = np.abs(samples) <= 32124
    assert (error[inside] <= segment_step[inside]).all()
    assert error.max() <= 32767 - 32124 + 1024


def write_riff(path: Path, fmt: bytes, data: bytes, extra: bytes = b"") -> Path:
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
    chunks += b"data" + struct.pack("<I", len(data)) + data + (b"\0" if len(data) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return path


def fmt(tag: int, channels: int = 1, rate: int = 8000, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def test_pcm_round_trips_through_a_file(tmp_path: Path) -> None:
    samples = (np.sin(np.arange(8000) / 7) * 12000).astype(np.int16)
    write_wav(tmp_path / "a.wav", samples)
    assert (read_wav(tmp_path / "a.wav") == samples).all()


def test_mu_law_files_are_read(tmp_path: Path) -> None:
    samples = (np.sin(np.arange(801) / 5) * 9000).astype(np.int16)
    law = ulaw_encode(samples)
    fact = b"fact" + struct.pack("<II", 4, len(law))
    listing = b"LIST" + struct.pack("<I", 5) + b"INFOx\0"  # an odd-sized chunk, padded
    plain = write_riff(tmp_path / "law.wav", fmt(7, bits=8) + b"\0\0", law, fact + listing)
    assert (read_wav(plain) == ulaw_round_trip(samples)).all()
    guid = struct.pack("<H", 7) + bytes.fromhex("000000001000800000aa00389b71")
    extensible = fmt(0xFFFE, bits=8) + struct.pack("<HHI", 22, 8, 4) + guid
    assert (
        read_wav(write_riff(tmp_path / "ext.wav", extensible, law)) == ulaw_round_trip(samples)
    ).all()


@pytest.mark.parametrize(
    ("fmt_chunk", "says"),
    [
        (fmt(1, channels=2), "2 channels"),
        (fmt(1, rate=16000), "16000 Hz"),
        (fmt(1, bits=8), "8-bit PCM"),
        (fmt(3, bits=32), "IEEE float"),
        (fmt(6, bits=8), "A-law"),
        (fmt(7, bits=16), "mu-law with 16 bits"),
        (b"\x01\x00", "too short"),
    ],
)
def test_other_formats_are_refused_with_the_reason(
    tmp_path: Path, fmt_chunk: bytes, says: str
) -> None:
    path = write_riff(tmp_path / "x.wav", fmt_chunk, b"\0" * 64)
    with pytest.raises(AudioFormatError, match=says) as caught:
        read_wav(path)
    assert isinstance(caught.value, TransactError)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


def test_files_that_are_not_wav_are_refused(tmp_path: Path) -> None:
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(AudioFormatError, match="not a WAV file"):
        read_wav(tmp_path / "text.wav")
    with pytest.raises(AudioFormatError, match="cannot read"):
        read_wav(tmp_path / "missing.wav")
    no_data = tmp_path / "nodata.wav"
    no_data.write_bytes(b"RIFF\x10\0\0\0WAVEfmt \x10\0\0\0" + fmt(1))
    with pytest.raises(AudioFormatError, match="no 'data' chunk"):
        read_wav(no_data)


def test_a_truncated_data_chunk_is_read_as_far_as_it_goes(tmp_path: Path) -> None:
    samples = np.arange(100, dtype=np.int16)
    path = write_riff(tmp_path / "t.wav", fmt(1), samples.tobytes())
    path.write_bytes(path.read_bytes()[:-11])  # a recorder that died mid-write
    assert (read_wav(path) == samples[:94]).all()
