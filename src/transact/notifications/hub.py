"""The push sockets of this instance: who follows which stream, and one sender per socket.

Each socket has one bounded queue and one task that writes to it, so everything a
client receives (events, pings, replies) goes out in one order, and a socket that
cannot keep up fills only its own queue: when that is full the socket is cut off
with a reason, and the bus consumer that offered the event never waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge

from transact.notifications import domain
from transact.notifications.domain import Backfill, Position, Scope
from transact.notifications.flow import Delivery
from transact.notifications.store import Entry

log = structlog.get_logger("transact.notifications")

PAGE = 500  # events read from the log at a time when catching up
CLOSE_WAIT_SECONDS = 5.0  # a close frame stuck behind a full buffer is given up after this


class Socket(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Log(Protocol):
    """The reads a connection needs from the event log (`flow.Notifications`)."""

    async def head(self, stream: str) -> int: ...

    async def entries(
        self, stream: str, after: int, *, until: int | None = None, limit: int = PAGE
    ) -> list[Entry]: ...


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sockets = Gauge(
            "transact_push_sockets", "Push sockets open on this instance", registry=registry
        )
        self.pushed = Counter(
            "transact_push_events",
            "Events pushed to sockets, by topic",
            ["topic"],
            registry=registry,
        )
        self.cut_off = Counter(
            "transact_push_cutoffs",
            "Push sockets the server closed, by reason",
            ["reason"],
            registry=registry,
        )
        self.refused = Counter(
            "transact_push_refused",
            "Push sockets refused before any event, by reason",
            ["reason"],
            registry=registry,
        )
        self.resets = Counter(
            "transact_push_resets",
            "Resumes answered with a reset (the missed events were no longer kept)",
            registry=registry,
        )


# --- what a sender works through, in order ------------------------------------------------


@dataclass(frozen=True)
class Live:
    stream: str
    seq: int
    topic: str
    text: str


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class Follow:
    scope: Scope
    stream: str
    after: int | None


@dataclass(frozen=True)
class ResumeFrom:
    after: int


@dataclass(frozen=True)
class Tick:
    pass


Item = Live | Say | Follow | ResumeFrom | Tick


class Connection:
    """One authenticated push socket."""

    def __init__(
        self,
        socket: Socket,
        *,
        user_id: str,
        hub: Hub,
        log: Log,
        queue_limit: int,
        heartbeat: float,
        signed_in: Callable[[], Awaitable[bool]],
    ) -> None:
        self.socket = socket
        self.user_id = user_id
        self.hub = hub
        self.log = log
        self.heartbeat = heartbeat
        self.signed_in = signed_in
        self.queue: asyncio.Queue[Item] = asyncio.Queue(queue_limit)
        self.scope: Scope | None = None
        self.stream: str | None = None
        self.position = Position.at(0)
        self.closed = asyncio.Event()
        self._closing = False
        self._tasks: list[asyncio.Task[None]] = []
        self._closer: asyncio.Task[None] | None = None

    @property
    def metrics(self) -> Metrics:
        return self.hub.metrics

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._send_loop(), name="push-sender"),
            asyncio.create_task(self._beat(), name="push-heartbeat"),
        ]

    def offer(self, item: Item) -> None:
        """Queue without waiting; a full queue means the client is too slow to keep."""
        if self._closing:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.metrics.cut_off.labels("slow").inc()
            log.warning("notifications.client_too_slow", user_id=self.user_id)
            self.close_soon(domain.TOO_SLOW, f"too slow: {self.queue.maxsize} messages waiting")

    def close_soon(self, code: int, reason: str) -> None:
        """Close from anywhere (a bus consumer, the sender itself) without waiting here."""
        if self._closing:
            return
        self._closing = True
        self._closer = asyncio.create_task(self._close(code, reason), name="push-close")

    async def _close(self, code: int, reason: str) -> None:
        await self._cancel_tasks()
        # The close frame queues behind what the client has not read; do not wait forever.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.socket.close(code, reason), CLOSE_WAIT_SECONDS)
        self.closed.set()

    async def stop(self) -> None:
        """The socket is gone: stop the tasks and leave every stream."""
        self._closing = True
        await self._cancel_tasks()
        if self._closer is not None and self._closer is not asyncio.current_task():
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer
        self.hub.remove(self)
        self.closed.set()

    async def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --- the sender ---------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            self.offer(Tick())

    async def _send_loop(self) -> None:
        try:
            while True:
                await self._handle(await self.queue.get())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the socket went away mid-send, or the database did
            log.info("notifications.sender_stopped", error=type(exc).__name__)
            self.close_soon(domain.INTERNAL_ERROR, "internal error; reconnect and resume")

    async def _handle(self, item: Item) -> None:
        if isinstance(item, Live):
            if item.stream == self.stream:
                await self._live(item)
        elif isinstance(item, Say):
            await self.socket.send_text(item.text)
        elif isinstance(item, Follow):
            await self._follow(item)
        elif isinstance(item, ResumeFrom):
            if self.stream is not None:
                await self._resume(self.stream, item.after)
        else:
            await self._tick()

    async def _send_event(self, seq: int, topic: str, text: str) -> None:
        await self.socket.send_text(text)
        self.position.last = seq
        self.metrics.pushed.labels(topic).inc()

    async def _live(self, item: Live) -> None:
        verdict = self.position.classify(item.seq)
        if verdict == "next":
            await self._send_event(item.seq, item.topic, item.text)
        elif verdict == "gap":
            # Another consumer's event is numbered before this one but not pushed yet:
            # the log has both, in order.
            await self._catch_up(item.stream, until=item.seq)

    async def _catch_up(self, stream: str, *, until: int | None) -> None:
        """Send what the log holds after the last id sent (up to `until`), in order."""
        while until is None or self.position.last < until:
            first = self.position.last + 1
            found = await self.log.entries(stream, self.position.last, until=until, limit=PAGE)
            if found and not domain.consecutive(first, [e.seq for e in found]):
                await self._reset(stream, "missed events are no longer kept")
                return
            for entry in found:
                await self._send_event(
                    entry.seq, entry.topic, domain.event_text(entry.seq, entry.body)
                )
            if len(found) < PAGE:
                if until is not None and self.position.last < until:
                    await self._reset(stream, "missed events are no longer kept")
                return

    async def _follow(self, item: Follow) -> None:
        # Join before reading the head: an event numbered after it is then surely queued.
        self.hub.follow(self, self.stream, item.stream)
        self.scope, self.stream = item.scope, item.stream
        head = await self.log.head(item.stream)
        self.position = Position.at(head)
        await self.socket.send_text(domain.control("subscribed", scope=item.scope, last_id=head))
        if item.after is not None:
            await self._resume(item.stream, item.after)

    async def _resume(self, stream: str, after: int) -> None:
        head = await self.log.head(stream)
        plan = domain.plan_resume(self.position, after, head)
        if plan is None:
            return
        if not isinstance(plan, Backfill):
            await self._reset(stream, plan.reason, head)
            return
        found = await self.log.entries(
            stream, plan.first - 1, until=plan.last, limit=plan.last - plan.first + 1
        )
        seqs = [e.seq for e in found]
        if not domain.consecutive(plan.first, seqs) or seqs[-1:] != [plan.last]:
            await self._reset(stream, "missed events are no longer kept", head)
            return
        for entry in found:
            await self.socket.send_text(domain.event_text(entry.seq, entry.body))
            self.metrics.pushed.labels(entry.topic).inc()
        self.position.low = plan.first

    async def _reset(self, stream: str, reason: str, head: int | None = None) -> None:
        """Tell the client to refetch its state; live events continue after `last_id`."""
        if head is None:
            head = await self.log.head(stream)
        self.metrics.resets.inc()
        self.position = Position.at(max(head, self.position.last))
        await self.socket.send_text(
            domain.control("reset", last_id=self.position.last, reason=reason)
        )

    async def _tick(self) -> None:
        if not await self.signed_in():
            self.close_soon(domain.UNAUTHENTICATED, "the session has ended; sign in again")
            return
        await self.socket.send_text(domain.control("ping", last_id=self.position.last))
        # A push this instance never made (its consumer failed) is found here at the latest.
        if self.stream is not None:
            await self._catch_up(self.stream, until=None)


class Hub:
    """This instance's connections, by the stream each follows."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._connections: set[Connection] = set()
        self._followers: dict[str, set[Connection]] = {}

    def add(self, connection: Connection) -> None:
        self._connections.add(connection)
        self.metrics.sockets.inc()

    def remove(self, connection: Connection) -> None:
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        if connection.stream is not None:
            self._leave(connection, connection.stream)
        self.metrics.sockets.dec()

    def count(self, user_id: str) -> int:
        return sum(1 for c in self._connections if c.user_id == user_id)

    def follow(self, connection: Connection, old: str | None, new: str) -> None:
        if old is not None and old != new:
            self._leave(connection, old)
        self._followers.setdefault(new, set()).add(connection)

    def _leave(self, connection: Connection, stream: str) -> None:
        followers = self._followers.get(stream)
        if followers is not None:
            followers.discard(connection)
            if not followers:
                del self._followers[stream]

    def deliver(self, delivery: Delivery) -> None:
        for connection in list(self._followers.get(delivery.stream, ())):
            connection.offer(Live(delivery.stream, delivery.seq, delivery.topic, delivery.text))

    async def close_all(self) -> None:
        connections = list(self._connections)
        for connection in connections:
            connection.close_soon(domain.GOING_AWAY, "the server is shutting down; reconnect")
        for connection in connections:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(connection.closed.wait(), CLOSE_WAIT_SECONDS)
