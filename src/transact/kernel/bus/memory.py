"""In-process bus: the embedded default. Messages are encoded as on the wire."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

import structlog

from transact.contracts import Message
from transact.kernel.bus.base import (
    BusOptions,
    DeadLetter,
    DeadLetterObserver,
    Handler,
    drain,
    run_handler,
)

log = structlog.get_logger("transact.bus")


@dataclass
class _Entry:
    message_id: str
    data: bytes
    deliveries: int = 0
    deadline: float = 0.0


@dataclass
class _Group:
    ready: deque[_Entry] = field(default_factory=deque)
    inflight: dict[str, _Entry] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryBus:
    def __init__(self, options: BusOptions | None = None) -> None:
        self.options = options or BusOptions()
        self._groups: dict[str, dict[str, _Group]] = {}
        self._consumers: list[tuple[str, str, Handler]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._published: dict[str, float] = {}
        self._running = False
        self.observe_dead_letter: DeadLetterObserver | None = None

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def _group(self, topic: str, group: str) -> _Group:
        return self._groups.setdefault(topic, {}).setdefault(group, _Group())

    def _is_duplicate(self, message_id: str) -> bool:
        now = self._now()
        if len(self._published) > 10_000:
            self._published = {k: exp for k, exp in self._published.items() if exp > now}
        expiry = self._published.get(message_id)
        if expiry is not None and expiry > now:
            return True
        self._published[message_id] = now + self.options.dedupe_window
        return False

    async def publish(self, message: Message) -> bool:
        if self._is_duplicate(message.id):
            return False
        data = message.encode()
        for group in self._groups.get(message.topic, {}).values():
            group.ready.append(_Entry(message.id, data))
            group.wakeup.set()
        return True

    def subscribe(self, topic: str, group: str, handler: Handler) -> None:
        self._group(topic, group)
        self._consumers.append((topic, group, handler))
        if self._running:
            self._spawn(topic, group, handler)

    def _spawn(self, topic: str, group: str, handler: Handler) -> None:
        task = asyncio.create_task(self._consume(topic, group, handler))
        self._tasks.append(task)

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        for topic, group, handler in self._consumers:
            self._spawn(topic, group, handler)

    async def stop(self) -> None:
        """Take nothing new; handlers in flight finish (up to the drain time), then stop."""
        self._running = False
        for groups in self._groups.values():
            for g in groups.values():
                g.wakeup.set()  # idle consumers wake, see the bus stopping and return
        await drain(self._tasks, self.options.drain_seconds)
        self._tasks.clear()

    async def _next(self, g: _Group, topic: str, group: str) -> _Entry | None:
        """The next entry for this group, or None once the bus is stopping."""
        while True:
            if not self._running:
                return None
            if g.ready:
                return g.ready.popleft()
            now = self._now()
            due = [e for e in g.inflight.values() if e.deadline <= now]
            if due:
                entry = min(due, key=lambda e: e.deadline)
                del g.inflight[entry.message_id]
                if entry.deliveries >= self.options.max_deliveries:
                    self._dead_letter(g, entry, "max deliveries reached", topic, group)
                    continue
                return entry
            deadlines = [e.deadline for e in g.inflight.values()]
            g.wakeup.clear()
            if not self._running:
                return None  # stop() set the wakeup just before it was cleared
            timeout = min(deadlines) - now if deadlines else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(g.wakeup.wait(), timeout)

    def _dead_letter(self, g: _Group, entry: _Entry, reason: str, topic: str, group: str) -> None:
        g.dead.append(DeadLetter(entry.message_id, reason, entry.deliveries, entry.data))
        log.warning(
            "bus.dead_lettered",
            topic=topic,
            group=group,
            message_id=entry.message_id,
            reason=reason,
            deliveries=entry.deliveries,
        )
        if self.observe_dead_letter is not None:
            self.observe_dead_letter(topic, group, reason)

    async def _consume(self, topic: str, group: str, handler: Handler) -> None:
        g = self._group(topic, group)
        while True:
            entry = await self._next(g, topic, group)
            if entry is None:
                return
            entry.deliveries += 1
            attempt = entry.deliveries
            entry.deadline = self._now() + self.options.visibility_timeout
            g.inflight[entry.message_id] = entry
            try:
                message = Message.decode(entry.data)
            except ValueError as exc:
                del g.inflight[entry.message_id]
                self._dead_letter(g, entry, f"undecodable: {type(exc).__name__}", topic, group)
                continue
            acked = await run_handler(handler, message, topic, group)
            # A handler may never suspend (SQLite runs inline): give other tasks, such as
            # the senders of pushed events, a turn between deliveries, as I/O would.
            await asyncio.sleep(0)
            current = g.inflight.get(entry.message_id)
            if current is not entry or entry.deliveries != attempt:
                continue  # reclaimed by another consumer meanwhile; its delivery decides
            if acked:
                del g.inflight[entry.message_id]
            elif attempt >= self.options.max_deliveries:
                del g.inflight[entry.message_id]
                self._dead_letter(g, entry, "max deliveries reached", topic, group)
            else:
                entry.deadline = self._now() + self.options.retry_delay
                g.wakeup.set()

    async def dead_letters(self, topic: str, group: str) -> list[DeadLetter]:
        return list(self._group(topic, group).dead)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        await self.stop()
