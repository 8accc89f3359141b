"""A poison message, as an operator sees it: a handler that always raises is given the
message `max_deliveries` times, then the message moves to the group's dead letters, the
`transact_bus_dead_letters_total` metric on `/metrics` counts it, and one log line says
which message, where and why. Nothing else stops: the next message is handled."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from tests.contract.messages import Ping
from transact.contracts import Message
from transact.kernel import Kernel
from transact.kernel.http import create_app
from transact.kernel.logging import configure_logging
from transact.kernel.settings import load_settings

DELIVERIES = 3
METRIC = "transact_bus_dead_letters_total"


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("INFO", json=True, stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.reset_defaults()


@pytest.fixture(params=["memory", "redis"])
async def kernel(
    request: pytest.FixtureRequest, tmp_path: Path, namespace: str
) -> AsyncIterator[Kernel]:
    bus_url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings = load_settings(
        master_key=base64.b64encode(b"p" * 32).decode(),
        database_url=f"sqlite+aiosqlite:///{tmp_path}/transact.db",
        bus_url=bus_url,
        namespace=namespace,
        bus_max_deliveries=DELIVERIES,
        # Retries come after min(1 s, visibility timeout): keep the test short.
        bus_visibility_timeout=0.3,
    )
    made = Kernel.from_settings(settings)
    yield made
    await made.stop()


async def test_a_poison_message_is_dead_lettered_counted_and_logged(
    kernel: Kernel, log_lines: io.StringIO
) -> None:
    attempts: list[str] = []
    handled: list[int] = []

    async def handler(message: Message) -> None:
        assert isinstance(message, Ping)
        if message.n == 13:
            attempts.append(message.id)
            raise ValueError("this message can never be handled")
        handled.append(message.n)

    kernel.bus.subscribe("test.ping", "poisoned", handler)
    await kernel.start(migrate=True)
    app = create_app(kernel, [])
    # A fixed id without digits: the log scrubber masks any Luhn-valid run of 13+ digits,
    # and about one random hex id in 250 holds one, which the exact comparison below
    # would then miss.
    poison = Ping(tenant_id="t", n=13, id="poison-ping")
    await kernel.bus.publish(poison)
    await kernel.bus.publish(Ping(tenant_id="t", n=1))

    async def dead() -> list[str]:
        return [d.message_id for d in await kernel.bus.dead_letters("test.ping", "poisoned")]

    for _ in range(200):
        if await dead():
            break
        await asyncio.sleep(0.05)
    assert await dead() == [poison.id]
    assert attempts == [poison.id] * DELIVERIES, "delivered exactly the limit, then given up"
    assert handled == [1], "the rest of the topic flows on"

    labels = {"topic": "test.ping", "group": "poisoned", "reason": "max deliveries reached"}
    assert kernel.metrics.get_sample_value(METRIC, labels) == 1.0
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        scraped = (await client.get("/metrics")).text
    assert (
        f'{METRIC}{{group="poisoned",reason="max deliveries reached",topic="test.ping"}} 1.0'
        in scraped
    )

    lines = [json.loads(line) for line in log_lines.getvalue().splitlines() if line.strip()]
    dead_lettered = [line for line in lines if line.get("event") == "bus.dead_lettered"]
    assert len(dead_lettered) == 1
    assert dead_lettered[0]["message_id"] == poison.id
    assert dead_lettered[0]["topic"] == "test.ping"
    assert dead_lettered[0]["group"] == "poisoned"
    assert dead_lettered[0]["deliveries"] == DELIVERIES
    assert dead_lettered[0]["level"] == "warning"
    failures = [line for line in lines if line.get("event") == "bus.handler_failed"]
    assert len(failures) == DELIVERIES
    assert all("can never be handled" not in str(line) for line in lines), (
        "a handler's exception text is not logged"
    )
