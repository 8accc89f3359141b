"""Redis Streams bus: the distributed backend.

One stream per topic; one consumer group per subscriber group. Unacked
entries stay in the group's pending list; consumers reclaim entries idle for
longer than the visibility timeout (XAUTOCLAIM) and dead-letter those that
were delivered `max_deliveries` times.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError, ResponseError

from transact.contracts import Message
from transact.kernel.bus.base import BusOptions, DeadLetter, Handler, consumer_name, run_handler
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


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class RedisBus:
    def __init__(self, url: str, namespace: str = "transact", options: BusOptions | None = None):
        self.options = options or BusOptions()
        self._url = url
        self._ns = namespace
        self._redis: aioredis.Redis = aioredis.Redis.from_url(url)
        self._publish = self._redis.register_script(_PUBLISH)
        self._consumers: list[tuple[str, str, Handler]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._name = consumer_name()

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
        self._tasks.append(asyncio.create_task(self._consume(topic, group, handler)))

    async def _ensure_group(self, topic: str, group: str) -> None:
        try:
            await self._redis.xgroup_create(self._stream(topic), group, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def start(self) -> None:
        if self._running:
            return
        # Groups exist before start() returns, so nothing published after it is missed.
        for topic, group, _ in self._consumers:
            await self._ensure_group(topic, group)
        self._running = True
        for topic, group, handler in self._consumers:
            self._spawn(topic, group, handler)

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _consume(self, topic: str, group: str, handler: Handler) -> None:
        await self._ensure_group(topic, group)
        name = f"{self._name}-{len(self._tasks)}"
        block_ms = _ms(min(self.options.retry_delay, self.options.visibility_timeout) / 2)
        while self._running:
            try:
                for entry_id, fields, deliveries in await self._reclaim(topic, group, name):
                    await self._deliver(topic, group, name, handler, entry_id, fields, deliveries)
                response: Any = await self._redis.xreadgroup(
                    group,
                    name,
                    {self._stream(topic): ">"},
                    count=self.options.batch_size,
                    block=block_ms,
                )
                for _stream, entries in response or []:
                    for entry_id, fields in entries:
                        await self._deliver(topic, group, name, handler, entry_id, fields, 1)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                task = asyncio.current_task()
                if not self._running or (task is not None and task.cancelling()):
                    # redis-py may turn our cancellation into a connection error.
                    return
                log.error("bus.redis_error", topic=topic, group=group, error=str(exc))
                await asyncio.sleep(1.0)

    async def _reclaim(
        self, topic: str, group: str, name: str
    ) -> list[tuple[bytes, dict[bytes, bytes], int]]:
        stream = self._stream(topic)
        result = await self._redis.xautoclaim(
            stream,
            group,
            name,
            _ms(self.options.visibility_timeout),
            start_id="0-0",
            count=self.options.batch_size,
        )
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = result[1]
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
            out.append((entry_id, fields, deliveries))
        return out

    async def _deliveries(self, stream: str, group: str, entry_id: bytes) -> int:
        pending: list[dict[str, Any]] = await self._redis.xpending_range(
            stream, group, min=entry_id, max=entry_id, count=1
        )
        return int(pending[0]["times_delivered"]) if pending else 1

    async def _deliver(
        self,
        topic: str,
        group: str,
        name: str,
        handler: Handler,
        entry_id: bytes,
        fields: dict[bytes, bytes],
        deliveries: int,
    ) -> None:
        stream = self._stream(topic)
        try:
            message = Message.decode(fields[b"data"])
        except (KeyError, ValueError) as exc:
            await self._dead_letter(
                topic, group, entry_id, fields, f"undecodable: {type(exc).__name__}", deliveries
            )
            return
        if await run_handler(handler, message, topic, group):
            await self._redis.xack(stream, group, entry_id)
        elif deliveries >= self.options.max_deliveries:
            await self._dead_letter(
                topic, group, entry_id, fields, "max deliveries reached", deliveries
            )
        else:
            # Make the entry look idle for (visibility - retry) already, so any
            # consumer reclaims it after retry_delay rather than a full timeout.
            idle = _ms(self.options.visibility_timeout - self.options.retry_delay)
            await self._redis.xclaim(stream, group, name, 0, [entry_id], idle=idle, justid=True)

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
