"""The cache port: short-lived bytes by key, with TTLs and an atomic take."""

from __future__ import annotations

from typing import Protocol


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

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
