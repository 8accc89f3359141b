"""Backends under contract: every test here runs once per backend of its port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.conftest import create_database, drop_database
from transact.kernel.bus import Bus, BusOptions, MemoryBus
from transact.kernel.cache import Cache, MemoryCache
from transact.kernel.db import Database

FAST = BusOptions(visibility_timeout=0.6, retry_delay=0.1, max_deliveries=3, batch_size=4)

BusFactory = Callable[..., Awaitable[Bus]]


@pytest.fixture(params=["memory", "redis"])
async def make_bus(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[BusFactory]:
    """Builds buses that share one broker: a second call is a second process."""
    made: list[Bus] = []
    shared_memory: list[MemoryBus] = []

    async def factory(options: BusOptions = FAST) -> Bus:
        if request.param == "memory":
            # One process has one in-memory bus; "another process" is the same broker.
            if not shared_memory:
                shared_memory.append(MemoryBus(options))
                made.append(shared_memory[0])
            return shared_memory[0]
        from transact.kernel.bus.redis import RedisBus

        bus = RedisBus(request.getfixturevalue("redis_url"), namespace, options)
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        await bus.close()


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest, namespace: str) -> AsyncIterator[Cache]:
    if request.param == "memory":
        backend: Cache = MemoryCache()
    else:
        from transact.kernel.cache.redis import RedisCache

        backend = RedisCache(request.getfixturevalue("redis_url"), namespace)
    yield backend
    await backend.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def database(request: pytest.FixtureRequest, tmp_path: object) -> AsyncIterator[Database]:
    """A migrated, empty database on each engine."""
    admin_url = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/transact.db"
    else:
        # Async fixtures cannot be requested lazily; the server fixture is synchronous.
        admin_url = request.getfixturevalue("postgres_admin_url")
        url = await create_database(admin_url)
    db = Database(url)
    await db.migrate()
    yield db
    await db.close()
    if admin_url:
        await drop_database(admin_url, url)
