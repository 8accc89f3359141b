"""Masking: the agent hears the customer exactly, only later, except that every DTMF tone
is replaced by the same masking tone, from before its first sample to after its last.

The leak test uses an independent decoder, multimon-ng, on what the agent hears.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from tests.dtmf_signals import (
    RATE,
    Samples,
    Signal,
    ms,
    mulaw,
    need_tool,
    pcm,
    resample,
    sequence,
    silence,
    tone,
    tone_power,
    with_dropout,
    with_noise,
)
from tests.speech_corpus import human_speech, synthetic_speech
from transact.telephony.dtmf import KEYS, DtmfDetector, KeyEvent, detect_keys
from transact.telephony.masking import (
    DELAY_SAMPLES,
    PRE_ROLL,
    DspBank,
    LegDsp,
    mask_signal,
    masking_tone,
)

CARD = "4111111111111111#1228#"
ONSET = ms(100)


def heard(samples: Samples) -> Samples:
    """What the agent hears, realigned with the input (the delay taken off)."""
    out = mask_signal(samples)
    assert len(out) == len(samples) + DELAY_SAMPLES
    assert not out[:DELAY_SAMPLES].any()  # the delay line starts silent
    return out[DELAY_SAMPLES:]


def masked_span(samples: Samples, out: Samples) -> tuple[int, int]:
    """First and last+1 index where the output is the masking tone instead of the input."""
    tone_everywhere = masking_tone(len(out))
    masked = (out == tone_everywhere) & (out != samples)
    where = np.flatnonzero(masked)
    return int(where[0]), int(where[-1]) + 1


def test_the_delay_is_at_most_45_ms_and_covers_the_look_ahead() -> None:
    assert ms(45) >= DELAY_SAMPLES
    assert LegDsp().delay_samples == DspBank(1).delay_samples == DELAY_SAMPLES
    # A suspect pair (a window and a hop), the pre-roll, and a hop a LegDsp may hold back.
    detector = DspBank(1).detector
    needed = detector.window + 2 * detector.hop - 1 + PRE_ROLL
    assert needed <= DELAY_SAMPLES


# --- what must pass unchanged -----------------------------------------------------------------


def test_silence_and_line_noise_pass_unchanged() -> None:
    quiet = pcm(with_noise(silence(3000), 30, tone_power(-30), seed=2))
    assert (heard(quiet) == quiet).all()
    zeros = np.zeros(RATE, dtype=np.int16)
    assert (heard(zeros) == zeros).all()


def test_synthetic_speech_passes_sample_for_sample() -> None:
    for name, signal in synthetic_speech():
        for samples in (pcm(signal), mulaw(signal * 2.5)):
            assert (heard(samples) == samples).all(), name


def test_human_speech_passes_sample_for_sample() -> None:
    speech = human_speech()
    assert (heard(speech) == speech).all()


def test_speech_around_a_key_is_untouched_beyond_a_few_milliseconds() -> None:
    talk = pcm(synthetic_speech()[1][1])
    customer = np.concatenate([talk, pcm(tone("5", 80)), talk])
    out = heard(customer)
    start, end = masked_span(customer, out)
    assert len(talk) - ms(25) <= start <= len(talk)
    assert len(talk) + ms(80) <= end <= len(talk) + ms(100)
    assert (out[:start] == customer[:start]).all()
    assert (out[end:] == customer[end:]).all()


# --- what must be hidden --------------------------------------------------------------------


@pytest.mark.parametrize("key", list(KEYS))
def test_every_key_is_replaced_from_before_its_start_to_after_its_end(key: str) -> None:
    for offset in (0, 13, 27):
        for level in (0.0, -25.0):
            customer = mulaw(
                np.concatenate([silence(100), np.zeros(offset), tone(key, 60, level), silence(100)])
            )
            out = heard(customer)
            start, end = masked_span(customer, out)
            assert start < ONSET + offset, (offset, level)
            assert end >= ONSET + offset + ms(60) + ms(5), (offset, level)
            assert detect_keys(out) == ""


def test_the_masking_sound_is_the_same_for_every_key() -> None:
    outputs = [
        heard(mulaw(np.concatenate([silence(100), tone(key, 80), silence(100)]))) for key in KEYS
    ]
    for key, out in zip(KEYS, outputs, strict=True):
        assert (out == outputs[0]).all(), key
    start, end = masked_span(np.zeros(len(outputs[0]), dtype=np.int16), outputs[0])
    # One burst of the masking tone, starting at the beginning of its period.
    assert (outputs[0][start:end] == masking_tone(end - start)).all()
    assert start % 8 == 0


def test_tones_that_are_not_keys_are_masked_too() -> None:
    not_keys = {
        "20 ms": tone("8", 20),
        "3.5 % off": tone("8", 80, row_dev=0.035),
        "10 dB twist": tone("8", 80, row_dbm0=-8, col_dbm0=-18),
        "-32 dBm0": tone("8", 80, row_dbm0=-32),
    }
    for name, burst in not_keys.items():
        customer = mulaw(np.concatenate([silence(100), burst, silence(100)]))
        assert detect_keys(customer) == "", name
        start, end = masked_span(customer, heard(customer))
        assert start < ONSET, name
        assert end >= ONSET + len(burst), name


def test_a_dropout_inside_a_key_is_masked_as_well() -> None:
    customer = mulaw(
        np.concatenate([silence(100), with_dropout(tone("3", 120), 50, 10), silence(100)])
    )
    start, end = masked_span(customer, heard(customer))
    assert start < ONSET
    assert end >= ONSET + ms(120)
    assert detect_keys(heard(customer)) == ""


# --- one leg, many legs ----------------------------------------------------------------------


def customer_call(seed: int) -> Samples:
    rng = np.random.default_rng(seed)
    keys = "".join(rng.choice(list(KEYS), size=8))
    talk = synthetic_speech()[seed % 5][1]
    level = float(rng.uniform(-25, -5))
    keyed = sequence(
        keys, on_ms=float(rng.uniform(40, 80)), off_ms=float(rng.uniform(40, 80)), row_dbm0=level
    )
    return mulaw(
        with_noise(
            np.concatenate([talk[:RATE], keyed, talk[RATE : 2 * RATE]]), 25, tone_power(level), seed
        )
    )


def test_frames_of_any_length_give_the_same_audio_and_keys() -> None:
    customer = customer_call(3)
    expected_audio = mask_signal(customer)[: len(customer)]
    detector = DtmfDetector()
    expected_keys = detector.feed(customer)
    rng = np.random.default_rng(1)
    dsp = LegDsp()
    audio: list[Samples] = []
    keys: list[KeyEvent] = []
    position = 0
    while position < len(customer):
        size = int(rng.choice([1, 7, 40, 80, 159, 160, 161, 320, 1000]))
        out, found = dsp.process(customer[position : position + size])
        assert len(out) == len(customer[position : position + size])
        audio.append(out)
        keys += found
        position += size
    assert (np.concatenate(audio) == expected_audio).all()
    assert keys == expected_keys
    assert "".join(event.key for event in keys)  # the call did hold keys


def test_the_bank_agrees_exactly_with_single_legs() -> None:
    calls = [customer_call(seed) for seed in range(12)]
    length = min(len(call) for call in calls) // 160 * 160
    frames = np.stack([call[:length] for call in calls])
    bank = DspBank(len(calls))
    legs = [LegDsp() for _ in calls]
    for start in range(0, length, 160):
        out, events = bank.process(frames[:, start : start + 160])
        for index, leg in enumerate(legs):
            alone, found = leg.process(frames[index, start : start + 160])
            assert (out[index] == alone).all()
            assert events[index] == found


def test_failing_closed_is_silence() -> None:
    assert (LegDsp().silence(160) == 0).all()
    assert LegDsp().silence(160).dtype == np.int16


def test_a_reset_slot_forgets_the_old_call() -> None:
    bank = DspBank(1)
    loud = pcm(np.full(160, 5000.0))
    bank.process(loud[None, :])
    bank.reset(0)
    out, _ = bank.process(np.zeros((1, 160), dtype=np.int16))
    assert not out.any()


# --- an independent decoder must find nothing in what the agent hears -------------------------


def multimon_keys(samples: Samples) -> str:
    """Keys multimon-ng decodes (it reads raw signed 16-bit mono at 22050 Hz)."""
    tool = need_tool("multimon-ng")
    audio = pcm(resample(samples, RATE, 22050)).astype("<i2").tobytes()
    done = subprocess.run(
        [tool, "-q", "-a", "DTMF", "-t", "raw", "-"],
        input=audio,
        capture_output=True,
        timeout=120,
        check=True,
    )
    lines = done.stdout.decode().splitlines()
    return "".join(line.split(":", 1)[1].strip() for line in lines if line.startswith("DTMF:"))


def leak_cases() -> dict[str, Signal]:
    return {
        "card, 70/70 ms": sequence(CARD, on_ms=70, off_ms=70),
        "all keys, 50/50 ms, -25 dBm0": sequence(KEYS, on_ms=50, off_ms=50, row_dbm0=-25),
        "all keys, 100/60 ms, 0 dBm0": sequence(KEYS, on_ms=100, off_ms=60, row_dbm0=0),
        "repeats, 45/45 ms": sequence("1111555599990000", on_ms=45, off_ms=45),
        "noisy card, 15 dB SNR": with_noise(
            sequence(CARD, on_ms=60, off_ms=60), 15, tone_power(-10), seed=3
        ),
    }


@pytest.mark.parametrize("case", list(leak_cases()))
def test_multimon_decodes_the_customer_but_nothing_the_agent_hears(case: str) -> None:
    customer = mulaw(leak_cases()[case])
    keys = detect_keys(customer)
    assert len(keys) >= 16
    assert multimon_keys(customer) == keys  # the decoder does hear the keys when unmasked
    agent = mask_signal(customer)
    assert multimon_keys(agent) == ""
    assert detect_keys(agent) == ""
