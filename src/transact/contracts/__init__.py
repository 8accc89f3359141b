"""Message schemas shared between services: the only thing services agree on besides HTTP.

Every contract module is imported here, so any message on the bus decodes.
"""

from transact.contracts import (
    calls,
    capture,
    ivr,
    links,
    messages,
    money,
    payments,
    statements,
    voice,
)
from transact.contracts.base import Message, UnknownMessageType, new_id, utcnow

__all__ = [
    "Message",
    "UnknownMessageType",
    "calls",
    "capture",
    "ivr",
    "links",
    "messages",
    "money",
    "new_id",
    "payments",
    "statements",
    "utcnow",
    "voice",
]
