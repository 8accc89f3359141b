"""At-least-once delivery, at its worst: every bus message is delivered twice to every
service, through a whole phone payment and a whole pay-by-link payment, and still each
side effect happens once: one payment row, one charge at the PSP, one link completion,
one message sent, one of each outcome event.

The duplicate is made where the bus hands a message to a service's handler, so it is
what the Redis bus does after a consumer died before its ack: the same message (same
id) handled again. The test's own observer is not doubled, so what it records is what
the services published.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.integration.capture.conftest import running
from tests.integration.psp.conftest import Shop, simulator  # noqa: F401  (a fixture)
from tests.integration.psp.test_payments import charged, pay
from tests.integration.remote.conftest import (
    VISA,
    Mailbox,
    link_in,
    mailbox,  # noqa: F401  (a fixture)
    open_page,
    page_state,
    post_card,
    running_desk,
)
from transact.contracts import Message
from transact.kernel.bus import Handler, MemoryBus
from transact.kernel.db import Database

OBSERVER = "test-observer"


class Deliveries:
    """Counts how often each service's handler got each message id."""

    def __init__(self) -> None:
        self.handled: Counter[tuple[str, str]] = Counter()

    def twice(self, group: str, handler: Handler) -> Handler:
        async def deliver_twice(message: Message) -> None:
            for _ in range(2):
                self.handled[(group, message.id)] += 1
                await handler(message)

        return deliver_twice

    def every_message_went_twice(self) -> bool:
        return bool(self.handled) and set(self.handled.values()) == {2}


@pytest.fixture
def deliveries(monkeypatch: pytest.MonkeyPatch) -> Deliveries:
    seen = Deliveries()
    subscribe = MemoryBus.subscribe

    def doubling_subscribe(self: MemoryBus, topic: str, group: str, handler: Handler) -> None:
        wrapped = handler if group == OBSERVER else seen.twice(group, handler)
        subscribe(self, topic, group, wrapped)

    monkeypatch.setattr(MemoryBus, "subscribe", doubling_subscribe)
    return seen


@pytest.fixture(params=["postgres"])
async def shop(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    simulator: str,  # noqa: F811
    deliveries: Deliveries,
) -> AsyncIterator[Shop]:
    topics = ("payment.requested", "payment.authorized", "payment.declined", "payment.failed")
    async with running(request, tmp_path, Shop, ["gateway", "auth", "capture", "psp"], topics) as s:
        s.sim = simulator
        yield s


async def rows(db: Database, sql: str, **params: object) -> list[tuple[object, ...]]:
    async with db.transaction() as session:
        return [tuple(r) for r in (await session.execute(text(sql), params)).all()]


async def test_a_phone_payment_with_every_message_delivered_twice_charges_once(
    shop: Shop, deliveries: Deliveries
) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    view = await pay(shop)
    assert view["status"] == "authorized", view
    assert view["card"]["last4"] == "4242", "keys delivered twice were applied once"
    await asyncio.sleep(0.5)  # room for a late duplicate to do harm

    assert deliveries.every_message_went_twice()
    doubled_groups = {group for group, _ in deliveries.handled}
    assert {"capture", "psp"} <= doubled_groups, doubled_groups
    assert await charged(shop, "stripe", view["id"]) == 1
    assert (await shop.charges())["attempts"]["stripe"][view["id"]] == 1
    payments = await rows(
        shop.kernel.db, "SELECT status FROM psp_payments WHERE id = :id", id=view["id"]
    )
    assert payments == [("authorized",)]
    assert len(shop.events("payment.requested")) == 1
    assert [m.payment_id for m in shop.events("payment.authorized")] == [view["id"]]  # type: ignore[attr-defined]
    assert shop.events("payment.failed") == shop.events("payment.declined") == []


async def test_a_link_payment_with_every_message_delivered_twice_completes_once(
    tmp_path: Path,
    simulator: str,  # noqa: F811
    mailbox: Mailbox,  # noqa: F811
    deliveries: Deliveries,
) -> None:
    async with running_desk(tmp_path, simulator) as desk:
        await desk.comms_settings(
            {
                "sender": {"name": "Example Shop", "email": "pay@shop.example"},
                "email": {"host": "127.0.0.1", "port": mailbox.port, "security": "none"},
            }
        )
        created = await desk.create(channel="email", to="jane@example.com")
        assert created.status_code == 201, created.text
        link = created.json()
        [mail] = await mailbox.wait()
        text_body = mail.get_body(preferencelist=("plain",))
        assert text_body is not None
        async with desk.customer() as customer:
            _, csrf = await open_page(customer, link_in(text_body.get_content()))
            posted = await post_card(customer, csrf, VISA)
            assert posted.status_code == 303
            await page_state(customer, "paid")
        done = await desk.wait_link(link["id"], lambda seen: seen["status"] == "completed")
        await desk.wait_for("link.completed")
        await asyncio.sleep(0.5)  # room for a late duplicate to do harm

        assert deliveries.every_message_went_twice()
        assert len(mailbox.received) == 1, "one e-mail sent"
        assert len(desk.events("message.send")) == 1
        assert len(desk.events("message.sent")) == 1
        assert len(desk.events("link.completed")) == 1
        assert len(desk.events("link.opened")) == 1
        assert len(desk.events("payment.requested")) == 1
        assert len(desk.events("payment.authorized")) == 1
        payment_id = done["payment_id"]
        async with httpx.AsyncClient() as http:
            charges = (await http.get(f"{desk.psp_url}/_sim/charges")).json()
        assert charges["charges"]["stripe"].get(payment_id) == 1
        payments = await rows(desk.kernel.db, "SELECT id FROM psp_payments")
        assert payments == [(payment_id,)]
