"""Auth: tenants, users, roles, passwords, MFA, tokens, API clients."""

from __future__ import annotations

from transact.auth.accounts import Accounts
from transact.auth.api import build_router
from transact.auth.keys import SigningKeys
from transact.kernel import Kernel, Service

__all__ = ["Accounts", "SigningKeys", "build"]

KEY_REFRESH_SECONDS = 60.0


def build(kernel: Kernel) -> Service:
    keys = SigningKeys(kernel)
    accounts = Accounts(kernel, keys)
    service = Service(name="auth", routers=[build_router(kernel, accounts)])

    async def start() -> None:
        await keys.ensure_current()
        if kernel.settings.demo and kernel.settings.demo_password is not None:
            await accounts.seed_demo(kernel.settings.demo_password.get_secret_value())

    service.on_start.append(start)
    # Another auth instance may rotate: pick its key up, keep the JWKS published.
    service.every(KEY_REFRESH_SECONDS, keys.ensure_current, "refresh-keys")
    return service
