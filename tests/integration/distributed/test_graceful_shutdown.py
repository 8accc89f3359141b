"""A service process stopped with SIGTERM stops consuming, finishes the handler in flight
and hands back what it had taken but not started, so another consumer of its group has
it at once; one killed with SIGKILL loses nothing either: its pending entries are
claimed by another consumer after the visibility timeout."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.contract.messages import Ping
from tests.integration.distributed.processes import KEY, stop, wait_until
from tests.servers import free_port
from tests.waiting import eventually
from transact.contracts import Message
from transact.kernel.bus import BusOptions
from transact.kernel.bus.redis import RedisBus

pytestmark = [pytest.mark.distributed, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[3]
GROUP = "slow"


class Consumer:
    """The slow consumer as a process of its own."""

    def __init__(
        self, tmp: Path, redis_url: str, namespace: str, visibility: float, how_long: str
    ) -> None:
        self.marks = tmp / "marks"
        self.marks.touch()
        self.log = tmp / "consumer.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
        env.update(
            {
                "TRANSACT_MASTER_KEY": KEY,
                "TRANSACT_DATA_DIR": str(tmp),
                "TRANSACT_BUS_URL": redis_url,
                "TRANSACT_CACHE_URL": redis_url,
                "TRANSACT_NAMESPACE": namespace,
                "TRANSACT_BUS_VISIBILITY_TIMEOUT": str(visibility),
                "TRANSACT_LOG_LEVEL": "WARNING",
            }
        )
        port = free_port()
        module = "tests.integration.distributed.slow_consumer"
        argv = [sys.executable, "-m", module, str(self.marks), how_long, str(port)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.port = port

    def lines(self) -> list[str]:
        return self.marks.read_text().splitlines()

    async def wait_for(self, line: str, within: float = 60.0) -> None:
        await eventually(lambda: line in self.lines(), within=within)


@dataclass
class Scenario:
    consumer: Consumer
    namespace: str
    sent: list[Ping]


async def three_waiting(redis_url: str, namespace: str) -> list[Ping]:
    """Three messages already in the stream when the consumer first reads: it takes all
    three in one batch, so two are taken and not started while it works on the first."""
    bus = RedisBus(redis_url, namespace)
    try:
        stream = f"{namespace}:bus:{Ping.topic}"
        await bus._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        sent = [Ping(tenant_id="t", n=n) for n in range(3)]
        for message in sent:
            await bus.publish(message)
    finally:
        await bus.close()
    return sent


@pytest.fixture(scope="module")
def scenarios(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[dict[str, Scenario]]:
    """Both consumers start at once (starting a Python process is the slow part): for
    SIGTERM a 30 s visibility timeout and a handler that lasts until the bus stops, so it
    is in flight when the signal comes; for SIGKILL a 2 s visibility timeout and handlers
    that would take a minute, so one is surely in flight."""
    made: dict[str, Scenario] = {}
    try:
        for name, visibility, how_long in (("term", 30.0, "until-stopped"), ("kill", 2.0, "60")):
            namespace = f"t{uuid.uuid4().hex[:12]}"
            sent = asyncio.run(three_waiting(redis_url, namespace))
            workdir = tmp_path_factory.mktemp(name)
            consumer = Consumer(workdir, redis_url, namespace, visibility, how_long)
            made[name] = Scenario(consumer, namespace, sent)
        for scenario in made.values():
            first = f"started {scenario.sent[0].id}"
            wait_until(
                lambda c=scenario.consumer, line=first: line in c.lines(),
                "slow consumer",
                scenario.consumer.proc,
                scenario.consumer.log,
            )
        yield made
    finally:
        for scenario in made.values():
            stop(scenario.consumer.proc)


async def received_by(bus: RedisBus, count: int, within: float) -> list[Message]:
    got: list[Message] = []

    async def take(message: Message) -> None:
        got.append(message)

    bus.subscribe(Ping.topic, GROUP, take)
    await bus.start()
    await eventually(lambda: len(got) >= count, within=within)
    return got


async def test_sigterm_finishes_the_handler_in_flight_and_hands_back_the_rest(
    redis_url: str, scenarios: dict[str, Scenario]
) -> None:
    consumer, namespace, sent = astuple_of(scenarios["term"])
    consumer.proc.send_signal(signal.SIGTERM)
    # uvicorn re-raises the signal once it has shut down cleanly: the exit says SIGTERM.
    assert await asyncio.to_thread(consumer.proc.wait, 30) in (0, -signal.SIGTERM)
    # The handler in flight ran to its end; nothing else was started.
    assert consumer.lines() == [f"started {sent[0].id}", f"finished {sent[0].id}"]

    # Another consumer of the group, with a long visibility timeout: what it gets at
    # once was handed back, not timed out; the finished one was acked.
    bus = RedisBus(redis_url, namespace, BusOptions(visibility_timeout=30.0))
    try:
        began = time.monotonic()
        got = await received_by(bus, 2, within=10)
        assert time.monotonic() - began < 10
        await asyncio.sleep(0.5)
    finally:
        await bus.close()
    assert sorted(m.id for m in got) == sorted(m.id for m in sent[1:])


async def test_sigkill_loses_nothing_the_group_claims_it_after_the_visibility_timeout(
    redis_url: str, scenarios: dict[str, Scenario]
) -> None:
    consumer, namespace, sent = astuple_of(scenarios["kill"])
    consumer.proc.send_signal(signal.SIGKILL)
    await asyncio.to_thread(consumer.proc.wait, 10)
    assert f"finished {sent[0].id}" not in consumer.lines()

    # Pending on a consumer that is gone: any other consumer of the group claims them
    # once they have been idle for the dead one's visibility timeout.
    bus = RedisBus(redis_url, namespace, BusOptions(visibility_timeout=2.0))
    try:
        got = await received_by(bus, 3, within=15)
    finally:
        await bus.close()
    assert sorted(m.id for m in got) == sorted(m.id for m in sent)


def astuple_of(scenario: Scenario) -> tuple[Consumer, str, list[Ping]]:
    return scenario.consumer, scenario.namespace, scenario.sent
