"""Reporting on each database engine, fed by events published as the services publish them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.integration.capture.conftest import Desk, running
from tests.integration.psp.conftest import Shop
from tests.integration.psp.conftest import simulator as simulator
from transact.contracts import Message
from transact.contracts.payments import (
    AttemptSummary,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRequested,
)

SERVICES = ["gateway", "auth", "reporting"]


class Board(Desk):
    async def publish(self, *messages: Message) -> None:
        for message in messages:
            await self.kernel.bus.publish(message)

    def requested(self, payment_id: str, at: datetime, **values: Any) -> PaymentRequested:
        facts: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "payment_id": payment_id,
            "capture_id": payment_id,
            "amount": 1000,
            "currency": "GBP",
            "reference": "INV",
            "channel": "phone",
            "agent_id": None,
            "vault_ref": "none",
            "idempotency_key": payment_id,
            "occurred_at": at,
        }
        return PaymentRequested(**{**facts, **values})

    def authorized(self, payment_id: str, at: datetime, **values: Any) -> PaymentAuthorized:
        facts: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "payment_id": payment_id,
            "connector": "sandbox",
            "psp_reference": "sbp_" + payment_id,
            "attempts": 1,
            "occurred_at": at,
            "tried": [AttemptSummary(connector="sandbox", outcome="approved", latency_ms=40)],
        }
        return PaymentAuthorized(**{**facts, **values})

    def declined(self, payment_id: str, at: datetime, code: str) -> PaymentDeclined:
        return PaymentDeclined(
            tenant_id=self.tenant_id,
            payment_id=payment_id,
            connector="sandbox",
            decline_code=code,
            attempts=1,
            occurred_at=at,
        )

    async def summary(self, headers: dict[str, str], query: str = "") -> dict[str, Any]:
        answer = await self.client.get(f"/api/v1/reports/summary{query}", headers=headers)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    async def until(
        self, headers: dict[str, str], query: str, check: Any, seconds: float = 10.0
    ) -> dict[str, Any]:
        """The summary once `check(summary)` holds (events are applied asynchronously)."""
        async with asyncio.timeout(seconds):
            while True:
                body = await self.summary(headers, query)
                if check(body):
                    return body
                await asyncio.sleep(0.05)


@pytest.fixture(params=["sqlite", "postgres"])
async def board(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Board]:
    async with running(request, tmp_path, Board, SERVICES, ()) as b:
        yield b


@pytest.fixture(params=["sqlite"])
async def books(
    request: pytest.FixtureRequest, tmp_path: Path, simulator: str
) -> AsyncIterator[Shop]:
    """Phone payments through capture and the PSP adapter to the simulator over real
    HTTP, with reporting listening."""
    services = ["gateway", "auth", "capture", "psp", "reporting"]
    topics = ("payment.authorized", "payment.declined", "payment.refunded", "psp.statement")
    async with running(request, tmp_path, Shop, services, topics) as shop:
        shop.sim = simulator
        yield shop
