"""A Jepsen-style set check, in-process: a seeded random run of phone payments and
refunds with a random PSP fault injected before each operation (5xx before or after
processing, dropped connections, held requests, latency), then reconciliation, then
the invariants over everything the client was told and everything the PSP did:

* every acknowledged payment (submit answered 202) has its one row in the database;
* each payment is charged at most once across all PSPs, and exactly once if and only
  if our row says it was authorized;
* refunded <= captured <= authorized, and what the PSP refunded is what we recorded,
  at least what the client was told (each 2xx refund);
* no charge at the PSP without a payment row.

The seed is printed; `TRANSACT_FAULT_SEED=N` replays a run. (Not here: killing the
PSP adapter process mid-run; that crash is `tests/e2e/test_psp_crash.py`.)
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.psp.conftest import Shop
from transact.psp import Psp

pytestmark = [pytest.mark.faults]

PAYMENTS = 10
# `after_charge=503` found a double charge here (seed 7: a 503 was taken as "refused
# before processing"); fixed, `test_a_503_after_the_charge_is_not_proof_of_no_charge`.
PAY_FAULTS = [
    None,
    None,
    "status=503",
    "after_charge=503",
    "status=500",
    "reset",
    "after_charge=500",
    "after_charge=reset",
    "latency=300",
    "timeout=1500",
]
# `after_charge=500` on a refund found one the PSP made and we never recorded (seed 7:
# refunded at the PSP 1688, recorded 0); fixed by sending it again under its key.
REFUND_FAULTS = [None, None, "status=503", "reset", "latency=200", "after_charge=500"]
CHARGED = ("authorized", "partially_refunded", "refunded")


async def submit(shop: Shop, rng: random.Random) -> tuple[str, bool]:
    """One phone payment, keyed and submitted; (id, acknowledged)."""
    call_id = f"CA{uuid.uuid4().hex[:8]}"
    await shop.call_for("alice", call_id)
    opened = await shop.open("alice", call_id, amount=rng.randrange(100, 5000))
    assert opened.status_code == 201, opened.text
    payment_id = str(opened.json()["id"])
    await shop.press(call_id, "4242424242424242")
    await shop.press(call_id, future_expiry())
    await shop.press(call_id, CVV)
    await shop.wait_status("alice", payment_id, "ready")
    answer = await shop.client.post(
        f"/api/v1/payments/{payment_id}/submit", headers=shop.agents["alice"][1]
    )
    assert answer.status_code < 500, answer.text
    return payment_id, answer.status_code == 202


async def settled(shop: Shop, payment_id: str) -> str:
    for _ in range(300):
        status = str((await shop.payment("alice", payment_id))["status"])
        if status not in ("ready", "submitted"):
            return status
        await asyncio.sleep(0.05)
    return "submitted"


async def rows(shop: Shop) -> dict[str, dict[str, Any]]:
    async with shop.kernel.db.transaction() as session:
        found = await session.execute(
            text(
                "SELECT id, status, authorized_amount, captured_amount, refunded_amount "
                "FROM psp_payments"
            )
        )
        return {r.id: dict(r._mapping) for r in found}


async def reset(shop: Shop) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(f"{shop.sim}/_sim/reset")


async def sim(shop: Shop, path: str) -> Any:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{shop.sim}{path}")).json()


@pytest.fixture
async def clean_simulator(shop: Shop) -> AsyncIterator[None]:
    """Faults queued and never met must not reach the worker's next test."""
    yield
    await reset(shop)


@pytest.mark.usefixtures("clean_simulator")
@pytest.mark.parametrize("shop", ["sqlite"], indirect=True)
async def test_a_random_fault_run_keeps_every_acknowledged_payment_exactly_once(
    shop: Shop,
) -> None:
    seed = int(os.environ.get("TRANSACT_FAULT_SEED") or random.randrange(2**32))
    print(f"fault run seed: {seed} (replay with TRANSACT_FAULT_SEED={seed})")
    rng = random.Random(seed)
    await reset(shop)  # this worker's simulator, ours alone now
    await shop.routes(
        {"connector": "stripe", "base_url": shop.sim},
        {"connector": "adyen", "base_url": shop.sim, "priority": 1},
    )
    await shop.agent("alice")
    acknowledged: list[str] = []
    told_refunded: dict[str, int] = {}
    for _ in range(PAYMENTS):
        fault = rng.choice(PAY_FAULTS)
        if fault:
            await shop.fault(rng.choice(["stripe", "adyen"]), fault)
        payment_id, acked = await submit(shop, rng)
        if acked:
            acknowledged.append(payment_id)
        if await settled(shop, payment_id) != "authorized" or rng.random() < 0.3:
            continue
        fault = rng.choice(REFUND_FAULTS)
        if fault:
            await shop.fault(rng.choice(["stripe", "adyen"]), fault)
        amount = (await shop.payment("alice", payment_id))["amount"]
        refund = rng.choice([None, rng.randrange(1, amount + 1)])
        answer = await shop.client.post(
            f"/api/v1/payments/{payment_id}/refund",
            json={} if refund is None else {"amount": refund},
            headers=shop.agents["alice"][1],
        )
        assert answer.status_code < 500 or answer.status_code in (502, 503), answer.text
        if answer.status_code < 300:
            told_refunded[payment_id] = refund or amount

    psp = Psp(shop.kernel)
    try:
        await psp.reconcile(older_than_seconds=0)
    finally:
        await psp.close()

    ours = await rows(shop)
    charges = (await sim(shop, "/_sim/charges"))["charges"]
    at_psp = (await sim(shop, "/_sim/payments"))["data"]
    for payment_id in acknowledged:
        assert payment_id in ours, f"acknowledged payment {payment_id} lost"
    for payment_id, row in ours.items():
        times = sum(charges[p].get(payment_id, 0) for p in charges)
        assert times <= 1, f"{payment_id} charged {times} times (seed {seed})"
        if row["status"] in CHARGED:
            assert times == 1, f"{payment_id} {row['status']} but not charged (seed {seed})"
        elif row["status"] != "submitted":
            assert times == 0, f"{payment_id} {row['status']} yet charged (seed {seed})"
        assert row["refunded_amount"] <= row["captured_amount"] <= row["authorized_amount"]
        refunded_at_psp = sum(p["refunded"] for p in at_psp if p["reference"] == payment_id)
        assert refunded_at_psp == row["refunded_amount"], (payment_id, seed)
        assert told_refunded.get(payment_id, 0) <= row["refunded_amount"], (payment_id, seed)
    for provider, by_reference in charges.items():
        for reference in by_reference:
            assert reference in ours, f"charge at {provider} for unknown {reference} ({seed})"


@pytest.mark.parametrize("shop", ["sqlite"], indirect=True)
async def test_a_503_after_the_charge_is_not_proof_of_no_charge(shop: Shop) -> None:
    await shop.routes(
        {"connector": "stripe", "base_url": shop.sim},
        {"connector": "adyen", "base_url": shop.sim, "priority": 1},
    )
    await reset(shop)
    await shop.agent("alice")
    await shop.fault("stripe", "after_charge=503")
    payment_id, acked = await submit(shop, random.Random(0))
    assert acked
    await settled(shop, payment_id)
    charges = (await sim(shop, "/_sim/charges"))["charges"]
    assert sum(charges[p].get(payment_id, 0) for p in charges) == 1
