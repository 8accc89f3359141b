"""Reporting's HTTP face: the dashboard's numbers, the payments CSV, the reconciliation.

Supervisors and admins of a tenant (and API clients with `reports:read`) see their own
tenant's reports; agents get 403, and no parameter names another tenant: the tenant
is always the caller's.
"""

# No `from __future__ import annotations`: FastAPI must see the closures used in Depends().

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response
from fastapi.responses import JSONResponse, StreamingResponse

from transact.contracts import utcnow
from transact.kernel import Kernel
from transact.kernel.errors import ApiError
from transact.kernel.security import Principal, Role, Scope, require
from transact.reporting import domain
from transact.reporting.views import Views

Text = Annotated[str | None, Query(max_length=64)]


def _query(
    start: str | None,
    end: str | None,
    *,
    granularity: str | None = None,
    channel: str | None = None,
    connector: str | None = None,
    agent: str | None = None,
    default_days: int = 7,
) -> domain.Query:
    try:
        return domain.query_of(
            start,
            end,
            now=utcnow(),
            granularity=granularity,
            channel=channel or None,
            connector=connector or None,
            agent=agent or None,
            default_days=default_days,
        )
    except domain.ReportError as exc:
        raise ApiError(422, "invalid_query", str(exc)) from None


def build_router(kernel: Kernel) -> APIRouter:
    router = APIRouter(tags=["reports"])
    reader = require(
        kernel.authenticator, Role.SUPERVISOR, Role.ADMIN, scope=Scope.REPORTS_READ.value
    )
    views = Views(kernel)

    @router.get("/api/v1/reports/summary")
    async def summary(
        principal: Annotated[Principal, Depends(reader)],
        start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
        granularity: Annotated[str | None, Query(max_length=8)] = None,
        channel: Text = None,
        connector: Text = None,
        agent: Text = None,
    ) -> dict[str, Any]:
        """Payments and amounts over time, by channel, connector and agent, decline
        reasons and the capture and link funnels of a period (default: the last 7 days)."""
        query = _query(
            start,
            end,
            granularity=granularity,
            channel=channel,
            connector=connector,
            agent=agent,
        )
        return await views.summary(principal.tenant_id, query)

    @router.get("/api/v1/reports/payments.csv")
    async def payments_csv(
        principal: Annotated[Principal, Depends(reader)],
        start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
    ) -> StreamingResponse:
        """The period's payments, one line each, with the masked card (brand, BIN, last 4)."""
        query = _query(start, end)
        name = f"payments-{query.start:%Y%m%dT%H}-{query.end:%Y%m%dT%H}.csv"
        return StreamingResponse(
            views.payments_csv(principal.tenant_id, query),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @router.get("/api/v1/reports/reconciliation", response_model=None)
    async def reconciliation(
        principal: Annotated[Principal, Depends(reader)],
        response: Response,
        start: Annotated[str | None, Query(alias="from", max_length=40)] = None,
        end: Annotated[str | None, Query(alias="to", max_length=40)] = None,
        refresh: bool = False,
    ) -> Any:
        """Our payments of the period beside the PSP's records of them. The first call
        (or `refresh=true`) asks the PSP adapter for a statement and answers 202; ask
        again until it answers 200 with the report."""
        query = _query(start, end, default_days=1)
        ready, body = await views.reconciliation(principal.tenant_id, query, refresh=refresh)
        if not ready:
            return JSONResponse(body, status_code=202, headers={"Retry-After": "1"})
        return body

    return router
