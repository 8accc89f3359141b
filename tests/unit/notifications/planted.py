"""Every contract message type, built with test card data planted in every field that
can hold it: what the push channel must never let through."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from transact.contracts import Message, calls, capture, ivr, links, messages, payments, voice
from transact.notifications import domain

PAN = "4111111111111111"
PAN_SPACED = "4111 1111 1111 1111"
PAN_DASHED = "5555-5555-5555-4444"
SECRET = "SECRET"  # marks fields that are not allow-listed: never pushed at all

ENVELOPE = frozenset({"id", "type", "tenant_id", "occurred_at", "correlation_id"})
CONTRACT_MODULES = (calls, capture, ivr, links, messages, payments, voice)


def contract_types() -> list[type[Message]]:
    """Every message type the services publish (the test-only ones left out)."""
    found = []
    for topic in Message.topics():
        cls = Message._registry[topic]
        if any(cls.__module__ == module.__name__ for module in CONTRACT_MODULES):
            found.append(cls)
    return found


def _choices(annotation: Any) -> list[Any]:
    """The types a field accepts, `X | None` and `Optional[X]` unwrapped."""
    if get_origin(annotation) in (types.UnionType, typing.Union):
        return [a for a in get_args(annotation) if a is not type(None)]
    return [annotation]


def _plant(name: str, annotation: Any, n: int) -> Any:
    kind = _choices(annotation)[0]
    if get_origin(kind) is Literal:
        return get_args(kind)[0]
    if kind is bool:
        return True
    if kind is int:
        return int(PAN)
    if get_origin(kind) is list:
        (item,) = get_args(kind)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return [_planted_model(item)]  # e.g. a payment's summary of each attempt
        return [PAN, PAN_SPACED, "1230", "737"]
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return _planted_model(kind)
    if kind is str:
        return (PAN, f"card {PAN_SPACED} here", PAN_DASHED)[n % 3]
    if kind is datetime:
        return datetime(2030, 12, 31, tzinfo=UTC)
    raise AssertionError(f"no plant for {name}: {annotation!r}")


def _planted_model(cls: type[BaseModel]) -> BaseModel:
    return cls(
        **{
            name: _plant(name, info.annotation, n)
            for n, (name, info) in enumerate(cls.model_fields.items())
        }
    )


def planted(cls: type[Message], tenant_id: str, agent_id: str) -> Message:
    """`cls` with card numbers in every field; `agent_id` fields name the agent, so the
    event is routed to them as it would be in life."""
    values: dict[str, Any] = {}
    for n, (name, info) in enumerate(cls.model_fields.items()):
        if name in ENVELOPE:
            continue
        if name == "agent_id":
            values[name] = agent_id
        else:
            values[name] = _plant(name, info.annotation, n)
    return cls(tenant_id=tenant_id, correlation_id=PAN, **values)


def marked(message: Message) -> Message:
    """`message` with a marker in each string field no push rule lists (sealed keys,
    vault references, codes...): any of them showing up in a push is seen."""
    rule = domain.rule_for(message.topic)
    listed = set(rule.fields) if rule else set()
    update = {
        name: f"{SECRET}-{PAN}"
        for name in type(message).model_fields
        if name not in listed | ENVELOPE | {"agent_id"} and isinstance(getattr(message, name), str)
    }
    return message.model_copy(update=update)
