"""What a service hands the composition root: routes, subscriptions and lifecycle hooks."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import APIRouter
from starlette.types import ASGIApp

from transact.kernel.bus import Handler

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

    def subscribe(self, topic: str, handler: Handler, group: str | None = None) -> None:
        """Competing consumers by default: the group is the service's name."""
        self.subscriptions.append(Subscription(topic, group or self.name, handler))
