"""Remote's HTTP face for agents and merchants' backends: create, read, list, resend and
cancel payment links, and the tenant's link settings."""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

import base64
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from transact.contracts import utcnow
from transact.kernel import Kernel, idempotency
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, Scope, require
from transact.remote import domain
from transact.remote.domain import Attempt, Link
from transact.remote.flow import FromPhone, NewLink, Remote


class CreateLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Required, unless the link takes the place of a phone capture (`from_payment_id`):
    # then they are the capture's, and may only be repeated.
    amount: StrictInt | None = None
    currency: Annotated[StrictStr | None, Field(min_length=3, max_length=3)] = None
    reference: Annotated[StrictStr | None, Field(min_length=1, max_length=128)] = None
    # A plain string, so a wrong channel gets its own clear error, not a schema dump.
    channel: Annotated[StrictStr, Field(min_length=1, max_length=16)]
    to: Annotated[StrictStr | None, Field(min_length=1, max_length=254)] = None
    expires_in: StrictInt | None = None
    # An open phone capture of the caller's to turn into this link.
    from_payment_id: Annotated[StrictStr | None, Field(min_length=1, max_length=64)] = None

    def fingerprint_fields(self) -> dict[str, Any]:
        # `from_payment_id` counts only when given, so keys stored before it existed match.
        return self.model_dump(exclude=None if self.from_payment_id else {"from_payment_id"})

    def new_link(self) -> NewLink:
        """A plain link's terms; 422 for each one left out."""
        if self.amount is None:
            raise ApiError(422, "invalid_amount", "amount is required", field="amount")
        if self.currency is None:
            raise ApiError(422, "invalid_currency", "currency is required", field="currency")
        if self.reference is None:
            raise ApiError(422, "invalid_reference", "reference is required", field="reference")
        return NewLink(
            self.amount, self.currency, self.reference, self.channel, self.to, self.expires_in
        )


class LinkSettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    merchant_name: Annotated[StrictStr | None, Field(max_length=100)] = None
    default_expires_in: StrictInt = domain.DEFAULT_EXPIRES_IN
    max_expires_in: StrictInt = domain.LONGEST_EXPIRES_IN
    max_attempts: StrictInt = domain.DEFAULT_MAX_ATTEMPTS
    submitter: StrictStr = "customer"
    ask_postcode: StrictBool = False
    ask_name: StrictBool = False
    card_posts_per_ip_per_hour: StrictInt = 20


def _stamp(moment: Any) -> str | None:
    return moment.isoformat() if moment is not None else None


def describe(link: Link, attempt: Attempt | None = None, url: str | None = None) -> dict[str, Any]:
    """The agent's view of a link: no token, the destination masked, no card data."""
    body: dict[str, Any] = {
        "id": link.id,
        # Past its expiry a link reads expired at once, before the sweep records it.
        "status": domain.status_at(link, utcnow()).value,
        "channel": link.channel,
        "to": link.to_masked,
        "amount": link.amount,
        "currency": link.currency,
        "reference": link.reference,
        "agent_id": link.agent_id,
        "attempts": link.attempts,
        "max_attempts": link.max_attempts,
        "payment_id": link.payment_id,
        "expires_at": _stamp(link.expires_at),
        "created_at": _stamp(link.created_at),
        "opened_at": _stamp(link.opened_at),
        "completed_at": _stamp(link.completed_at),
        "source_payment_id": link.source_payment_id,
        "message": None
        if link.message_id is None
        else {"id": link.message_id, "status": link.message_status, "reason": link.message_reason},
        "attempt": None
        if attempt is None
        else {
            "payment_id": attempt.id,
            "status": attempt.status.value,
            "fields": dict(attempt.errors),
            "decline_code": attempt.decline_code,
        },
    }
    if url is not None:
        body["url"] = url
    return body


URL_CONTEXT = b"remote-idempotent-url"


async def _answer_once_sealed(
    kernel: Kernel,
    tenant_id: str,
    key: str,
    print_: str,
    response: Response,
    work: Callable[[], Awaitable[dict[str, Any]]],
) -> dict[str, Any]:
    """The kernel's idempotency rules, with the answer's URL sealed while it is stored:
    the URL holds the link's token, which must not rest in clear in the database."""
    outcome = await idempotency.claim(kernel.db, "remote.link", tenant_id, key, print_)
    if isinstance(outcome, idempotency.Replay):
        response.status_code = outcome.status
        response.headers["Idempotent-Replayed"] = "true"
        answer = dict(outcome.body)
        sealed = answer.pop("url_sealed")
        answer["url"] = kernel.vault.unseal(
            tenant_id, base64.b64decode(sealed), URL_CONTEXT
        ).decode()
        return answer
    try:
        answer = await work()
    except Exception:
        await outcome.release(kernel.db)
        raise
    stored = {k: v for k, v in answer.items() if k != "url"}
    blob = kernel.vault.seal(tenant_id, str(answer["url"]).encode(), URL_CONTEXT)
    stored["url_sealed"] = base64.b64encode(blob).decode()
    async with kernel.db.transaction() as session:
        await outcome.complete(session, 201, stored)
    return answer


def build_router(kernel: Kernel, remote: Remote) -> APIRouter:
    router = APIRouter(tags=["payment links"])
    auth = kernel.authenticator
    writer = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.LINKS_WRITE)
    reader = require(auth, Role.AGENT, Role.SUPERVISOR, Role.ADMIN, scope=Scope.PAYMENTS_READ)
    admin = require(auth, Role.ADMIN)

    def base_url(request: Request) -> str:
        return kernel.settings.public_url or str(request.base_url)

    @router.post("/api/v1/payment-links", status_code=201)
    async def create(
        body: CreateLink,
        request: Request,
        response: Response,
        principal: Annotated[Principal, Depends(writer)],
        idempotency_key: Annotated[str | None, Header()] = None,
    ) -> dict[str, Any]:
        source = body.from_payment_id
        new = None if source is not None else body.new_link()

        async def work() -> dict[str, Any]:
            if new is not None:
                link, url = await remote.create(principal, new, base_url(request))
            else:
                assert source is not None
                ask = FromPhone(
                    source,
                    body.channel,
                    body.to,
                    body.expires_in,
                    body.amount,
                    body.currency,
                    body.reference,
                )
                link, url = await remote.create_from_phone(principal, ask, base_url(request))
            return describe(link, url=url)

        if idempotency_key is None:
            return await work()
        return await _answer_once_sealed(
            kernel,
            principal.tenant_id,
            idempotency_key,
            idempotency.fingerprint(principal.id, body.fingerprint_fields()),
            response,
            work,
        )

    # Before /{link_id}, which would otherwise take "settings" for an id.
    @router.get("/api/v1/payment-links/settings")
    async def get_settings(principal: Annotated[Principal, Depends(admin)]) -> dict[str, Any]:
        return (await remote.settings(principal.tenant_id)).to_dict()

    @router.put("/api/v1/payment-links/settings")
    async def put_settings(
        body: LinkSettingsIn, principal: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        if body.submitter not in ("customer", "agent"):
            raise ApiError(422, "invalid_settings", "submitter must be customer or agent")
        return (await remote.set_settings(principal, body.model_dump())).to_dict()

    @router.get("/api/v1/payment-links")
    async def list_links(
        principal: Annotated[Principal, Depends(reader)],
        status: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[dict[str, Any]]:
        return [describe(link) for link in await remote.links(principal, status, limit)]

    @router.get("/api/v1/payment-links/{link_id}")
    async def get_link(
        link_id: str, principal: Annotated[Principal, Depends(reader)]
    ) -> dict[str, Any]:
        link, attempt = await remote.view(principal, link_id)
        return describe(link, attempt)

    @router.post("/api/v1/payment-links/{link_id}/resend")
    async def resend(
        link_id: str, request: Request, principal: Annotated[Principal, Depends(writer)]
    ) -> dict[str, Any]:
        link, url = await remote.resend(principal, link_id, base_url(request))
        return describe(link, url=url)

    @router.post("/api/v1/payment-links/{link_id}/cancel")
    async def cancel(
        link_id: str, principal: Annotated[Principal, Depends(writer)]
    ) -> dict[str, Any]:
        return describe(await remote.cancel(principal, link_id))

    return router
