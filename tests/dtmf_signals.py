"""Test signals for DTMF: keys with chosen levels, twist and frequency error, gaps,
dropouts, white noise at a given SNR, a mu-law channel, and music-like notes.

Levels are dBm0 per tone on the G.711 scale of `transact.telephony.audio`: a 0 dBm0 sine
has a peak of 22657 in 16-bit linear samples (the digital milliwatt). Two tones at
0 dBm0 each peak above full scale: `pcm` and `mulaw` clip them, as a real channel would.
Signals are float arrays at 8 kHz until `pcm` or `mulaw` turns them into samples.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from transact.telephony.audio import dbm0_to_peak, ulaw_encode, ulaw_round_trip
from transact.telephony.dtmf import COL_FREQS, KEYS, ROW_FREQS

RATE = 8000
Signal = npt.NDArray[np.float64]
Samples = npt.NDArray[np.int16]


def ms(milliseconds: float) -> int:
    return round(milliseconds * RATE / 1000)


def key_freqs(key: str) -> tuple[float, float]:
    index = KEYS.index(key)
    return ROW_FREQS[index // 4], COL_FREQS[index % 4]


def sine(freq: float, samples: int, peak: float, phase: float = 0.0) -> Signal:
    result: Signal = peak * np.sin(2 * np.pi * freq * np.arange(samples) / RATE + phase)
    return result


def tone(
    key: str,
    duration_ms: float,
    row_dbm0: float = -10.0,
    col_dbm0: float | None = None,
    row_dev: float = 0.0,
    col_dev: float = 0.0,
    phases: tuple[float, float] = (0.3, 1.1),
) -> Signal:
    """One key: its row and column tones at their levels (column defaults to the row's),
    each off nominal by the fraction `*_dev`."""
    row, col = key_freqs(key)
    samples = ms(duration_ms)
    col_level = row_dbm0 if col_dbm0 is None else col_dbm0
    low = sine(row * (1 + row_dev), samples, dbm0_to_peak(row_dbm0), phases[0])
    high = sine(col * (1 + col_dev), samples, dbm0_to_peak(col_level), phases[1])
    result: Signal = low + high
    return result


def silence(duration_ms: float) -> Signal:
    return np.zeros(ms(duration_ms))


def sequence(
    keys: str,
    on_ms: float = 60,
    off_ms: float = 60,
    lead_ms: float = 100,
    row_dbm0: float = -10.0,
    col_dbm0: float | None = None,
) -> Signal:
    """Keys one after another, with silence before, between and after."""
    parts: list[Signal] = [silence(lead_ms)]
    for key in keys:
        parts += [tone(key, on_ms, row_dbm0, col_dbm0), silence(off_ms)]
    parts[-1] = silence(lead_ms)
    return np.concatenate(parts)


def with_dropout(signal: Signal, at_ms: float, duration_ms: float) -> Signal:
    """The signal with an interruption (silence) cut into it; the tone's phase runs on."""
    out = signal.copy()
    out[ms(at_ms) : ms(at_ms) + ms(duration_ms)] = 0.0
    return out


def tone_power(row_dbm0: float, col_dbm0: float | None = None) -> float:
    """Mean power of a key's two tones together (the S of an SNR)."""
    col = row_dbm0 if col_dbm0 is None else col_dbm0
    return (dbm0_to_peak(row_dbm0) ** 2 + dbm0_to_peak(col) ** 2) / 2


def with_noise(signal: Signal, snr_db: float, reference_power: float, seed: int = 1) -> Signal:
    """Plus white noise `snr_db` below `reference_power`, over the whole signal."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, np.sqrt(reference_power / 10 ** (snr_db / 10)), len(signal))
    result: Signal = signal + noise
    return result


def pcm(signal: Signal | Sequence[float]) -> Samples:
    """Float signal to 16-bit samples, clipping at full scale."""
    return np.clip(np.round(np.asarray(signal, dtype=np.float64)), -32768, 32767).astype(np.int16)


def mulaw(signal: Signal) -> Samples:
    """Through a G.711 mu-law channel and back."""
    return ulaw_round_trip(pcm(signal))


def write_mulaw_wav(path: Path, samples: npt.ArrayLike) -> Path:
    """A mu-law WAV (format 7) as telephony recorders write it, with a 'fact' chunk."""
    law = ulaw_encode(samples)
    fmt = struct.pack("<HHIIHHH", 7, 1, RATE, RATE, 1, 8, 0)
    body = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"fact" + struct.pack("<II", 4, len(law))
    body += b"data" + struct.pack("<I", len(law)) + law + (b"\0" if len(law) % 2 else b"")
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body)
    return path


def resample(samples: npt.ArrayLike, rate_in: int, rate_out: int) -> Signal:
    """Band-limited resampling by FFT (good enough for test audio)."""
    data = np.asarray(samples, dtype=np.float64)
    length = round(len(data) * rate_out / rate_in)
    spectrum = np.fft.rfft(data)
    kept = np.zeros(length // 2 + 1, dtype=complex)
    shared = min(len(kept), len(spectrum))
    kept[:shared] = spectrum[:shared]
    result: Signal = np.fft.irfft(kept, length) * (length / max(1, len(data)))
    return result


def note(
    freq: float,
    duration_ms: float,
    harmonics: Sequence[float],
    level_dbm0: float = -12.0,
    vibrato: float = 0.0,
    decay: float = 0.0,
) -> Signal:
    """A musical note: partials k * freq with the given amplitudes (below 3.9 kHz), optional
    vibrato (fraction of freq, 5 Hz) and exponential decay (per second), at `level_dbm0`."""
    t = np.arange(ms(duration_ms)) / RATE
    phase = 2 * np.pi * freq * t + (vibrato * freq / 5) * np.sin(2 * np.pi * 5 * t)
    partials = [
        amplitude * np.sin(k * phase + k)
        for k, amplitude in enumerate(harmonics, start=1)
        if k * freq < 3900
    ]
    wave = np.sum(partials, axis=0) * np.exp(-decay * t)
    result: Signal = wave / np.sqrt(np.mean(wave**2)) * dbm0_to_peak(level_dbm0) / np.sqrt(2)
    return result


def sweep(
    start_hz: float, stop_hz: float, duration_ms: float, harmonics: Sequence[float]
) -> Signal:
    """A note gliding linearly from `start_hz` to `stop_hz`, with partials, at -12 dBm0."""
    t = np.arange(ms(duration_ms)) / RATE
    freq = start_hz + (stop_hz - start_hz) * t / t[-1]
    phase = 2 * np.pi * np.cumsum(freq) / RATE
    wave = np.sum(
        [a * np.sin(k * phase) * (k * freq < 3900) for k, a in enumerate(harmonics, start=1)],
        axis=0,
    )
    result: Signal = wave * dbm0_to_peak(-12.0) / max(1.0, float(np.max(np.abs(wave)))) * 0.7
    return result


def need_tool(name: str) -> str:
    """The path of a command-line tool the test needs. Without it the test is skipped on a
    developer's machine, but fails in CI (CI set), where `.ci/run` installs it."""
    import os
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package '{name}'; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
