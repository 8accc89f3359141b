"""Where the local engine's session cuts the caller's stream into utterances."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from transact.voice.transcriber import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    Endpointing,
    Mode,
    WhisperSettings,
    WhisperTranscriber,
)


def burst(ms: int, seed: int) -> npt.NDArray[np.int16]:
    """Noise at speech level: the VAD takes it for speech."""
    noise = np.random.default_rng(seed).normal(0, 3000, SAMPLE_RATE * ms // 1000)
    return np.clip(noise, -32768, 32767).astype(np.int16)


def quiet(ms: int) -> npt.NDArray[np.int16]:
    return np.zeros(SAMPLE_RATE * ms // 1000, dtype=np.int16)


def utterance_lengths_ms(
    audio: npt.NDArray[np.int16], endpointing: Endpointing, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """The utterances the session decodes, as their lengths (the decoder is stubbed)."""
    decoded: list[int] = []

    def readings(
        _self: WhisperTranscriber, samples: npt.NDArray[np.int16], *, mode: Mode
    ) -> list[str]:
        decoded.append(len(samples) * 1000 // SAMPLE_RATE)
        return ["one"]

    monkeypatch.setattr(WhisperTranscriber, "readings", readings)
    session = WhisperTranscriber(WhisperSettings(endpointing=endpointing)).open(mode="digits")
    for start in range(0, len(audio), FRAME_SAMPLES):
        session.feed(audio[start : start + FRAME_SAMPLES])
    session.finish()
    return decoded


ENDS = Endpointing()
# A pause longer than the one that ends an utterance, shorter than a short word's wait.
BETWEEN = (ENDS.pause_ms + ENDS.short_pause_ms) // 2


def test_the_defaults_wait_longer_after_a_short_word() -> None:
    assert ENDS.pause_ms + 60 < BETWEEN < ENDS.short_pause_ms - 60


def test_a_pause_ends_an_utterance(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = np.concatenate([quiet(300), burst(800, 1), quiet(BETWEEN), burst(800, 2), quiet(1500)])
    assert len(utterance_lengths_ms(audio, ENDS, monkeypatch)) == 2


def test_a_short_pause_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    gap = ENDS.pause_ms - 300
    audio = np.concatenate([quiet(300), burst(800, 1), quiet(gap), burst(800, 2), quiet(1500)])
    assert len(utterance_lengths_ms(audio, ENDS, monkeypatch)) == 1


def test_a_short_word_waits_for_the_words_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The vowel of "six" on a noisy line, then the rest of the group.
    audio = np.concatenate([quiet(300), burst(200, 1), quiet(BETWEEN), burst(800, 2), quiet(1500)])
    joined = utterance_lengths_ms(audio, ENDS, monkeypatch)
    assert len(joined) == 1
    assert joined[0] >= 200 + BETWEEN + 800


def test_without_the_longer_wait_the_short_word_is_read_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    audio = np.concatenate([quiet(300), burst(200, 1), quiet(BETWEEN), burst(800, 2), quiet(1500)])
    alone = Endpointing(short_pause_ms=ENDS.pause_ms)
    assert len(utterance_lengths_ms(audio, alone, monkeypatch)) == 2


def test_a_short_word_alone_is_still_read(monkeypatch: pytest.MonkeyPatch) -> None:
    audio = np.concatenate([quiet(300), burst(200, 1), quiet(ENDS.short_pause_ms + 500)])
    assert len(utterance_lengths_ms(audio, ENDS, monkeypatch)) == 1
