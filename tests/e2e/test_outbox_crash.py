"""A real crash between the commit and the publish: `transact serve psp` (PostgreSQL,
Redis bus) records a payment as authorized, its outbox relay cannot reach the bus, and
the process is SIGKILLed. Restarted, it publishes `payment.authorized` from the outbox,
and a subscriber gets it exactly once; the PSP charged once.

The relay is stalled from outside, without a hook in transact: the bus is a Redis of
the test's own, and `CLIENT PAUSE ... WRITE` holds every write to it (the relay's
publish) while the database commit goes on. The moment is chosen with the simulator:
the charge is answered 3 s late, and the pause starts once the attempt row shows the
call has left, so the outcome is committed after the pause began and can never have
reached the bus. The cache and vault are on the session's Redis, so the PSP adapter's
own reads and writes there are not held.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis

from tests.e2e.test_psp_crash import (
    PAN,
    STARTUP,
    _healthy,
    process,
    request_payment,
    route_to_simulator,
)
from tests.faults import OwnRedis, own_redis
from tests.leaks import card_numbers_in
from tests.servers import free_port, wait_for
from transact.contracts import Message
from transact.kernel.bus import BusOptions
from transact.kernel.bus.redis import RedisBus
from transact.kernel.settings import load_settings

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.faults]

LEDGER = "ledger"  # the subscriber whose side effects are counted


@pytest.fixture
def bus_redis() -> Any:
    with own_redis() as server:
        yield server


def sql(url: str, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async def run() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return [tuple(r) for r in await conn.fetch(query, *args)]
        finally:
            await conn.close()

    return asyncio.run(run())


def authorized_on_the_bus(bus: OwnRedis, namespace: str, payment_id: str) -> int:
    """How many `payment.authorized` entries for the payment the stream holds."""
    client = redis.Redis.from_url(bus.url)
    try:
        entries = client.xrange(f"{namespace}:bus:payment.authorized")
    finally:
        client.close()
    return sum(
        1
        for _, fields in entries
        if json.loads(fields[b"data"]).get("payment_id") == payment_id  # type: ignore[index]
    )


def test_an_event_committed_but_not_published_when_killed_is_published_once_after_restart(
    tmp_path: Path, redis_url: str, postgres_url: str, bus_redis: OwnRedis
) -> None:
    sim_port, app_port = free_port(), free_port()
    sim, app = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{app_port}"
    namespace = f"outbox{uuid.uuid4().hex[:8]}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    overrides = {
        "master_key": base64.b64encode(os.urandom(32)).decode(),
        "database_url": postgres_url,
        "bus_url": bus_redis.url,
        "cache_url": redis_url,
        "namespace": namespace,
        # The killed consumer's `payment.requested` comes back 2 s after the restart.
        "bus_visibility_timeout": "2",
        "log_json": "false",
    }
    env = clean | {f"TRANSACT_{k.upper()}": v for k, v in overrides.items()}
    settings = load_settings(**overrides)
    log = tmp_path / "transact.log"
    payment_id = f"pay_{uuid.uuid4().hex[:20]}"

    async def prepare() -> None:
        await route_to_simulator(settings, sim)
        # The subscriber's group exists before anything is published, as a deployed one does.
        ledger = RedisBus(bus_redis.url, namespace)
        await ledger._ensure_group("payment.authorized", LEDGER)
        await ledger.close()

    async def subscriber_side_effects() -> Counter[str]:
        """Run the subscriber until it has drained the stream: payment id -> effects."""
        effects: Counter[str] = Counter()

        async def book(message: Message) -> None:
            effects[message.payment_id] += 1  # type: ignore[attr-defined]

        bus = RedisBus(bus_redis.url, namespace, BusOptions(visibility_timeout=2, retry_delay=0.2))
        bus.subscribe("payment.authorized", LEDGER, book)
        await bus.start()
        await asyncio.sleep(1.5)
        await bus.close()
        return effects

    def outbox_rows() -> list[tuple[Any, ...]]:
        return sql(
            postgres_url,
            "SELECT published_at FROM kernel_outbox WHERE topic = 'payment.authorized'",
        )

    def status() -> str | None:
        rows = sql(postgres_url, "SELECT status FROM psp_payments WHERE id = $1", payment_id)
        return str(rows[0][0]) if rows else None

    def charges() -> dict[str, Any]:
        return dict(httpx.get(f"{sim}/_sim/charges").json())

    pause = redis.Redis.from_url(bus_redis.url)
    with process(["psp-sim", "--port", str(sim_port)], clean, tmp_path / "sim.log"):
        wait_for(lambda: _healthy(f"{sim}/_sim/health"), "transact psp-sim", timeout=STARTUP)
        asyncio.run(prepare())
        queued = httpx.post(
            f"{sim}/_sim/faults", json={"provider": "stripe", "fault": "latency=3000"}
        )
        assert queued.status_code == 201
        with process(["serve", "psp", "--port", str(app_port)], env, log) as first:
            wait_for(lambda: _healthy(f"{app}/readyz"), "transact serve psp", timeout=STARTUP)
            asyncio.run(request_payment(settings, payment_id, "INV-OUTBOX"))
            wait_for(
                lambda: (
                    sql(
                        postgres_url,
                        "SELECT outcome FROM psp_attempts WHERE payment_id = $1",
                        payment_id,
                    )
                    == [("sending",)]
                ),
                "the call to the PSP",
                timeout=STARTUP,
            )
            # From here every write to the bus waits; the PSP answers in ~3 s.
            pause.client_pause(60_000, all=False)
            try:
                wait_for(lambda: status() == "authorized", "the committed outcome", timeout=30)
                wait_for(lambda: outbox_rows() == [(None,)], "the outbox row", timeout=10)
                os.kill(first.pid, signal.SIGKILL)
                assert first.wait(10) == -signal.SIGKILL
            finally:
                pause.client_unpause()
        # Committed, and never published: the stream has no trace of it.
        assert outbox_rows() == [(None,)]
        assert authorized_on_the_bus(bus_redis, namespace, payment_id) == 0

        with process(["serve", "psp", "--port", str(app_port)], env, log):
            wait_for(
                lambda: authorized_on_the_bus(bus_redis, namespace, payment_id) == 1,
                "payment.authorized published from the outbox after the restart",
                timeout=STARTUP,
            )
            wait_for(lambda: outbox_rows()[0][0] is not None, "the row marked", timeout=10)
            # The killed consumer's `payment.requested` is redelivered (visibility 2 s)
            # and recognised as done: nothing charged or published again.
            wait_for(
                lambda: pause.xpending(f"{namespace}:bus:payment.requested", "psp")["pending"] == 0,
                "the redelivered payment.requested settled",
                timeout=20,
            )
        counts = charges()
    pause.close()

    assert authorized_on_the_bus(bus_redis, namespace, payment_id) == 1
    assert asyncio.run(subscriber_side_effects()) == Counter({payment_id: 1})
    assert counts["charges"]["stripe"][payment_id] == 1
    assert counts["attempts"]["stripe"][payment_id] == 1
    assert status() == "authorized"
    logs = log.read_text(errors="replace")
    assert PAN not in logs
    assert card_numbers_in(logs) == []
