"""Prompt audio for `call.play`: clips named by their SHA-256, fetched from the cache.

A clip's name is its content's hash, so a clip never changes: each instance keeps the
ones it played recently (the standard phrases recur on every call) and checks every
clip it fetches against its name, so a damaged or forged entry is never played.
"""

from __future__ import annotations

from collections import OrderedDict

import structlog

from transact.contracts.calls import audio_clip_digest, audio_clip_key
from transact.kernel.cache import Cache

log = structlog.get_logger("transact.telephony")

CAPACITY = 1024  # clips kept in memory; a standard phrase is a few KB


class ClipStore:
    def __init__(self, cache: Cache, capacity: int = CAPACITY) -> None:
        self._cache = cache
        self._capacity = capacity
        self._recent: OrderedDict[str, bytes] = OrderedDict()

    async def audio(self, digests: list[str]) -> bytes | None:
        """The clips joined in order; None when one is missing or does not match its name."""
        parts: list[bytes] = []
        for digest in digests:
            clip = await self._clip(digest)
            if clip is None:
                log.warning("telephony.clip_missing", clip=digest[:16])
                return None
            parts.append(clip)
        return b"".join(parts)

    async def _clip(self, digest: str) -> bytes | None:
        clip = self._recent.get(digest)
        if clip is not None:
            self._recent.move_to_end(digest)
            return clip
        clip = await self._cache.get(audio_clip_key(digest))
        if clip is None or audio_clip_digest(clip) != digest:
            return None
        self._recent[digest] = clip
        if len(self._recent) > self._capacity:
            self._recent.popitem(last=False)
        return clip
