"""Redis Streams: a busy consumer looks for entries to reclaim once per poll interval,
not before every read, and still reclaims a failed entry on time."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.contract.messages import Ping
from tests.waiting import eventually
from transact.contracts import Message
from transact.kernel.bus import BusOptions
from transact.kernel.bus.redis import RedisBus

pytestmark = pytest.mark.redis

OPTIONS = BusOptions(visibility_timeout=2.0, retry_delay=0.4, max_deliveries=3)


def count_reclaims(bus: RedisBus, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    calls: list[float] = []
    real = bus._redis.xautoclaim

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(time.monotonic())
        return await real(*args, **kwargs)

    monkeypatch.setattr(bus._redis, "xautoclaim", counted)
    return calls


async def test_a_busy_consumer_does_not_reclaim_before_every_read(
    redis_url: str, namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = RedisBus(redis_url, namespace, OPTIONS)
    reclaims = count_reclaims(bus, monkeypatch)
    handled: list[str] = []

    async def handler(message: Message) -> None:
        handled.append(message.id)

    bus.subscribe(Ping.topic, "g", handler)
    await bus.start()
    try:
        started = time.monotonic()
        for n in range(40):  # one at a time, as requests and answers come
            await bus.publish(Ping(tenant_id="t", n=n))
            await eventually(lambda n=n: len(handled) == n + 1, within=10)
        elapsed = time.monotonic() - started
    finally:
        await bus.stop()
        await bus.close()
    poll = min(OPTIONS.retry_delay, OPTIONS.visibility_timeout) / 2
    assert len(reclaims) <= 2 + elapsed / poll, (len(reclaims), elapsed)


async def test_a_failed_entry_is_retried_while_new_ones_keep_coming(
    redis_url: str, namespace: str
) -> None:
    bus = RedisBus(redis_url, namespace, OPTIONS)
    seen: list[int] = []

    async def fails_once(message: Message) -> None:
        n = message.n  # type: ignore[attr-defined]
        seen.append(n)
        if n == 0 and seen.count(0) == 1:
            raise RuntimeError("first try fails")

    bus.subscribe(Ping.topic, "g", fails_once)
    await bus.start()
    try:
        await bus.publish(Ping(tenant_id="t", n=0))
        for n in range(1, 60):  # a steady stream keeps the consumer reading
            await bus.publish(Ping(tenant_id="t", n=n))
            await asyncio.sleep(0.02)
        await eventually(lambda: seen.count(0) == 2, within=5)
    finally:
        await bus.stop()
        await bus.close()
