"""The DTMF receiver against ITU-T Q.24 / ETSI ES 201 235-3 acceptance rules.

Each rule is tested at nominal values of the others (as the standards' test procedures
do), at the limits that must be accepted and just beyond those that must be rejected.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.dtmf_signals import (
    RATE,
    Signal,
    ms,
    mulaw,
    pcm,
    sequence,
    silence,
    tone,
    tone_power,
    with_dropout,
    with_noise,
)
from transact.telephony import dtmf
from transact.telephony.dtmf import KEYS, DetectorBank, DtmfDetector, KeyEvent, detect_keys

CARD = "4111111111111111#1228#"


def framed(*parts: Signal) -> Signal:
    """Parts between 100 ms of silence, so every case starts and ends quietly."""
    return np.concatenate([silence(100), *parts, silence(100)])


def keys_in(signal: Signal, law: bool = True) -> str:
    return detect_keys(mulaw(signal) if law else pcm(signal))


def test_all_sixteen_keys_in_one_sequence() -> None:
    assert keys_in(sequence(KEYS)) == KEYS


@pytest.mark.parametrize("key", list(KEYS))
def test_each_key_alone(key: str) -> None:
    assert keys_in(framed(tone(key, 60))) == key
    assert keys_in(framed(tone(key, 60)), law=False) == key


# --- frequency deviation ---------------------------------------------------------------------


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("deviation", [0.015, -0.015])
@pytest.mark.parametrize("group", ["row", "col", "both"])
def test_frequency_off_by_1_5_percent_is_accepted(key: str, deviation: float, group: str) -> None:
    row_dev = deviation if group in ("row", "both") else 0.0
    col_dev = deviation if group in ("col", "both") else 0.0
    assert keys_in(framed(tone(key, 80, row_dev=row_dev, col_dev=col_dev))) == key


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("deviation", [0.035, -0.035, 0.05, -0.05])
@pytest.mark.parametrize("group", ["row", "col"])
def test_frequency_off_by_3_5_percent_or_more_is_rejected(
    key: str, deviation: float, group: str
) -> None:
    row_dev, col_dev = (deviation, 0.0) if group == "row" else (0.0, deviation)
    assert keys_in(framed(tone(key, 200, row_dev=row_dev, col_dev=col_dev))) == ""


# --- twist ----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", list(KEYS))
def test_normal_twist_of_8_db_is_accepted(key: str) -> None:
    assert keys_in(framed(tone(key, 80, row_dbm0=-8, col_dbm0=-16))) == key


@pytest.mark.parametrize("key", list(KEYS))
def test_reverse_twist_of_4_db_is_accepted(key: str) -> None:
    assert keys_in(framed(tone(key, 80, row_dbm0=-14, col_dbm0=-10))) == key


@pytest.mark.parametrize("key", list(KEYS))
def test_normal_twist_of_10_db_is_rejected(key: str) -> None:
    assert keys_in(framed(tone(key, 200, row_dbm0=-8, col_dbm0=-18))) == ""


@pytest.mark.parametrize("key", list(KEYS))
def test_reverse_twist_of_6_db_is_rejected(key: str) -> None:
    assert keys_in(framed(tone(key, 200, row_dbm0=-16, col_dbm0=-10))) == ""


# --- duration -------------------------------------------------------------------------------


def shifted(parts: Signal, offset: int) -> Signal:
    """`parts` starting `offset` samples later: every alignment to the 5 ms analysis grid."""
    return np.concatenate([np.zeros(offset), parts])


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("level", [0.0, -10.0, -25.0])
def test_40_ms_tones_are_accepted_at_every_alignment(key: str, level: float) -> None:
    for offset in range(0, 40, 7):
        phases = (offset * 0.37, offset * 0.91)
        signal = shifted(framed(tone(key, 40, row_dbm0=level, phases=phases)), offset)
        assert keys_in(signal) == key, offset


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("level", [0.0, -10.0, -25.0])
def test_20_ms_tones_are_never_reported(key: str, level: float) -> None:
    for offset in range(0, 40, 3):
        phases = (offset * 0.37, offset * 0.91)
        burst = tone(key, 20, row_dbm0=level, phases=phases)
        assert keys_in(shifted(framed(burst), offset)) == "", offset
        noisy = with_noise(shifted(framed(burst), offset), 15, tone_power(level), seed=offset)
        assert keys_in(noisy) == "", offset


def test_tones_shorter_than_20_ms_are_never_reported() -> None:
    for duration in (5, 10, 15, 20):
        bursts = [np.concatenate([tone(key, duration), silence(100)]) for key in KEYS]
        assert keys_in(framed(*bursts)) == ""


# --- interruptions and pauses -----------------------------------------------------------------


@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("dropout_ms", [5, 10])
def test_a_dropout_of_up_to_10_ms_does_not_split_a_key(key: str, dropout_ms: int) -> None:
    for at in range(20, 80, 9):
        signal = framed(with_dropout(tone(key, 100 + dropout_ms), at, dropout_ms))
        assert keys_in(signal) == key, at
        noisy = with_noise(signal, 15, tone_power(-10), seed=at)
        assert keys_in(noisy) == key, at


@pytest.mark.parametrize("gap_ms", [40, 45, 50])
def test_pauses_of_40_ms_separate_repeated_keys(gap_ms: int) -> None:
    assert keys_in(sequence("1111", on_ms=40, off_ms=gap_ms)) == "1111"
    assert keys_in(sequence("0000", on_ms=60, off_ms=gap_ms, row_dbm0=-25)) == "0000"
    assert keys_in(sequence(CARD, on_ms=50, off_ms=gap_ms)) == CARD


def test_a_card_number_keyed_at_the_fastest_standard_rate() -> None:
    # 40 ms on, 40 ms off: 12.5 keys a second, the fastest any standard asks for.
    assert keys_in(sequence(CARD, on_ms=40, off_ms=40)) == CARD


def test_keys_straight_after_each_other_without_a_pause() -> None:
    assert keys_in(framed(tone("1", 80), tone("2", 80), tone("3", 80))) == "123"


# --- level, noise and the channel ----------------------------------------------------------------


@pytest.mark.parametrize("level", [0.0, -5.0, -10.0, -15.0, -20.0, -25.0])
def test_levels_from_0_to_minus_25_dbm0_per_tone(level: float) -> None:
    signal = sequence(KEYS, on_ms=50, off_ms=50, row_dbm0=level)
    assert keys_in(signal) == KEYS
    assert keys_in(signal, law=False) == KEYS


def test_tones_far_below_the_operating_range_are_not_keys() -> None:
    assert keys_in(sequence(KEYS, row_dbm0=-36)) == ""


@pytest.mark.parametrize("level", [-10.0, -25.0])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_white_noise_at_15_db_snr(level: float, seed: int) -> None:
    signal = sequence(KEYS + CARD, on_ms=50, off_ms=50, row_dbm0=level)
    noisy = with_noise(signal, 15, tone_power(level), seed=seed)
    assert keys_in(noisy) == KEYS + CARD


def test_noise_alone_is_not_a_key() -> None:
    noise = with_noise(silence(5000), 0, tone_power(-10), seed=9)
    assert keys_in(noise) == ""


def test_survives_a_mu_law_round_trip_at_every_level() -> None:
    for level in (0.0, -12.0, -25.0):
        once = mulaw(sequence(CARD, row_dbm0=level))
        twice = mulaw(once.astype(np.float64))
        assert detect_keys(twice) == CARD


# --- the streaming interface ----------------------------------------------------------------


def test_each_key_is_reported_once_as_soon_as_it_is_accepted() -> None:
    onset = ms(100)
    signal = mulaw(framed(tone("5", 300)))
    detector = DtmfDetector()
    reports: list[tuple[int, KeyEvent]] = []
    for start in range(0, len(signal), 160):
        for event in detector.feed(signal[start : start + 160]):
            reports.append((start + 160, event))
    reports += [(len(signal), event) for event in detector.flush()]
    assert len(reports) == 1
    seen_at, event = reports[0]
    assert event.key == "5"
    assert event.end is None
    assert abs(event.start - onset) <= ms(5)
    # Accepted once 40 ms of tone are in, reported with the frame that completes them.
    assert onset + ms(25) <= seen_at <= onset + ms(60)


def test_a_key_at_the_very_end_of_the_stream() -> None:
    assert detect_keys(mulaw(np.concatenate([silence(100), tone("9", 45)]))) == "9"


def test_chunk_sizes_do_not_change_the_result() -> None:
    signal = mulaw(with_noise(sequence(CARD + KEYS), 20, tone_power(-10), seed=4))
    whole = DtmfDetector()
    expected = whole.feed(signal) + whole.flush()
    rng = np.random.default_rng(5)
    pieces = DtmfDetector()
    got: list[KeyEvent] = []
    position = 0
    while position < len(signal):
        size = int(rng.integers(1, 700))
        got += pieces.feed(signal[position : position + size])
        position += size
    assert got + pieces.flush() == expected
    assert "".join(event.key for event in expected) == CARD + KEYS


def mixed_streams(count: int, seconds: float) -> list[np.ndarray]:
    """Different calls: cards at different rates, levels, noise, silence."""
    rng = np.random.default_rng(11)
    streams = []
    for index in range(count):
        keys = "".join(rng.choice(list(KEYS), size=int(rng.integers(0, 12))))
        level = float(rng.uniform(-25, -3))
        signal = sequence(
            keys,
            on_ms=float(rng.uniform(40, 90)),
            off_ms=float(rng.uniform(40, 90)),
            row_dbm0=level,
        )
        signal = with_noise(signal, float(rng.uniform(15, 40)), tone_power(level), seed=index)
        padded = np.zeros(round(seconds * RATE))
        offset = int(rng.integers(0, 800))
        padded[offset : offset + len(signal)] = signal[: len(padded) - offset]
        streams.append(mulaw(padded))
    return streams


def test_the_bank_agrees_exactly_with_single_streams() -> None:
    streams = mixed_streams(40, 2.0)
    bank = DetectorBank(len(streams))
    together: list[list[KeyEvent]] = [[] for _ in streams]
    frames = np.stack(streams)
    for start in range(0, frames.shape[1], 160):
        for index, events in enumerate(bank.feed(frames[:, start : start + 160])):
            together[index] += events
    for index, signal in enumerate(streams):
        single = DtmfDetector()
        alone = single.feed(signal)
        assert alone == together[index], index
    assert sum(len(events) for events in together) > 100  # the streams did hold keys


def test_many_busy_streams_and_few_take_the_same_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    streams = np.stack(mixed_streams(30, 1.5))

    def run() -> list[list[KeyEvent]]:
        bank = DetectorBank(len(streams))
        found: list[list[KeyEvent]] = [[] for _ in streams]
        for start in range(0, streams.shape[1], 160):
            for index, events in enumerate(bank.feed(streams[:, start : start + 160])):
                found[index] += events
        return found

    monkeypatch.setattr(dtmf._Tracker, "SCALAR_LIMIT", 0)
    vector = run()
    monkeypatch.setattr(dtmf._Tracker, "SCALAR_LIMIT", 10_000)
    assert run() == vector


def test_a_reset_slot_starts_a_new_stream() -> None:
    bank = DetectorBank(2)
    signal = mulaw(framed(tone("7", 80)))
    frames = np.zeros((2, len(signal) - len(signal) % 160), dtype=np.int16)
    frames[0] = signal[: frames.shape[1]]
    first = bank.feed(frames)
    bank.reset(0)
    second = bank.feed(frames)
    assert [event.key for event in first[0]] == ["7"]
    assert second[0] == first[0]  # sample indices count from the reset
    assert first[1] == second[1] == []


def test_other_sample_rates() -> None:
    rate = 16000
    t = np.arange(rate // 10) / rate
    burst = 7000 * (np.sin(2 * np.pi * 852 * t) + np.sin(2 * np.pi * 1477 * t))
    signal = np.concatenate([np.zeros(1600), burst, np.zeros(1600)])
    assert detect_keys(pcm(signal), sample_rate=rate) == "9"


def test_frames_of_the_wrong_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="multiple of 40"):
        DetectorBank(2).feed(np.zeros((2, 100), dtype=np.int16))
    with pytest.raises(ValueError, match="shaped"):
        DetectorBank(2).feed(np.zeros((3, 160), dtype=np.int16))
