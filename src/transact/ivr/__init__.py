"""Self-service payments (IVR): a caller pays on the phone with no agent, guided by prompts.

A customer leg started with `customParameters.ivr` names the tenant's flow; this
service drives the call through telephony (prompts, menu keys), card capture (the
card, keyed in secure mode) and the PSP adapter (the payment), over the bus only.
"""

from __future__ import annotations

from transact.ivr import handlers
from transact.ivr.api import build_router
from transact.ivr.flow import Ivr
from transact.ivr.lookup import AccountLookup, Reach
from transact.ivr.prompts import ClipShelf
from transact.kernel import Kernel, Service

__all__ = ["Ivr", "build"]

TIMEOUT_SWEEP_SECONDS = 0.5  # how late a timeout may fire: a caller's silence, a lost mark


def build(kernel: Kernel) -> Service:
    settings = kernel.settings
    reach = Reach(private=settings.webhook_allow_private or settings.demo)
    ivr = Ivr(kernel, AccountLookup(reach), ClipShelf(kernel.cache))
    service = Service(name="ivr", routers=[build_router(kernel, ivr)])
    handlers.subscribe(service, ivr)
    service.every(TIMEOUT_SWEEP_SECONDS, ivr.sweep, "timeouts")
    return service
