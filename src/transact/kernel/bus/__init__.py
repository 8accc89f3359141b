"""Bus port and its backends, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from transact.kernel.bus.base import Bus, BusOptions, DeadLetter, Handler, instance_group
from transact.kernel.bus.memory import MemoryBus

__all__ = [
    "Bus",
    "BusOptions",
    "DeadLetter",
    "Handler",
    "MemoryBus",
    "bus_from_url",
    "instance_group",
]


def bus_from_url(url: str, namespace: str = "transact", options: BusOptions | None = None) -> Bus:
    if urlsplit(url).scheme == "memory":
        return MemoryBus(options)
    from transact.kernel.bus.redis import RedisBus

    return RedisBus(url, namespace, options)
