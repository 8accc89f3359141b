"""The speech benchmark's bookkeeping: which human voices count as held out, and each
held-out voice's numbers on their own."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from transact.voice import bench
from transact.voice.bench import CorpusResult, Field, Kind, Outcome, split_speakers


def outcome(speaker: str, kind: Kind, digits: str, heard: str, checked: str = "") -> Outcome:
    audio = np.zeros(8000, dtype=np.int16)
    said = Field(kind, digits, audio, speech_end=4000, speaker=speaker)
    return Outcome(said, heard, checked or heard, latency_s=0.1, latency_cpu_s=0.1, cpu_s=0.1)


def test_every_voice_the_settings_were_not_chosen_on_is_held_out() -> None:
    found = ["theo", "george", "jackson", "nicolas", "lucas", "yweweler", "george"]
    tuning, held_out = split_speakers(found)
    assert tuning == ["george", "lucas", "nicolas"]
    assert held_out == ["jackson", "theo", "yweweler"]
    assert split_speakers(["jackson"]) == ([], ["jackson"])


def test_a_corpus_of_several_voices_reports_each_voice_apart() -> None:
    card = "4111111111111111"
    summary = CorpusResult(
        [
            outcome("jackson", "card", card, card),
            outcome("jackson", "code", "123", "123"),
            outcome("theo", "card", card, "411111111111111", checked=card),
            outcome("theo", "code", "123", "128"),
        ]
    ).summary()
    jackson, theo = summary["by_speaker"]["jackson"], summary["by_speaker"]["theo"]
    assert jackson == {
        "digit_accuracy": 1.0,
        "checked_digit_accuracy": 1.0,
        "card_accuracy": 1.0,
        "checked_card_accuracy": 1.0,
    }
    assert theo["card_accuracy"] == 0.0
    assert theo["checked_card_accuracy"] == 1.0
    assert theo["digit_accuracy"] == round(1 - 2 / 19, 4)
    assert summary["digit_accuracy"] == round(1 - 2 / 38, 4)


def test_one_voice_needs_no_breakdown() -> None:
    summary = CorpusResult([outcome("jackson", "code", "123", "123")]).summary()
    assert "by_speaker" not in summary


def test_only_the_accented_voices_installed_here_are_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """An MBROLA voice without its (non-free) package makes espeak-ng fail: skipped."""

    def speak(text: str, voice: str, speed: int) -> bench.Samples:
        if voice == "mb-de2-en":
            return np.zeros(800, np.int16)
        raise subprocess.CalledProcessError(1, ["espeak-ng", "-v", voice])

    monkeypatch.setattr(bench, "espeak", speak)
    assert bench.installed_voices(bench.ACCENTED_VOICES) == [("mb-de2-en", 165)]
    monkeypatch.undo()
    monkeypatch.setattr(bench.shutil, "which", lambda name: None)  # no espeak-ng at all
    assert bench.installed_voices(bench.ACCENTED_VOICES) == []
