"""Prometheus metrics the kernel keeps for every service: bus lag and handling, the vault.

HTTP request rate, latency and errors are counted in `http.install_metrics`, dead
letters in `core.count_dead_letters`; a service's own (telephony's calls and legs,
the PSP adapter's latency and circuit breakers, push sockets) live with the service.
`instrument` is idempotent per registry, so a process that starts its app twice
(tests) registers each metric once.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from transact.contracts import Message, utcnow
from transact.kernel.bus import Handler
from transact.kernel.vault import Vault

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0, 300.0)


@dataclass(frozen=True)
class BusMetrics:
    lag: Histogram
    handled: Counter
    seconds: Histogram

    def timed(self, topic: str, group: str, handler: Handler) -> Handler:
        """`handler`, observed: how long after it happened each message was taken up
        (the consumer group's lag), how long handling took, and whether it failed."""

        async def observed(message: Message) -> None:
            lag = (utcnow() - message.occurred_at).total_seconds()
            self.lag.labels(topic, group).observe(max(0.0, lag))
            started = time.perf_counter()
            try:
                await handler(message)
            except BaseException:
                self.handled.labels(topic, group, "error").inc()
                raise
            finally:
                self.seconds.labels(topic, group).observe(time.perf_counter() - started)
            self.handled.labels(topic, group, "ok").inc()

        return observed


_bus: weakref.WeakKeyDictionary[CollectorRegistry, BusMetrics] = weakref.WeakKeyDictionary()
_vaults: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Counter, Gauge]] = (
    weakref.WeakKeyDictionary()
)


def bus_metrics(registry: CollectorRegistry) -> BusMetrics:
    found = _bus.get(registry)
    if found is None:
        found = BusMetrics(
            lag=Histogram(
                "transact_bus_lag_seconds",
                "From a message's occurred_at to its handler starting, by topic and group",
                ["topic", "group"],
                buckets=LAG_BUCKETS,
                registry=registry,
            ),
            handled=Counter(
                "transact_bus_handled",
                "Bus messages handled, by topic, group and result (ok/error: retried)",
                ["topic", "group", "result"],
                registry=registry,
            ),
            seconds=Histogram(
                "transact_bus_handler_seconds",
                "Time a handler took, by topic and group",
                ["topic", "group"],
                registry=registry,
            ),
        )
        _bus[registry] = found
    return found


def instrument_vault(vault: Vault, registry: CollectorRegistry) -> None:
    """Count vault operations, and the entries this process wrote and nobody took yet."""
    found = _vaults.get(registry)
    if found is None:
        found = (
            Counter(
                "transact_vault_operations",
                "Vault operations by kind (put/take/delete) and result (hit/miss)",
                ["operation", "result"],
                registry=registry,
            ),
            Gauge(
                "transact_vault_entries",
                "Vault entries written by this process and not yet taken or deleted "
                "(an entry that expires unused stays counted: a leak signal)",
                registry=registry,
            ),
        )
        _vaults[registry] = found
    operations, entries = found

    def observe(operation: str, hit: bool) -> None:
        operations.labels(operation, "hit" if hit else "miss").inc()
        if operation == "put":
            entries.inc()
        elif hit:
            entries.dec()

    vault.observe = observe
