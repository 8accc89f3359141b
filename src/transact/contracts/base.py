"""The envelope every bus message shares, and the registry that decodes them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(UTC)


class Message(BaseModel):
    """A fact (event, past tense) or a request (command) travelling on the bus.

    Subclasses set `topic`; `type` always equals it, so a message decodes
    without knowing where it came from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    topic: ClassVar[str]
    _registry: ClassVar[dict[str, type[Message]]] = {}

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    type: str = ""
    tenant_id: str
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        topic = cls.__dict__.get("topic")
        if topic is None:
            return
        existing = Message._registry.get(topic)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise TypeError(f"topic {topic!r} already belongs to {existing.__qualname__}")
        Message._registry[topic] = cls

    def model_post_init(self, context: Any) -> None:
        if not self.type:
            object.__setattr__(self, "type", self.topic)
        elif self.type != self.topic:
            raise ValueError(f"type {self.type!r} does not match topic {self.topic!r}")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @staticmethod
    def decode(data: bytes | str) -> Message:
        import json

        raw = json.loads(data)
        cls = Message._registry.get(raw.get("type", ""))
        if cls is None:
            raise UnknownMessageType(raw.get("type"))
        return cls.model_validate(raw)

    @staticmethod
    def topics() -> list[str]:
        return sorted(Message._registry)


class UnknownMessageType(ValueError):
    def __init__(self, type_name: object) -> None:
        super().__init__(f"no contract for message type {type_name!r}")
