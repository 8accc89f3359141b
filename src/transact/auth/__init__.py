"""Auth: tenants, users, roles, passwords, MFA, tokens, API clients."""

from __future__ import annotations

import asyncio

import structlog

from transact.auth.accounts import Accounts
from transact.auth.api import build_router
from transact.auth.keys import SigningKeys
from transact.kernel import Kernel, Service

__all__ = ["Accounts", "SigningKeys", "build"]

KEY_REFRESH_SECONDS = 60.0
log = structlog.get_logger("transact.auth")


def build(kernel: Kernel) -> Service:
    keys = SigningKeys(kernel)
    accounts = Accounts(kernel, keys)
    service = Service(name="auth", routers=[build_router(kernel, accounts)])

    refresher: list[asyncio.Task[None]] = []

    async def keep_keys_fresh() -> None:
        # Another auth instance may rotate: pick its key up, keep the JWKS published.
        while True:
            await asyncio.sleep(KEY_REFRESH_SECONDS)
            try:
                await keys.ensure_current()
            except Exception as exc:  # a database blip must not end the loop
                log.warning("auth.key_refresh_failed", error=type(exc).__name__)

    async def start() -> None:
        await keys.ensure_current()
        if kernel.settings.demo and kernel.settings.demo_password is not None:
            await accounts.seed_demo(kernel.settings.demo_password.get_secret_value())
        refresher.append(asyncio.create_task(keep_keys_fresh()))

    async def stop() -> None:
        for task in refresher:
            task.cancel()
        await asyncio.gather(*refresher, return_exceptions=True)

    service.on_start.append(start)
    service.on_stop.append(stop)
    return service
