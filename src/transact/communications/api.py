"""Communications' HTTP face: tenant settings, recent messages, Twilio's status callbacks and,
in demo mode only, the outbox page a person reads their payment link from."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field

from transact.communications import domain, store
from transact.communications.flow import Communications
from transact.kernel import Kernel
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, require

_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True),
)
MAX_CALLBACK_BYTES = 16 * 1024

Text = Annotated[str, Field(min_length=1, max_length=255)]


class SenderIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str | None, Field(max_length=100)] = None
    email: Annotated[str | None, Field(max_length=254)] = None


class EmailIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: Text
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: Text | None = None
    password: Text | None = None
    timeout: Annotated[float, Field(ge=1, le=120)] = 10.0


class SmsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    provider: Literal["twilio"] = "twilio"
    base_url: Text = domain.TWILIO_API
    account_sid: Annotated[str, Field(min_length=2, max_length=64)]
    auth_token: Text
    sender: Annotated[str, Field(alias="from", min_length=1, max_length=32)]
    status_callback_base: Text | None = None


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sender: SenderIn = SenderIn()
    email: EmailIn | None = None
    sms: SmsIn | None = None
    templates: dict[str, dict[str, str]] = Field(default_factory=dict, max_length=4)


def describe(row: store.Row) -> dict[str, Any]:
    """A message as an agent or admin may see it: the destination masked, no text."""
    return {
        "id": row.id,
        "channel": row.channel,
        "provider": row.provider,
        "to": row.to_masked,
        "template": row.template,
        "about": row.about,
        "status": row.status.value,
        "attempts": row.attempts,
        "reason": row.reason,
        "created_at": row.created_at.isoformat(),
    }


def _split(body: SettingsIn) -> tuple[dict[str, Any], dict[str, str]]:
    """Public settings and secrets, apart: secrets are sealed and never shown again."""
    config: dict[str, Any] = {"sender": body.sender.model_dump(), "templates": body.templates}
    secrets: dict[str, str] = {}
    if body.email is not None:
        config["email"] = body.email.model_dump(exclude={"password"})
        if body.email.password:
            secrets["email_password"] = body.email.password
    if body.sms is not None:
        config["sms"] = body.sms.model_dump(exclude={"auth_token"}, by_alias=True)
        secrets["sms_auth_token"] = body.sms.auth_token
    return config, secrets


def build_router(kernel: Kernel, communications: Communications) -> APIRouter:
    router = APIRouter(tags=["communications"])
    auth = kernel.authenticator
    admin = require(auth, Role.ADMIN)
    overseer = require(auth, Role.SUPERVISOR, Role.ADMIN)

    @router.get("/api/v1/communications/settings")
    async def get_settings(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        return await communications.public_settings(principal.tenant_id)

    @router.put("/api/v1/communications/settings")
    async def put_settings(
        body: SettingsIn, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        config, secrets = _split(body)
        return await communications.set_settings(principal, config, secrets)

    @router.get("/api/v1/communications/messages")
    async def messages(
        principal: Annotated[Principal, Depends(overseer)],
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> list[dict[str, Any]]:
        return [describe(row) for row in await communications.recent(principal.tenant_id, limit)]

    @router.post(
        "/api/v1/communications/sms/{tenant_id}/status",
        status_code=204,
        response_class=Response,
        include_in_schema=False,
    )
    async def sms_status(tenant_id: str, request: Request) -> Response:
        """Twilio's delivery reports: signed with the tenant's auth token, or refused."""
        body = await request.body()
        if len(body) > MAX_CALLBACK_BYTES or len(tenant_id) > 64:
            raise ApiError(413, "payload_too_large", "a status callback is small")
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        signature = request.headers.get("x-twilio-signature", "")
        if not await communications.sms_status(tenant_id, params, signature):
            raise ApiError(403, "invalid_signature", "the X-Twilio-Signature does not verify")
        return Response(status_code=204)

    @router.get("/dev/outbox", include_in_schema=False)
    async def outbox() -> HTMLResponse:
        # Real customers' messages are nobody's to browse: the page exists for the demo.
        if not kernel.settings.demo:
            raise ApiError(404, "not_found", "not found")
        shown = await communications.outbox()
        page = _PAGES.get_template("outbox.html").render(messages=shown)
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return router
