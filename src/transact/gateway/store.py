"""Rate-limit counters: token buckets in the cache port, shared by every instance on it."""

from __future__ import annotations

from collections.abc import Sequence

from transact.gateway.domain import Bucket
from transact.kernel.cache import Cache

PREFIX = "gateway:ratelimit:"


class RateLimitStore:
    def __init__(self, cache: Cache) -> None:
        self._cache = cache

    async def take(self, buckets: Sequence[Bucket]) -> float:
        """Take one token from each bucket in order: 0.0 when every one allowed it, else
        the wait the first refusing bucket named. Buckets after a refusal are left alone,
        so a refused request does not also drain the looser limits."""
        for bucket in buckets:
            wait = await self._cache.take_token(PREFIX + bucket.key, bucket.rate, bucket.burst)
            if wait > 0:
                return wait
        return 0.0
