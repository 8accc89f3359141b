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
