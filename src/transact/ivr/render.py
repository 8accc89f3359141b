"""Record the standard prompts with espeak-ng, offline: `transact ivr render-prompts`.

Run once and commit the output (`src/transact/kernel/prompts/<language>/*.ulaw`); the
service only reads the files. Each phrase of `phrases.TEXTS` is synthesized (espeak-ng
writes 22.05 kHz 16-bit WAV), cut to the voice (silence trimmed at both ends),
band-limited and resampled to 8 kHz, brought to one level, and written as raw mu-law.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from transact.ivr.phrases import TEXTS
from transact.kernel.audio import SAMPLE_RATE, ulaw_encode
from transact.kernel.errors import ConfigError

DEFAULT_VOICE: Final = "en-gb"
DEFAULT_SPEED: Final = 150  # words a minute: unhurried, as an IVR should be
PEAK: Final = 16000  # about -3 dBm0 peak: loud, never clipping
EDGE_MS: Final = 30  # silence kept before and after the voice
TRIM_LEVEL: Final = 0.02  # of the peak: quieter edges are silence
LOWPASS_HZ: Final = 3600.0  # telephone band; below the 4 kHz Nyquist frequency of 8 kHz
TAPS: Final = 127

Pcm = npt.NDArray[np.float64]


def espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        raise ConfigError(
            "espeak-ng is not installed (Debian: apt-get install espeak-ng); it is only "
            "needed to re-render the standard prompts"
        )
    return found


def synthesize(text: str, voice: str, speed: int) -> tuple[Pcm, int]:
    """Samples (float, full scale 1.0) and their rate, from espeak-ng."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "phrase.wav"
        subprocess.run(  # noqa: S603  (a fixed program, text passed as one argument)
            [espeak(), "-v", voice, "-s", str(speed), "-w", str(out), text],
            check=True,
            capture_output=True,
        )
        with wave.open(str(out), "rb") as wav:
            rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0
    return samples, rate


def lowpass(rate: int, cutoff: float = LOWPASS_HZ, taps: int = TAPS) -> Pcm:
    """A windowed-sinc low-pass filter (Blackman), unity gain at DC."""
    n = np.arange(taps) - (taps - 1) / 2
    kernel = np.sinc(2 * cutoff / rate * n) * np.blackman(taps)
    return np.asarray(kernel / kernel.sum(), dtype=np.float64)


def resample(samples: Pcm, rate: int, target: int = SAMPLE_RATE) -> Pcm:
    """To `target` Hz: band-limit first, so nothing above the new Nyquist folds back,
    then interpolate (the band-limited signal is oversampled, so linear is enough)."""
    if rate == target:
        return samples
    filtered = np.convolve(samples, lowpass(rate), mode="same")
    positions = np.arange(0, len(filtered) * target // rate) * (rate / target)
    return np.asarray(np.interp(positions, np.arange(len(filtered)), filtered), dtype=np.float64)


def trim(samples: Pcm, rate: int) -> Pcm:
    loud = np.flatnonzero(np.abs(samples) > TRIM_LEVEL * max(np.abs(samples).max(), 1e-9))
    if not len(loud):
        return samples[:0]
    edge = rate * EDGE_MS // 1000
    return samples[max(0, loud[0] - edge) : loud[-1] + 1 + edge]


def to_ulaw(samples: Pcm) -> bytes:
    peak = np.abs(samples).max() if len(samples) else 0.0
    scaled = samples * (PEAK / peak) if peak > 0 else samples
    return ulaw_encode(np.clip(np.round(scaled), -32768, 32767).astype(np.int16))


def render_phrase(text: str, voice: str = DEFAULT_VOICE, speed: int = DEFAULT_SPEED) -> bytes:
    samples, rate = synthesize(text, voice, speed)
    return to_ulaw(resample(trim(samples, rate), rate))


def render_all(
    out: Path,
    voice: str = DEFAULT_VOICE,
    speed: int = DEFAULT_SPEED,
    texts: Mapping[str, str] = TEXTS,
) -> list[Path]:
    """Every phrase to `out/<name>.ulaw`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, text in sorted(texts.items()):
        path = out / f"{name}.ulaw"
        path.write_bytes(render_phrase(text, voice, speed))
        written.append(path)
    return written


def default_folder(language: str = "en") -> Path:
    """The kernel's shelf of standard recordings (ivr and voice play them)."""
    return Path(__file__).parent.parent / "kernel" / "prompts" / language
