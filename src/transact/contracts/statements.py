"""The PSP's side of our payments, for reconciliation (reporting asks, the PSP adapter answers).

Reporting may not read the adapter's tables, and only the adapter holds the
connectors' credentials, so the adapter asks each provider about the tenant's
payments of a period (the connectors' `status` verb, by our reference) and sends
back one line per payment: what the provider says, beside what the adapter
recorded. No card data: amounts, statuses and references only.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from transact.contracts.base import Message

# How many lines one `psp.statement` message carries at most: a period's statement
# arrives in parts, the last one flagged.
STATEMENT_PART_SIZE = 200


class StatementRequested(Message):
    """Ask the providers about the tenant's payments created in [period_from, period_to)."""

    topic = "psp.statement_requested"
    request_id: str
    period_from: datetime
    period_to: datetime


class StatementLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    payment_id: str
    connector: str
    # False: the provider answered that it knows no payment under our reference.
    found: bool
    # The provider's view: approved / declined / pending / error (None: not found, or
    # the provider could not be asked).
    status: str | None = None
    psp_reference: str | None = None
    amount: int | None = None
    refunded: int | None = None
    # The adapter's own record of the payment.
    ours_status: str | None = None
    ours_amount: int | None = None


class Statement(Message):
    """One part of the answer to `psp.statement_requested` (`last` ends it)."""

    topic = "psp.statement"
    request_id: str
    part: int
    last: bool
    lines: list[StatementLine]
