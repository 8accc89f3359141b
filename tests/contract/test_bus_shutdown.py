"""Stopping a bus is graceful on every backend: the handler in flight finishes and its
message is acked, so no other consumer gets it again; nothing new is started."""

from __future__ import annotations

import asyncio

from tests.contract.conftest import BusFactory
from tests.contract.messages import Ping
from transact.contracts import Message
from transact.kernel.bus import BusOptions

# Visibility long enough that a redelivery within the test can only be a lost ack.
OPTIONS = BusOptions(visibility_timeout=3.0, retry_delay=0.1, max_deliveries=3, batch_size=4)


async def test_stop_lets_the_handler_in_flight_finish_and_acks_it(make_bus: BusFactory) -> None:
    bus = await make_bus(OPTIONS)
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(message: Message) -> None:
        started.set()
        await asyncio.sleep(0.4)
        finished.append(message.id)

    bus.subscribe("test.ping", "g", slow)
    await bus.start()
    sent = Ping(tenant_id="t")
    await bus.publish(sent)
    await asyncio.wait_for(started.wait(), 5)
    await bus.stop()
    assert finished == [sent.id]

    again: list[str] = []

    async def other(message: Message) -> None:
        again.append(message.id)

    second = await make_bus(OPTIONS)
    second.subscribe("test.ping", "g", other)
    await second.start()
    await asyncio.sleep(OPTIONS.visibility_timeout + 0.5)
    assert sent.id not in again, "acked when it finished: nobody gets it again"


def test_the_drain_never_outlasts_the_visibility_timeout() -> None:
    assert BusOptions(visibility_timeout=2.0).drain_seconds == 2.0
    assert BusOptions(visibility_timeout=60.0, stop_grace=10.0).drain_seconds == 10.0
