"""Notifications: pushes the events that concern each agent to their browser (`/ws/agent`)."""

from __future__ import annotations

from dataclasses import dataclass

from transact.kernel import Kernel, Service
from transact.kernel.bus import instance_group
from transact.notifications import handlers
from transact.notifications.api import build_router
from transact.notifications.flow import Notifications
from transact.notifications.hub import Hub, Metrics

__all__ = ["Hub", "Notifications", "Push", "assemble", "build"]

PRUNE_EVERY_SECONDS = 60.0


@dataclass(frozen=True)
class Push:
    """The service and the parts a benchmark or test reaches into."""

    service: Service
    hub: Hub
    notifications: Notifications


def assemble(kernel: Kernel) -> Push:
    notifications = Notifications(kernel)
    hub = Hub(Metrics(kernel.metrics))
    service = Service(name="notifications", routers=[build_router(kernel, hub, notifications)])
    # Each instance holds its own sockets, so each hears every event.
    handlers.subscribe(service, notifications, hub, group=instance_group("notifications"))
    service.every(PRUNE_EVERY_SECONDS, notifications.prune, "prune")
    service.on_stop.append(hub.close_all)
    return Push(service, hub, notifications)


def build(kernel: Kernel) -> Service:
    return assemble(kernel).service
