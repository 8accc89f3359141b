"""One push connection against a fake socket and log: order, gaps, resets, heartbeats and
the cut-off of a client that does not keep up."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from prometheus_client import CollectorRegistry

from tests.waiting import eventually
from transact.notifications import domain
from transact.notifications.domain import Scope
from transact.notifications.flow import Delivery
from transact.notifications.hub import Connection, Follow, Hub, Metrics, ResumeFrom
from transact.notifications.store import Entry

STREAM = "agent:t:alice"


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None
        self.stalled = False

    async def send_text(self, data: str) -> None:
        if self.stalled:
            await asyncio.Event().wait()
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def ids(self) -> list[int]:
        return [m["id"] for m in self.sent if m["type"] == "event"]

    def kinds(self) -> list[str]:
        return [m["type"] for m in self.sent]


class FakeLog:
    def __init__(self) -> None:
        self.rows: dict[str, list[Entry]] = {}
        self.last: dict[str, int] = {}

    def add(self, stream: str, count: int = 1) -> list[Delivery]:
        made = []
        for _ in range(count):
            seq = self.last.get(stream, 0) + 1
            self.last[stream] = seq
            body = domain.body_text({"topic": "call.ended", "occurred_at": "t", "data": {}})
            self.rows.setdefault(stream, []).append(Entry(seq, "call.ended", body))
            made.append(Delivery(stream, seq, "call.ended", domain.event_text(seq, body)))
        return made

    def forget_before(self, stream: str, seq: int) -> None:
        self.rows[stream] = [e for e in self.rows[stream] if e.seq >= seq]

    async def head(self, stream: str) -> int:
        return self.last.get(stream, 0)

    async def entries(
        self, stream: str, after: int, *, until: int | None = None, limit: int = 500
    ) -> list[Entry]:
        found = [
            e
            for e in self.rows.get(stream, [])
            if e.seq > after and (until is None or e.seq <= until)
        ]
        return found[:limit]


async def connect(
    log: FakeLog, *, limit: int = 16, heartbeat: float = 60.0, signed_in: bool = True
) -> tuple[Hub, Connection, FakeSocket]:
    hub = Hub(Metrics(CollectorRegistry()))
    socket = FakeSocket()

    async def still() -> bool:
        return signed_in

    connection = Connection(
        socket,
        user_id="alice",
        hub=hub,
        log=log,
        queue_limit=limit,
        heartbeat=heartbeat,
        signed_in=still,
    )
    hub.add(connection)
    connection.start()
    connection.offer(Follow(Scope.AGENT, STREAM, None))
    await eventually(lambda: socket.kinds() == ["subscribed"])
    return hub, connection, socket


async def test_live_events_go_out_once_in_order_and_gaps_are_filled_from_the_log() -> None:
    log = FakeLog()
    hub, connection, socket = await connect(log)
    one, two, three = log.add(STREAM, 3)
    hub.deliver(three)  # its consumer was quicker than the other two's
    hub.deliver(one)
    hub.deliver(two)
    hub.deliver(three)  # a redelivery
    (four,) = log.add(STREAM)
    hub.deliver(four)
    await eventually(lambda: socket.ids() == [1, 2, 3, 4])
    await asyncio.sleep(0.05)
    assert socket.ids() == [1, 2, 3, 4]
    await connection.stop()


async def test_a_gap_the_log_no_longer_holds_is_a_reset() -> None:
    log = FakeLog()
    hub, connection, socket = await connect(log)
    deliveries = log.add(STREAM, 5)
    log.forget_before(STREAM, 4)
    hub.deliver(deliveries[4])
    await eventually(lambda: "reset" in socket.kinds())
    reset = next(m for m in socket.sent if m["type"] == "reset")
    assert reset["last_id"] == 5
    (six,) = log.add(STREAM)
    hub.deliver(six)
    await eventually(lambda: socket.ids() == [6])
    await connection.stop()


async def test_a_resume_backfills_only_the_older_part() -> None:
    log = FakeLog()
    log.add(STREAM, 3)
    hub, connection, socket = await connect(log)
    for delivery in log.add(STREAM, 2):
        hub.deliver(delivery)
    await eventually(lambda: socket.ids() == [4, 5])
    connection.offer(ResumeFrom(0))
    await eventually(lambda: socket.ids() == [4, 5, 1, 2, 3])
    connection.offer(ResumeFrom(2))
    await asyncio.sleep(0.05)
    assert socket.ids() == [4, 5, 1, 2, 3]
    await connection.stop()


async def test_events_of_a_stream_left_behind_are_not_sent() -> None:
    log = FakeLog()
    hub, connection, socket = await connect(log)
    connection.offer(Follow(Scope.TENANT, "tenant:t", None))
    await eventually(lambda: socket.kinds().count("subscribed") == 2)
    for delivery in log.add(STREAM, 2):
        hub.deliver(delivery)
    (tenant_event,) = log.add("tenant:t")
    hub.deliver(tenant_event)
    await eventually(lambda: socket.ids() == [1])
    assert socket.sent[-1]["id"] == 1
    await connection.stop()


async def test_a_client_that_does_not_keep_up_is_cut_off_alone() -> None:
    log = FakeLog()
    hub, slow, slow_socket = await connect(log, limit=4)
    fast_socket = FakeSocket()

    async def yes() -> bool:
        return True

    fast = Connection(
        fast_socket, user_id="alice", hub=hub, log=log, queue_limit=4, heartbeat=60, signed_in=yes
    )
    hub.add(fast)
    fast.start()
    fast.offer(Follow(Scope.AGENT, STREAM, None))
    await eventually(lambda: fast_socket.kinds() == ["subscribed"])
    slow_socket.stalled = True
    for delivery in log.add(STREAM, 12):
        hub.deliver(delivery)
        await asyncio.sleep(0)  # the fast sender keeps up; the stalled one cannot
    await eventually(lambda: slow_socket.closed is not None)
    assert slow_socket.closed == (domain.TOO_SLOW, "too slow: 4 messages waiting")
    await eventually(lambda: fast_socket.ids() == list(range(1, 13)))
    assert hub.metrics.cut_off.labels("slow")._value.get() == 1
    await slow.stop()
    await fast.stop()
    assert hub.count("alice") == 0


async def test_heartbeats_ping_catch_up_and_end_with_the_session() -> None:
    log = FakeLog()
    _, connection, socket = await connect(log, heartbeat=0.05)
    log.add(STREAM, 2)  # recorded, but this instance never pushed them
    await eventually(lambda: socket.ids() == [1, 2])
    assert "ping" in socket.kinds()
    await connection.stop()

    _, ended, ended_socket = await connect(log, heartbeat=0.05, signed_in=False)
    await eventually(lambda: ended_socket.closed is not None)
    assert ended_socket.closed == (domain.UNAUTHENTICATED, "the session has ended; sign in again")
    await ended.stop()
