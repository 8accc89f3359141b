"""Remote card capture: payment links, the customer's web session and the hosted payment page."""

from __future__ import annotations

from transact.kernel import Kernel, Service
from transact.remote import handlers, page
from transact.remote.api import build_router
from transact.remote.flow import Remote

__all__ = ["Remote", "build"]

EXPIRY_SWEEP_SECONDS = 5.0
PHONE_CAPTURE_SWEEP_SECONDS = 3600.0


def build(kernel: Kernel) -> Service:
    remote = Remote(kernel)
    service = Service(
        name="remote",
        routers=[build_router(kernel, remote), page.build_router(kernel, remote)],
    )
    handlers.subscribe(service, remote)
    service.every(EXPIRY_SWEEP_SECONDS, remote.expire_overdue, "expire")
    service.every(PHONE_CAPTURE_SWEEP_SECONDS, remote.forget_phone_captures, "forget-phone")
    return service
