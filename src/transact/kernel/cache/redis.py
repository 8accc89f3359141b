"""Redis cache: shared by every process of a distributed deployment."""

from __future__ import annotations

import math

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from transact.kernel.errors import BackendUnavailable
from transact.kernel.settings import redact_url


def _ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    return max(1, math.ceil(ttl * 1000))


def _bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    raise TypeError(f"unexpected {type(value).__name__} from Redis")


class RedisCache:
    def __init__(self, url: str, namespace: str = "transact") -> None:
        self._url = url
        self._prefix = f"{namespace}:cache:"
        # bytes in, bytes out: the vault stores ciphertext here.
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=False)

    def _k(self, key: str) -> str:
        return self._prefix + key

    async def get(self, key: str) -> bytes | None:
        return _bytes(await self._redis.get(self._k(key)))

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        await self._redis.set(self._k(key), value, px=_ms(ttl))

    async def set_if_absent(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        return bool(await self._redis.set(self._k(key), value, px=_ms(ttl), nx=True))

    async def take(self, key: str) -> bytes | None:
        return _bytes(await self._redis.getdel(self._k(key)))

    async def delete(self, key: str) -> bool:
        return bool(await self._redis.delete(self._k(key)))

    async def incr(self, key: str, ttl: float | None = None) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(self._k(key))
            if ttl is not None:
                pipe.pexpire(self._k(key), _ms(ttl) or 1, nx=True)
            result = await pipe.execute()
        return int(result[0])

    async def ttl(self, key: str) -> float | None:
        ms = int(await self._redis.pttl(self._k(key)))
        return None if ms < 0 else ms / 1000

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot reach Redis at {redact_url(self._url)}: {exc}"
            ) from None

    async def close(self) -> None:
        await self._redis.aclose()
