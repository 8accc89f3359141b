"""Auth: tenants, users, roles, passwords, MFA, tokens, API clients."""

from __future__ import annotations

from transact.auth.accounts import Accounts
from transact.auth.api import build_router
from transact.auth.keys import SigningKeys
from transact.kernel import Kernel, Service

__all__ = ["Accounts", "SigningKeys", "build"]


def build(kernel: Kernel) -> Service:
    keys = SigningKeys(kernel)
    accounts = Accounts(kernel, keys)
    service = Service(name="auth", routers=[build_router(kernel, accounts)])

    async def start() -> None:
        await keys.ensure_current()
        if kernel.settings.demo and kernel.settings.demo_password is not None:
            await accounts.seed_demo(kernel.settings.demo_password.get_secret_value())

    service.on_start.append(start)
    return service
