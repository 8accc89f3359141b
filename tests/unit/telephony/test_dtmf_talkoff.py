"""Talk-off: speech and music must never be taken for keys.

Speech: synthetic (espeak-ng, several voices and languages, digits and sentences, at
normal level, loud and clipped, and through mu-law) and human (the 2,000 spoken digits of
the Free Spoken Digit Dataset in /work/shared/data/fsdd). Music: chords and melodies of
notes with real harmonic content, vibrato, decaying piano-like notes, glides.

Left out on purpose: two near-pure tones within 1.5 % of a DTMF pair (a flute duet on
F5 and F#6, say). By Q.24's own acceptance rules that *is* a key; no receiver that
accepts the rules can reject it. The receiver rejects a pair whose partials (the row's
3rd, the column's 2nd) are within 15 dB of it; mellower than that is taken as a tone.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.dtmf_signals import RATE, Samples, Signal, mulaw, note, pcm, silence, sweep
from tests.speech_corpus import human_speech, synthetic_speech
from transact.telephony.dtmf import detect_keys


@pytest.fixture(scope="module")
def speech() -> list[tuple[str, Signal]]:
    return synthetic_speech()


def channel_variants(signal: Signal) -> dict[str, Samples]:
    """As recorded, loud enough to clip, and quiet through mu-law."""
    return {
        "as is": pcm(signal),
        "+9 dB clipped, mu-law": mulaw(signal * 10 ** (9 / 20)),
        "-10 dB, mu-law": mulaw(signal * 10 ** (-10 / 20)),
    }


def test_synthetic_speech_is_not_a_key(speech: list[tuple[str, Signal]]) -> None:
    assert len(speech) >= 20
    found = {
        f"{name} [{variant}]": keys
        for name, signal in speech
        for variant, samples in channel_variants(signal).items()
        if (keys := detect_keys(samples))
    }
    assert found == {}


def test_human_spoken_digits_are_not_keys() -> None:
    speech = human_speech()
    assert len(speech) > 900 * RATE  # all 2,000 recordings
    assert detect_keys(speech) == ""
    loud = speech.astype(np.float64) * 2
    assert detect_keys(mulaw(loud)) == ""


# --- music ----------------------------------------------------------------------------------

SAW = (1.0, 0.5, 0.33, 0.25, 0.2, 0.17)  # strings, brass, voice-like
CLARINET = (1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14)  # odd partials only
MELLOW = (1.0, 0.35, 0.2)  # a soft organ stop: 2nd partial 9 dB down
TIMBRES = {"saw": SAW, "clarinet": CLARINET, "mellow": MELLOW}


def equal_tempered(semitones_from_a4: int) -> float:
    return 440.0 * 2 ** (semitones_from_a4 / 12)


NOTES = [equal_tempered(n) for n in range(-5, 22)]  # E4 to F#6: all DTMF frequencies inside


@pytest.mark.parametrize("timbre", list(TIMBRES))
def test_two_note_chords_are_not_keys(timbre: str) -> None:
    harmonics = TIMBRES[timbre]
    chords = [
        np.concatenate([note(low, 250, harmonics) + note(high, 250, harmonics), silence(60)])
        for index, low in enumerate(NOTES)
        for high in NOTES[index + 1 :]
    ]
    assert detect_keys(pcm(np.concatenate(chords))) == ""


def test_three_note_chords_and_melodies_are_not_keys() -> None:
    rng = np.random.default_rng(3)
    pieces = []
    for _ in range(150):
        picked = rng.choice(len(NOTES), size=3, replace=False)
        timbre = list(TIMBRES.values())[int(rng.integers(len(TIMBRES)))]
        pieces.append(sum(note(NOTES[i], 200, timbre, level_dbm0=-15) for i in picked))
    for _ in range(150):  # a melody over a held bass note, with vibrato
        melody = note(NOTES[int(rng.integers(len(NOTES)))], 150, SAW, vibrato=0.01)
        pieces.append(melody + note(NOTES[int(rng.integers(8))] / 2, 150, SAW, level_dbm0=-18))
    assert detect_keys(mulaw(np.concatenate(pieces))) == ""


def test_piano_like_decaying_notes_are_not_keys() -> None:
    piano = (1.0, 0.6, 0.4, 0.25, 0.2, 0.12, 0.1, 0.06)
    chords = [
        note(NOTES[i], 400, piano, decay=6) + note(NOTES[j], 400, piano, decay=6)
        for i in range(0, len(NOTES), 2)
        for j in range(i + 3, len(NOTES), 3)
    ]
    assert detect_keys(mulaw(np.concatenate(chords))) == ""


@pytest.mark.parametrize("harmonics", [(1.0,), SAW, MELLOW])
@pytest.mark.parametrize("duration_ms", [300, 1500, 6000])
def test_glides_are_not_keys(harmonics: tuple[float, ...], duration_ms: int) -> None:
    up = sweep(300, 2000, duration_ms, harmonics)
    down = sweep(1800, 500, duration_ms, harmonics)
    assert detect_keys(pcm(np.concatenate([up, silence(100), down]))) == ""
    if len(harmonics) > 1:  # two glides at once, a sixth apart, with partials
        duet = sweep(500, 1000, duration_ms, harmonics) + sweep(840, 1680, duration_ms, harmonics)
        assert detect_keys(pcm(duet)) == ""
