"""Capture's HTTP face: open a phone capture, follow it, recapture, submit, cancel."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from transact.capture import domain, store
from transact.capture.flow import Capture, policy_from_dict
from transact.contracts.money import check_money
from transact.kernel import Kernel, audit, idempotency
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, Scope, require


class OpenPayment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    reference: Annotated[str, Field(min_length=1, max_length=128)]
    fields: list[str] | None = Field(default=None, max_length=4)
    # Keep the card at the PSP for later charges (its token only; never the card).
    save_card: StrictBool = False
    # Keys on the phone, or spoken (voice transcribes; the agent hears none of it).
    input: Literal["keypad", "speech"] = "keypad"


# Every status a payment passes through (see DESIGN.md), for the list's filter.
STATUSES = frozenset(
    {
        "capturing",
        "ready",
        "submitted",
        "authorized",
        "declined",
        "failed",
        "cancelled",
        "expired",
        "refunded",
        "partially_refunded",
        "voided",
    }
)


def statuses_of(text: str | None) -> tuple[str, ...]:
    """`status=authorized,declined` as a tuple; 422 for a status that does not exist."""
    if not text:
        return ()
    wanted = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown:
        raise ApiError(422, "invalid_status", f"status must be among {', '.join(sorted(STATUSES))}")
    return wanted


class InputSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["keypad", "speech"]


class Recapture(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: Annotated[str, Field(min_length=1, max_length=16)]


class CaptureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: list[str] = ["pan", "expiry", "cvv"]
    accepted_brands: list[str] = [b.value for b in domain.Brand]
    max_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    ttl_seconds: Annotated[float, Field(ge=60, le=3600)] = 600


def describe(row: store.Row) -> dict[str, Any]:
    """The public view of a payment: counts and verdicts, the card as brand/BIN/last4 only."""
    state = domain.Session.from_dict(row.state)
    card = None
    if state.brand and state.bin and state.last4:
        card = {"brand": state.brand.value, "bin": state.bin, "last4": state.last4}
    return {
        "id": row.id,
        "status": row.status,
        "channel": row.channel,
        "amount": row.amount,
        "currency": row.currency,
        "reference": row.reference,
        "call_id": row.call_id,
        "agent_id": row.agent_id,
        "current_field": state.current,
        # Rejections a field may take before the capture fails (each field's `attempts`
        # counts its rejections so far).
        "max_attempts": state.policy.max_attempts,
        "fields": [
            {
                "name": f.name,
                "status": f.status.value,
                "digits": f.digits,
                "attempts": f.attempts,
                "reason": f.reason,
            }
            for f in state.fields
        ],
        "card": card,
        "save_card": bool(row.state.get("save_card", False)),
        "input": row.state.get("input", "keypad") if row.channel == "phone" else None,
        "outcome": row.outcome,
        "cancel_reason": row.cancel_reason,
        "expires_at": row.expires_at.isoformat(),
        "created_at": row.created_at.isoformat(),
    }


def build_router(kernel: Kernel, capture: Capture) -> APIRouter:
    router = APIRouter(tags=["payments"])
    auth = kernel.authenticator
    agent = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN)
    reader = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.PAYMENTS_READ)
    admin = require(auth, Role.ADMIN)

    @router.post("/api/v1/calls/{call_id}/payments", status_code=201)
    async def open_payment(
        call_id: str,
        body: OpenPayment,
        response: Response,
        principal: Annotated[Principal, Depends(agent)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        problem = check_money(body.amount, body.currency)
        if problem:
            raise ApiError(
                422, "invalid_amount" if "amount" in problem else "invalid_currency", problem
            )

        async def work() -> dict[str, Any]:
            row = await capture.open_phone(
                principal,
                call_id[:128],
                body.amount,
                body.currency,
                body.reference,
                body.fields,
                save_card=body.save_card,
                input=body.input,
            )
            return describe(row)

        return await idempotency.answer_once(
            kernel.db,
            "capture.open",
            principal.tenant_id,
            idempotency_key,
            # `save_card` and `input` count only when not their defaults, so keys stored
            # before they existed still match.
            idempotency.fingerprint(
                principal.id,
                call_id,
                body.model_dump(
                    exclude={
                        *(() if body.save_card else ("save_card",)),
                        *(() if body.input != "keypad" else ("input",)),
                    }
                    or None
                ),
            ),
            response,
            work,
            201,
        )

    @router.get("/api/v1/payments")
    async def list_payments(
        principal: Annotated[Principal, Depends(reader)],
        status: Annotated[str | None, Query(max_length=200)] = None,
        call_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        rows = await capture.payments(
            principal, call_id=call_id, statuses=statuses_of(status), limit=limit
        )
        return [describe(row) for row in rows]

    @router.get("/api/v1/payments/{payment_id}")
    async def get_payment(
        payment_id: str, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        return describe(await capture.view(principal, payment_id[:64]))

    @router.post("/api/v1/payments/{payment_id}/recapture")
    async def recapture(
        payment_id: str, body: Recapture, principal: Annotated[Principal, Depends(agent)]
    ) -> dict[str, Any]:
        return describe(await capture.recapture(principal, payment_id[:64], body.field))

    @router.post("/api/v1/payments/{payment_id}/input")
    async def switch_input(
        payment_id: str, body: InputSwitch, principal: Annotated[Principal, Depends(agent)]
    ) -> dict[str, Any]:
        """Keypad or speech for the rest of the capture; completed fields are kept."""
        return describe(await capture.switch_input(principal, payment_id[:64], body.mode))

    @router.post("/api/v1/payments/{payment_id}/submit", status_code=202)
    async def submit(
        payment_id: str, principal: Annotated[Principal, Depends(agent)]
    ) -> dict[str, Any]:
        return describe(await capture.submit(principal, payment_id[:64]))

    @router.post("/api/v1/payments/{payment_id}/cancel")
    async def cancel(
        payment_id: str, principal: Annotated[Principal, Depends(agent)]
    ) -> dict[str, Any]:
        return describe(await capture.cancel(principal, payment_id[:64]))

    @router.get("/api/v1/capture/settings")
    async def get_settings(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        async with kernel.db.transaction() as session:
            return (await capture.policy(session, principal.tenant_id)).to_dict()

    @router.put("/api/v1/capture/settings")
    async def put_settings(
        body: CaptureSettings, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        policy = policy_from_dict(body.model_dump())
        async with kernel.db.transaction() as session:
            await store.set_policy(session, principal.tenant_id, policy.to_dict())
            await audit.append(
                session,
                action="capture.settings_changed",
                actor=principal.actor,
                tenant_id=principal.tenant_id,
                target=principal.tenant_id,
                details=policy.to_dict(),
            )
        return policy.to_dict()

    return router
