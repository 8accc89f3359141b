"""Keeping sockets honest: heartbeats, a slow client cut off without slowing anyone else,
no card data in anything pushed, metrics, and a clean close at shutdown."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from prometheus_client import generate_latest

from tests.integration.notifications.conftest import Desk, Feed, serving
from tests.integration.notifications.test_resume import key
from tests.leaks import card_numbers_in
from tests.unit.notifications.planted import PAN, SECRET, contract_types, marked, planted
from transact.notifications import domain
from transact.notifications.hub import Socket


async def test_the_server_pings_with_the_last_id(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    await desk.publish(key(desk, alice, 1))
    await feed.events(1)
    ping = await feed.next(seconds=2, pings=True)
    assert ping == {"type": "ping", "last_id": 1}
    ping = await feed.next(seconds=2, pings=True)
    assert ping["type"] == "ping"
    await feed.ws.send(json.dumps({"type": "pong"}))  # answering is allowed, not needed
    await feed.close()


def cutoffs(desk: Desk) -> float:
    value = desk.kernel.metrics.get_sample_value("transact_push_cutoffs_total", {"reason": "slow"})
    return value or 0.0


class Stalled:
    """A socket whose network has stopped taking data: each send waits, as a send to a
    client that stopped reading does once TCP pushes back. Stalled on our side because
    loopback here buffers without limit, so TCP never would within a test."""

    def __init__(self, socket: Socket) -> None:
        self.socket = socket

    async def send_text(self, data: str) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        await self.socket.close(code, reason)


async def test_a_client_that_stops_reading_is_cut_off_and_others_keep_up(
    tmp_path: Path,
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/transact.db"
    async with serving(database, tmp_path, push_queue_limit=8, push_heartbeat=30) as desk:
        alice = await desk.person("alice")
        slow, _ = await desk.feed(alice)
        (stuck,) = list(desk.hub._connections)
        stuck.socket = Stalled(stuck.socket)
        fast, _ = await desk.feed(alice)
        for n in range(1, 31):
            await desk.publish(key(desk, alice, n))
        # The fast socket gets every event, in order, while the slow one's queue fills.
        assert [e["id"] for e in await fast.events(30)] == list(range(1, 31))
        code, reason = await slow.closed()
        assert code == domain.TOO_SLOW
        assert reason == "too slow: 8 messages waiting"
        assert cutoffs(desk) == 1
        assert desk.hub.count(alice.id) == 1


async def test_nothing_pushed_carries_card_data_or_unlisted_fields(desk: Desk) -> None:
    """Every contract message type, card numbers planted in every field, published where
    a supervisor watches the whole tenant and the agent they name watches their own."""
    alice = await desk.person("alice")
    boss = await desk.person("boss", role="supervisor")
    mine, _ = await desk.feed(alice)
    everything, _ = await desk.feed(boss, "?scope=tenant")
    for cls in contract_types():
        await desk.publish(marked(planted(cls, desk.tenant_id, alice.id)))
    pushed_topics = sorted(domain.RULES)
    seen = await everything.events(len(pushed_topics), seconds=10)
    assert sorted(e["topic"] for e in seen) == pushed_topics
    texts = [json.dumps(e) for e in seen]
    for event in await mine.quiet(1.5):
        texts.append(json.dumps(event))
    blob = "\n".join(texts)
    assert card_numbers_in(blob) == []
    assert PAN not in blob
    assert SECRET not in blob
    assert "call.keypad" not in blob
    assert "call.agent_code" not in blob


async def test_metrics_count_sockets_events_and_refusals(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    await desk.publish(key(desk, alice, 1))
    await feed.events(1)
    refused = await desk.raw("?token=x")
    await Feed(refused).closed()
    text = generate_latest(desk.kernel.metrics).decode()
    assert "transact_push_sockets 1.0" in text
    assert 'transact_push_events_total{topic="capture.progress"} 1.0' in text
    assert 'transact_push_refused_total{reason="token_in_url"} 1.0' in text
    await feed.close()
    for _ in range(100):
        if desk.kernel.metrics.get_sample_value("transact_push_sockets") == 0:
            break
        await asyncio.sleep(0.02)
    assert desk.kernel.metrics.get_sample_value("transact_push_sockets") == 0


async def test_shutting_down_tells_clients_to_reconnect(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/transact.db"
    async with serving(database, tmp_path) as desk:
        alice = await desk.person("alice")
        feed, _ = await desk.feed(alice)
    code, _ = await feed.closed()
    assert code in (domain.GOING_AWAY, 1012)  # ours, or uvicorn's "service restart"
