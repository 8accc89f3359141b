"""The ivr service's HTTP face: flows and prompt recordings (admins), sessions (supervisors).

Agents: `POST /api/v1/calls/{call_id}/ivr` hands the call they hold to a flow (it comes
back to them at the end), `GET /api/v1/ivr/lines` lists the flows they may choose from.

A prompt is uploaded as the raw bytes of a WAV file (`Content-Type: audio/wav`),
8 kHz mono, 16-bit PCM or mu-law; the gateway's body limit (TRANSACT_MAX_BODY_BYTES)
caps its size, so long prompts are best sent as mu-law (8 KB a second).
"""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

import base64
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from transact.contracts import utcnow
from transact.contracts.money import check_money
from transact.ivr import domain, phrases, prompts, store
from transact.ivr.flow import HandedAmount, Ivr, lookup_secret_context
from transact.ivr.lookup import Reach, url_problem
from transact.kernel import Kernel, audit, idempotency
from transact.kernel.audio import AudioFormatError
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, require

# The upload is the WAV file itself, not JSON: declared here so the schema shows it (any
# Content-Type is accepted; the bytes say what they are).
WAV_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class FlowBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64)]
    amount_source: str = "fixed"
    amount: StrictInt | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] = "GBP"
    reference: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    lookup_url: Annotated[str, Field(max_length=2048)] | None = None
    account_min_digits: StrictInt = 4
    account_max_digits: StrictInt = 12
    fields: list[str] = Field(default=["pan", "expiry", "cvv"], max_length=4)
    language: str = "en"
    max_attempts: StrictInt = 3
    input_timeout: float = 8.0
    prompts: dict[str, str] = Field(default_factory=dict, max_length=64)
    after: str = "hangup"


class HandoverBody(BaseModel):
    """An agent's call to a flow: the amount, when the agent says it, replaces the flow's."""

    model_config = ConfigDict(extra="forbid")
    flow: Annotated[str, Field(min_length=1, max_length=64)]
    amount: StrictInt | None = None
    currency: Annotated[str, Field(min_length=3, max_length=3)] | None = None
    reference: Annotated[str, Field(min_length=1, max_length=128)] | None = None


def handed_amount(body: HandoverBody) -> HandedAmount | None:
    """The amount the agent gave, checked; None when they gave none (422 when half)."""
    if body.amount is None:
        if body.currency is not None or body.reference is not None:
            raise ApiError(422, "invalid_amount", "currency and reference come with an amount")
        return None
    currency = (body.currency or "GBP").upper()
    problem = check_money(body.amount, currency)
    if problem:
        raise ApiError(
            422, "invalid_amount" if "amount" in problem else "invalid_currency", problem
        )
    if body.reference is None:
        raise ApiError(422, "invalid_reference", "an amount needs its reference")
    return HandedAmount(body.amount, currency, body.reference)


def describe_line(row: store.FlowRow) -> dict[str, Any]:
    """What an agent sees of a flow: enough to choose one, nothing of its secrets or URL."""
    settings = row.settings
    return {
        "name": row.name,
        "amount_source": settings.get("amount_source", "fixed"),
        "amount": settings.get("amount"),
        "currency": settings.get("currency"),
        "reference": settings.get("reference"),
    }


def describe_flow(row: store.FlowRow, secret: str | None = None) -> dict[str, Any]:
    described = {
        "id": row.id,
        **row.settings,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
    if secret is not None:
        described["lookup_secret"] = secret  # shown once, when made
    return described


def describe_session(row: store.SessionRow) -> dict[str, Any]:
    state = row.state
    return {
        "id": row.id,
        "call_id": row.call_id,
        "flow_id": row.flow_id,
        "flow": row.flow.get("name"),
        "stage": state.get("stage"),
        "outcome": state.get("outcome"),
        "amount": state.get("amount"),
        "currency": state.get("currency"),
        "reference": state.get("reference"),
        "attempts": state.get("attempts"),
        "cards": state.get("cards"),
        "payments": state.get("payments"),
        "capture_id": state.get("capture_id"),
        "card": {"brand": state.get("brand"), "last4": state.get("last4")}
        if state.get("last4")
        else None,
        "confirmation": state.get("confirmation"),
        "agent_id": row.agent_id,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }


def build_router(kernel: Kernel, ivr: Ivr) -> APIRouter:
    router = APIRouter(tags=["ivr"])
    auth = kernel.authenticator
    admin = require(auth, Role.ADMIN)
    supervisor = require(auth, Role.SUPERVISOR, Role.ADMIN)
    agent = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    reach = Reach(private=kernel.settings.webhook_allow_private or kernel.settings.demo)

    async def checked(principal: Principal, body: FlowBody) -> domain.Flow:
        try:
            flow = domain.Flow.from_dict(body.model_dump())
        except ValueError as exc:
            raise ApiError(422, "invalid_flow", str(exc)) from None
        if flow.lookup_url and (problem := url_problem(flow.lookup_url, reach)):
            raise ApiError(422, "invalid_flow", problem)
        async with kernel.db.transaction() as session:
            own = await store.prompt_names(session, principal.tenant_id, flow.language)
        known = own | set(prompts.standard_names(flow.language))
        unknown = sorted(name for name in flow.prompts.values() if name not in known)
        if unknown:
            raise ApiError(
                422, "unknown_prompt", f"no recording named {', '.join(unknown)}; upload it first"
            )
        return flow

    def new_secret(principal: Principal, flow_id: str) -> tuple[str, str]:
        secret = "ivrsec_" + secrets.token_urlsafe(32)
        sealed = kernel.vault.seal(
            principal.tenant_id, secret.encode(), lookup_secret_context(flow_id)
        )
        return secret, base64.b64encode(sealed).decode()

    async def mine(principal: Principal, flow_id: str) -> store.FlowRow:
        async with kernel.db.transaction() as session:
            found = await store.flow(session, principal.tenant_id, flow_id[:64])
        if found is None:
            raise ApiError(404, "not_found", "no such flow")
        return found

    @router.post("/api/v1/ivr/flows", status_code=201)
    async def create_flow(
        body: FlowBody, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        flow = await checked(principal, body)
        flow_id = "flw_" + secrets.token_hex(12)
        secret, sealed = new_secret(principal, flow_id)
        now = utcnow()
        row = store.FlowRow(
            flow_id, principal.tenant_id, flow.name, flow.to_dict(), sealed, now, now
        )
        async with kernel.db.transaction() as session:
            if await store.flow_named(session, principal.tenant_id, flow.name):
                raise ApiError(409, "flow_exists", "a flow with that name exists")
            await store.insert_flow(session, row)
            await audit.append(
                session,
                action="ivr.flow_created",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=flow_id,
                details={"name": flow.name, "amount_source": flow.amount_source},
            )
        return describe_flow(row, secret if flow.lookup_url else None)

    @router.get("/api/v1/ivr/flows")
    async def list_flows(principal: Annotated[Principal, Depends(admin)]) -> list[dict[str, Any]]:
        async with kernel.db.transaction() as session:
            return [describe_flow(r) for r in await store.flows_of(session, principal.tenant_id)]

    @router.get("/api/v1/ivr/flows/{flow_id}")
    async def get_flow(
        flow_id: str, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        return describe_flow(await mine(principal, flow_id))

    @router.put("/api/v1/ivr/flows/{flow_id}")
    async def replace_flow(
        flow_id: str,
        body: FlowBody,
        principal: Annotated[Principal, Depends(admin)],
        rotate_secret: bool = False,
    ) -> dict[str, Any]:
        found = await mine(principal, flow_id)
        flow = await checked(principal, body)
        secret, sealed = new_secret(principal, found.id) if rotate_secret else (None, None)
        async with kernel.db.transaction() as session:
            other = await store.flow_named(session, principal.tenant_id, flow.name)
            if other is not None and other.id != found.id:
                raise ApiError(409, "flow_exists", "a flow with that name exists")
            await store.update_flow(
                session, found.id, flow.to_dict(), sealed or found.lookup_secret
            )
            await audit.append(
                session,
                action="ivr.flow_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=found.id,
                details={"name": flow.name, "secret_rotated": rotate_secret},
            )
        return describe_flow(await mine(principal, found.id), secret)

    @router.delete("/api/v1/ivr/flows/{flow_id}", status_code=204)
    async def delete_flow(
        flow_id: str, principal: Annotated[Principal, Depends(admin)]
    ) -> Response:
        async with kernel.db.transaction() as session:
            if not await store.delete_flow(session, principal.tenant_id, flow_id[:64]):
                raise ApiError(404, "not_found", "no such flow")
            await audit.append(
                session,
                action="ivr.flow_deleted",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=flow_id[:64],
            )
        return Response(status_code=204)

    @router.get("/api/v1/ivr/prompts")
    async def list_prompts(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        async with kernel.db.transaction() as session:
            own = await store.prompt_list(session, principal.tenant_id)
        return {
            "standard": {lang: prompts.standard_names(lang) for lang in phrases.LANGUAGES},
            "own": [
                {
                    "language": p.language,
                    "name": p.name,
                    "seconds": p.seconds,
                    "bytes": p.bytes,
                    "updated_at": p.updated_at.isoformat(),
                }
                for p in own
            ],
        }

    @router.put("/api/v1/ivr/prompts/{language}/{name}", openapi_extra=WAV_BODY)
    async def upload_prompt(
        language: str,
        name: str,
        request: Request,
        principal: Annotated[Principal, Depends(admin)],
    ) -> dict[str, Any]:
        if language not in phrases.LANGUAGES:
            raise ApiError(
                422, "invalid_language", f"language must be one of {', '.join(phrases.LANGUAGES)}"
            )
        if not domain.PROMPT_PATTERN.fullmatch(name):
            raise ApiError(
                422, "invalid_name", "a prompt name has 1-48 lower-case letters, digits or '_'"
            )
        try:
            recording = prompts.accept_upload(await request.body())
        except AudioFormatError as exc:
            raise ApiError(422, "invalid_audio", str(exc)) from None
        async with kernel.db.transaction() as session:
            await store.put_prompt(
                session, principal.tenant_id, language, name, recording.audio, recording.seconds
            )
            await audit.append(
                session,
                action="ivr.prompt_uploaded",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=f"{language}/{name}",
                details={"seconds": recording.seconds},
            )
        return {
            "language": language,
            "name": name,
            "seconds": recording.seconds,
            "bytes": len(recording.audio),
            "replaces_standard": phrases.is_phrase(name),
        }

    @router.delete("/api/v1/ivr/prompts/{language}/{name}", status_code=204)
    async def delete_prompt(
        language: str, name: str, principal: Annotated[Principal, Depends(admin)]
    ) -> Response:
        async with kernel.db.transaction() as session:
            if not await store.delete_prompt(session, principal.tenant_id, language[:8], name[:48]):
                raise ApiError(404, "not_found", "no such recording")
            await audit.append(
                session,
                action="ivr.prompt_deleted",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=f"{language[:8]}/{name[:48]}",
            )
        return Response(status_code=204)

    @router.post("/api/v1/calls/{call_id}/ivr", status_code=201)
    async def hand_over(
        call_id: str,
        body: HandoverBody,
        response: Response,
        principal: Annotated[Principal, Depends(agent)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        """Send the call I hold to a payment line; it comes back to me when the flow ends."""
        amount = handed_amount(body)

        async def work() -> dict[str, Any]:
            row = await ivr.hand_over(principal, call_id[:128], body.flow, amount)
            return describe_session(row)

        return await idempotency.answer_once(
            kernel.db,
            "ivr.handover",
            principal.tenant_id,
            idempotency_key,
            idempotency.fingerprint(principal.id, call_id, body.model_dump()),
            response,
            work,
            201,
        )

    @router.get("/api/v1/ivr/lines")
    async def list_lines(principal: Annotated[Principal, Depends(agent)]) -> list[dict[str, Any]]:
        """The flows an agent may send a call to (every flow of the tenant, by name)."""
        async with kernel.db.transaction() as session:
            return [describe_line(r) for r in await store.flows_of(session, principal.tenant_id)]

    @router.get("/api/v1/ivr/sessions")
    async def list_sessions(
        principal: Annotated[Principal, Depends(supervisor)],
    ) -> list[dict[str, Any]]:
        async with kernel.db.transaction() as session:
            rows = await store.recent_sessions(session, principal.tenant_id)
        return [describe_session(r) for r in rows]

    @router.get("/api/v1/ivr/sessions/{session_id}")
    async def get_session(
        session_id: str, principal: Annotated[Principal, Depends(supervisor)]
    ) -> dict[str, Any]:
        async with kernel.db.transaction() as session:
            row = await store.session_by_id(session, principal.tenant_id, session_id[:64])
        if row is None:
            raise ApiError(404, "not_found", "no such session")
        return describe_session(row)

    return router
