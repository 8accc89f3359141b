"""The PSP adapter's HTTP face: tenant routing, refunds, the attempts behind a payment,
stored cards (list, delete, charge).

Stored cards are for supervisors and admins (and API clients with the payments
scopes), not agents: charging one needs no cardholder on the line, so an agent
who could charge any saved card of the tenant could move money unobserved.
"""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from transact.kernel import Kernel, idempotency
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, Scope, require
from transact.psp import store
from transact.psp.flow import Psp


class RefundRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt | None = None


class CaptureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt | None = None


class ChargeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: StrictInt
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    reference: Annotated[str, Field(min_length=1, max_length=128)]


class RoutingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: str = "sale"
    routes: list[dict[str, Any]]
    credentials: dict[str, dict[str, str]] | None = None
    options: dict[str, dict[str, str]] | None = None


def describe(payment: store.Payment) -> dict[str, Any]:
    return {
        "id": payment.id,
        "status": payment.status,
        "amount": payment.amount,
        "currency": payment.currency,
        "authorized": payment.authorized_amount,
        "captured": payment.captured_amount,
        "refunded": payment.refunded_amount,
        "outcome": {
            "connector": payment.connector,
            "psp_reference": payment.psp_reference,
            "decline_code": payment.decline_code,
            "attempts": payment.attempts,
        },
    }


def describe_card(card: store.StoredCard) -> dict[str, Any]:
    """A stored card as it may be shown: brand, BIN, last 4; never the token."""
    return {
        "id": card.id,
        "brand": card.brand,
        "bin": card.bin,
        "last4": card.last4,
        "connector": card.connector,
        "payment_id": card.payment_id,
        "created_at": card.created_at.isoformat(),
        "last_used_at": card.last_used_at.isoformat() if card.last_used_at else None,
    }


def build_router(kernel: Kernel, psp: Psp) -> APIRouter:
    router = APIRouter(tags=["payments"])
    auth = kernel.authenticator
    admin = require(auth, Role.ADMIN)
    supervisor = require(auth, Role.SUPERVISOR, Role.ADMIN)
    mover = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.PAYMENTS_WRITE)
    # Stored cards: no agents (see the module's docstring).
    card_reader = require(auth, Role.SUPERVISOR, Role.ADMIN, scope=Scope.PAYMENTS_READ)
    card_writer = require(auth, Role.SUPERVISOR, Role.ADMIN, scope=Scope.PAYMENTS_WRITE)

    @router.put("/api/v1/psp/routes")
    async def set_routes(
        body: RoutingRequest, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        return await psp.set_setup(principal, body.model_dump())

    @router.get("/api/v1/psp/routes")
    async def get_routes(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        setup = await psp.setup(principal.tenant_id)
        return {
            "mode": "sale" if setup.capture else "auth",
            "routes": [r.to_dict() for r in setup.routes],
            "options": setup.options,
            "credentials_for": sorted(setup.credentials),
        }

    @router.post("/api/v1/payments/{payment_id}/refund")
    async def refund(
        payment_id: str,
        body: RefundRequest,
        response: Response,
        principal: Annotated[Principal, Depends(mover)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            return describe(await psp.refund(principal, payment_id[:64], body.amount))

        return await idempotency.answer_once(
            kernel.db,
            "psp.refund",
            principal.tenant_id,
            idempotency_key,
            idempotency.fingerprint(payment_id, body.model_dump()),
            response,
            work,
            200,
        )

    @router.post("/api/v1/payments/{payment_id}/capture")
    async def capture(
        payment_id: str,
        body: CaptureRequest,
        response: Response,
        principal: Annotated[Principal, Depends(mover)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        async def work() -> dict[str, Any]:
            return describe(await psp.capture(principal, payment_id[:64], body.amount))

        return await idempotency.answer_once(
            kernel.db,
            "psp.capture",
            principal.tenant_id,
            idempotency_key,
            idempotency.fingerprint(payment_id, body.model_dump()),
            response,
            work,
            200,
        )

    @router.post("/api/v1/payments/{payment_id}/void")
    async def void(
        payment_id: str, principal: Annotated[Principal, Depends(mover)]
    ) -> dict[str, Any]:
        return describe(await psp.void(principal, payment_id[:64]))

    @router.get("/api/v1/payments/{payment_id}/attempts")
    async def attempts(
        payment_id: str, principal: Annotated[Principal, Depends(supervisor)]
    ) -> list[dict[str, Any]]:
        async with kernel.db.transaction() as session:
            payment = await store.payment(session, payment_id[:64])
            if payment is None or payment.tenant_id != principal.tenant_id:
                raise ApiError(404, "not_found", "no such payment")
            rows = await store.attempts_of(session, payment.id)
        return [
            {
                k: (v.isoformat() if hasattr(v, "isoformat") else v)
                for k, v in row.items()
                if k not in ("id", "transcript")
            }
            for row in rows
        ]

    @router.get("/api/v1/cards")
    async def list_cards(
        principal: Annotated[Principal, Depends(card_reader)],
        limit: Annotated[int, Query(ge=1, le=100)] = 50,
        before: Annotated[str | None, Query(max_length=64)] = None,
    ) -> list[dict[str, Any]]:
        return [describe_card(c) for c in await psp.stored_cards(principal, limit, before)]

    @router.delete("/api/v1/cards/{card_id}", status_code=204, response_class=Response)
    async def delete_card(
        card_id: str, principal: Annotated[Principal, Depends(card_writer)]
    ) -> Response:
        await psp.forget_card(principal, card_id[:64])
        return Response(status_code=204)

    @router.post("/api/v1/cards/{card_id}/charge", status_code=201)
    async def charge_card(
        card_id: str,
        body: ChargeRequest,
        response: Response,
        principal: Annotated[Principal, Depends(card_writer)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        if idempotency_key is not None:
            idempotency.check_key(idempotency_key)

        async def work() -> dict[str, Any]:
            payment = await psp.charge_card(
                principal,
                card_id[:64],
                body.amount,
                body.currency,
                body.reference,
                idempotency_key,
            )
            return {**describe(payment), "stored_card_id": card_id[:64]}

        return await idempotency.answer_once(
            kernel.db,
            "psp.card_charge",
            principal.tenant_id,
            idempotency_key,
            idempotency.fingerprint(card_id, body.model_dump()),
            response,
            work,
            201,
        )

    return router
