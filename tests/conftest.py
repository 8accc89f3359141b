from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest

from tests import servers

# The PSP simulators are real HTTP servers in this process. On a busy 2-core CI machine
# the event loop can lag past the 2 s production connect timeout, and the payment then
# fails as "never sent". Tests that mean a PSP to be unreachable refuse the connection.
os.environ.setdefault("TRANSACT_PSP_CONNECT_TIMEOUT", "10")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("TRANSACT_TEST_REDIS_URL")
    if given:
        yield given
        return
    with servers.redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    given = os.environ.get("TRANSACT_TEST_PG_URL")
    if given:
        yield given
        return
    with servers.postgres_server() as url:
        yield url


@pytest.fixture
def namespace() -> str:
    """A fresh key prefix per test, so tests sharing one Redis never see each other."""
    return f"t{uuid.uuid4().hex[:12]}"


async def create_database(admin_url: str) -> str:
    """A fresh, empty database on the session's PostgreSQL server; returns its URL."""
    import asyncpg

    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin_url.rsplit("/", 1)[0] + "/" + name


async def drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_admin_url)
    yield url
    await drop_database(postgres_admin_url, url)
