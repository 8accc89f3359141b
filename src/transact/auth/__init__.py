"""Auth: tenants, users, roles, passwords, MFA, tokens, API clients."""

from __future__ import annotations

from transact.auth.accounts import Accounts
from transact.auth.api import build_router
from transact.auth.keys import SigningKeys
from transact.kernel import Kernel, Service

__all__ = ["Accounts", "SigningKeys", "build"]

KEY_REFRESH_SECONDS = 60.0
DIRECTORY_REFRESH_SECONDS = 60.0


def build(kernel: Kernel) -> Service:
    keys = SigningKeys(kernel)
    accounts = Accounts(kernel, keys)
    service = Service(name="auth", routers=[build_router(kernel, accounts)])

    async def start() -> None:
        await keys.ensure_current()
        settings = kernel.settings
        if settings.demo and settings.demo_password is not None:
            media = settings.demo_media_token
            await accounts.seed_demo(
                settings.demo_password.get_secret_value(),
                media.get_secret_value() if media is not None else None,
            )
        await accounts.publish_directory()

    service.on_start.append(start)
    # Another auth instance may rotate: pick its key up, keep the JWKS published.
    service.every(KEY_REFRESH_SECONDS, keys.ensure_current, "refresh-keys")
    # A flushed or restarted cache must not leave telephony and correlation blind for long.
    service.every(DIRECTORY_REFRESH_SECONDS, accounts.publish_directory, "refresh-directory")
    return service
