"""DTMF masking: what the agent hears is the customer's audio with every key tone replaced
by one neutral masking tone, the same for every key.

A delay line gives the masker look-ahead: audio leaves `DELAY_SAMPLES` (40 ms) after it
arrives, and by then the detector has judged every 20 ms window that overlaps it. Two
windows in a row (5 ms apart) that merely look like a dual tone (`suspect`, looser than
a valid key) mask themselves, `PRE_ROLL` samples before them and `HANG` samples after,
so neither the first milliseconds nor the tail of a tone leak, even for tones too short
or too far off to be keys. Everything else (speech, silence) leaves sample for sample as
it came, only later.

The masking tone is a single 1 kHz sine at -20 dBm0: audible, so the agent knows a key
was pressed, and a single frequency, so no DTMF decoder can read a key from it. Its phase
follows the stream's sample index; masked stretches start on the 5 ms hop grid, a whole
number of the tone's 1 ms periods, so every burst starts alike and every key press sounds
exactly the same.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

from transact.telephony.audio import SAMPLE_RATE, dbm0_to_peak
from transact.telephony.dtmf import DetectorBank, KeyEvent

# The look-ahead covers a suspect pair (a window and a hop), the pre-roll before it and
# the part of a hop a LegDsp may hold back: 160 + 40 + 80 + 39 <= 320, so a mask never
# reaches back into audio already sent.
DELAY_SAMPLES: Final = 320  # 40 ms
PRE_ROLL: Final = 80  # mask from this far before the suspect windows (a tone may be ahead)
HANG: Final = 80  # and until this far after them
MASK_FREQ: Final = 1000.0
MASK_LEVEL_DBM0: Final = -20.0

# One period of the masking tone (1 kHz at 8 kHz: 8 samples). Sampled half a step off the
# zero crossings, so no masked sample is ever 0.
_PERIOD: Final = round(SAMPLE_RATE / MASK_FREQ)
_MASK: Final = np.round(
    dbm0_to_peak(MASK_LEVEL_DBM0) * np.sin(2 * np.pi * (np.arange(_PERIOD) + 0.5) / _PERIOD)
).astype(np.int16)

Samples = npt.NDArray[np.int16]


def masking_tone(samples: int, start: int = 0) -> Samples:
    """The masking tone from stream sample `start` on (a burst starts where start % 8 == 0)."""
    result: Samples = _MASK[(start + np.arange(samples)) % _PERIOD]
    return result


class DspBank:
    """Detection and masking for many legs at once, fed in lockstep: `process(frames)` with
    frames shaped (legs, n), n a multiple of 40 (160 is one 20 ms frame). Returns the
    masked audio, delayed by `delay_samples`, same shape, and the keys accepted per leg."""

    delay_samples: int = DELAY_SAMPLES

    def __init__(self, legs: int) -> None:
        self.legs = legs
        self.detector = DetectorBank(legs, SAMPLE_RATE)
        # Received but not yet sent, oldest first. It starts as the delay's worth of silence.
        self._line = np.zeros((legs, DELAY_SAMPLES), dtype=np.int16)
        self._masked = np.zeros((legs, DELAY_SAMPLES), dtype=np.bool_)
        self._line_start = -DELAY_SAMPLES  # stream index of the line's first sample
        self._mask_until = np.zeros(legs, dtype=np.int64)  # masks samples yet to arrive
        self._last_suspect = np.zeros(legs, dtype=np.bool_)  # the previous hop's verdict

    def reset(self, leg: int) -> None:
        """A new call in slot `leg`: forget the old one, including its delayed audio."""
        self.detector.reset(leg)
        self._line[leg] = 0
        self._masked[leg] = False
        self._mask_until[leg] = 0
        self._last_suspect[leg] = False

    def process(self, frames: npt.ArrayLike) -> tuple[Samples, list[list[KeyEvent]]]:
        """Masked audio (as many samples as came in, `delay_samples` older) and keys."""
        block = np.asarray(frames, dtype=np.int16)
        events = self.ingest(block)
        return self.emit(block.shape[1]), events

    def ingest(self, block: Samples) -> list[list[KeyEvent]]:
        """Take in new audio (a whole number of hops) and decide what to mask."""
        clock = self.detector.clock
        events, analysis = self.detector.analyse(block)
        arriving = np.arange(clock, clock + block.shape[1])
        fresh_masked = arriving[None, :] < self._mask_until[:, None]
        self._line = np.concatenate([self._line, block], axis=1)
        self._masked = np.concatenate([self._masked, fresh_masked], axis=1)
        # Two suspect windows in a row (a tone of 15 ms or more gives them) mask; a lone
        # one is a voice brushing past a key's pattern, and goes through untouched.
        suspect = analysis.suspect
        earlier = np.concatenate([self._last_suspect[:, None], suspect[:, :-1]], axis=1)
        self._last_suspect = suspect[:, -1].copy()
        sustained = suspect & earlier
        if sustained.any():
            self._mark(sustained, clock)
        return events

    def _mark(self, sustained: npt.NDArray[np.bool_], clock: int) -> None:
        window, hop = self.detector.window, self.detector.hop
        line_end = self._line.shape[1]
        for step in np.flatnonzero(sustained.any(axis=0)).tolist():
            legs = np.flatnonzero(sustained[:, step])
            window_end = clock + (step + 1) * hop
            # From the start of the earlier of the two windows. The line starts at the
            # first unsent sample, so this never reaches back into audio already sent;
            # DELAY_SAMPLES leaves room for the whole pre-roll.
            low = max(0, window_end - hop - window - PRE_ROLL - self._line_start)
            high = min(line_end, window_end + HANG - self._line_start)
            self._masked[legs, low:high] = True
            self._mask_until[legs] = np.maximum(self._mask_until[legs], window_end + HANG)

    def emit(self, count: int) -> Samples:
        """Send the oldest `count` samples, tones replaced by the masking tone."""
        out = self._line[:, :count].copy()
        masked = self._masked[:, :count]
        if masked.any():
            tone = masking_tone(count, self._line_start)
            np.copyto(out, np.broadcast_to(tone, out.shape), where=masked)
        self._line = self._line[:, count:]
        self._masked = self._masked[:, count:]
        self._line_start += count
        return out

    @staticmethod
    def silence(samples: int) -> Samples:
        """What to send when the DSP cannot be trusted: nothing (fail closed)."""
        return np.zeros(samples, dtype=np.int16)


class LegDsp:
    """One leg: DTMF detection and masking in one pass over frames of any length."""

    delay_samples: int = DELAY_SAMPLES

    def __init__(self) -> None:
        self._bank = DspBank(1)
        self._hop = self._bank.detector.hop
        self._pending = np.zeros(0, dtype=np.int16)

    def process(self, frame: npt.ArrayLike) -> tuple[Samples, list[KeyEvent]]:
        """Masked audio delayed by `delay_samples` (as long as `frame`), and the keys
        accepted. Whole 5 ms hops are analysed at once; a remainder waits for the next
        frame, which the 40 ms delay covers (a sample leaves only once every window that
        could mask it has been judged)."""
        samples = np.asarray(frame, dtype=np.int16).ravel()
        data = np.concatenate([self._pending, samples]) if len(self._pending) else samples
        usable = len(data) - len(data) % self._hop
        self._pending = data[usable:]
        events: list[KeyEvent] = []
        pieces: list[Samples] = []
        owed = len(samples)
        # Long inputs go in 1 s pieces, each sent on as soon as it is in: bounded memory,
        # the same decisions.
        for start in range(0, usable, SAMPLE_RATE):
            piece = data[start : min(usable, start + SAMPLE_RATE)]
            events += self._bank.ingest(piece[None, :])[0]
            sent = min(len(piece), owed)
            pieces.append(self._bank.emit(sent)[0])
            owed -= sent
        pieces.append(self._bank.emit(owed)[0])
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0], events

    def silence(self, n: int) -> Samples:
        """`n` samples of silence, for failing closed."""
        return DspBank.silence(n)


def mask_signal(samples: npt.ArrayLike) -> Samples:
    """What the agent hears of a whole signal: `DELAY_SAMPLES` longer than the input
    (the delay, then everything, the last tone masked to the end)."""
    dsp = LegDsp()
    audio = np.asarray(samples, dtype=np.int16).ravel()
    head, _ = dsp.process(audio)
    tail, _ = dsp.process(np.zeros(DELAY_SAMPLES, dtype=np.int16))
    return np.concatenate([head, tail])


__all__ = [
    "DELAY_SAMPLES",
    "DspBank",
    "LegDsp",
    "mask_signal",
    "masking_tone",
]
