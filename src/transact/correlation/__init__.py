"""Correlation: the live call registry and which agent each call belongs to."""

from __future__ import annotations

from transact.correlation import handlers
from transact.correlation.api import build_router
from transact.correlation.flow import Correlation
from transact.kernel import Kernel, Service

__all__ = ["Correlation", "build"]


def build(kernel: Kernel) -> Service:
    correlation = Correlation(kernel)
    service = Service(name="correlation", routers=[build_router(kernel, correlation)])
    handlers.subscribe(service, correlation)
    return service
