"""The PSP adapter's bus consumer: payment requests from card capture."""

from __future__ import annotations

from transact.contracts import Message
from transact.contracts.payments import PaymentRequested
from transact.contracts.statements import StatementRequested
from transact.kernel import Service
from transact.psp.flow import Psp

PAYMENT_CONSUMERS = 8


def subscribe(service: Service, psp: Psp) -> None:
    async def on_requested(message: Message) -> None:
        assert isinstance(message, PaymentRequested)
        # Idempotent: the payment row is claimed once; a redelivery finds it and stops.
        await psp.authorize(message)

    # Each payment waits on its PSP and the database, and payments do not depend on each
    # other: several at once per process, as several processes would.
    service.subscribe(PaymentRequested.topic, on_requested, consumers=PAYMENT_CONSUMERS)

    async def on_statement_requested(message: Message) -> None:
        assert isinstance(message, StatementRequested)
        # Read-only at the providers: a redelivery asks again and answers again.
        await psp.statement(message)

    service.subscribe(StatementRequested.topic, on_statement_requested)
