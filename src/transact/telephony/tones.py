"""Short feedback tones played to the customer (accepted / rejected field).

Single frequencies on purpose: a DTMF key is a pair, so an echo of these tones can
never be mistaken for a key press by our detector or anyone else's.
"""

from __future__ import annotations

from typing import Final

import numpy as np

SAMPLE_RATE: Final = 8000
LEVEL: Final = 6000  # about -15 dBm0: clearly audible, never harsh


def beep(freq: float, ms: int, level: int = LEVEL) -> np.ndarray:
    n = SAMPLE_RATE * ms // 1000
    t = np.arange(n) / SAMPLE_RATE
    ramp = np.minimum(1.0, np.minimum(np.arange(n), np.arange(n)[::-1]) / 40)  # no clicks
    return (level * ramp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def gap(ms: int) -> np.ndarray:
    return np.zeros(SAMPLE_RATE * ms // 1000, dtype=np.int16)


# Two quick high beeps: "got it". One low, longer tone: "try that field again".
ACCEPTED: Final = np.concatenate([beep(1400, 80), gap(60), beep(1400, 80)])
REJECTED: Final = beep(480, 400)

KEYPAD: Final = {
    key: (low, high)
    for row, low in zip(("123A", "456B", "789C", "*0#D"), (697, 770, 852, 941), strict=True)
    for key, high in zip(row, (1209, 1336, 1477, 1633), strict=True)
}


def keypad_tone(key: str, ms: int = 100, level: int = 5000) -> np.ndarray:
    """The dual tone a phone sends for `key` (used by the call simulator)."""
    low, high = KEYPAD[key]
    pair = beep(low, ms, level).astype(np.int32) + beep(high, ms, level)
    return np.asarray(pair, dtype=np.int16)


COMFORT_NOISE_RMS: Final = 20.0  # about -67 dBm0: a line that is open, no more


def comfort_noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    """What the agent hears while the customer speaks card details: faint random noise,
    made here, so nothing of the customer's audio (level, rhythm, pauses) shows in it."""
    noise = rng.normal(0.0, COMFORT_NOISE_RMS, samples)
    return np.clip(np.round(noise), -32768, 32767).astype(np.int16)


HOLD_FREQ: Final = 425.0  # one frequency: never half of a DTMF pair
HOLD_LEVEL: Final = 1200  # about -29 dBm0: there, never in the way
HOLD_ON_MS: Final = 400
HOLD_PERIOD_MS: Final = 4000


def hold(start: int, samples: int) -> np.ndarray:
    """What the agent hears while a flow has the call: a soft beep every few seconds and
    silence between, from sample `start` of the pattern on. Made here from a clock, so
    nothing of the customer, the prompts or the keys shows in it."""
    at = (start + np.arange(samples)) % (SAMPLE_RATE * HOLD_PERIOD_MS // 1000)
    beep_length = SAMPLE_RATE * HOLD_ON_MS // 1000
    ramp = np.minimum(1.0, np.minimum(at, beep_length - at) / 40)  # no clicks
    wave = HOLD_LEVEL * ramp * np.sin(2 * np.pi * HOLD_FREQ * at / SAMPLE_RATE)
    return np.where(at < beep_length, wave, 0.0).astype(np.int16)
