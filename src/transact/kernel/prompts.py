"""Prompt audio any service may play: the standard recordings shipped in the package, and
the shelf that hands clips to telephony.

Everything is 8 kHz G.711 mu-law, the media streams' format, so a prompt goes to the
caller without conversion. Standard recordings live in
`kernel/prompts/<language>/<name>.ulaw` (raw mu-law, no header), made by
`transact ivr render-prompts`. A service asks telephony to play clips with `call.play`,
naming each by its SHA-256 after putting it in the cache (`ClipShelf`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

from transact.contracts.calls import audio_clip_digest, audio_clip_key
from transact.kernel.audio import SAMPLE_RATE
from transact.kernel.cache import Cache

ULAW_SILENCE: Final = b"\xff"  # mu-law code of a zero sample
BYTES_PER_SECOND: Final = SAMPLE_RATE  # one byte a sample

CLIP_TTL: Final = 3600.0  # seconds a clip stays in the cache for telephony to fetch
CLIP_REFRESH: Final = CLIP_TTL / 2  # put it again when it was put longer ago than this


def silence(ms: int) -> bytes:
    return ULAW_SILENCE * (SAMPLE_RATE * ms // 1000)


def folder(language: str) -> Traversable:
    """Where the standard recordings of `language` are shipped."""
    return resources.files("transact.kernel").joinpath("prompts", language)


@cache
def standard(language: str, name: str) -> bytes | None:
    """A standard recording shipped with the package, or None when there is none."""
    if not name.replace("_", "").isalnum() or not language.isalnum():
        return None
    try:
        return folder(language).joinpath(f"{name}.ulaw").read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None


def standard_names(language: str) -> list[str]:
    found = folder(language)
    if not found.is_dir():
        return []
    return sorted(
        entry.name.removesuffix(".ulaw")
        for entry in found.iterdir()
        if entry.name.endswith(".ulaw")
    )


class ClipShelf:
    """Puts clips in the cache, by their SHA-256, for telephony to fetch and play.

    A clip that was put recently is not put again: the standard phrases recur on
    every call, and a clip's name never changes its meaning.
    """

    def __init__(self, cache: Cache) -> None:
        self._cache = cache
        self._put_at: dict[str, float] = {}

    async def names(self, clips: Sequence[bytes]) -> list[str]:
        names: list[str] = []
        now = time.monotonic()
        for clip in clips:
            digest = audio_clip_digest(clip)
            if now - self._put_at.get(digest, -CLIP_TTL) > CLIP_REFRESH:
                await self._cache.set(audio_clip_key(digest), clip, ttl=CLIP_TTL)
                self._put_at[digest] = now
            names.append(digest)
        if len(self._put_at) > 10_000:  # per-call clips (amounts) come and go
            self._put_at = {d: t for d, t in self._put_at.items() if now - t < CLIP_REFRESH}
        return names
