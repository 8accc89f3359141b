"""Redis is killed (SIGKILL, no persistence) and started again on the same port while a
phone capture is open: the card draft in the vault is lost with it. The capture must
then end cleanly, with a status and reason the agent can read, and nothing may leak:
no 500 or traceback during the outage, no card number in Redis or the database after.

The Redis is the test's own (tests/faults.py); the bus stays in-process, so what is
under test is the cache and the vault on Redis, as in a deployment with
`TRANSACT_CACHE_URL=redis://...`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.faults import OwnRedis, own_redis
from tests.integration.capture.conftest import Desk, running
from tests.integration.capture.test_capture import CVV, PAN
from tests.leaks import card_numbers_in, database_dump, redis_raw_dump
from transact.capture import store

pytestmark = [pytest.mark.redis, pytest.mark.faults]

T = TypeVar("T")
TOPICS = ("capture.started", "capture.progress", "capture.completed", "capture.cancelled")


@pytest.fixture
def redis() -> Iterator[OwnRedis]:
    with own_redis() as server:
        yield server


@pytest.fixture(params=["postgres"])
async def desk(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    redis: OwnRedis,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Desk]:
    monkeypatch.setenv("TRANSACT_CACHE_URL", redis.url)
    monkeypatch.setenv("TRANSACT_NAMESPACE", namespace)
    async with running(request, tmp_path, Desk, ["gateway", "auth", "capture"], TOPICS) as d:
        yield d


def assert_clear_503(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.request.url, response.text)
    assert response.headers["Retry-After"].isdigit()
    assert response.json()["error"]["code"] == "unavailable"
    assert "Traceback" not in response.text
    assert "redis" not in response.text.lower()


async def capture_row(desk: Desk, payment_id: str) -> tuple[str, str | None]:
    async with desk.kernel.db.transaction() as session:
        row = await store.get(session, payment_id)
    assert row is not None
    return row.status, row.cancel_reason


async def test_a_redis_restart_mid_capture_ends_the_capture_cleanly_and_leaks_nothing(
    desk: Desk, redis: OwnRedis
) -> None:
    await desk.agent("alice")
    alice = desk.agents["alice"][1]
    await desk.call_for("alice", "CA1")
    opened = await desk.open("alice", "CA1")
    assert opened.status_code == 201, opened.text
    payment_id = opened.json()["id"]
    await desk.press("CA1", PAN[:8])
    await eventually_true(
        lambda: desk.payment("alice", payment_id), lambda v: v["fields"][0]["digits"] == 8
    )

    redis.kill()
    try:
        # The agent's screen polls during the outage: a clear 503, never a 500.
        assert_clear_503(await desk.client.get(f"/api/v1/payments/{payment_id}", headers=alice))
        assert_clear_503(
            await desk.client.post(f"/api/v1/payments/{payment_id}/cancel", headers=alice)
        )
        # The customer keys on: the message is retried, not lost, until Redis is back.
        await desk.press("CA1", PAN[8:])
        await asyncio.sleep(0.3)
    finally:
        redis.start()

    # Back, but empty: the draft of the first 8 digits is gone, so the capture ends.
    await eventually_true(
        lambda: capture_row(desk, payment_id), lambda row: row == ("expired", "expired")
    )

    # The event is published after that row commits: the test may see the row first.
    async def cancellations() -> list[str]:
        heard = desk.events("capture.cancelled")
        return [m.reason for m in heard if m.capture_id == payment_id]  # type: ignore[attr-defined]

    assert await eventually_true(cancellations, bool) == ["expired"]
    await desk.press("CA1", CVV)  # keys after the end are nobody's card data
    await asyncio.sleep(0.3)
    assert await capture_row(desk, payment_id) == ("expired", "expired")
    assert not desk.events("capture.completed")

    redis_dump = await redis_raw_dump(redis.url)
    database = await database_dump(desk.kernel.db.engine)
    for where in (redis_dump.decode("latin-1"), database):
        assert card_numbers_in(where) == []
        assert PAN[:8] not in where
        assert PAN not in where
    dead = await desk.kernel.bus.dead_letters("call.keypad", "capture")
    assert dead == [], "no keypad message was given up on"


async def eventually_true(
    read: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float = 15.0
) -> T:
    deadline = asyncio.get_running_loop().time() + within
    seen = await read()
    while not check(seen):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never true: {seen}")
        await asyncio.sleep(0.05)
        seen = await read()
    return seen
