"""Redis Streams bus: the distributed backend.

One stream per topic; one consumer group per subscriber group. Unacked
entries stay in the group's pending list; consumers reclaim entries idle for
longer than the visibility timeout (XAUTOCLAIM) and dead-letter those that
were delivered `max_deliveries` times.

On `stop()` a consumer reads nothing more, finishes the entry in hand and hands
back the entries it read but did not start: they are marked idle for a whole
visibility timeout, so the group's other consumers claim them at their next
XAUTOCLAIM instead of a timeout later. A process killed outright leaves its
entries pending; they are claimed after the visibility timeout. Either way no
entry leaves the pending list unhandled.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError
from redis.typing import StreamIdT

from transact.contracts import Message
from transact.kernel.bus.base import (
    BusOptions,
    DeadLetter,
    DeadLetterObserver,
    Handler,
    consumer_name,
    drain,
    is_instance_group,
    run_handler,
)
from transact.kernel.errors import BackendUnavailable
from transact.kernel.settings import redact_url

log = structlog.get_logger("transact.bus")

# Publishing is dedupe-marker + XADD in one atomic step, so a retried publish
# can neither duplicate a message nor lose it between the two commands.
_PUBLISH = """
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[4], 'data', ARGV[1])
  return 1
end
return 0
"""

STREAM_MAXLEN = 100_000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


Entry = tuple[bytes, dict[bytes, bytes], int]  # (entry id, fields, deliveries so far)


@dataclass
class _Consumer:
    """One consumer of a group, and the entries it has read but not yet settled."""

    topic: str
    group: str
    handler: Handler
    name: str
    held: set[bytes] = field(default_factory=set)
    reclaim_at: float = 0.0  # monotonic time of the next XAUTOCLAIM


class RedisBus:
    def __init__(self, url: str, namespace: str = "transact", options: BusOptions | None = None):
        self.options = options or BusOptions()
        self._url = url
        self._ns = namespace
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._publish = self._redis.register_script(_PUBLISH)
        self._consumers: list[tuple[str, str, Handler]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._active: list[_Consumer] = []
        self._running = False
        self._heartbeat: asyncio.Task[None] | None = None
        self._name = consumer_name()
        self.observe_dead_letter: DeadLetterObserver | None = None

    def _stream(self, topic: str) -> str:
        return f"{self._ns}:bus:{topic}"

    def _dlq(self, topic: str, group: str) -> str:
        return f"{self._ns}:bus-dead:{topic}:{group}"

    async def publish(self, message: Message) -> bool:
        added = await self._publish(
            keys=[f"{self._ns}:bus-published:{message.id}", self._stream(message.topic)],
            args=[message.encode(), _ms(self.options.dedupe_window), STREAM_MAXLEN, message.id],
        )
        return bool(added)

    def subscribe(self, topic: str, group: str, handler: Handler) -> None:
        self._consumers.append((topic, group, handler))
        if self._running:
            self._spawn(topic, group, handler)

    def _spawn(self, topic: str, group: str, handler: Handler) -> None:
        consumer = _Consumer(topic, group, handler, f"{self._name}-{len(self._active)}")
        self._active.append(consumer)
        self._tasks.append(asyncio.create_task(self._consume(consumer)))

    async def _ensure_group(self, topic: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(self._stream(topic), group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _alive_key(self, group: str) -> str:
        return f"{self._ns}:bus-instance:{group}"

    def _instance_groups(self) -> set[str]:
        return {group for _, group, _ in self._consumers if is_instance_group(group)}

    async def _say_alive(self) -> None:
        ttl = _ms(self.options.abandoned_group_after)
        for group in self._instance_groups():
            await self._redis.set(self._alive_key(group), b"1", px=ttl)

    async def _keep_saying_alive(self) -> None:
        # Checks `_running`, not only cancellation: redis-py may turn the cancel of a
        # command in flight into a connection error, which would otherwise loop on.
        while self._running:
            await asyncio.sleep(self.options.abandoned_group_after / 3)
            try:
                await self._say_alive()
            except (RedisError, OSError) as exc:
                if not self._running:
                    return
                log.warning("bus.instance_heartbeat_failed", error=str(exc))

    async def _remove_abandoned_groups(self, topic: str) -> None:
        """Instance groups whose process no longer says it is alive (it crashed)."""
        stream = self._stream(topic)
        for info in await self._redis.xinfo_groups(stream):
            name = _text(info["name"])
            if is_instance_group(name) and not await self._redis.exists(self._alive_key(name)):
                await self._redis.xgroup_destroy(stream, name)
                log.info("bus.abandoned_group_removed", topic=topic, group=name)

    async def _remove_instance_groups(self) -> None:
        for topic, group in {(t, g) for t, g, _ in self._consumers if is_instance_group(g)}:
            try:
                await self._redis.xgroup_destroy(self._stream(topic), group)
                await self._redis.delete(self._alive_key(group))
            except (RedisError, OSError) as exc:
                # Left behind: the next instance to start removes it once its key expires.
                log.warning("bus.instance_group_left", topic=topic, error=str(exc))

    async def start(self) -> None:
        if self._running:
            return
        # Alive before its groups exist, so no other instance takes them for abandoned.
        await self._say_alive()
        # Groups exist before start() returns, so nothing published after it is missed.
        for topic, group, _ in self._consumers:
            await self._ensure_group(topic, group)
        for topic in {t for t, _, _ in self._consumers}:
            await self._remove_abandoned_groups(topic)
        if self._instance_groups():
            self._heartbeat = asyncio.create_task(self._keep_saying_alive())
        self._running = True
        for topic, group, handler in self._consumers:
            self._spawn(topic, group, handler)

    async def stop(self) -> None:
        """Read nothing more, let in-flight handlers finish, hand back what was not started."""
        self._running = False
        # A consumer blocked in XREADGROUP returns within half a retry delay; cancelling
        # it instead could drop a reply whose entries Redis already counted as ours.
        await drain(self._tasks, self.options.drain_seconds)
        self._tasks.clear()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            # Bounded: it ends at the cancel or, at the latest, at its next loop check.
            await asyncio.wait([self._heartbeat], timeout=self.options.drain_seconds + 1)
            self._heartbeat = None
        for consumer in self._active:
            if not is_instance_group(consumer.group):  # nobody else would take them
                await self._hand_back(consumer)
        self._active.clear()
        await self._remove_instance_groups()

    async def _hand_back(self, consumer: _Consumer) -> None:
        """Make entries this consumer holds claimable by the group's others right away."""
        if not consumer.held:
            return
        ids: list[StreamIdT] = [*sorted(consumer.held)]
        try:
            await self._redis.xclaim(
                self._stream(consumer.topic),
                consumer.group,
                consumer.name,
                0,
                ids,
                idle=_ms(self.options.visibility_timeout),
                justid=True,
            )
        except (RedisError, OSError) as exc:
            # They stay pending all the same and are claimed after the visibility timeout.
            log.warning("bus.hand_back_failed", topic=consumer.topic, error=str(exc))
        consumer.held.clear()

    async def _consume(self, consumer: _Consumer) -> None:
        topic, group = consumer.topic, consumer.group
        await self._ensure_group(topic, group)
        while self._running:
            try:
                if time.monotonic() >= consumer.reclaim_at:
                    await self._deliver_all(consumer, await self._reclaim(consumer))
                if self._running:
                    await self._deliver_all(consumer, await self._read_new(consumer))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if not self._running or (task is not None and task.cancelling()):
                    # redis-py may turn our cancellation into a connection error.
                    return
                log.error("bus.redis_error", topic=topic, group=group, error=str(exc))
                await asyncio.sleep(1.0)

    def _poll_seconds(self) -> float:
        """How long a read waits for new entries, and so how often an idle consumer
        looks for entries to reclaim: half the shortest wait an entry may be owed."""
        return min(self.options.retry_delay, self.options.visibility_timeout) / 2

    async def _read_new(self, consumer: _Consumer) -> list[Entry]:
        block_ms = _ms(self._poll_seconds())
        response: Any = await self._redis.xreadgroup(
            consumer.group,
            consumer.name,
            {self._stream(consumer.topic): ">"},
            count=self.options.batch_size,
            block=block_ms,
        )
        entries = [
            (entry_id, fields, 1) for _stream, batch in response or [] for entry_id, fields in batch
        ]
        consumer.held.update(entry_id for entry_id, _, _ in entries)
        return entries

    async def _deliver_all(self, consumer: _Consumer, entries: list[Entry]) -> None:
        for entry_id, fields, deliveries in entries:
            if not self._running:
                return  # the rest stay held and go back to the group in stop()
            await self._deliver(consumer, entry_id, fields, deliveries)

    async def _reclaim(self, consumer: _Consumer) -> list[Entry]:
        topic, group = consumer.topic, consumer.group
        stream = self._stream(topic)
        result = await self._redis.xautoclaim(
            stream,
            group,
            consumer.name,
            _ms(self.options.visibility_timeout),
            start_id="0-0",
            count=self.options.batch_size,
        )
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = result[1]
        # A busy consumer reads new entries far more often than one can fall due for
        # reclaiming: looking once per poll interval is as prompt as an idle consumer's
        # blocking read, and saves a round trip per entry. A full batch may have left
        # more behind, so the next look is at once.
        full = len(claimed) >= self.options.batch_size
        consumer.reclaim_at = 0.0 if full else time.monotonic() + self._poll_seconds()
        out = []
        for entry_id, fields in claimed:
            if fields is None:  # trimmed away while pending
                await self._redis.xack(stream, group, entry_id)
                continue
            deliveries = await self._deliveries(stream, group, entry_id)
            if deliveries > self.options.max_deliveries:
                await self._dead_letter(
                    topic, group, entry_id, fields, "max deliveries reached", deliveries - 1
                )
                continue
            consumer.held.add(entry_id)
            out.append((entry_id, fields, deliveries))
        return out

    async def _deliveries(self, stream: str, group: str, entry_id: bytes) -> int:
        pending: list[dict[str, Any]] = await self._redis.xpending_range(
            stream, group, min=entry_id, max=entry_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _deliver(
        self, consumer: _Consumer, entry_id: bytes, fields: dict[bytes, bytes], deliveries: int
    ) -> None:
        topic, group = consumer.topic, consumer.group
        stream = self._stream(topic)
        try:
            message = Message.decode(fields[b"data"])
        except (KeyError, ValueError) as exc:
            await self._dead_letter(
                topic, group, entry_id, fields, f"undecodable: {type(exc).__name__}", deliveries
            )
            consumer.held.discard(entry_id)
            return
        if await run_handler(consumer.handler, message, topic, group):
            await self._redis.xack(stream, group, entry_id)
        elif deliveries >= self.options.max_deliveries:
            await self._dead_letter(
                topic, group, entry_id, fields, "max deliveries reached", deliveries
            )
        else:
            # Make the entry look idle for (visibility - retry) already, so any
            # consumer reclaims it after retry_delay rather than a full timeout.
            idle = _ms(self.options.visibility_timeout - self.options.retry_delay)
            await self._redis.xclaim(
                stream, group, consumer.name, 0, [entry_id], idle=idle, justid=True
            )
        consumer.held.discard(entry_id)

    async def _dead_letter(
        self,
        topic: str,
        group: str,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        reason: str,
        deliveries: int,
    ) -> None:
        message_id = fields.get(b"id", b"").decode(errors="replace")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(
                self._dlq(topic, group),
                {
                    "id": message_id,
                    "reason": reason,
                    "deliveries": deliveries,
                    "data": fields.get(b"data", b""),
                },
            )
            pipe.xack(self._stream(topic), group, entry_id)
            await pipe.execute()
        log.warning(
            "bus.dead_lettered",
            topic=topic,
            group=group,
            message_id=message_id,
            reason=reason,
            deliveries=deliveries,
        )
        if self.observe_dead_letter is not None:
            self.observe_dead_letter(topic, group, reason)

    async def dead_letters(self, topic: str, group: str) -> list[DeadLetter]:
        entries: Any = await self._redis.xrange(self._dlq(topic, group))
        return [
            DeadLetter(
                message_id=f[b"id"].decode(),
                reason=f[b"reason"].decode(),
                deliveries=int(f[b"deliveries"]),
                data=f[b"data"],
            )
            for _, f in entries
        ]

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(
                f"cannot reach Redis at {redact_url(self._url)}: {exc}"
            ) from None

    async def close(self) -> None:
        await self.stop()
        await self._redis.aclose()
