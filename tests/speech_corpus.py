"""Speech for talk-off and pass-through tests: synthetic (espeak-ng, several voices and
languages) and human (the Free Spoken Digit Dataset in /work/shared/data/fsdd)."""

from __future__ import annotations

import io
import subprocess
import wave
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from tests.dtmf_signals import RATE, Samples, Signal, need_tool, resample
from transact.telephony.audio import read_wav

FSDD = Path("/work/shared/data/fsdd")

# (voice, pitch 0-99, words per minute, language of the texts)
VOICES = [
    ("en", 50, 175, "en"),
    ("en-us", 50, 175, "en"),
    ("en+f3", 70, 160, "en"),
    ("en+m3", 30, 190, "en"),
    ("en-us+f4", 90, 140, "en"),
    ("en-gb-scotland", 50, 175, "en"),
    ("de", 50, 175, "de"),
    ("fr", 60, 175, "fr"),
    ("es", 50, 175, "es"),
]
TEXTS = {
    "en": [
        "one two three four five six seven eight nine zero oh",
        "My card number is four one one one, one one one one, one one one one, one one one one.",
        "The expiry date is twelve twenty eight and the security code is one two three.",
        "Hello, thank you for calling. How can I help you today? Please hold the line.",
        "Press star to cancel, or hash to confirm. Is that the number ending in four two?",
    ],
    "de": [
        "eins zwei drei vier fünf sechs sieben acht neun null",
        "Meine Kartennummer ist vier eins eins eins. Vielen Dank für Ihren Anruf.",
    ],
    "fr": [
        "un deux trois quatre cinq six sept huit neuf zéro",
        "Bonjour, merci de votre appel. Le numéro de ma carte est quatre un un un.",
    ],
    "es": ["uno dos tres cuatro cinco seis siete ocho nueve cero, gracias por su llamada"],
}


def espeak(text: str, voice: str, pitch: int, speed: int) -> Signal:
    """espeak-ng speech (22.05 kHz) resampled to 8 kHz."""
    command = [
        need_tool("espeak-ng"),
        "-v",
        voice,
        "-p",
        str(pitch),
        "-s",
        str(speed),
        "--stdout",
        text,
    ]
    raw = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout
    with wave.open(io.BytesIO(raw)) as source:
        rate = source.getframerate()
        data = np.frombuffer(source.readframes(source.getnframes()), dtype="<i2")
    return resample(data, rate, RATE)


@cache
def synthetic_speech() -> list[tuple[str, Signal]]:
    """(name, 8 kHz float signal) for every voice and text."""
    return [
        (f"{voice}: {text[:30]}", espeak(text, voice, pitch, speed))
        for voice, pitch, speed, language in VOICES
        for text in TEXTS[language]
    ]


@cache
def human_speech() -> Samples:
    """All FSDD recordings, one after another with 100 ms between them."""
    files = sorted(FSDD.glob("*.wav"))
    if not files:
        pytest.skip(f"no recordings in {FSDD} (see /work/shared/data/README.md)")
    gap = np.zeros(RATE // 10, dtype=np.int16)
    return np.concatenate([part for path in files for part in (read_wav(path), gap)])
