"""Payment link facts (remote card capture): what the agent watches while the customer pays.

No event carries the link's URL or token, the destination in clear, or card data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from transact.contracts.base import Message

LinkChannel = Literal["sms", "email", "chat"]


class _LinkEvent(Message):
    link_id: str
    agent_id: str | None = None
    status: str


class LinkCreated(_LinkEvent):
    topic = "link.created"
    channel: LinkChannel
    amount: int
    currency: str
    reference: str
    expires_at: datetime
    to_masked: str | None = None
    # The phone capture this link replaces, when an agent turned one into a link.
    source_payment_id: str | None = None


class LinkOpened(_LinkEvent):
    """The customer opened the page for the first time."""

    topic = "link.opened"


class LinkProgress(_LinkEvent):
    """The page's own checks of one field (the server's verdict follows as
    `capture.progress` once the card is sent): complete and valid, or not yet."""

    topic = "link.progress"
    field: str
    complete: bool
    valid: bool | None


class LinkCompleted(_LinkEvent):
    topic = "link.completed"
    payment_id: str


class LinkExpired(_LinkEvent):
    topic = "link.expired"


class LinkCancelled(_LinkEvent):
    topic = "link.cancelled"
    reason: Literal["agent", "replaced"] = "agent"


class LinkFailed(_LinkEvent):
    """No card attempts left: the link is dead, the agent may send a new one."""

    topic = "link.failed"
    attempts: int
