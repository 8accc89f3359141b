"""Two instances on one PostgreSQL database, one Redis bus and one Redis cache, as in a
distributed deployment: an agent's socket may be on either, and gets the same events
with the same ids, whichever instance heard what first."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import create_database, drop_database
from tests.integration.notifications.conftest import serving
from tests.integration.notifications.test_resume import key
from transact.contracts.calls import CallAssigned, CallKeysOutsideCapture, CallSecureMode
from transact.notifications import domain
from transact.notifications.store import events


@pytest.fixture
async def database(postgres_admin_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_admin_url)
    yield url
    await drop_database(postgres_admin_url, url)


async def test_an_agent_on_one_instance_gets_what_the_other_heard_first(
    tmp_path: Path, database: str, redis_url: str, namespace: str
) -> None:
    shared = {"bus_url": redis_url, "cache_url": redis_url, "namespace": namespace}
    async with serving(database, tmp_path, **shared) as one:
        alice = await one.person("alice")
        on_one, _ = await one.feed(alice)
        # Only instance one exists when the call is assigned: only it hears that.
        await one.publish(CallAssigned(tenant_id=one.tenant_id, call_id="CA1", agent_id=alice.id))
        assert [e["id"] for e in await on_one.events(1)] == [1]

        async with serving(database, tmp_path, **shared) as two:
            on_two, subscribed = await two.feed(alice)  # the token one issued is good on two
            assert subscribed["last_id"] == 1
            # Two never heard `call.assigned`, yet knows whose call it is (the database).
            await one.publish(CallSecureMode(tenant_id=one.tenant_id, call_id="CA1", on=True))
            await two.publish(CallKeysOutsideCapture(tenant_id=one.tenant_id, call_id="CA1"))
            seen_one, seen_two = await on_one.events(2), await on_two.events(2)
            # Both instances recorded both events; each got one id, the same everywhere.
            assert seen_one == seen_two
            assert [e["id"] for e in seen_two] == [2, 3]

            # Alice's browser drops its socket on one and resumes on two.
            await on_one.close()
            for n in (1, 2):
                await one.publish(key(one, alice, n))
            assert [e["id"] for e in await on_two.events(2)] == [4, 5]
            resumed, _ = await two.feed(alice, "?after=3")
            assert [e["id"] for e in await resumed.events(2)] == [4, 5]
            assert await resumed.quiet() == []

            stream = domain.agent_stream(one.tenant_id, alice.id)
            async with one.kernel.db.transaction() as session:
                count = await session.scalar(
                    select(func.count()).select_from(events).where(events.c.stream == stream)
                )
            assert count == 5
