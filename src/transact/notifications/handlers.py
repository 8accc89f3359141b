"""Notifications' bus consumers: every pushed topic, heard by every instance.

Each instance holds its own sockets, so each subscribes in a broadcast group of its
own and hears every event. Recording is idempotent across instances (see
`flow.Notifications.record`), so hearing an event again, here or elsewhere, pushes the
same id, which a socket that has it already drops.
"""

from __future__ import annotations

from transact.contracts import Message
from transact.kernel import Service
from transact.notifications import domain
from transact.notifications.flow import Notifications
from transact.notifications.hub import Hub


def subscribe(service: Service, notifications: Notifications, hub: Hub, group: str) -> None:
    async def on_event(message: Message) -> None:
        # Pushed only after the numbers are committed: a client that resumes from the
        # log finds everything it was pushed.
        for delivery in await notifications.record(message):
            hub.deliver(delivery)

    for topic in domain.RULES:
        service.subscribe(topic, on_event, group)
