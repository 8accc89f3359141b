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

import asyncio
import weakref
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from transact.telephony.audio import SAMPLE_RATE, dbm0_to_peak
from transact.telephony.dtmf import DetectorBank, DetectorSlots, KeyEvent

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


class DspFailed(RuntimeError):
    """The pass a frame was queued for failed: the leg must fail closed."""


Result = tuple[Samples, list[KeyEvent]]


class DspPool:
    """Detection and masking for many legs that each send frames when they please: every
    leg leases a slot, its state lives in shared arrays, and the frames handed to
    `process_many` (or queued with `process_soon` within one event-loop turn) go through
    in one numpy pass per frame shape. A leg's audio and keys are exactly those a
    `LegDsp` gives for the same frames, whoever shares the pass.

    Each slot keeps the last `DELAY_SAMPLES` samples it received (the delay line plus the
    part of a hop not yet analysed), which of them are masked, and its own clock."""

    delay_samples: int = DELAY_SAMPLES

    def __init__(self, capacity: int = 64) -> None:
        self.detector = DetectorSlots(capacity, SAMPLE_RATE)
        self._hop = self.detector.hop
        self._line = np.zeros((capacity, DELAY_SAMPLES), dtype=np.int16)
        self._masked = np.zeros((capacity, DELAY_SAMPLES), dtype=np.bool_)
        self._pending = np.zeros(capacity, dtype=np.int64)  # the line's samples not analysed
        self._mask_until = np.zeros(capacity, dtype=np.int64)  # on the slot's clock
        self._last_suspect = np.zeros(capacity, dtype=np.bool_)
        self._free = list(range(capacity - 1, -1, -1))
        self._queue: list[tuple[PooledDsp, Samples, asyncio.Future[Result]]] = []
        self._flush_loop: asyncio.AbstractEventLoop | None = None
        self.passes = 0  # event-loop turns flushed, and the frames they carried
        self.passed_frames = 0

    @property
    def capacity(self) -> int:
        return self.detector.capacity

    @property
    def leased(self) -> int:
        return self.capacity - len(self._free)

    def lease(self) -> PooledDsp:
        """A fresh leg; its slot goes back when it is closed (or forgotten)."""
        if not self._free:
            self._grow(2 * self.capacity)
        slot = self._free.pop()
        self._reset(slot)
        return PooledDsp(self, slot)

    def _grow(self, capacity: int) -> None:
        extra = capacity - self.capacity
        self._line = np.concatenate([self._line, np.zeros((extra, DELAY_SAMPLES), np.int16)])
        self._masked = np.concatenate([self._masked, np.zeros((extra, DELAY_SAMPLES), np.bool_)])
        self._pending = np.concatenate([self._pending, np.zeros(extra, np.int64)])
        self._mask_until = np.concatenate([self._mask_until, np.zeros(extra, np.int64)])
        self._last_suspect = np.concatenate([self._last_suspect, np.zeros(extra, np.bool_)])
        self._free = list(range(capacity - 1, self.capacity - 1, -1)) + self._free
        self.detector.grow(capacity)

    def _reset(self, slot: int) -> None:
        self.detector.reset(slot)
        self._line[slot] = 0
        self._masked[slot] = False
        self._pending[slot] = 0
        self._mask_until[slot] = 0
        self._last_suspect[slot] = False

    def release(self, slot: int) -> None:
        self._reset(slot)  # nothing of the old call stays in memory
        self._free.append(slot)

    # --- one pass over many legs ---------------------------------------------------------

    def process_many(self, work: Sequence[tuple[PooledDsp, npt.ArrayLike]]) -> list[Result]:
        """Masked audio (as long as each frame, `delay_samples` older) and keys, per item.
        A leg may appear more than once: its frames are taken in the order given. A closed
        leg's frame gives silence (fail closed) and touches no slot."""
        frames = [np.asarray(frame, dtype=np.int16).ravel() for _, frame in work]
        if not frames:
            return []
        alike = self._alike(work, frames)
        if alike is None:
            return self._process_mixed(work, frames)
        slots, held = alike
        out, keys = self._run_group(slots, np.stack(frames), held)
        return [(audio, keys.get(row, [])) for row, audio in enumerate(out)]

    def _alike(
        self, work: Sequence[tuple[PooledDsp, npt.ArrayLike]], frames: list[Samples]
    ) -> tuple[npt.NDArray[np.intp], int] | None:
        """The usual pass: every leg once, frames of one length (one piece each), each
        slot holding back as much: (slots, held back), else None."""
        length = len(frames[0])
        if length + self._hop > SAMPLE_RATE:
            return None
        slots: list[int] = []
        for (dsp, _), frame in zip(work, frames, strict=True):
            if dsp.closed or len(frame) != length:
                return None
            slots.append(dsp.slot)
        if len(set(slots)) != len(slots):
            return None
        slot_array = np.array(slots, dtype=np.intp)
        held = self._pending[slot_array]
        if held.min() != held.max():
            return None
        return slot_array, int(held[0])

    def _process_mixed(
        self, work: Sequence[tuple[PooledDsp, npt.ArrayLike]], frames: list[Samples]
    ) -> list[Result]:
        """Any mix: frames cut into pieces as `LegDsp` cuts them, a leg's pieces in rounds
        (a slot once per round, in order), each round in passes of like pieces."""
        pieces: list[list[Result]] = [[] for _ in work]
        rounds: list[list[tuple[int, int, Samples]]] = []  # (item, slot, piece)
        taken: dict[int, int] = {}  # slot -> rounds it already has in this call
        pending: dict[int, int] = {}  # slot -> samples it will hold back by then
        for item, ((dsp, _), samples) in enumerate(zip(work, frames, strict=True)):
            if dsp.closed:
                pieces[item].append((self.silence(len(samples)), []))
                continue
            slot = dsp.slot
            held = pending.get(slot, int(self._pending[slot]))
            for piece in self._pieces(samples, held):
                turn = taken.get(slot, 0)
                taken[slot] = turn + 1
                if turn == len(rounds):
                    rounds.append([])
                rounds[turn].append((item, slot, piece))
                held = (held + len(piece)) % self._hop
            pending[slot] = held
        for entries in rounds:
            self._run_round(entries, pieces)
        return [_joined(found) for found in pieces]

    @staticmethod
    def _pieces(samples: Samples, held: int) -> list[Samples]:
        """A frame in pieces of at most a second with what the slot holds back, as
        `LegDsp` analyses it (frames are one piece but for the longest)."""
        if held + len(samples) <= SAMPLE_RATE:
            return [samples]
        first = SAMPLE_RATE - held
        return [samples[:first]] + [
            samples[start : start + SAMPLE_RATE]
            for start in range(first, len(samples), SAMPLE_RATE)
        ]

    def _run_round(
        self, entries: list[tuple[int, int, Samples]], pieces: list[list[Result]]
    ) -> None:
        """Each slot appears once in a round; slots whose pieces have the same length and
        the same held-back samples line up in one pass."""
        groups: dict[tuple[int, int], list[tuple[int, int, Samples]]] = {}
        for entry in entries:
            shape = (int(self._pending[entry[1]]), len(entry[2]))
            groups.setdefault(shape, []).append(entry)
        for (held, _), members in groups.items():
            slots = np.array([slot for _, slot, _ in members], dtype=np.intp)
            out, keys = self._run_group(slots, np.stack([piece for _, _, piece in members]), held)
            for row, (item, _, _) in enumerate(members):
                pieces[item].append((out[row], keys.get(row, [])))

    def _run_group(
        self, slots: npt.NDArray[np.intp], frames: Samples, held: int
    ) -> tuple[Samples, dict[int, list[KeyEvent]]]:
        """One pass: `frames` (rows, n) for `slots`, each holding back `held` samples."""
        rows, length = frames.shape
        hop = self._hop
        usable = (held + length) // hop * hop
        # Positions in `line`: the slot's last DELAY_SAMPLES received samples, then the new
        # frame. Its first `start` samples were analysed before; `usable` are analysed now.
        start = DELAY_SAMPLES - held
        line = np.concatenate([self._line[slots], frames], axis=1)
        masked = np.concatenate([self._masked[slots], np.zeros((rows, length), np.bool_)], axis=1)
        clock = self.detector.clock[slots]
        keys: dict[int, list[KeyEvent]] = {}
        if usable:
            keys, analysis = self.detector.analyse(slots, line[:, start : start + usable])
            still = self._mask_until[slots] - clock  # how far earlier masks reach into it
            if (still > 0).any():
                masked[:, start : start + usable] = np.arange(usable) < still[:, None]
            suspect = analysis.suspect
            earlier = np.concatenate([self._last_suspect[slots][:, None], suspect[:, :-1]], axis=1)
            self._last_suspect[slots] = suspect[:, -1]
            sustained = suspect & earlier
            if sustained.any():
                self._mark(slots, masked, sustained, clock, start, start + usable)
        out = line[:, :length].copy()
        flagged = masked[:, :length]
        if flagged.any():
            # The tone's phase follows each slot's own sample index.
            first_sample = clock + held - DELAY_SAMPLES
            tone = _MASK[(first_sample[:, None] + np.arange(length)) % _PERIOD]
            np.copyto(out, tone, where=flagged)
        self._line[slots] = line[:, length:]
        self._masked[slots] = masked[:, length:]
        self._pending[slots] = (held + length) % hop
        return out, keys

    def _mark(
        self,
        slots: npt.NDArray[np.intp],
        masked: npt.NDArray[np.bool_],
        sustained: npt.NDArray[np.bool_],
        clock: npt.NDArray[np.int64],
        start: int,
        end: int,
    ) -> None:
        """As `DspBank._mark`, on line positions: `start` is where this pass's audio
        begins (the same for every row of a group), `end` where the analysed part ends."""
        window, hop = self.detector.window, self._hop
        for step in np.flatnonzero(sustained.any(axis=0)).tolist():
            rows = np.flatnonzero(sustained[:, step])
            window_end = start + (step + 1) * hop
            low = max(0, window_end - hop - window - PRE_ROLL)
            high = min(end, window_end + HANG)
            masked[rows, low:high] = True
            until = clock[rows] + (step + 1) * hop + HANG
            self._mask_until[slots[rows]] = np.maximum(self._mask_until[slots[rows]], until)

    # --- frames that arrive in one event-loop turn, in one pass ------------------------------

    async def process_soon(self, dsp: PooledDsp, frame: npt.ArrayLike) -> Result:
        """`process_many` for this frame and every other one queued before the event loop
        next gets round to it: under load many frames arrive per turn, and share a pass."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        if self._queue and self._flush_loop is not loop:
            self._queue = []  # left by an event loop that stopped before it flushed them
        if not self._queue:
            self._flush_loop = loop
            loop.call_soon(self._flush)
        self._queue.append((dsp, np.asarray(frame, dtype=np.int16), future))
        return await future

    def _flush(self) -> None:
        queue, self._queue = self._queue, []
        self.passes += 1
        self.passed_frames += len(queue)
        try:
            results = self.process_many([(dsp, frame) for dsp, frame, _ in queue])
        except Exception as exc:
            # Every slot in the pass may be half-updated: each leg fails closed and its
            # owner replaces it.
            for _, _, future in queue:
                if not future.done():
                    failure = DspFailed(type(exc).__name__)
                    failure.__cause__ = exc
                    future.set_exception(failure)
            return
        for (_, _, future), result in zip(queue, results, strict=True):
            if not future.done():
                future.set_result(result)

    @staticmethod
    def silence(samples: int) -> Samples:
        """What to send when the DSP cannot be trusted: nothing (fail closed)."""
        return np.zeros(samples, dtype=np.int16)


def _joined(found: list[Result]) -> Result:
    if len(found) == 1:
        return found[0]
    audio = np.concatenate([out for out, _ in found]) if found else np.zeros(0, np.int16)
    return audio, [event for _, events in found for event in events]


class PooledDsp:
    """One leg's lease on a `DspPool` slot: `process` alone, or `process_soon` batched
    with the other legs' frames of the same event-loop turn. `close` gives the slot back
    (as does forgetting the object)."""

    delay_samples: int = DELAY_SAMPLES

    def __init__(self, pool: DspPool, slot: int) -> None:
        self.pool = pool
        self.slot = slot
        self.closed = False
        self._release = weakref.finalize(self, pool.release, slot)
        self._release.atexit = False

    def process(self, frame: npt.ArrayLike) -> Result:
        return self.pool.process_many([(self, frame)])[0]

    async def process_soon(self, frame: npt.ArrayLike) -> Result:
        return await self.pool.process_soon(self, frame)

    def close(self) -> None:
        self.closed = True
        self._release()  # once: a finalizer runs at most once

    def silence(self, n: int) -> Samples:
        return DspPool.silence(n)


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
    "DspFailed",
    "DspPool",
    "LegDsp",
    "PooledDsp",
    "mask_signal",
    "masking_tone",
]
