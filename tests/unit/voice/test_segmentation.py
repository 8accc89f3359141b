"""Finding the words of a spoken number by its pauses, and using their count."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from transact.voice.segmentation import (
    Segment,
    prefer_count,
    respaced,
    word_count,
    word_segments,
)

RATE = 8000


def tone(ms: int, amplitude: float = 8000.0, hz: float = 440.0) -> npt.NDArray[np.float64]:
    t = np.arange(RATE * ms // 1000) / RATE
    return amplitude * np.sin(2 * np.pi * hz * t)


def gap(ms: int) -> npt.NDArray[np.float64]:
    return np.zeros(RATE * ms // 1000)


def line(*parts: npt.NDArray[np.float64], noise: float = 3.0, seed: int = 1) -> np.ndarray:
    """Parts joined, 200 ms of quiet around them, with line hiss at `noise` rms."""
    signal = np.concatenate([gap(200), *parts, gap(200)])
    hiss = np.random.default_rng(seed).normal(size=signal.size) * noise
    return np.clip(np.round(signal + hiss), -32768, 32767).astype(np.int16)


def words(count: int, pause_ms: int = 60, word_ms: int = 350) -> list[npt.NDArray[np.float64]]:
    parts: list[npt.NDArray[np.float64]] = []
    for index in range(count):
        parts += [tone(word_ms, hz=300 + 50 * index), gap(pause_ms)]
    return parts[:-1]


def test_tone_bursts_apart_are_counted_as_words() -> None:
    for count in (2, 4, 7):
        found = word_segments(line(*words(count)), RATE)
        assert found is not None
        assert len(found) == count


def test_segments_cover_the_bursts_in_order() -> None:
    found = word_segments(line(*words(3, pause_ms=100, word_ms=300)), RATE)
    assert found is not None
    starts = [segment.start / RATE for segment in found]
    assert np.allclose(starts, [0.2, 0.6, 1.0], atol=0.01)
    assert all(0.28 <= (s.end - s.start) / RATE <= 0.32 for s in found)


def test_a_pause_as_short_as_twenty_ms_still_parts_words() -> None:
    found = word_segments(line(*words(4, pause_ms=20)), RATE)
    assert found is not None
    assert len(found) == 4


def test_a_short_burst_belongs_to_the_word_next_to_it() -> None:
    # "eight": the vowel, a closure, then the release of the t (a 30 ms burst).
    eight = [tone(300), gap(40), tone(30, hz=2000)]
    found = word_segments(line(*eight, gap(150), tone(300)), RATE)
    assert found is not None
    assert len(found) == 2


def test_continuous_speech_gives_no_count() -> None:
    assert word_segments(line(tone(1400)), RATE) is None  # words run together


def test_a_dip_that_does_not_reach_the_floor_gives_no_count() -> None:
    # Far under the words (what parts them), yet well above the line's hiss (a pause).
    dip = tone(80, amplitude=14.0)
    assert word_segments(line(tone(350), dip, tone(350)), RATE) is None
    assert word_segments(line(tone(350), gap(80), tone(350)), RATE) is not None


def test_a_noisy_line_gives_no_count() -> None:
    # Pauses drowned in noise 20 dB under the speech: guessing would do harm.
    assert word_segments(line(*words(4), noise=600.0), RATE) is None


def test_one_word_or_silence_gives_no_count() -> None:
    assert word_segments(line(tone(350)), RATE) is None
    assert word_segments(line(gap(500)), RATE) is None
    assert word_segments(np.zeros(0, dtype=np.int16), RATE) is None


def test_respaced_lengthens_short_pauses_and_cuts_nothing() -> None:
    samples = np.arange(1, 101, dtype=np.int16)
    segments = [Segment(0, 40), Segment(45, 70), Segment(90, 100)]
    out = respaced(samples, segments, pause=10)
    # The 5-sample pause grows to 10 by repeating itself; the 20-sample one stays.
    assert out.tolist() == [
        *range(1, 41),
        *[41, 42, 43, 44, 45] * 2,
        *range(46, 101),
    ]


def test_respaced_keeps_the_line_noise_going_through_a_pause() -> None:
    samples = line(*words(2, pause_ms=30), noise=5.0)
    found = word_segments(samples, RATE)
    assert found is not None
    out = respaced(samples, found, pause=RATE // 4)
    stretched = out[found[0].end : found[0].end + RATE // 4]
    assert len(out) > len(samples)
    assert np.count_nonzero(stretched) > 0.9 * stretched.size  # hiss, not digital silence


def test_word_count_counts_words_not_punctuation() -> None:
    assert word_count("One, one. one - one") == 4
    assert word_count("") == 0


def test_prefer_count_puts_readings_with_that_many_words_first() -> None:
    readings = ["one one one", "one one one one", "one, one one one one", "four one one one"]
    assert prefer_count(readings, 4) == [
        "one one one one",
        "four one one one",
        "one one one",
        "one, one one one one",
    ]
    assert prefer_count(readings, 9) == readings  # none has it: the order stands
