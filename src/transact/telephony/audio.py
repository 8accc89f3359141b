"""Telephone audio: G.711 mu-law and 8 kHz mono WAV files.

The code lives in the kernel (`transact.kernel.audio`) because ivr's prompts are the
same 8 kHz mu-law; this module keeps the names telephony and its commands use.
"""

from __future__ import annotations

from transact.kernel.audio import (
    DBM0_PEAK,
    FRAME_SAMPLES,
    SAMPLE_RATE,
    WAVE_FORMAT_EXTENSIBLE,
    WAVE_FORMAT_MULAW,
    WAVE_FORMAT_PCM,
    AudioFormatError,
    Samples,
    dbm0_to_peak,
    parse_wav,
    read_wav,
    ulaw_decode,
    ulaw_encode,
    ulaw_round_trip,
    write_wav,
)

__all__ = [
    "DBM0_PEAK",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "WAVE_FORMAT_EXTENSIBLE",
    "WAVE_FORMAT_MULAW",
    "WAVE_FORMAT_PCM",
    "AudioFormatError",
    "Samples",
    "dbm0_to_peak",
    "parse_wav",
    "read_wav",
    "ulaw_decode",
    "ulaw_encode",
    "ulaw_round_trip",
    "write_wav",
]
