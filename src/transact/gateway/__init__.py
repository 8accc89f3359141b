"""Gateway: the front door. Request ids, security headers, rate limits, body limits."""

from __future__ import annotations

from starlette.types import ASGIApp

from transact.gateway.api import Gateway
from transact.gateway.store import RateLimitStore
from transact.kernel import Kernel, Service

__all__ = ["Gateway", "build"]


def build(kernel: Kernel) -> Service:
    settings = kernel.settings
    limits = RateLimitStore(kernel.cache)

    def front_door(app: ASGIApp) -> ASGIApp:
        return Gateway(
            app,
            limits=limits,
            max_body_bytes=settings.max_body_bytes,
            rate_limit_scale=settings.rate_limit_scale,
        )

    return Service(name="gateway", middleware=[front_door])
