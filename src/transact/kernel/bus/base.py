"""The bus port: topics, consumer groups, at-least-once delivery, dead letters.

Semantics every backend keeps (the contract suite checks them):

* `publish` is idempotent by message id within `dedupe_window` seconds, so a
  publisher that retries (the outbox relay after a crash) never duplicates.
* Each group receives every message published after the group was created
  (broadcast across groups); the consumers of one group share them (work queue).
* A message is acked when its handler returns. If the handler raises, the
  message comes back after `retry_delay`; if the consumer dies or hangs, it
  comes back after `visibility_timeout` to any consumer of the group.
* After `max_deliveries` deliveries that did not ack, or at once if it cannot
  be decoded, the message moves to the group's dead letters.
* `stop()` is graceful: consumers take nothing new, each finishes the delivery in
  hand (for up to `stop_grace` seconds, and never longer than the visibility
  timeout, after which the group would hand that message to another consumer
  anyway), and what was taken but not started goes back to the group at once.
* An instance group (`instance_group()`: a broadcast group of one process, for
  state only that process holds, such as its sockets) dies with its process:
  `stop()` removes it. While running, a bus says its instance groups are alive
  (a key with a TTL of `abandoned_group_after` seconds, renewed every third of
  it); when a process crashed, the next bus to start on the same topic removes
  the instance groups nobody says are alive.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from transact.contracts import Message

Handler = Callable[[Message], Awaitable[None]]
# Told (topic, group, reason) of each message moved to the dead letters: the kernel
# counts them in a Prometheus metric, so a poison message pages someone.
DeadLetterObserver = Callable[[str, str, str], None]

log = structlog.get_logger("transact.bus")


@dataclass(frozen=True)
class BusOptions:
    visibility_timeout: float = 30.0
    retry_delay: float = 1.0
    max_deliveries: int = 10
    dedupe_window: float = 3600.0
    batch_size: int = 16
    stop_grace: float = 10.0
    abandoned_group_after: float = 600.0

    def __post_init__(self) -> None:
        if self.visibility_timeout <= 0 or self.retry_delay <= 0:
            raise ValueError("visibility_timeout and retry_delay must be positive")
        if self.stop_grace < 0:
            raise ValueError("stop_grace cannot be negative")
        if self.retry_delay > self.visibility_timeout:
            raise ValueError("retry_delay cannot exceed visibility_timeout")
        if self.max_deliveries < 1:
            raise ValueError("max_deliveries must be at least 1")
        if self.abandoned_group_after <= 0:
            raise ValueError("abandoned_group_after must be positive")

    @property
    def drain_seconds(self) -> float:
        """How long `stop()` lets in-flight handlers run before cancelling them."""
        return min(self.stop_grace, self.visibility_timeout)


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    reason: str
    deliveries: int
    data: bytes

    def message(self) -> Message:
        return Message.decode(self.data)


class Bus(Protocol):
    options: BusOptions
    observe_dead_letter: DeadLetterObserver | None

    async def publish(self, message: Message) -> bool:
        """Publish; False when this message id was already published (deduplicated)."""

    def subscribe(self, topic: str, group: str, handler: Handler) -> None:
        """Add one consumer to `group` on `topic`; consumers start with `start()`."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Stop consuming; unacked messages go back to their group."""

    async def dead_letters(self, topic: str, group: str) -> list[DeadLetter]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


async def drain(tasks: list[asyncio.Task[None]], grace: float) -> None:
    """Let consumer tasks end on their own for up to `grace` seconds, then cancel the rest."""
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=grace)
    for task in late:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


INSTANCE_MARK = "~"


def instance_group(prefix: str) -> str:
    """A broadcast group of this process alone (see the module's notes)."""
    return f"{prefix}{INSTANCE_MARK}{uuid.uuid4().hex[:12]}"


def is_instance_group(group: str) -> bool:
    return INSTANCE_MARK in group


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def run_handler(handler: Handler, message: Message, topic: str, group: str) -> bool:
    """Run one delivery; True when it should be acked. Handler errors never escape."""
    try:
        await handler(message)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        # The message itself is not logged: contracts carry no card data, but
        # a handler's exception text is not ours to trust.
        log.warning(
            "bus.handler_failed",
            topic=topic,
            group=group,
            message_id=message.id,
            error=type(exc).__name__,
        )
        return False
    return True
