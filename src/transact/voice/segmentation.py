"""Words of a spoken number found by their pauses, so the recognizer can count them.

Whisper tiny.en miscounts runs of one digit ("one one one one" comes out as three or
five "one"s) and drops a short leading "oh" when the words run together. Callers reading
digits leave short pauses between them, and on a quiet line those pauses fall to the
line's noise floor. `word_segments` finds them in the energy envelope; it answers only
when every pause is that deep and every word a plausible length, so continuous speech
(no pauses) and noisy lines (pauses drowned) give None and nothing changes. `respaced`
stretches the pauses it found (Whisper then hears the words apart and counts them), and
`prefer_count` puts the readings with that many words first. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

import numpy as np
import numpy.typing as npt

Samples = npt.NDArray[np.int16]


@dataclass(frozen=True)
class Segmenting:
    """How pauses and words are told apart (chosen on the tuning speakers' digits)."""

    frame_ms: int = 5
    min_range_db: float = 35.0  # speech peaks above the floor: less is a noisy line
    word_level: float = 0.2  # a word: above floor + this share of the range
    pause_level: float = 0.1  # a pause must fall below floor + this share
    min_pause_ms: int = 15  # shorter dips are inside a word ("six", "eight")
    min_word_ms: int = 90  # shorter bursts are part of the word next to them
    max_word_ms: int = 700  # longer: words ran together, the count is unknown
    min_words: int = 2  # one word alone is never miscounted


DEFAULT_SEGMENTING: Final = Segmenting()


@dataclass(frozen=True)
class Segment:
    start: int  # sample index
    end: int


def word_segments(
    samples: Samples, rate: int, settings: Segmenting = DEFAULT_SEGMENTING
) -> list[Segment] | None:
    """The words in one utterance, in order, or None when the pauses are not clear."""
    hop = max(1, rate * settings.frame_ms // 1000)
    level = _frame_levels_db(samples, hop)
    if level.size == 0:
        return None
    floor, peak = float(np.percentile(level, 10)), float(np.percentile(level, 97))
    span = peak - floor
    if span < settings.min_range_db:
        return None
    runs = _runs(level > floor + settings.word_level * span)
    runs = _join_close(runs, settings.min_pause_ms // settings.frame_ms)
    runs = _absorb_bursts(runs, settings.min_word_ms // settings.frame_ms)
    deep = floor + settings.pause_level * span
    for (_, end), (start, _) in pairwise(runs):
        if float(level[end:start].min()) > deep:
            return None  # a dip, not a pause: the words may run together
    longest = settings.max_word_ms // settings.frame_ms
    if len(runs) < settings.min_words or any(end - start > longest for start, end in runs):
        return None
    return [Segment(start * hop, min(len(samples), end * hop)) for start, end in runs]


def _frame_levels_db(samples: Samples, hop: int) -> npt.NDArray[np.float64]:
    frames = len(samples) // hop
    power = np.mean(samples[: frames * hop].astype(np.float64).reshape(frames, hop) ** 2, axis=1)
    levels: npt.NDArray[np.float64] = 10 * np.log10(power + 1.0)
    return levels


def _runs(active: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, end) frame indices of each run of True."""
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def _join_close(runs: list[tuple[int, int]], min_gap: int) -> list[tuple[int, int]]:
    joined: list[tuple[int, int]] = []
    for start, end in runs:
        if joined and start - joined[-1][1] < min_gap:
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


def _absorb_bursts(runs: list[tuple[int, int]], min_length: int) -> list[tuple[int, int]]:
    """Short runs (a plosive's release, a click) joined to the nearer neighbour."""
    kept = list(runs)
    while len(kept) > 1:
        short = [i for i, (s, e) in enumerate(kept) if e - s < min_length]
        if not short:
            break
        i = short[0]
        before = kept[i][0] - kept[i - 1][1] if i > 0 else None
        after = kept[i + 1][0] - kept[i][1] if i + 1 < len(kept) else None
        if after is None or (before is not None and before <= after):
            kept[i - 1 : i + 1] = [(kept[i - 1][0], kept[i][1])]
        else:
            kept[i : i + 2] = [(kept[i][0], kept[i + 1][1])]
    if len(kept) == 1 and kept[0][1] - kept[0][0] < min_length:
        return []
    return kept


def respaced(samples: Samples, segments: Sequence[Segment], pause: int) -> Samples:
    """The utterance with every pause between `segments` at least `pause` samples long.
    Nothing is cut: each short pause is lengthened by repeating its own samples, so the
    line's noise goes on through it rather than dropping to digital silence."""
    pieces: list[Samples] = []
    cursor = 0
    for before, after in pairwise(segments):
        gap = samples[before.end : after.start]
        pieces.append(samples[cursor : before.end])
        pieces.append(_lengthened(gap, pause))
        cursor = after.start
    pieces.append(samples[cursor:])
    return np.concatenate(pieces) if pieces else samples


def _lengthened(gap: Samples, length: int) -> Samples:
    if len(gap) >= length or len(gap) == 0:
        return gap if len(gap) else np.zeros(length, dtype=np.int16)
    return np.resize(gap, length).astype(np.int16)  # tiled: the gap repeated


_WORD: Final = re.compile(r"[a-z]+", re.IGNORECASE)


def word_count(text: str) -> int:
    return len(_WORD.findall(text))


def prefer_count(readings: Sequence[str], count: int) -> list[str]:
    """`readings` (best first) with those of `count` words moved ahead, order kept."""
    matching = [r for r in readings if word_count(r) == count]
    return matching + [r for r in readings if word_count(r) != count]
