"""Redis cache: shared by every process of a distributed deployment."""

from __future__ import annotations

import math

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from transact.kernel.cache.base import bucket_ttl, check_bucket_args
from transact.kernel.errors import BackendUnavailable
from transact.kernel.settings import redact_url

# The arithmetic of `token_bucket` in base.py, run inside Redis so that every process
# sharing this Redis takes from one bucket atomically. The clock is the server's:
# the clients' clocks may disagree, the server's is one clock for all of them.
# Numbers cross the Lua boundary as strings: Redis truncates a Lua number reply to
# an integer.
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local ttl_ms = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
local elapsed = now - at
if elapsed < 0 then
  elapsed = 0
end
tokens = math.min(burst, tokens + elapsed * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return string.format('%.17g', wait)
"""


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
        self._bucket_script = self._redis.register_script(_BUCKET_LUA)

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

    async def take_token(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        check_bucket_args(rate, burst, cost)
        ttl_ms = _ms(bucket_ttl(rate, burst)) or 1
        try:
            wait = await self._bucket_script(
                keys=[self._k(key)], args=[float(rate), float(burst), float(cost), ttl_ms]
            )
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            # The gateway decides what an unreachable limiter means; it needs one error type.
            raise BackendUnavailable(
                f"cannot reach Redis at {redact_url(self._url)}: {exc}"
            ) from None
        return float(wait)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot reach Redis at {redact_url(self._url)}: {exc}"
            ) from None

    async def close(self) -> None:
        await self._redis.aclose()
