"""The merchant webhook endpoint's HTTP face: set (secret shown once), read, remove, deliveries."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from transact.kernel import Kernel
from transact.kernel.security import Principal, Role, require

if TYPE_CHECKING:
    from transact.psp.webhooks import Webhooks


class WebhookRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr
    enabled: StrictBool = True


def build_router(kernel: Kernel, webhooks: "Webhooks") -> APIRouter:
    router = APIRouter(tags=["webhooks"])
    # Admins only, and no API client: whoever sets the URL chooses where payment
    # outcomes go and receives the signing secret.
    admin = require(kernel.authenticator, Role.ADMIN)

    @router.put("/api/v1/psp/webhook")
    async def set_webhook(
        body: WebhookRequest, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        return await webhooks.set_endpoint(principal, body.url, body.enabled)

    @router.get("/api/v1/psp/webhook")
    async def get_webhook(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        return await webhooks.endpoint(principal)

    @router.delete("/api/v1/psp/webhook", status_code=204, response_class=Response)
    async def delete_webhook(principal: Annotated[Principal, Depends(admin)]) -> Response:
        await webhooks.delete_endpoint(principal)
        return Response(status_code=204)

    @router.get("/api/v1/psp/webhook/deliveries")
    async def deliveries(
        principal: Annotated[Principal, Depends(admin)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[dict[str, Any]]:
        return await webhooks.deliveries(principal, limit)

    return router
