"""Self-service payment facts (ivr): each step of a call driven by a flow, for supervisors.

Counts, stages and outcomes only: never a card digit, never the account number keyed.
"""

from __future__ import annotations

from transact.contracts.base import Message


class IvrStep(Message):
    """A self-service session changed stage (`greeting`, `account`, `lookup`, `opening`,
    `card`, `confirm`, `paying`, `retry`, `outcome`, `goodbye`, `ended`). `outcome` is
    set once known: paid, declined, failed, abandoned, too_many_attempts,
    account_not_found, lookup_failed or unavailable."""

    topic = "ivr.step"
    session_id: str
    call_id: str
    flow: str
    stage: str
    previous: str | None = None
    attempts: int = 0
    cards: int = 0
    payments: int = 0
    capture_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    reference: str | None = None
    outcome: str | None = None
    confirmation: str | None = None
    # A call an agent handed over: that agent (their screen follows the session), and the
    # card's brand and last four once known, for the outcome they are shown.
    agent_id: str | None = None
    brand: str | None = None
    last4: str | None = None
