"""A PSP latency spike longer than our read timeout: the first PSP is still working on
the charge when we give up waiting. Before any failover we ask it for the payment's
status; whatever it says then, the customer must never be charged at two PSPs.

(The plain timeout after the charge is `test_payments.py::
test_a_timeout_is_followed_by_a_status_query_not_a_second_psp`; fifty concurrent
submits with one idempotency key are `test_fifty_concurrent_submits_charge_once`.)
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.psp.conftest import Shop
from tests.integration.psp.test_payments import attempts, charged
from transact.psp import Psp

pytestmark = [pytest.mark.faults]

SPIKE_MS = 12_000  # beyond the adapter's 10 s read timeout


async def submitted_payment(shop: Shop) -> str:
    await shop.agent("alice")
    call_id = f"CA{uuid.uuid4().hex[:8]}"
    await shop.call_for("alice", call_id)
    opened = await shop.open("alice", call_id)
    assert opened.status_code == 201, opened.text
    payment_id = str(opened.json()["id"])
    await shop.press(call_id, "4242424242424242")
    await shop.press(call_id, future_expiry())
    await shop.press(call_id, CVV)
    await shop.wait_status("alice", payment_id, "ready")
    submitted = await shop.client.post(
        f"/api/v1/payments/{payment_id}/submit", headers=shop.agents["alice"][1]
    )
    assert submitted.status_code == 202
    return payment_id


async def final_view(shop: Shop, payment_id: str, seconds: float) -> dict[str, Any]:
    view: dict[str, Any] = {}
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        view = await shop.payment("alice", payment_id)
        if view["status"] not in ("submitted", "ready"):
            return view
        await asyncio.sleep(0.1)
    return view


@pytest.mark.parametrize("shop", ["sqlite"], indirect=True)
async def test_a_latency_spike_past_the_timeout_never_charges_at_two_psps(shop: Shop) -> None:
    await shop.routes(
        {"connector": "adyen", "base_url": shop.sim},
        {"connector": "stripe", "base_url": shop.sim, "priority": 1},
    )
    await shop.fault("adyen", f"latency={SPIKE_MS}")
    payment_id = await submitted_payment(shop)
    view = await final_view(shop, payment_id, seconds=SPIKE_MS / 1000 + 20)
    for _ in range(200):  # the slow PSP finishes its charge after we stopped waiting
        if await charged(shop, "adyen", payment_id):
            break
        await asyncio.sleep(0.1)

    at_adyen = await charged(shop, "adyen", payment_id)
    at_stripe = await charged(shop, "stripe", payment_id)
    assert at_adyen + at_stripe <= 1, f"charged twice: adyen {at_adyen}, stripe {at_stripe}"
    tried = await attempts(shop, payment_id)
    operations = [(a["connector"], a["operation"]) for a in tried]
    assert operations[0] == ("adyen", "authorize")
    assert ("stripe", "authorize") not in operations, "no failover while adyen may charge"
    # Unknown when we gave up waiting, so left `submitted`; reconciliation asks again
    # (it never resends) and finds the one charge the slow PSP made.
    assert view["status"] == "submitted", view
    psp = Psp(shop.kernel)
    try:
        assert await psp.reconcile(older_than_seconds=0) >= 1
    finally:
        await psp.close()
    settled = await shop.wait_status("alice", payment_id, "authorized")
    assert settled["outcome"]["connector"] == "adyen"
    assert await charged(shop, "adyen", payment_id) == 1
    assert await charged(shop, "stripe", payment_id) == 0
