"""What a service hands the composition root: routes, subscriptions and lifecycle hooks."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog
from fastapi import APIRouter
from starlette.types import ASGIApp

from transact.kernel.bus import Handler

log = structlog.get_logger("transact.service")

Hook = Callable[[], Awaitable[None]]
Middleware = Callable[[ASGIApp], ASGIApp]


@dataclass(frozen=True)
class Subscription:
    topic: str
    group: str
    handler: Handler


@dataclass
class Service:
    name: str
    routers: list[APIRouter] = field(default_factory=list)
    subscriptions: list[Subscription] = field(default_factory=list)
    on_start: list[Hook] = field(default_factory=list)
    on_stop: list[Hook] = field(default_factory=list)
    # Wrapped around the whole app, outermost first (the gateway's front door).
    middleware: list[Middleware] = field(default_factory=list)

    def every(self, seconds: float, work: Callable[[], Awaitable[object]], name: str) -> None:
        """Run `work` every `seconds` while the service runs; a failure is logged, not fatal."""
        tasks: list[asyncio.Task[None]] = []

        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await work()
                except Exception as exc:  # a database blip must not end the loop
                    log.warning(
                        "service.periodic_failed",
                        service=self.name,
                        task=name,
                        error=type(exc).__name__,
                    )

        async def start() -> None:
            tasks.append(asyncio.create_task(loop(), name=f"{self.name}:{name}"))

        async def stop() -> None:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            tasks.clear()

        self.on_start.append(start)
        self.on_stop.append(stop)

    def subscribe(
        self, topic: str, handler: Handler, group: str | None = None, *, consumers: int = 1
    ) -> None:
        """Competing consumers by default: the group is the service's name. `consumers`
        competing consumers in this process handle that many messages at once (for a
        handler that mostly waits, on the database or a PSP, and whose messages are
        independent of each other)."""
        if consumers < 1:
            raise ValueError("consumers must be at least 1")
        for _ in range(consumers):
            self.subscriptions.append(Subscription(topic, group or self.name, handler))
