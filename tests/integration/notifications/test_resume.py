"""Resuming after a disconnect: every event once, in order, none lost; a reset when the
missed events are no longer kept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from tests.integration.notifications.conftest import Desk, Feed, Person, serving
from transact.contracts.capture import CaptureProgress


def key(desk: Desk, agent: Person, n: int) -> CaptureProgress:
    return CaptureProgress(
        tenant_id=desk.tenant_id,
        capture_id="cap_1",
        call_id="CA1",
        agent_id=agent.id,
        field="pan",
        event="key",
        digits=n,
        complete=False,
        valid=None,
    )


async def keys(desk: Desk, agent: Person, count: int, pause: float = 0.0) -> None:
    for n in range(1, count + 1):
        await desk.publish(key(desk, agent, n))
        if pause:
            await asyncio.sleep(pause)


async def test_a_reconnect_with_after_gets_what_it_missed_then_live_events(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    await keys(desk, alice, 3)
    assert [e["id"] for e in await feed.events(3)] == [1, 2, 3]
    await feed.close()
    for n in range(4, 7):
        await desk.publish(key(desk, alice, n))
    await asyncio.sleep(0.3)  # recorded while nobody listened

    again, subscribed = await desk.feed(alice, "?after=3")
    assert subscribed["last_id"] == 6
    missed = await again.events(3)
    assert [e["id"] for e in missed] == [4, 5, 6]
    assert [e["data"]["digits"] for e in missed] == [4, 5, 6]
    await desk.publish(key(desk, alice, 7))
    assert [e["id"] for e in await again.events(1)] == [7]
    assert await again.quiet() == []


async def test_no_event_is_lost_or_repeated_across_a_disconnect_under_load(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    total = 60
    typing_ = asyncio.create_task(keys(desk, alice, total, pause=0.01))
    received: list[dict[str, Any]] = []
    received += await feed.events(10)
    await feed.close()  # the network drops mid-stream; events keep coming
    await asyncio.sleep(0.1)
    again, _ = await desk.feed(alice, f"?after={received[-1]['id']}")
    while len(received) < total:
        received += await again.events(1)
    await typing_
    assert [e["id"] for e in received] == list(range(1, total + 1))
    assert sorted(e["data"]["digits"] for e in received) == list(range(1, total + 1))
    assert await again.quiet() == []


async def test_the_auth_message_can_carry_the_resume_point(desk: Desk) -> None:
    alice = await desk.person("alice")
    await keys(desk, alice, 4)
    await asyncio.sleep(0.3)
    ws = await desk.raw()
    await ws.send(json.dumps({"type": "auth", "token": alice.token, "after": 2}))
    feed = Feed(ws)
    await feed.expect("ready")
    assert (await feed.expect("subscribed"))["last_id"] == 4
    assert [e["id"] for e in await feed.events(2)] == [3, 4]
    await feed.close()


async def test_a_resume_message_never_repeats_what_the_socket_delivered(desk: Desk) -> None:
    alice = await desk.person("alice")
    await keys(desk, alice, 3)
    await asyncio.sleep(0.3)
    feed, subscribed = await desk.feed(alice)
    assert subscribed["last_id"] == 3
    await keys(desk, alice, 2)  # live: ids 4 and 5
    assert [e["id"] for e in await feed.events(2)] == [4, 5]
    await feed.ws.send(json.dumps({"type": "resume", "after": 1}))
    assert [e["id"] for e in await feed.events(2)] == [2, 3]
    await feed.ws.send(json.dumps({"type": "resume", "after": 0}))
    assert [e["id"] for e in await feed.events(1)] == [1]
    assert await feed.quiet() == []


async def test_resuming_from_an_unknown_id_is_a_reset(desk: Desk) -> None:
    alice = await desk.person("alice")
    await keys(desk, alice, 2)
    await asyncio.sleep(0.3)
    feed, _ = await desk.feed(alice, "?after=99")
    reset = await feed.expect("reset")
    assert reset["last_id"] == 2
    await desk.publish(key(desk, alice, 3))
    assert [e["id"] for e in await feed.events(1)] == [3]


async def test_a_gap_older_than_the_resume_window_is_a_reset(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/transact.db"
    async with serving(database, tmp_path, push_resume_window=0.5) as desk:
        alice = await desk.person("alice")
        feed, _ = await desk.feed(alice)
        await keys(desk, alice, 2)
        await feed.events(2)
        await feed.close()
        await keys(desk, alice, 2)
        await asyncio.sleep(1.0)
        again, _ = await desk.feed(alice, "?after=2")
        reset = await again.expect("reset")
        assert reset["last_id"] == 4
        assert "no longer kept" in reset["reason"]
        await desk.publish(key(desk, alice, 5))
        assert [e["id"] for e in await again.events(1)] == [5]
        assert await again.quiet() == []
