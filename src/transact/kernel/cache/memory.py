"""In-process cache: the embedded default. Expiry is checked lazily on access."""

from __future__ import annotations

import time

from transact.kernel.cache.base import bucket_ttl, check_bucket_args, token_bucket


class MemoryCache:
    def __init__(self) -> None:
        self._items: dict[str, tuple[bytes, float | None]] = {}

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] is not None and item[1] <= self._now():
            del self._items[key]
            return None
        return item

    def _expiry(self, ttl: float | None) -> float | None:
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive")
        return None if ttl is None else self._now() + ttl

    def _sweep(self) -> None:
        # Bound memory: expired entries nobody asks for again would otherwise stay forever.
        now = self._now()
        for key in [k for k, (_, exp) in self._items.items() if exp is not None and exp <= now]:
            del self._items[key]

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return None if item is None else item[0]

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        self._maybe_sweep()
        self._items[key] = (bytes(value), self._expiry(ttl))

    def _maybe_sweep(self) -> None:
        if len(self._items) % 1024 == 0:
            self._sweep()

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def take(self, key: str) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        del self._items[key]
        return item[0]

    async def delete(self, key: str) -> bool:
        # An expired entry counts as absent, as in Redis.
        if self._live(key) is None:
            return False
        del self._items[key]
        return True

    async def incr(self, key: str, ttl: float | None = None) -> int:
        expiry = self._expiry(ttl)  # reject a bad ttl even for an existing counter, as Redis does
        item = self._live(key)
        if item is None:
            self._items[key] = (b"1", expiry)
            return 1
        value = int(item[0]) + 1
        self._items[key] = (str(value).encode(), item[1])
        return value

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return max(0.0, item[1] - self._now())

    async def take_token(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        # No await in here: on one event loop the read-modify-write cannot interleave.
        check_bucket_args(rate, burst, cost)
        now = self._now()
        item = self._live(key)
        if item is None:
            tokens, elapsed = burst, 0.0
        else:
            stored_tokens, stored_at = item[0].split(b" ")
            tokens, elapsed = float(stored_tokens), now - float(stored_at)
        step = token_bucket(tokens, elapsed, rate, burst, cost)
        self._maybe_sweep()
        state = f"{step.tokens!r} {now!r}".encode()
        self._items[key] = (state, now + bucket_ttl(rate, burst))
        return step.wait

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
