"""The local recognizer (Whisper tiny.en) on synthetic and human speech, and its commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from transact.kernel.audio import read_wav, ulaw_encode, ulaw_round_trip, write_wav
from transact.voice.bench import espeak
from transact.voice.transcriber import (
    Transcript,
    WhisperTranscriber,
    recognize_digits,
)

FSDD = Path(__file__).resolve().parents[4] / "shared" / "data" / "fsdd"
RATE = 8000


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * RATE), dtype=np.int16)


def human(digits: str, speaker: str = "george") -> np.ndarray:
    """FSDD recordings of `digits` 80 ms apart, as a caller says one group."""
    if not FSDD.is_dir():
        pytest.skip(f"no FSDD recordings in {FSDD}")
    parts: list[np.ndarray] = []
    for index, digit in enumerate(digits):
        parts += [read_wav(FSDD / f"{digit}_{speaker}_{index + 3}.wav"), silence(0.08)]
    return np.concatenate(parts)


def on_the_line(*parts: np.ndarray) -> np.ndarray:
    """Parts with 600 ms pauses between them and around, through a mu-law channel."""
    pieces = [silence(0.4)]
    for part in parts:
        pieces += [part.astype(np.int16), silence(0.6)]
    return ulaw_round_trip(np.concatenate([*pieces, silence(0.6)]))


@pytest.fixture(scope="module")
def engine() -> WhisperTranscriber:
    return WhisperTranscriber()


def test_synthetic_groups_each_end_an_utterance(engine: WhisperTranscriber) -> None:
    groups = ["four one two three", "five six seven eight"]
    audio = on_the_line(*(espeak(group, "en-us", 150) for group in groups))
    session = engine.open(mode="digits")
    finals: list[Transcript] = []
    for start in range(0, len(audio), 160):
        finals += session.feed(audio[start : start + 160])
    finals += session.finish()
    assert all(result.final for result in finals)
    assert len(finals) == 2  # one final per group: the pause end-pointed each
    assert recognize_digits(audio, engine) == "41235678"


def test_human_voice_digits(engine: WhisperTranscriber) -> None:
    audio = on_the_line(human("4930"), human("2750"))
    assert recognize_digits(audio, engine) == "49302750"


def test_silence_and_noise_give_no_digits(engine: WhisperTranscriber) -> None:
    rng = np.random.default_rng(3)
    hiss = (rng.normal(size=RATE * 2) * 30).astype(np.int16)
    assert recognize_digits(np.concatenate([silence(2), hiss]), engine) == ""


def test_feed_takes_any_chunk_length(engine: WhisperTranscriber) -> None:
    audio = on_the_line(human("4930"))
    session = engine.open(mode="digits")
    results: list[Transcript] = []
    for start in range(0, len(audio), 333):  # not a multiple of the 20 ms frame
        results += session.feed(audio[start : start + 333])
    results += session.finish()
    assert "".join(r.text for r in results).lower().split() != []
    assert recognize_digits(audio, engine) == "4930"


def test_finish_decodes_speech_without_a_trailing_pause(engine: WhisperTranscriber) -> None:
    session = engine.open(mode="digits")
    audio = ulaw_round_trip(np.concatenate([silence(0.3), human("4930")]))
    assert session.feed(audio) == []
    (result,) = session.finish()
    assert result.final


def test_the_model_loads_with_the_network_refused() -> None:
    """A fresh interpreter whose sockets cannot connect, and no hub settings: loading and
    decoding still work, and the engine has told the hub client to stay offline."""
    script = """
import os, socket
def refuse(*args, **kwargs):
    raise OSError("network refused by the test")
socket.socket.connect = refuse
socket.create_connection = refuse
import numpy as np
from transact.voice.transcriber import WhisperTranscriber
text = WhisperTranscriber().transcribe(np.zeros(8000, dtype=np.int16), mode="digits")
print(os.environ["HF_HUB_OFFLINE"], repr(text))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env["HF_HOME"] = "/nonexistent/hf-home"  # nothing cached to fall back on either
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=90
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("1 ")


def test_importing_transact_does_not_load_the_engine() -> None:
    script = (
        "import sys, transact, transact.cli, transact.voice.transcriber, transact.voice.numbers\n"
        "print(sorted(m for m in ('faster_whisper', 'ctranslate2', 'webrtcvad') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


# --- commands -------------------------------------------------------------------------------


def test_voice_digits_command_reads_pcm_and_mu_law(
    engine: WhisperTranscriber, tmp_path: Path
) -> None:
    from transact.cli import app

    audio = on_the_line(human("4930"), human("2750"))
    pcm = tmp_path / "pcm.wav"
    write_wav(pcm, audio)
    mulaw = tmp_path / "mulaw.wav"
    mulaw.write_bytes(mu_law_wav(ulaw_encode(audio)))
    for path in (pcm, mulaw):
        result = CliRunner().invoke(app, ["voice", "digits", str(path)])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "49302750"


def mu_law_wav(data: bytes) -> bytes:
    import struct

    fmt = struct.pack("<HHIIHH", 7, 1, RATE, RATE, 1, 8)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def sixteen_khz_wav() -> bytes:
    import io
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as target:
        target.setnchannels(1)
        target.setsampwidth(2)
        target.setframerate(16000)
        target.writeframes(silence(0.5).tobytes())
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "not a WAV file"),
        (b"not a wav file at all", "not a WAV file"),
        (None, "cannot read"),
        (sixteen_khz_wav(), "8000"),
    ],
)
def test_voice_digits_command_refuses_a_bad_file(
    tmp_path: Path, content: bytes | None, needle: str
) -> None:
    from transact.cli import app

    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    result = CliRunner().invoke(app, ["voice", "digits", str(path)])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # `_fail`, not an escaped error
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr
    assert needle in result.stderr
    assert result.stdout == ""


def test_bench_speech_quick_prints_its_measurements_as_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "transact", "bench", "speech", "--quick", "--fsdd", str(FSDD)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    corpora = report["corpora"]
    names = {"synthetic_clean", "synthetic_noisy"}
    if FSDD.is_dir():
        names |= {"human_clean", "human_noisy", "human_held_out_clean", "human_held_out_noisy"}
    assert names <= set(corpora)
    for name in names:
        corpus = corpora[name]
        assert corpus["samples"] > 0
        assert 0 <= corpus["digit_accuracy"] <= 1
        assert set(corpus["field_accuracy"]) == {"card", "expiry", "code"}
        assert corpus["real_time_factor"] > 0
        assert corpus["latency_ms"]["p50"] <= corpus["latency_ms"]["p95"]
    if FSDD.is_dir():
        assert report["held_out_speakers"] == ["jackson"]
        assert report["tuning_speakers"] == ["george", "lucas", "nicolas"]
    assert report["overall"]["digit_accuracy"] > 0.5  # a broken engine would read nothing


@pytest.mark.parametrize(("digits", "speaker"), [("1111", "george"), ("0111", "nicolas")])
def test_words_apart_are_counted_right(
    engine: WhisperTranscriber, digits: str, speaker: str
) -> None:
    # Said with 80 ms pauses, tiny.en alone hears "one one one one one" and "one one one";
    # stretching the pauses it can hear between the words makes it count them.
    assert recognize_digits(on_the_line(human(digits, speaker)), engine) == digits


@pytest.mark.parametrize(
    ("said", "voice", "speed", "digits"),
    [
        ("four one one one one one one one", "en-us", 170, "41111111"),
        ("five five five five", "en-us", 180, "5555"),
        ("three three three three", "en", 170, "3333"),
        ("eight eight eight eight", "en-us", 190, "8888"),
    ],
)
def test_the_digit_head_counts_runs_said_without_pauses(
    engine: WhisperTranscriber, said: str, voice: str, speed: int, digits: str
) -> None:
    # Run together, tiny.en alone writes these with one digit too many or too few
    # (4111111111, 555, 33333, 88888); the digit head's ranking counts them as said.
    assert recognize_digits(on_the_line(espeak(said, voice, speed)), engine) == digits


def test_without_its_weights_the_transcriber_keeps_whispers_order(
    engine: WhisperTranscriber, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transact.voice.transcriber as transcriber

    monkeypatch.setattr(transcriber, "shared_head", lambda: None)
    assert recognize_digits(on_the_line(espeak("four two", "en-us", 150)), engine) == "42"
