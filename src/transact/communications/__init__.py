"""Communications: payment links to customers by e-mail (SMTP) or SMS (Twilio's API), or,
with no provider configured, into the outbox; with retries and delivery status."""

from __future__ import annotations

from transact.communications import handlers
from transact.communications.api import build_router
from transact.communications.flow import Communications
from transact.kernel import Kernel, Service

__all__ = ["Communications", "build"]

SWEEP_SECONDS = 1.0


def build(kernel: Kernel) -> Service:
    communications = Communications(kernel)
    service = Service(name="communications", routers=[build_router(kernel, communications)])
    handlers.subscribe(service, communications)
    # Retries and messages a crashed worker left half-sent.
    service.every(SWEEP_SECONDS, communications.deliver_due, "deliver")
    service.on_stop.append(communications.close)
    return service
