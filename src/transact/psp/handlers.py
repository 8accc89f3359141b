"""The PSP adapter's bus consumer: payment requests from card capture."""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.payments import PaymentRequested
from transact.kernel import Service
from transact.psp.flow import Psp


def subscribe(service: Service, psp: Psp) -> None:
    async def on_requested(message: Message) -> None:
        assert isinstance(message, PaymentRequested)
        # Idempotent: the payment row is claimed once; a redelivery finds it and stops.
        await psp.authorize(message)

    service.subscribe(PaymentRequested.topic, on_requested)
