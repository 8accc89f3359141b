"""Message schemas shared between services: the only thing services agree on besides HTTP."""

from transact.contracts.base import Message, UnknownMessageType, new_id, utcnow

__all__ = ["Message", "UnknownMessageType", "new_id", "utcnow"]
