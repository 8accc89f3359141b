"""Instance groups on Redis Streams: a process's own broadcast group leaves with it.

Notifications and telephony instances each hear every event in a group of their own.
Such a group is removed when its bus stops, and, when its process crashed, by the next
bus to start on the same topic once the crashed one's heartbeat has expired, while a
live instance's group is left alone. (The in-process bus keeps nothing after its
process, so only Redis has something to prove here.)
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest
import redis.asyncio as aioredis

from transact.contracts import Message
from transact.kernel.bus import BusOptions, instance_group
from transact.kernel.bus.redis import RedisBus

pytestmark = pytest.mark.redis

FAST = BusOptions(
    visibility_timeout=1.0, retry_delay=0.2, stop_grace=0.5, abandoned_group_after=0.6
)
TOPIC = "test.instance"


async def ignore(message: Message) -> None:
    return None


async def groups(redis_url: str, namespace: str) -> set[str]:
    client: Any = aioredis.Redis.from_url(redis_url)
    try:
        found = await client.xinfo_groups(f"{namespace}:bus:{TOPIC}")
    finally:
        await client.aclose()
    return {g["name"].decode() for g in found}


def bus_with(redis_url: str, namespace: str, group: str) -> RedisBus:
    bus = RedisBus(redis_url, namespace, FAST)
    bus.subscribe(TOPIC, group, ignore)
    return bus


async def test_a_stopped_instance_takes_its_group_along(redis_url: str, namespace: str) -> None:
    mine = instance_group("notifications")
    shared = "capture"
    bus = bus_with(redis_url, namespace, mine)
    bus.subscribe(TOPIC, shared, ignore)
    await bus.start()
    assert await groups(redis_url, namespace) == {mine, shared}
    await bus.stop()
    await bus.close()
    # A service's shared group holds work for its other instances: it stays.
    assert await groups(redis_url, namespace) == {shared}


CRASHING_PROCESS = """
import asyncio, sys
from tests.contract.test_bus_instance_groups import bus_with

async def main() -> None:
    bus = bus_with(sys.argv[1], sys.argv[2], sys.argv[3])
    await bus.start()
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_a_crashed_instance_s_group_is_removed_by_the_next_one_live_ones_stay(
    redis_url: str, namespace: str
) -> None:
    crashed, live, late = (instance_group("notifications") for _ in range(3))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CRASHING_PROCESS,
        redis_url,
        namespace,
        crashed,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    living = bus_with(redis_url, namespace, live)
    await living.start()
    process.kill()  # SIGKILL: no stop(), no goodbye
    await process.wait()
    assert await groups(redis_url, namespace) == {crashed, live}
    await asyncio.sleep(FAST.abandoned_group_after + 0.3)

    newcomer = bus_with(redis_url, namespace, late)
    await newcomer.start()
    assert await groups(redis_url, namespace) == {live, late}

    for bus in (living, newcomer):
        await bus.stop()
        await bus.close()
    assert await groups(redis_url, namespace) == set()


def test_the_idle_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="abandoned_group_after"):
        BusOptions(abandoned_group_after=0)
