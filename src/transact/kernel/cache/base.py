"""The cache port: short-lived bytes by key, with TTLs, an atomic take and token buckets."""

from __future__ import annotations

import math
from typing import NamedTuple, Protocol


class BucketStep(NamedTuple):
    tokens: float  # left in the bucket after this step
    wait: float  # 0.0 when the take was allowed, else seconds until it would be


def check_bucket_args(rate: float, burst: float, cost: float) -> None:
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError("rate must be positive")
    if not (math.isfinite(burst) and burst > 0):
        raise ValueError("burst must be positive")
    # A cost above the burst could never be paid; refuse it rather than answer a wait
    # that is a lie.
    if not (math.isfinite(cost) and 0 < cost <= burst):
        raise ValueError("cost must be positive and at most the burst")


def token_bucket(
    tokens: float, elapsed: float, rate: float, burst: float, cost: float = 1.0
) -> BucketStep:
    """One take from a token bucket that held `tokens` `elapsed` seconds ago.

    The bucket refills at `rate` tokens a second up to `burst`. The Redis backend
    runs the same arithmetic in Lua; keep the two in step.
    """
    # A clock that steps back must not mint tokens.
    available = min(burst, tokens + max(0.0, elapsed) * rate)
    if available >= cost:
        return BucketStep(available - cost, 0.0)
    return BucketStep(available, (cost - available) / rate)


def bucket_ttl(rate: float, burst: float) -> float:
    """Seconds after which an idle bucket is full again, so forgetting it changes nothing."""
    return burst / rate


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        """Store `value`; with `ttl` (seconds) it disappears on its own."""

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        """Store only when the key is free; True when this call stored it."""

    async def take(self, key: str) -> bytes | None:
        """Get and delete in one step: two takers never both get the value."""

    async def delete(self, key: str) -> bool: ...

    async def incr(self, key: str, ttl: float | None = None) -> int:
        """Add one; the TTL starts when the counter is created."""

    async def ttl(self, key: str) -> float | None:
        """Seconds left, or None for a missing key or one without expiry."""

    async def take_token(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        """Take `cost` tokens from the bucket at `key` (refilled at `rate` a second, holding
        at most `burst`, full when new) in one atomic step: 0.0 when allowed, else the
        seconds to wait until it would be. A refused take takes nothing. The key holds
        bucket state only (use it with nothing but `take_token`, `delete` and `ttl`);
        an idle bucket vanishes once it would be full again."""

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
