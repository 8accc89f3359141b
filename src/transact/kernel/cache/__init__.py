"""Cache port and its backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from transact.kernel.cache.base import Cache
from transact.kernel.cache.memory import MemoryCache

__all__ = ["Cache", "MemoryCache", "cache_from_url"]


def cache_from_url(url: str, namespace: str = "transact") -> Cache:
    if urlsplit(url).scheme == "memory":
        return MemoryCache()
    from transact.kernel.cache.redis import RedisCache

    return RedisCache(url, namespace)
