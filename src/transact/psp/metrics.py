"""The PSP adapter's Prometheus metrics: how long each provider takes, and which circuits
are open. Connector names and operations only: never a reference, amount or card."""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Histogram

CALL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 15.0)


@dataclass(frozen=True)
class PspMetrics:
    calls: Histogram
    breaker: Gauge

    def call(self, connector: str, operation: str, outcome: str, seconds: float) -> None:
        self.calls.labels(connector, operation, outcome).observe(seconds)

    def circuit(self, connector: str, is_open: bool) -> None:
        self.breaker.labels(connector).set(1 if is_open else 0)


_made: weakref.WeakKeyDictionary[CollectorRegistry, PspMetrics] = weakref.WeakKeyDictionary()


def psp_metrics(registry: CollectorRegistry) -> PspMetrics:
    """One set per registry, however many adapters a process builds on it."""
    found = _made.get(registry)
    if found is None:
        found = PspMetrics(
            calls=Histogram(
                "transact_psp_call_seconds",
                "PSP calls by connector, operation (authorize, status, ...) and outcome",
                ["connector", "operation", "outcome"],
                buckets=CALL_BUCKETS,
                registry=registry,
            ),
            breaker=Gauge(
                "transact_psp_circuit_open",
                "1 while a connector's circuit breaker is open (calls skip it), else 0",
                ["connector"],
                registry=registry,
            ),
        )
        _made[registry] = found
    return found
