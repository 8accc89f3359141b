"""In-band DTMF detection (ITU-T Q.24, ETSI ES 201 235-3), pure numpy, many streams at once.

How it works. Every 5 ms (a *hop*) each stream is looked at through a 20 ms Hann window.
One matrix multiply gives, for every stream and every hop, the windowed DFT at the
eight DTMF frequencies (what a Goertzel filter computes, but for all streams in one BLAS
call) and at their harmonics; a second gives the window's total energy. A window holds a
valid key when

* one row and one column frequency stand out: each at least `MIN_LEVEL_DBM0`, and
  whatever else is in its group's other bins, beyond the tone's own leakage, at least
  `RELATIVE_PEAK_DB` weaker (a voice's neighbouring harmonic is content of its own);
* each is within `FREQ_TOLERANCE` of nominal. The frequency is measured, not guessed
  from bin leakage: the phase a tone advances between two windows one hop apart gives
  its offset from the bin centre to a fraction of a hertz;
* the twist (row level minus column level, each corrected for the measured offset) is
  within `NORMAL_TWIST_DB` / `REVERSE_TWIST_DB`;
* together they carry at least `MIN_TONE_FRACTION` of the window's energy (speech and
  music spread their energy over many partials: this is what stops most talk-off);
* no partial (the row's 3rd harmonic, the column's 2nd) comes within `HARMONIC_DB` of
  the stronger tone, and the column is not the row's octave (rows 770/852 Hz doubled
  land within tolerance of columns 1477/1633 Hz; in-spec keys stay 17 Hz away).

Timing is counted in hops. A key is accepted after `ACCEPT_HOPS` valid windows of it in
a row (a 40 ms tone gives at least six, a 20 ms tone at most three) and ends after
`GAP_HOPS` hops without it (a 10 ms dropout costs at most four, a 40 ms pause at least
nine). Each accepted key is reported once, when it is accepted.

A second, looser test marks windows that merely *look like* a dual tone (`suspect`):
the masker hides those from the agent even when they never become a key.

Levels: dBm0 on G.711's scale (a 0 dBm0 sine peaks at 22657; see `audio`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Final, NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided

from transact.telephony.audio import SAMPLE_RATE, dbm0_to_peak

KEYS: Final = "123A456B789C*0#D"  # KEYS[4 * row + column]
ROW_FREQS: Final = (697.0, 770.0, 852.0, 941.0)
COL_FREQS: Final = (1209.0, 1336.0, 1477.0, 1633.0)
FREQS: Final = ROW_FREQS + COL_FREQS
# Where a musical note or a voice would have its next partials. (The row's 2nd harmonic is
# left out: it lies within a bin and a half of the columns. Clipping at 0 dBm0 puts these
# about 25 dB down.)
HARMONICS: Final = tuple(3 * f for f in ROW_FREQS) + tuple(2 * f for f in COL_FREQS)

WINDOW_MS: Final = 20  # 50 Hz bins: adjacent rows (73 Hz apart) stay apart
HOP_MS: Final = 5  # phase is unambiguous up to +-100 Hz; the timing grain

# Acceptance rules. Each threshold sits halfway between the must-accept and the
# must-reject values of Q.24 / ES 201 235-3, so measurement error has room both ways.
FREQ_TOLERANCE: Final = 0.025  # accept +-1.5 %, reject +-3.5 %
NORMAL_TWIST_DB: Final = 9.0  # column weaker than row: accept 8 dB, reject 10 dB
REVERSE_TWIST_DB: Final = 5.0  # column stronger than row: accept 4 dB, reject 6 dB
MIN_LEVEL_DBM0: Final = -30.0  # per tone; operate down to -25 dBm0
RELATIVE_PEAK_DB: Final = 10.0  # other content in a group must be this much weaker
MIN_TONE_FRACTION: Final = 0.8  # share of the window's energy in the two tones
OCTAVE_HZ: Final = 12.0  # a column this close to twice the row is a harmonic, not a key
HARMONIC_DB: Final = 15.0  # partials at least this far below the stronger tone
ACCEPT_HOPS: Final = 5  # valid hops in a row before a key counts
GAP_HOPS: Final = 7  # hops without the key that end it

# The looser "looks like a dual tone" test behind masking.
SUSPECT_FREQ_TOLERANCE: Final = 0.05
SUSPECT_TWIST_DB: Final = 12.0
SUSPECT_LEVEL_DBM0: Final = -36.0
SUSPECT_TONE_FRACTION: Final = 0.7

BoolArray = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float32]
Complexes = npt.NDArray[np.complex64]
Indices = npt.NDArray[np.intp]


@dataclass(frozen=True)
class KeyEvent:
    key: str  # one of KEYS
    start: int  # sample index (stream-relative) where the tone began, +- 5 ms
    end: int | None  # where it ended; None while still sounding when reported


@dataclass(frozen=True)
class Analysis:
    """Per stream and per hop of one call: the valid key (index into KEYS, -1: none) and
    whether the window looked like a dual tone at all."""

    keys: npt.NDArray[np.int8]  # (streams, hops)
    suspect: BoolArray  # (streams, hops)


# The 5-term flat-top window (the coefficients of MATLAB's and SciPy's `flattop`).
_FLAT_TOP: Final = (0.21557895, 0.41663158, 0.277263158, 0.083578947, 0.006947368)


def _db(value: float) -> float:
    return float(10.0 ** (value / 10.0))


class _FilterBank:
    """Windowed DFT at the DTMF frequencies for many streams, and the per-window tests."""

    def __init__(self, streams: int, sample_rate: int) -> None:
        self.window = sample_rate * WINDOW_MS // 1000
        self.hop = sample_rate * HOP_MS // 1000
        n = np.arange(self.window)
        hann = 0.5 - 0.5 * np.cos(2 * np.pi * n / self.window)
        # Columns 0-7: the DTMF frequencies through the Hann window; 8-15: their harmonics
        # through a flat-top window, whose main lobe is flat to 0.3 dB over +-1 bin and to
        # 2 dB over +-1.7: a tone 2.5 % off has partials up to 1.6 bins off theirs. One
        # multiply for both: cheaper than picking out the windows that need harmonics.
        flat_top = sum(
            (-1) ** k * weight * np.cos(2 * np.pi * k * n / self.window)
            for k, weight in enumerate(_FLAT_TOP)
        )
        self._basis = np.concatenate(
            [_dft_basis(hann, FREQS, sample_rate), _dft_basis(flat_top, HARMONICS, sample_rate)],
            axis=1,
        )
        self._harmonic_scale = float(np.sum(hann) / np.sum(flat_top)) ** 2  # to Hann's scale
        self._hann_squared = (hann**2).astype(np.float32)
        self._energy_bases: dict[int, Floats] = {}
        # A pure tone at a bin centre: |Y|^2 = (A sum(w) / 2)^2 and energy = A^2 sum(w^2) / 2.
        self._tone_share = 2 * float(np.sum(hann**2)) / float(np.sum(hann)) ** 2
        self._peak_power = (float(np.sum(hann)) / 2) ** 2  # |Y|^2 per unit amplitude squared
        freqs = np.asarray(FREQS)
        self._advance = np.exp(-2j * np.pi * freqs * self.hop / sample_rate).astype(np.complex64)
        self._hz_per_radian = sample_rate / (2 * np.pi * self.hop)
        self._freqs = freqs.astype(np.float32)
        self._tolerance = (FREQ_TOLERANCE * freqs).astype(np.float32)
        self._suspect_tolerance = (SUSPECT_FREQ_TOLERANCE * freqs).astype(np.float32)
        bin_hz = sample_rate / self.window
        self._lobe = _LobeGain(bin_hz, limit=0.9)
        self._response = _Response(bin_hz)
        self._previous = np.zeros((streams, len(freqs)), dtype=np.complex64)
        # A cheap first look lets silence and most speech skip the full tests. It is looser
        # than both tests can ever be: a tone 2.5 % off loses at most 60 % of its power.
        self._gate_power = self._min_power(min(SUSPECT_LEVEL_DBM0, MIN_LEVEL_DBM0 - 4))
        self._gate_share = 0.3 / self._tone_share

    def reset(self, stream: int) -> None:
        self._previous[stream] = 0

    def _min_power(self, level_dbm0: float) -> float:
        return dbm0_to_peak(level_dbm0) ** 2 * self._peak_power

    def analyse(self, signal: Floats, hops: int) -> Analysis:
        """Judge the `hops` windows ending at each hop of the last `hops * hop` samples."""
        analysis, self._previous = self.judge(signal, hops, self._previous)
        return analysis

    def judge(self, signal: Floats, hops: int, previous: Complexes) -> tuple[Analysis, Complexes]:
        """`analyse` for streams whose state the caller keeps: `previous` holds each
        stream's last bins from its previous call; returns the bins to keep for the next."""
        streams = signal.shape[0]
        item = signal.strides[1]
        windows = as_strided(
            signal, (streams, hops, self.window), (signal.strides[0], self.hop * item, item)
        )
        flat = windows.reshape(streams * hops, self.window)  # copies: BLAS wants it dense
        bins = (flat @ self._basis).view(np.complex64)
        energy = self._energy(signal, flat, hops)
        power = bins[:, :8].real ** 2 + bins[:, :8].imag ** 2
        # Group maxima column by column: numpy reduces a 4-wide axis slowly.
        row_top = np.maximum(
            np.maximum(power[:, 0], power[:, 1]), np.maximum(power[:, 2], power[:, 3])
        )
        col_top = np.maximum(
            np.maximum(power[:, 4], power[:, 5]), np.maximum(power[:, 6], power[:, 7])
        )
        gate = (np.minimum(row_top, col_top) >= self._gate_power) & (
            row_top + col_top >= self._gate_share * energy
        )
        last = bins[hops - 1 :: hops, :8].copy()
        keys = np.full(streams * hops, -1, dtype=np.int8)
        suspect = np.zeros(streams * hops, dtype=np.bool_)
        picked = np.flatnonzero(gate)
        if picked.size:
            # The window one hop earlier: the previous call's last one for a call's first hop.
            earlier = bins[np.maximum(picked - 1, 0), :8]
            first = picked % hops == 0
            earlier[first] = previous[picked[first] // hops]
            keys[picked], suspect[picked] = self._judge(
                bins[picked], earlier, power[picked], energy[picked]
            )
        return Analysis(keys.reshape(streams, hops), suspect.reshape(streams, hops)), last

    def _energy(self, signal: Floats, flat: Floats, hops: int) -> Floats:
        """Hann-weighted energy of each window. For the usual few hops per call, squaring
        the signal once and multiplying by a banded matrix beats squaring every window."""
        if hops > 8:
            result: Floats = np.square(flat) @ self._hann_squared
            return result
        basis = self._energy_bases.get(hops)
        if basis is None:
            basis = np.zeros((signal.shape[1], hops), dtype=np.float32)
            for hop in range(hops):
                basis[hop * self.hop : hop * self.hop + self.window, hop] = self._hann_squared
            self._energy_bases[hops] = basis
        return (np.square(signal) @ basis).reshape(-1)

    def _judge(
        self, bins: Complexes, earlier: Complexes, power: Floats, energy: Floats
    ) -> tuple[npt.NDArray[np.int8], BoolArray]:
        """The full tests on the windows that passed the gate (one row per window). The
        row group and the column group go side by side along a second axis (0: row,
        1: column), which halves the numpy calls a window costs."""
        count = len(bins)
        groups = power.reshape(count, 2, 4)
        peak = _strongest(groups)  # (count, 2): 0-3 within each group
        index = peak + _GROUP_START  # 0-7 among the DTMF frequencies
        at = np.arange(count)[:, None]
        peak_power = power[at, index]
        offset = self._offset(bins[at, index], earlier[at, index], index)
        tone_hz = self._freqs[index] + offset
        # Levels corrected for the measured offset: a tone 1.5 % off loses up to 1.4 dB in
        # the window's main lobe, which would otherwise eat the twist margin.
        level = peak_power / self._lobe(offset)
        stray = self._stray(groups, peak, tone_hz, level)
        # (Reductions over the 2-wide axis are slow in numpy: the columns go by hand.)
        within = _both(np.abs(offset) <= self._tolerance[index])
        nearly_within = _both(np.abs(offset) <= self._suspect_tolerance[index])
        peaks_stand_out = _both(stray * _db(RELATIVE_PEAK_DB) <= level)
        row_level, col_level = level[:, 0], level[:, 1]
        row_power, col_power = peak_power[:, 0], peak_power[:, 1]
        # Partials are held against the stronger tone: a note's partials are as strong
        # relative to it whichever group it poses as, and the weaker tone of a twisted key
        # would let noise in its harmonic bins count against it.
        partials = _power(bins[at, index + 8])
        harmonics = np.maximum(partials[:, 0], partials[:, 1])
        harmonics *= np.float32(self._harmonic_scale * _db(HARMONIC_DB))
        twist = row_level / col_level
        valid = (
            peaks_stand_out
            & within
            & (np.minimum(row_level, col_level) >= self._min_power(MIN_LEVEL_DBM0))
            & (twist <= _db(NORMAL_TWIST_DB))
            & (twist >= 1 / _db(REVERSE_TWIST_DB))
            & ((row_level + col_level) * self._tone_share >= MIN_TONE_FRACTION * energy)
            & (np.abs(tone_hz[:, 1] - 2 * tone_hz[:, 0]) > OCTAVE_HZ)
            & (harmonics <= np.maximum(row_level, col_level))
        )
        raw_twist = row_power / col_power
        suspect = valid | (
            peaks_stand_out
            & nearly_within
            & (np.minimum(row_power, col_power) >= self._min_power(SUSPECT_LEVEL_DBM0))
            & (raw_twist <= _db(SUSPECT_TWIST_DB))
            & (raw_twist >= 1 / _db(SUSPECT_TWIST_DB))
            & ((row_power + col_power) * self._tone_share >= SUSPECT_TONE_FRACTION * energy)
        )
        keys = np.where(valid, 4 * peak[:, 0] + peak[:, 1], -1).astype(np.int8)
        return keys, suspect

    def _stray(self, groups: Floats, peak: Indices, tone_hz: Floats, level: Floats) -> Floats:
        """Per group, the strongest content in the other three bins beyond what the peak
        tone itself leaks into them (as power). A tone 1.5 % off leaks to 9.6 dB below
        itself into the neighbouring row; a voice's next harmonic is content of its own."""
        distance = tone_hz[:, :, None] - self._freqs.reshape(2, 4)
        leak = np.sqrt(level)[:, :, None] * self._response(distance)
        extra = np.maximum(np.sqrt(groups) - leak, 0)
        extra[peak[:, :, None] == _BIN_OF_GROUP] = 0
        strongest = np.maximum(
            np.maximum(extra[..., 0], extra[..., 1]), np.maximum(extra[..., 2], extra[..., 3])
        )
        result: Floats = strongest**2
        return result

    def _offset(self, now: Complexes, before: Complexes, index: Indices) -> Floats:
        """A tone's offset in Hz from the bin centre: the phase it gained over one hop,
        less what a tone exactly at the centre would gain."""
        turn = now * np.conj(before) * self._advance[index]
        offset: Floats = np.angle(turn) * np.float32(self._hz_per_radian)
        return offset


_GROUP_START: Final = np.array([0, 4])


def _both(flags: BoolArray) -> BoolArray:
    """Row and column test both passed."""
    result: BoolArray = flags[:, 0] & flags[:, 1]
    return result


_BIN_OF_GROUP: Final = np.arange(4)


def _strongest(groups: Floats) -> Indices:
    """Index (0-3) of the strongest of the four bins in each group, in a few cheap passes
    over the columns (argmax over a 4-wide axis is slow in numpy)."""
    p0, p1, p2, p3 = groups[..., 0], groups[..., 1], groups[..., 2], groups[..., 3]
    second_wins = p1 > p0
    fourth_wins = p3 > p2
    upper = np.maximum(p2, p3) > np.maximum(p0, p1)
    index: Indices = np.where(upper, 2 + fourth_wins, second_wins).astype(np.intp)
    return index


def _hann_response(offset_bins: Floats) -> Floats:
    """Amplitude response of the Hann window at `offset_bins` from a bin centre, relative
    to the centre: sinc(x) / (1 - x^2), whose 0/0 at x = +-1 is 1/2."""
    x = np.asarray(offset_bins, dtype=np.float32)
    near_one = np.abs(np.abs(x) - 1) < 1e-4
    denominator = np.where(near_one, 1.0, 1.0 - x * x)
    ratio = np.where(near_one, 0.5, np.sinc(x) / denominator)
    result: Floats = ratio.astype(np.float32)
    return result


class _Response:
    """|Hann response| at an offset in Hz (main lobe and side lobes)."""

    def __init__(self, bin_hz: float) -> None:
        self._per_hz = np.float32(1 / bin_hz)

    def __call__(self, offset_hz: Floats) -> Floats:
        return np.abs(_hann_response(offset_hz * self._per_hz))


class _LobeGain:
    """Power gain of the Hann window's main lobe at an offset in Hz from the bin centre;
    offsets beyond `limit` bins count as `limit`."""

    def __init__(self, bin_hz: float, limit: float) -> None:
        self._per_hz = np.float32(1 / bin_hz)
        self._limit = limit

    def __call__(self, offset_hz: Floats) -> Floats:
        bins = np.clip(offset_hz * self._per_hz, -self._limit, self._limit)
        return _hann_response(bins) ** 2


def _dft_basis(
    window: npt.NDArray[np.float64], freqs: tuple[float, ...], sample_rate: int
) -> Floats:
    """Columns re, im, re, im, ... of the windowed DFT at `freqs`: `x @ basis` viewed as
    complex64 is the windowed Goertzel/DFT value at each frequency."""
    phase = 2 * np.pi * np.outer(np.arange(len(window)), np.asarray(freqs)) / sample_rate
    basis = np.empty((len(window), 2 * len(freqs)))
    basis[:, 0::2] = window[:, None] * np.cos(phase)
    basis[:, 1::2] = -window[:, None] * np.sin(phase)
    return basis.astype(np.float32)


def _power(values: Complexes) -> Floats:
    result: Floats = values.real**2 + values.imag**2
    return result


# --- key presses ---------------------------------------------------------------------------
# A stream's press state is one small integer: the key in sight (-1: none), how many valid
# hops of it in a row (before acceptance), hops since it was last seen (up to GAP_HOPS) and
# whether it was reported. `_transition` is the rule; tables built from it drive the many
# streams at once, so the numpy path and the plain-Python path cannot disagree.

_INPUTS: Final = len(KEYS) + 1  # a hop shows one of the keys, or none (-1)


class _Press(NamedTuple):
    key: int
    run: int  # valid hops of `key` in a row, until it is reported
    gap: int
    reported: bool

    def encode(self) -> int:
        return (((self.key + 1) * ACCEPT_HOPS + self.run) * (GAP_HOPS + 1) + self.gap) * 2 + int(
            self.reported
        )


_IDLE: Final = _Press(-1, 0, GAP_HOPS, False).encode()
_STATES: Final = (len(KEYS) + 1) * ACCEPT_HOPS * (GAP_HOPS + 1) * 2


def _decode(state: int) -> _Press:
    rest, reported = divmod(state, 2)
    rest, gap = divmod(rest, GAP_HOPS + 1)
    key, count = divmod(rest, ACCEPT_HOPS)
    return _Press(key - 1, count, gap, bool(reported))


def _transition(press: _Press, seen: int) -> tuple[_Press, bool, bool]:
    """One hop: (next state, whether a new press began, whether its key was accepted)."""
    key, count, gap, reported = press
    fresh = False
    if seen >= 0:
        gap = 0
        if seen == key:
            count += 1
        else:  # a new press, or another key straight after the last
            key, count, reported, fresh = seen, 1, False, True
    else:
        gap = min(gap + 1, GAP_HOPS)
        if gap >= GAP_HOPS:
            key, count, reported = -1, 0, False
        elif not reported:
            # Before acceptance the valid hops must be consecutive (talk-off: speech rarely
            # looks like a key for long); after it, a gap shorter than GAP_HOPS is a dropout.
            count = 0
    accepted = not reported and count >= ACCEPT_HOPS
    reported = reported or accepted
    return _Press(key, 0 if reported else count, gap, reported), fresh, accepted


class _Tables(NamedTuple):
    following: npt.NDArray[np.int16]  # [state * _INPUTS + seen + 1] -> next state
    fresh: BoolArray
    accepted: BoolArray
    key: npt.NDArray[np.int8]  # [state] -> its key


@cache
def _tables() -> _Tables:
    following = np.zeros(_STATES * _INPUTS, dtype=np.int16)
    fresh = np.zeros(_STATES * _INPUTS, dtype=np.bool_)
    accepted = np.zeros(_STATES * _INPUTS, dtype=np.bool_)
    for state in range(_STATES):
        press = _decode(state)
        for seen in range(-1, len(KEYS)):
            after, began, took = _transition(press, seen)
            following[state * _INPUTS + seen + 1] = after.encode()
            fresh[state * _INPUTS + seen + 1] = began
            accepted[state * _INPUTS + seen + 1] = took
    keys = np.array([_decode(state).key for state in range(_STATES)], dtype=np.int8)
    return _Tables(following, fresh, accepted, keys)


class _Tracker:
    """Turns per-hop verdicts into key presses, for many streams at once. Streams with no
    key in sight are skipped; a few busy ones step through plain Python, many through
    numpy, both by the same tables."""

    SCALAR_LIMIT: Final = 8  # below this many busy streams Python beats numpy's overhead

    def __init__(self, streams: int, hop: int) -> None:
        self.hop = hop
        self.state = np.full(streams, _IDLE, dtype=np.int16)
        self.first = np.zeros(streams, dtype=np.int64)  # end of the press's first window
        self._tables = _tables()
        self._following = self._tables.following.tolist()
        self._fresh = self._tables.fresh.tolist()
        self._accepted = self._tables.accepted.tolist()

    def reset(self, stream: int) -> None:
        self.state[stream] = _IDLE

    def grow(self, streams: int) -> None:
        """Room for `streams` streams; the new ones start idle."""
        extra = streams - len(self.state)
        self.state = np.concatenate([self.state, np.full(extra, _IDLE, dtype=np.int16)])
        self.first = np.concatenate([self.first, np.zeros(extra, dtype=np.int64)])

    def advance(self, keys: npt.NDArray[np.int8], clock: int) -> list[tuple[int, int, int]]:
        """Feed each stream's hops (keys shaped (streams, hops); `clock` = samples before
        them); returns (stream, key, end of its first window) for each accepted key."""
        busy = np.flatnonzero((keys >= 0).any(axis=1) | (self.state != _IDLE))
        if not busy.size:
            return []
        return self._step(busy, busy, keys, clock)

    def advance_rows(
        self, streams: Indices, keys: npt.NDArray[np.int8], clocks: npt.NDArray[np.int64]
    ) -> list[tuple[int, int, int]]:
        """`advance` for some streams only, each on its own clock: row i of `keys` (and
        `clocks[i]`) belongs to stream `streams[i]`; returns (row, key, end of its first
        window) for each accepted key."""
        busy = np.flatnonzero((keys >= 0).any(axis=1) | (self.state[streams] != _IDLE))
        if not busy.size:
            return []
        return self._step(busy, streams[busy], keys, clocks[busy])

    def _step(
        self,
        rows: Indices,
        streams: Indices,
        keys: npt.NDArray[np.int8],
        clock: int | npt.NDArray[np.int64],
    ) -> list[tuple[int, int, int]]:
        """Rows `rows` of `keys` for streams `streams` (one clock for all, or one per row)."""
        if rows.size <= self.SCALAR_LIMIT:
            return self._advance_scalar(rows, streams, keys, clock)
        return self._advance_vector(rows, streams, keys, clock)

    def _advance_scalar(
        self,
        rows: Indices,
        streams: Indices,
        keys: npt.NDArray[np.int8],
        clock: int | npt.NDArray[np.int64],
    ) -> list[tuple[int, int, int]]:
        accepted: list[tuple[int, int, int]] = []
        clocks = [clock] * len(rows) if isinstance(clock, int) else clock.tolist()
        for row, stream, base in zip(rows.tolist(), streams.tolist(), clocks, strict=True):
            state, first = int(self.state[stream]), int(self.first[stream])
            for hop, seen in enumerate(keys[row].tolist()):
                at = state * _INPUTS + seen + 1
                state = self._following[at]
                if self._fresh[at]:
                    first = base + (hop + 1) * self.hop
                if self._accepted[at]:
                    accepted.append((row, int(self._tables.key[state]), first))
            self.state[stream], self.first[stream] = state, first
        return accepted

    def _advance_vector(
        self,
        rows: Indices,
        streams: Indices,
        keys: npt.NDArray[np.int8],
        clock: int | npt.NDArray[np.int64],
    ) -> list[tuple[int, int, int]]:
        accepted: list[tuple[int, int, int]] = []
        state = self.state[streams].astype(np.intp)
        first = self.first[streams]
        seen = keys[rows].astype(np.intp) + 1
        for hop in range(keys.shape[1]):
            at = state * _INPUTS + seen[:, hop]
            state = self._tables.following[at].astype(np.intp)
            fresh = self._tables.fresh[at]
            if fresh.any():
                base = clock if isinstance(clock, int) else clock[fresh]
                first[fresh] = base + (hop + 1) * self.hop
            took = self._tables.accepted[at]
            if took.any():
                for index in np.flatnonzero(took).tolist():
                    key = int(self._tables.key[state[index]])
                    accepted.append((int(rows[index]), key, int(first[index])))
        self.state[streams] = state
        self.first[streams] = first
        return accepted


class DetectorBank:
    """DTMF detection for `streams` streams fed in lockstep: `feed(frames)` with frames
    shaped (streams, n), n a multiple of 5 ms (40 samples at 8 kHz; 160 is one frame)."""

    def __init__(self, streams: int, sample_rate: int = SAMPLE_RATE) -> None:
        if streams < 1:
            raise ValueError("a bank needs at least one stream")
        if sample_rate % 200:
            raise ValueError("the sample rate must be a multiple of 200 Hz (5 ms hops)")
        self.streams = streams
        self.sample_rate = sample_rate
        self._filters = _FilterBank(streams, sample_rate)
        self.hop = self._filters.hop
        self.window = self._filters.window
        self._tracker = _Tracker(streams, self.hop)
        self._history = np.zeros((streams, self.window - self.hop), dtype=np.float32)
        self._clock = 0  # samples fed to every stream so far
        self._origin = np.zeros(streams, dtype=np.int64)  # clock at each stream's start
        # The first valid window of a press ends about this far after the tone began.
        self._start_lag = self.window - self.window // 8

    @property
    def clock(self) -> int:
        """Samples fed to each stream so far (counted from the bank's start)."""
        return self._clock

    def reset(self, stream: int) -> None:
        """Start `stream` afresh (a new call in this slot); its sample indices restart at 0."""
        self._filters.reset(stream)
        self._tracker.reset(stream)
        self._history[stream] = 0
        self._origin[stream] = self._clock

    def feed(self, frames: npt.ArrayLike) -> list[list[KeyEvent]]:
        """Keys newly accepted in each stream."""
        return self.analyse(frames)[0]

    def analyse(self, frames: npt.ArrayLike) -> tuple[list[list[KeyEvent]], Analysis]:
        """`feed`, plus the per-hop verdicts (the masker uses `suspect`)."""
        block = np.asarray(frames)
        if block.ndim != 2 or block.shape[0] != self.streams or block.shape[1] % self.hop:
            raise ValueError(
                f"frames must be shaped ({self.streams}, n) with n a multiple of {self.hop}"
            )
        length = block.shape[1]
        keep = self._history.shape[1]
        signal = np.empty((self.streams, keep + length), dtype=np.float32)
        signal[:, :keep] = self._history
        signal[:, keep:] = block
        self._history = signal[:, length:].copy()
        analysis = self._filters.analyse(signal, length // self.hop)
        events: list[list[KeyEvent]] = [[] for _ in range(self.streams)]
        for stream, key, first in self._tracker.advance(analysis.keys, self._clock):
            start = max(0, first - self._start_lag - int(self._origin[stream]))
            events[stream].append(KeyEvent(KEYS[key], start, None))
        self._clock += length
        return events, analysis


class DetectorSlots:
    """DTMF detection for streams fed independently: each stream has a slot with its own
    clock, and `analyse(slots, frames)` feeds only the streams in `slots`, in one pass.
    The decisions for a stream are those of a `DtmfDetector` fed the same audio, whoever
    else shares the pass: every step works row by row, and a pass of one stream is
    padded to two so BLAS takes the same (matrix-matrix) path for it as for many."""

    def __init__(self, capacity: int, sample_rate: int = SAMPLE_RATE) -> None:
        if capacity < 1:
            raise ValueError("a pool needs at least one slot")
        if sample_rate % 200:
            raise ValueError("the sample rate must be a multiple of 200 Hz (5 ms hops)")
        self.capacity = capacity
        self.sample_rate = sample_rate
        self._filters = _FilterBank(1, sample_rate)
        self.hop = self._filters.hop
        self.window = self._filters.window
        self._tracker = _Tracker(capacity, self.hop)
        self._history = np.zeros((capacity, self.window - self.hop), dtype=np.float32)
        self._previous = np.zeros((capacity, len(FREQS)), dtype=np.complex64)
        self.clock = np.zeros(capacity, dtype=np.int64)  # samples fed to each slot
        self._start_lag = self.window - self.window // 8

    def grow(self, capacity: int) -> None:
        """Room for `capacity` slots; the new ones start afresh."""
        extra = capacity - self.capacity
        if extra <= 0:
            return
        self._tracker.grow(capacity)
        self._history = np.concatenate(
            [self._history, np.zeros((extra, self._history.shape[1]), dtype=np.float32)]
        )
        self._previous = np.concatenate(
            [self._previous, np.zeros((extra, len(FREQS)), dtype=np.complex64)]
        )
        self.clock = np.concatenate([self.clock, np.zeros(extra, dtype=np.int64)])
        self.capacity = capacity

    def reset(self, slot: int) -> None:
        """Start `slot` afresh (a new stream); its sample indices restart at 0."""
        self._tracker.reset(slot)
        self._history[slot] = 0
        self._previous[slot] = 0
        self.clock[slot] = 0

    def analyse(
        self, slots: Indices, frames: npt.NDArray[np.int16]
    ) -> tuple[dict[int, list[KeyEvent]], Analysis]:
        """Feed row i of `frames` (shaped (len(slots), n), n a multiple of the hop) to
        stream `slots[i]`; `slots` must be distinct. The keys newly accepted, by row (only
        rows that have some: most frames have none), and the per-hop verdicts."""
        rows, length = frames.shape
        if rows != len(slots) or length % self.hop or not length:
            raise ValueError(f"frames must be shaped ({len(slots)}, n), n a multiple of {self.hop}")
        if rows > 1 and np.unique(slots).size != rows:
            raise ValueError("a slot can be fed only once per pass")
        keep = self._history.shape[1]
        padded = max(rows, 2)
        signal = np.zeros((padded, keep + length), dtype=np.float32)
        signal[:rows, :keep] = self._history[slots]
        signal[:rows, keep:] = frames
        previous = np.zeros((padded, len(FREQS)), dtype=np.complex64)
        previous[:rows] = self._previous[slots]
        analysis, last = self._filters.judge(signal, length // self.hop, previous)
        verdicts = Analysis(analysis.keys[:rows], analysis.suspect[:rows])
        self._history[slots] = signal[:rows, length:]
        self._previous[slots] = last[:rows]
        clocks = self.clock[slots]
        events: dict[int, list[KeyEvent]] = {}
        for row, key, first in self._tracker.advance_rows(slots, verdicts.keys, clocks):
            found = KeyEvent(KEYS[key], max(0, first - self._start_lag), None)
            events.setdefault(row, []).append(found)
        self.clock[slots] = clocks + length
        return events, verdicts


class DtmfDetector:
    """DTMF detection for one stream, fed in chunks of any size."""

    def __init__(self, sample_rate: int = SAMPLE_RATE) -> None:
        self._bank = DetectorBank(1, sample_rate)
        self._pending = np.zeros(0, dtype=np.int16)

    def feed(self, samples: npt.ArrayLike) -> list[KeyEvent]:
        """Keys accepted in this chunk (each key once, as soon as it is >= 40 ms long)."""
        data = np.concatenate([self._pending, np.asarray(samples, dtype=np.int16).ravel()])
        usable = len(data) - len(data) % self._bank.hop
        self._pending = data[usable:]
        events: list[KeyEvent] = []
        # Long inputs go in 1 s pieces: bounded memory, the same decisions.
        for start in range(0, usable, self._bank.sample_rate):
            piece = data[start : min(usable, start + self._bank.sample_rate)]
            events += self._bank.feed(piece[None, :])[0]
        return events

    def flush(self) -> list[KeyEvent]:
        """End of stream: what is still buffered, followed by silence."""
        tail = (-len(self._pending)) % self._bank.hop + self._bank.window
        return self.feed(np.zeros(tail, dtype=np.int16))


def detect_keys(samples: npt.ArrayLike, sample_rate: int = SAMPLE_RATE) -> str:
    """The keys in a whole signal, in order: e.g. "4111#"."""
    detector = DtmfDetector(sample_rate)
    events = detector.feed(samples) + detector.flush()
    return "".join(event.key for event in events)
