"""Prompt audio: the standard recordings shipped in the package, tenants' own uploads, and
the joining of phrases into what a caller hears.

Everything is 8 kHz G.711 mu-law, the media streams' format, so a prompt goes to
the caller without conversion. Standard recordings live in the kernel
(`transact.kernel.prompts`, shared with voice's read-backs), made by
`transact ivr render-prompts`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from transact.ivr.domain import Flow
from transact.ivr.phrases import PAUSE, PAUSE_MS, WORD_GAP_MS
from transact.kernel.audio import SAMPLE_RATE, AudioFormatError, parse_wav, ulaw_encode

# The standard recordings and the clip shelf are shared with voice (read-backs): they
# live in the kernel; these names stay for ivr's modules and tests.
from transact.kernel.prompts import (
    BYTES_PER_SECOND,
    CLIP_REFRESH,
    CLIP_TTL,
    ULAW_SILENCE,
    ClipShelf,
    silence,
    standard,
    standard_names,
)

__all__ = [
    "BYTES_PER_SECOND",
    "CLIP_REFRESH",
    "CLIP_TTL",
    "ULAW_SILENCE",
    "ClipShelf",
    "Composed",
    "Recording",
    "accept_upload",
    "compose",
    "recordings_wanted",
    "silence",
    "standard",
    "standard_names",
]

MAX_PROMPT_SECONDS: Final = 30.0
MIN_PROMPT_SECONDS: Final = 0.2
MAX_UPLOAD_BYTES: Final = 512 * 1024  # the gateway's body limit usually bites first
SILENT_PEAK: Final = 200  # a recording that never gets louder than this is silence


# --- tenants' own recordings ----------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    audio: bytes  # mu-law
    seconds: float


def accept_upload(raw: bytes) -> Recording:
    """A tenant's WAV file as a prompt: 8 kHz mono, 16-bit PCM or mu-law, not silent,
    `MIN_PROMPT_SECONDS`-`MAX_PROMPT_SECONDS` long. Raises AudioFormatError saying why."""
    if len(raw) > MAX_UPLOAD_BYTES:
        raise AudioFormatError(f"the file is larger than {MAX_UPLOAD_BYTES // 1024} KiB")
    samples = parse_wav(raw, "the recording")
    seconds = len(samples) / SAMPLE_RATE
    if seconds < MIN_PROMPT_SECONDS:
        raise AudioFormatError(f"the recording is shorter than {MIN_PROMPT_SECONDS:g} s")
    if seconds > MAX_PROMPT_SECONDS:
        raise AudioFormatError(f"the recording is longer than {MAX_PROMPT_SECONDS:g} s")
    if int(np.abs(samples.astype(np.int32)).max()) < SILENT_PEAK:
        raise AudioFormatError("the recording is silent")
    return Recording(ulaw_encode(samples), round(seconds, 3))


# --- composing a prompt ---------------------------------------------------------------


@dataclass(frozen=True)
class Composed:
    clips: tuple[bytes, ...]
    seconds: float
    missing: tuple[str, ...]  # phrases with no recording anywhere (skipped)


def compose(flow: Flow, phrases: Sequence[str], own: Mapping[str, bytes] | None = None) -> Composed:
    """The clips a prompt plays, in order, with short gaps between words.

    For each phrase: the recording the flow names for it, else the tenant's recording
    under the standard name, else the standard one. `own` holds the tenant's recordings
    in the flow's language, by name.
    """
    own = own or {}
    clips: list[bytes] = []
    missing: list[str] = []
    gap, pause = silence(WORD_GAP_MS), silence(PAUSE_MS)
    for phrase in phrases:
        if phrase == PAUSE:
            clips.append(pause)
            continue
        audio = own.get(flow.say(phrase)) or own.get(phrase) or standard(flow.language, phrase)
        if audio is None:
            missing.append(phrase)
            continue
        if clips and clips[-1] is not pause:
            clips.append(gap)
        clips.append(audio)
    seconds = sum(len(c) for c in clips) / BYTES_PER_SECOND
    return Composed(tuple(clips), seconds, tuple(missing))


def recordings_wanted(flow: Flow, phrases: Sequence[str]) -> set[str]:
    """The tenant recordings a prompt may use: each phrase's own name and the flow's choice."""
    return {name for p in phrases if p != PAUSE for name in (p, flow.say(p))}
