"""Reporting: supervisors' dashboard, finance's exports and reconciliation, from events.

Every fact the dashboards count arrives on the bus (payments, captures, links,
messages) and is folded into hourly and daily buckets as it comes, so a page load
reads a few thousand aggregated rows, never the payments. The PSP's side of a reconciliation is
asked of the PSP adapter over the bus (`psp.statement_requested`), since only it
holds the connectors' credentials and its own tables.
"""

from __future__ import annotations

from transact.kernel import Kernel, Service
from transact.reporting import handlers
from transact.reporting.api import build_router
from transact.reporting.flow import Reports

__all__ = ["Reports", "build"]


def build(kernel: Kernel) -> Service:
    service = Service(name="reporting", routers=[build_router(kernel)])
    handlers.subscribe(service, Reports(kernel))
    return service
