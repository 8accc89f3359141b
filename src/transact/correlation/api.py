"""Correlation's HTTP face: live calls, claims, search, link codes, CTI assignment and lookup."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from transact.correlation import domain
from transact.correlation.domain import Call
from transact.correlation.flow import Correlation, Criteria
from transact.kernel import Kernel
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, Scope, require


class ClaimByReference(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reference: Annotated[StrictStr, Field(min_length=1, max_length=64)]


class Search(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: Annotated[StrictStr | None, Field(max_length=32)] = None
    from_: Annotated[StrictStr | None, Field(alias="from", max_length=32)] = None
    started_after: Annotated[StrictStr | None, Field(max_length=64)] = None
    started_before: Annotated[StrictStr | None, Field(max_length=64)] = None
    claim: StrictBool = False


class Assign(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: Annotated[StrictStr | None, Field(min_length=1, max_length=64)] = None
    agent_username: Annotated[StrictStr | None, Field(min_length=1, max_length=64)] = None


def _stamp(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def describe(call: Call) -> dict[str, Any]:
    """The public view of a call: numbers masked, digests never shown."""
    return {
        "id": call.call_id,
        "reference": call.reference,
        "state": call.state.value,
        "agent_id": call.agent_id,
        "started_at": _stamp(call.started_at),
        "ended_at": _stamp(call.ended_at),
        "end_reason": call.end_reason,
        "assigned_at": _stamp(call.assigned_at),
        "from": call.from_masked,
        "to": call.to_masked,
        "sip_call_id": call.sip_call_id,
        "external_id": call.external_id,
    }


def _number(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    try:
        return domain.e164(value)
    except domain.InvalidNumber as problem:
        raise ApiError(422, "invalid_number", f"{field}: {problem}", field=field) from None


def _moment(value: str | None, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        return domain.moment(value)
    except domain.InvalidMoment as problem:
        raise ApiError(422, "invalid_time", f"{field}: {problem}", field=field) from None


def criteria_of(body: Search) -> Criteria:
    """The search in checked form, or a 422 naming the field at fault."""
    criteria = Criteria(
        to=_number(body.to, "to"),
        from_=_number(body.from_, "from"),
        started_after=_moment(body.started_after, "started_after"),
        started_before=_moment(body.started_before, "started_before"),
    )
    try:
        domain.check_window(criteria.started_after, criteria.started_before)
    except domain.InvalidMoment as problem:
        raise ApiError(422, "invalid_time", str(problem), field="started_after") from None
    if criteria.empty:
        raise ApiError(
            422, "no_criteria", "give at least one of to, from, started_after, started_before"
        )
    return criteria


def build_router(kernel: Kernel, correlation: Correlation) -> APIRouter:
    router = APIRouter(tags=["calls"])
    auth = kernel.authenticator
    user = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    reader = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.CALLS_READ)
    overseer = require(auth, Role.SUPERVISOR, Role.ADMIN, scope=Scope.CALLS_READ)
    assigner = require(auth, Role.SUPERVISOR, Role.ADMIN, scope=Scope.CALLS_ASSIGN)

    @router.get("/api/v1/calls")
    async def list_calls(
        principal: Annotated[Principal, Depends(reader)],
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        return [describe(call) for call in await correlation.live(principal, limit)]

    # Before /api/v1/calls/{call_id}, which would otherwise take "lookup" for an id.
    @router.get("/api/v1/calls/lookup")
    async def lookup(
        principal: Annotated[Principal, Depends(overseer)],
        sip_call_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
        external_id: Annotated[str | None, Query(min_length=1, max_length=255)] = None,
    ) -> dict[str, Any]:
        if (sip_call_id is None) == (external_id is None):
            raise ApiError(422, "invalid_lookup", "give exactly one of sip_call_id, external_id")
        call = await correlation.lookup(principal, sip_call_id=sip_call_id, external_id=external_id)
        return describe(call)

    @router.get("/api/v1/calls/{call_id}")
    async def get_call(
        call_id: str, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        return describe(await correlation.view(principal, call_id))

    @router.post("/api/v1/calls/claim")
    async def claim_by_reference(
        body: ClaimByReference, principal: Annotated[Principal, Depends(user)]
    ) -> dict[str, Any]:
        return describe(await correlation.claim_reference(principal, body.reference))

    @router.post("/api/v1/calls/search")
    async def search(
        body: Search, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        criteria = criteria_of(body)
        return describe(await correlation.search(principal, criteria, claim=body.claim))

    @router.post("/api/v1/calls/link-codes", status_code=201)
    async def link_code(principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        issued = await correlation.issue_code(principal)
        return {"code": issued.code, "expires_in": issued.expires_in}

    @router.post("/api/v1/calls/{call_id}/claim")
    async def claim(call_id: str, principal: Annotated[Principal, Depends(user)]) -> dict[str, Any]:
        return describe(await correlation.claim(principal, call_id))

    @router.post("/api/v1/calls/{call_id}/assign")
    async def assign(
        call_id: str, body: Assign, principal: Annotated[Principal, Depends(assigner)]
    ) -> dict[str, Any]:
        if (body.agent_id is None) == (body.agent_username is None):
            raise ApiError(422, "invalid_agent", "give exactly one of agent_id, agent_username")
        call = await correlation.assign(
            principal, call_id, agent_id=body.agent_id, username=body.agent_username
        )
        return describe(call)

    return router
