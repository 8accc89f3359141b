"""Telephone audio: G.711 mu-law and 8 kHz mono WAV files.

Shared by telephony (the media streams) and ivr (prompts): both speak 8 kHz mu-law.

Levels in this package follow G.711: the mu-law coder's overload point (T_max,
8159 in 14-bit units, 32636 in the 16-bit linear samples used here) is +3.17 dBm0,
so a 0 dBm0 sine has a peak of 32636 * 10**(-3.17/20) ~= 22657 (RMS ~= 16021). The
digital milliwatt of G.711 decodes to exactly that level.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from transact.kernel.errors import TransactError

SAMPLE_RATE: Final = 8000
FRAME_SAMPLES: Final = 160  # 20 ms, the media streams' frame
DBM0_PEAK: Final = 22657.0  # peak of a 0 dBm0 sine, see the module docstring

WAVE_FORMAT_PCM: Final = 1
WAVE_FORMAT_MULAW: Final = 7
WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE

Samples = npt.NDArray[np.int16]


class AudioFormatError(TransactError, ValueError):
    """A file is not 8 kHz mono 16-bit PCM or 8 kHz mono mu-law WAV; the message says why."""


def dbm0_to_peak(level_dbm0: float) -> float:
    """Peak amplitude (16-bit linear) of a sine at `level_dbm0`."""
    return DBM0_PEAK * float(10.0 ** (level_dbm0 / 20.0))


# --- G.711 mu-law -------------------------------------------------------------------------
# The coder follows the ITU's own reference implementation (G.191 STL `ulaw_compress` /
# `ulaw_expand`), which treats negative samples by their one's complement so the law
# stays symmetric. Both directions are table lookups built once with numpy.


def _build_decode_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(codes < 0x80, -magnitude, magnitude).astype(np.int16)


def _build_encode_table() -> npt.NDArray[np.uint8]:
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    magnitude = np.where(pcm < 0, ~pcm, pcm) >> 2  # 14-bit magnitude
    biased = np.minimum(magnitude + 33, 0x1FFF)
    segment = np.zeros_like(biased)  # 1..8: how many bits above the 6 low ones
    rest = biased >> 6
    for _ in range(8):
        segment += rest > 0
        rest >>= 1
    segment += 1
    high = 8 - segment
    low = 0x0F - ((biased >> segment) & 0x0F)
    code = (high << 4) | low
    code = np.where(pcm >= 0, code | 0x80, code)
    # Index by the sample's bit pattern read as uint16: 0..32767 first, then the negatives.
    return np.roll(code.astype(np.uint8), -32768)


_DECODE: Final = _build_decode_table()
_ENCODE: Final = _build_encode_table()


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """16-bit linear samples to G.711 mu-law bytes."""
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    return _ENCODE[pcm.view(np.uint16)].tobytes()


def ulaw_decode(data: bytes | bytearray | memoryview | npt.NDArray[np.uint8]) -> Samples:
    """G.711 mu-law bytes to 16-bit linear samples."""
    codes = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    return _DECODE[codes]


def ulaw_round_trip(samples: npt.ArrayLike) -> Samples:
    """What a sample stream sounds like after one pass through a mu-law channel."""
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    return _DECODE[_ENCODE[pcm.view(np.uint16)]]


# --- WAV ----------------------------------------------------------------------------------
# The `wave` module refuses format 7 (mu-law), so reading walks the RIFF chunks itself.

_FMT = struct.Struct("<HHIIHH")  # format tag, channels, rate, byte rate, block align, bits


def read_wav(path: str | Path) -> Samples:
    """Samples of an 8 kHz mono WAV file, 16-bit PCM or mu-law, as 16-bit linear."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise AudioFormatError(
            f"cannot read {path}: {exc.strerror or type(exc).__name__}"
        ) from None
    return parse_wav(raw, path)


def parse_wav(raw: bytes, name: str | Path = "WAV") -> Samples:
    """Samples of the bytes of an 8 kHz mono WAV file (16-bit PCM or mu-law); `name`
    starts the error messages."""
    chunks = _riff_chunks(raw, name)
    if b"fmt " not in chunks:
        raise AudioFormatError(f"{name}: WAV file has no 'fmt ' chunk")
    if b"data" not in chunks:
        raise AudioFormatError(f"{name}: WAV file has no 'data' chunk")
    tag = _check_format(chunks[b"fmt "], name)
    data = chunks[b"data"]
    if tag == WAVE_FORMAT_MULAW:
        return ulaw_decode(data)
    usable = len(data) - len(data) % 2
    return np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)


def _riff_chunks(raw: bytes, path: str | Path) -> dict[bytes, bytes]:
    if len(raw) < 12 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise AudioFormatError(f"{path}: not a WAV file (no RIFF/WAVE header)")
    chunks: dict[bytes, bytes] = {}
    position = 12
    while position + 8 <= len(raw):
        chunk_id = raw[position : position + 4]
        (size,) = struct.unpack_from("<I", raw, position + 4)
        body = raw[position + 8 : position + 8 + size]  # a streaming writer may leave size too big
        chunks.setdefault(chunk_id, body)
        position += 8 + size + (size & 1)  # chunks are padded to an even length
    return chunks


def _check_format(fmt: bytes, path: str | Path) -> int:
    """The format tag (PCM or mu-law) once everything else is as required."""
    if len(fmt) < _FMT.size:
        raise AudioFormatError(f"{path}: 'fmt ' chunk is too short")
    tag, channels, rate, _, _, bits = _FMT.unpack_from(fmt)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        (tag,) = struct.unpack_from("<H", fmt, 24)  # first two bytes of the sub-format GUID
    if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_MULAW):
        raise AudioFormatError(
            f"{path}: WAV format {tag} ({_FORMAT_NAMES.get(tag, 'unknown')}) is not supported; "
            "use 16-bit PCM or mu-law"
        )
    if channels != 1:
        raise AudioFormatError(f"{path}: {channels} channels; only mono is supported")
    if rate != SAMPLE_RATE:
        raise AudioFormatError(f"{path}: sample rate {rate} Hz; only {SAMPLE_RATE} Hz is supported")
    if tag == WAVE_FORMAT_PCM and bits != 16:
        raise AudioFormatError(f"{path}: {bits}-bit PCM; only 16-bit PCM is supported")
    if tag == WAVE_FORMAT_MULAW and bits != 8:
        raise AudioFormatError(f"{path}: mu-law with {bits} bits per sample; expected 8")
    return int(tag)


_FORMAT_NAMES: Final = {3: "IEEE float", 6: "A-law", 2: "ADPCM", 0x11: "IMA ADPCM", 0x55: "MP3"}


def write_wav(path: str | Path, samples: npt.ArrayLike) -> None:
    """Write 16-bit PCM, 8 kHz, mono."""
    pcm = np.ascontiguousarray(samples, dtype=np.int16)
    # Open the file first: a path that cannot be written fails before `wave` holds it.
    with open(path, "wb") as file, wave.open(file, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(pcm.astype("<i2").tobytes())
