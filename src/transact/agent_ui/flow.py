"""The Agent UI's use cases across its rooms: read and change a tenant's UI settings, and
find whose settings apply to a page load."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from transact.agent_ui import domain, store
from transact.agent_ui.domain import UiSettings
from transact.kernel import Kernel, audit
from transact.kernel.errors import ApiError
from transact.kernel.security import SESSION_COOKIE, Principal


class AgentUi:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def settings(self, tenant_id: str) -> UiSettings:
        async with self.kernel.db.transaction() as session:
            stored = await store.settings_of(session, tenant_id)
        try:
            return UiSettings.from_dict(stored) if stored else UiSettings()
        except domain.InvalidSettings:
            # Written by an older version with other rules: the defaults, not an error page.
            return UiSettings()

    async def set_settings(self, principal: Principal, data: dict[str, Any]) -> UiSettings:
        try:
            chosen = UiSettings.from_dict(data)
        except domain.InvalidSettings as problem:
            raise ApiError(422, "invalid_settings", str(problem)) from None
        async with self.kernel.db.transaction() as session:
            await store.set_settings(session, principal.tenant_id, chosen.to_dict())
            await audit.append(
                session,
                action="agent_ui.settings_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details=chosen.to_dict(),
            )
        return chosen

    async def page_tenant(self, request: Request) -> str | None:
        """Whose frame origins apply to this page load: the signed-in user's tenant when
        the session cookie comes with it, else the tenant the URL names (a launch link
        opened in a CRM's frame, where our SameSite=Strict cookie is never sent). None
        when neither says: the page then may not be framed at all."""
        if request.cookies.get(SESSION_COOKIE):
            try:
                principal = await self.kernel.authenticator.principal(request)
            except ApiError:
                principal = None
            if principal is not None:
                return principal.tenant_id
        name = domain.tenant_hint(request.query_params)
        if name is None:
            return None
        # Auth publishes every tenant's name and id in the directory (with its media
        # tokens); an unknown name frames for nobody.
        tenant = await self.kernel.directory.media_tenant(name)
        return tenant.tenant_id if tenant is not None else None

    async def frame_origins(self, request: Request) -> tuple[str, ...]:
        tenant_id = await self.page_tenant(request)
        if tenant_id is None:
            return ()
        return (await self.settings(tenant_id)).frame_origins
