"""The Agent UI's HTTP API: the tenant's UI settings (read by every user, set by admins)."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from transact.agent_ui.flow import AgentUi
from transact.kernel import Kernel
from transact.kernel.security import Principal, Role, require

Name = Annotated[StrictStr, Field(min_length=1, max_length=200)]


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    methods: Annotated[list[Name], Field(min_length=1, max_length=10)]
    default_method: Name
    currencies: Annotated[list[Name], Field(min_length=1, max_length=20)]
    default_currency: Name
    frame_origins: Annotated[list[Name], Field(max_length=10)] = []


def build_router(kernel: Kernel, ui: AgentUi) -> APIRouter:
    router = APIRouter(tags=["agent ui"])
    auth = kernel.authenticator
    user = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    admin = require(auth, Role.ADMIN)

    @router.get("/api/v1/agent-ui/settings")
    async def get_settings(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        return (await ui.settings(principal.tenant_id)).public()

    @router.put("/api/v1/agent-ui/settings")
    async def put_settings(
        body: SettingsIn, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        return (await ui.set_settings(principal, body.model_dump())).public()

    return router
