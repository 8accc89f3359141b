"""Correlation's bus consumers: telephony's call facts and the link codes agents key."""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.calls import CallAgentCode, CallEnded, CallStarted
from transact.correlation.flow import Correlation
from transact.kernel import Service


def subscribe(service: Service, correlation: Correlation) -> None:
    async def on_started(message: Message) -> None:
        assert isinstance(message, CallStarted)
        await correlation.call_started(message)

    async def on_ended(message: Message) -> None:
        assert isinstance(message, CallEnded)
        await correlation.call_ended(message)

    async def on_agent_code(message: Message) -> None:
        assert isinstance(message, CallAgentCode)
        await correlation.agent_code(message)

    # Starts and ends are idempotent by the registry's own rules (the call id is the
    # key, a repeat only fills gaps, an end is final); a keyed code goes through the
    # inbox because redeeming it consumes it.
    service.subscribe(CallStarted.topic, on_started)
    service.subscribe(CallEnded.topic, on_ended)
    service.subscribe(CallAgentCode.topic, on_agent_code)
