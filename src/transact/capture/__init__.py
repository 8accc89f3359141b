"""Card capture: a capture session per payment, validated key by key, the card only in the vault."""

from __future__ import annotations

from transact.capture import handlers
from transact.capture.api import build_router
from transact.capture.flow import Capture
from transact.kernel import Kernel, Service

__all__ = ["Capture", "build"]

EXPIRY_SWEEP_SECONDS = 5.0


def build(kernel: Kernel) -> Service:
    capture = Capture(kernel)
    service = Service(name="capture", routers=[build_router(kernel, capture)])
    handlers.subscribe(service, capture)
    service.every(EXPIRY_SWEEP_SECONDS, capture.expire_overdue, "expire")
    return service
