"""Phone payments through the PSP adapter: approvals, declines, safe failover, refunds."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.psp.conftest import Shop
from tests.leaks import card_numbers_in, database_dump

REFUSED = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused


async def pay(shop: Shop, pan: str = "4242424242424242", amount: int = 1250) -> dict[str, Any]:
    """A call, a capture with the card keyed, submitted; returns the final payment view."""
    if "alice" not in shop.agents:
        await shop.agent("alice")
    call_id = f"CA{uuid.uuid4().hex[:8]}"
    await shop.call_for("alice", call_id)
    opened = await shop.open("alice", call_id, amount=amount)
    assert opened.status_code == 201, opened.text
    payment_id = opened.json()["id"]
    await shop.press(call_id, pan + ("#" if len(pan) != 16 else ""))
    await shop.press(call_id, future_expiry())
    await shop.press(call_id, CVV if not pan.startswith("37") else "1234")
    await shop.wait_status("alice", payment_id, "ready")
    submitted = await shop.client.post(
        f"/api/v1/payments/{payment_id}/submit", headers=shop.agents["alice"][1]
    )
    assert submitted.status_code == 202
    for _ in range(400):
        view = await shop.payment("alice", payment_id)
        if view["status"] not in ("submitted", "ready"):
            return view
        await asyncio.sleep(0.02)
    raise AssertionError(f"no outcome: {view}")


async def charged(shop: Shop, provider: str, payment_id: str) -> int:
    """How many times the simulator charged our payment (its reference) at `provider`."""
    return int((await shop.charges())["charges"][provider].get(payment_id, 0))


async def attempts(shop: Shop, payment_id: str) -> list[dict[str, Any]]:
    admin = shop.agents["root"][1]
    response = await shop.client.get(f"/api/v1/payments/{payment_id}/attempts", headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_an_approved_payment_reaches_the_agent(shop: Shop) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    view = await pay(shop)
    assert view["status"] == "authorized"
    assert view["outcome"]["connector"] == "stripe"
    assert view["outcome"]["psp_reference"]
    assert await charged(shop, "stripe", view["id"]) == 1


async def test_a_decline_is_final_and_never_fails_over(shop: Shop) -> None:
    await shop.routes(
        {"connector": "stripe", "base_url": shop.sim},
        {"connector": "adyen", "base_url": shop.sim, "priority": 1},
    )
    view = await pay(shop, "4000000000009995")
    assert view["status"] == "declined"
    assert view["outcome"]["decline_code"] == "insufficient_funds"
    tried = await attempts(shop, view["id"])
    assert [a["connector"] for a in tried] == ["stripe"]


async def paid_at_adyen_after_stripe_at(shop: Shop, stripe_url: str) -> None:
    """Stripe first (at `stripe_url`, which never takes the call), Adyen next: the
    payment fails over and Adyen charges it once."""
    await shop.routes(
        {"connector": "stripe", "base_url": stripe_url},
        {"connector": "adyen", "base_url": shop.sim, "priority": 1},
    )
    view = await pay(shop)
    assert view["status"] == "authorized"
    assert view["outcome"]["connector"] == "adyen"
    tried = await attempts(shop, view["id"])
    assert [(a["connector"], a["outcome"]) for a in tried] == [
        ("stripe", "error"),
        ("adyen", "approved"),
    ]
    assert await charged(shop, "adyen", view["id"]) == 1


async def test_a_refused_connection_fails_over_to_the_next_psp(shop: Shop) -> None:
    await paid_at_adyen_after_stripe_at(shop, REFUSED)


@pytest.fixture
def quick_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRANSACT_PSP_CONNECT_TIMEOUT", "0.5")


@pytest.fixture
def unanswering_psp() -> Iterator[str]:
    """A PSP address whose listen queue is full: the kernel drops each new connection
    request unanswered, so a connection never opens (a PSP behind a dead load balancer)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):  # the one queued, never accepted
            yield f"http://127.0.0.1:{port}"


async def test_a_psp_that_never_opens_the_connection_fails_over_after_the_connect_timeout(
    quick_connect: None, unanswering_psp: str, shop: Shop
) -> None:
    # Nothing was sent, so the next PSP may charge (a read timeout would not fail over).
    await paid_at_adyen_after_stripe_at(shop, unanswering_psp)


async def test_an_answer_lost_after_the_charge_is_asked_for_not_resent(shop: Shop) -> None:
    await shop.routes(
        {"connector": "checkout", "base_url": shop.sim},
        {"connector": "adyen", "base_url": shop.sim, "priority": 1},
    )
    await shop.fault("checkout", "after_charge=500")
    view = await pay(shop)
    assert view["status"] == "authorized"
    assert view["outcome"]["connector"] == "checkout", "no failover after an ambiguous error"
    assert await charged(shop, "checkout", view["id"]) == 1
    assert await charged(shop, "adyen", view["id"]) == 0


async def test_a_503_fails_over_once_the_psp_says_it_never_saw_the_payment(shop: Shop) -> None:
    # A 503 proves nothing by itself; Adyen's lookup by reference is consistent, so its
    # "no such payment" does, and the next PSP may charge.
    await shop.routes(
        {"connector": "adyen", "base_url": shop.sim},
        {"connector": "checkout", "base_url": shop.sim, "priority": 1},
    )
    await shop.fault("adyen", "status=503")
    view = await pay(shop)
    assert view["status"] == "authorized"
    assert view["outcome"]["connector"] == "checkout"
    assert await charged(shop, "adyen", view["id"]) == 0


async def test_refunds_partial_then_full_never_above_captured(shop: Shop) -> None:
    await shop.routes({"connector": "adyen", "base_url": shop.sim})
    view = await pay(shop, amount=1000)
    payment_id = view["id"]
    headers = shop.agents["alice"][1]
    part = await shop.client.post(
        f"/api/v1/payments/{payment_id}/refund", json={"amount": 300}, headers=headers
    )
    assert part.status_code == 200, part.text
    assert part.json()["refunded"] == 300
    assert await shop.wait_status("alice", payment_id, "partially_refunded")
    too_much = await shop.client.post(
        f"/api/v1/payments/{payment_id}/refund", json={"amount": 701}, headers=headers
    )
    assert (too_much.status_code, too_much.json()["error"]["code"]) == (422, "refund_too_large")
    rest = await shop.client.post(f"/api/v1/payments/{payment_id}/refund", json={}, headers=headers)
    assert rest.json()["refunded"] == 1000
    assert rest.json()["status"] == "refunded"
    await shop.wait_status("alice", payment_id, "refunded")
    again = await shop.client.post(
        f"/api/v1/payments/{payment_id}/refund", json={}, headers=headers
    )
    assert again.status_code == 409


async def test_no_card_data_in_any_stored_row(shop: Shop) -> None:
    await shop.routes(
        {"connector": "stripe", "base_url": shop.sim},
        {"connector": "checkout", "base_url": shop.sim, "priority": 1},
    )
    await pay(shop, "4242424242424242")
    await pay(shop, "4000000000000002")
    dump = await database_dump(shop.kernel.db.engine)
    assert card_numbers_in(dump) == []
    assert "4242424242424242" not in dump
    assert "4000000000000002" not in dump


async def test_routes_are_validated_and_credentials_never_shown(shop: Shop) -> None:
    admin = await shop.agent("root", "admin")
    bad = await shop.client.put(
        "/api/v1/psp/routes",
        json={"routes": [{"connector": "stripe"}], "credentials": {}},
        headers=admin,
    )
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "invalid_route")
    assert "secret_key" in bad.json()["error"]["message"]
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    shown = await shop.client.get("/api/v1/psp/routes", headers=admin)
    assert shown.json()["credentials_for"] == ["adyen", "checkout", "stripe"]
    assert "sk_test_simulator" not in shown.text


async def test_fifty_concurrent_submits_charge_once(shop: Shop) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    await shop.agent("alice")
    await shop.call_for("alice", "CA-many")
    payment_id = (await shop.open("alice", "CA-many")).json()["id"]
    await shop.press("CA-many", "4242424242424242")
    await shop.press("CA-many", future_expiry())
    await shop.press("CA-many", CVV)
    await shop.wait_status("alice", payment_id, "ready")
    headers = {**shop.agents["alice"][1], "Idempotency-Key": "submit-once"}
    answers = await asyncio.gather(
        *(
            shop.client.post(f"/api/v1/payments/{payment_id}/submit", headers=headers)
            for _ in range(50)
        )
    )
    assert {a.status_code for a in answers} == {202}
    await shop.wait_status("alice", payment_id, "authorized")
    await asyncio.sleep(0.3)
    assert await charged(shop, "stripe", payment_id) == 1
    assert len(shop.events("payment.authorized")) == 1


async def test_a_timeout_is_followed_by_a_status_query_not_a_second_psp(shop: Shop) -> None:
    await shop.routes(
        {"connector": "stripe", "base_url": shop.sim},
        {"connector": "adyen", "base_url": shop.sim, "priority": 1},
    )
    await shop.fault("stripe", "after_charge=timeout")
    view = await pay(shop)
    assert view["status"] == "authorized"
    assert view["outcome"]["connector"] == "stripe"
    assert await charged(shop, "stripe", view["id"]) == 1
    assert await charged(shop, "adyen", view["id"]) == 0


async def test_a_payment_left_mid_flight_is_reconciled_by_asking(shop: Shop) -> None:
    """The process dies after the PSP charged and before the outcome was stored."""
    import json

    from transact.contracts.payments import PaymentRequested
    from transact.psp import Psp
    from transact.psp.connectors.base import Outcome

    await shop.routes({"connector": "checkout", "base_url": shop.sim})
    card = json.dumps({"pan": "4242424242424242", "expiry": future_expiry(), "cvv": CVV})
    ref = await shop.kernel.vault.put(shop.tenant_id, card.encode())
    request = PaymentRequested(
        tenant_id=shop.tenant_id,
        payment_id="pay_crashed",
        capture_id="pay_crashed",
        amount=500,
        currency="GBP",
        reference="R",
        channel="phone",
        agent_id=None,
        vault_ref=ref,
        idempotency_key="pay_crashed:authorize",
    )
    psp = Psp(shop.kernel)
    try:
        assert await psp._claim(request)
        setup = await psp.setup(shop.tenant_id)
        connector = psp.connector(setup, setup.routes[0])
        from transact.psp.connectors.base import Order
        from transact.psp.flow import card_from_vault

        order = Order(
            reference="pay_crashed",
            amount=500,
            currency="GBP",
            idempotency_key=request.idempotency_key,
            card=card_from_vault(await shop.kernel.vault.take(shop.tenant_id, ref)),
        )
        await shop.fault("checkout", "after_charge=reset")
        lost = await psp._attempt("pay_crashed", connector, order)
        assert lost.outcome is Outcome.ERROR
        assert not lost.may_retry_elsewhere
        # ...and here the process died. After restart:
        assert await psp.reconcile(older_than_seconds=0) == 1
    finally:
        await psp.close()
    admin = shop.agents["root"][1]
    tried = await shop.client.get("/api/v1/payments/pay_crashed/attempts", headers=admin)
    assert [a["operation"] for a in tried.json()] == ["authorize"], "never re-sent"
    assert await charged(shop, "checkout", "pay_crashed") == 1
    await asyncio.sleep(0.1)
    assert [e.payment_id for e in shop.events("payment.authorized")] == [  # type: ignore[attr-defined]
        "pay_crashed"
    ]


async def test_auth_only_then_capture_in_parts_or_void(shop: Shop) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim}, mode="auth")
    view = await pay(shop, amount=1000)
    assert view["status"] == "authorized"
    headers = shop.agents["alice"][1]
    nothing_captured = await shop.client.post(
        f"/api/v1/payments/{view['id']}/refund", json={}, headers=headers
    )
    assert nothing_captured.status_code == 422
    part = await shop.client.post(
        f"/api/v1/payments/{view['id']}/capture", json={"amount": 600}, headers=headers
    )
    assert part.status_code == 200, part.text
    assert part.json()["captured"] == 600
    over = await shop.client.post(
        f"/api/v1/payments/{view['id']}/capture", json={"amount": 401}, headers=headers
    )
    assert (over.status_code, over.json()["error"]["code"]) == (422, "capture_too_large")
    no_void = await shop.client.post(f"/api/v1/payments/{view['id']}/void", headers=headers)
    assert no_void.status_code == 409

    other = await pay(shop, amount=700)
    voided = await shop.client.post(f"/api/v1/payments/{other['id']}/void", headers=headers)
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    await shop.wait_status("alice", other["id"], "voided")
    late = await shop.client.post(
        f"/api/v1/payments/{other['id']}/capture", json={}, headers=headers
    )
    assert late.status_code == 409


async def test_an_open_circuit_skips_a_failing_psp(shop: Shop) -> None:
    await shop.routes(
        {"connector": "stripe", "base_url": REFUSED},
        {"connector": "checkout", "base_url": shop.sim, "priority": 1},
    )
    for _ in range(5):  # five refusals in a row open stripe's circuit
        assert (await pay(shop))["outcome"]["connector"] == "checkout"
    view = await pay(shop)
    tried = await attempts(shop, view["id"])
    assert [a["connector"] for a in tried] == ["checkout"], "stripe skipped while open"


async def test_a_success_resets_the_count_of_failures(shop: Shop) -> None:
    failing = ({"connector": "stripe", "base_url": REFUSED},)
    fallback = {"connector": "checkout", "base_url": shop.sim, "priority": 1}
    await shop.routes(*failing, fallback)
    for _ in range(4):  # one short of opening the circuit
        assert (await pay(shop))["outcome"]["connector"] == "checkout"
    await shop.routes({"connector": "stripe", "base_url": shop.sim}, fallback)
    assert (await pay(shop))["outcome"]["connector"] == "stripe"  # healthy again: reset
    await shop.routes(*failing, fallback)
    for _ in range(4):
        assert (await pay(shop))["outcome"]["connector"] == "checkout"
    view = await pay(shop)
    tried = await attempts(shop, view["id"])
    assert [a["connector"] for a in tried] == ["stripe", "checkout"], "not open: it was reset"


async def test_a_refund_done_but_answered_with_a_5xx_is_recorded_once(shop: Shop) -> None:
    await shop.routes({"connector": "adyen", "base_url": shop.sim})
    view = await pay(shop, amount=1000)
    payment_id = view["id"]
    headers = shop.agents["alice"][1]
    # The PSP refunds, then answers 500: sent again under the same key, the PSP says
    # what it did, and the refund is recorded once.
    await shop.fault("adyen", "after_charge=500")
    done = await shop.client.post(
        f"/api/v1/payments/{payment_id}/refund", json={"amount": 400}, headers=headers
    )
    assert done.status_code == 200, done.text
    assert done.json()["refunded"] == 400
    async with httpx.AsyncClient() as http:  # the simulator's own books
        found = (await http.get(f"{shop.sim}/_sim/payments")).json()
    at_psp = [p for p in found["data"] if p["reference"] == payment_id]
    assert sum(p["refunded"] for p in at_psp) == 400


async def test_a_refund_the_psp_never_answers_is_reported_as_unknown(shop: Shop) -> None:
    await shop.routes({"connector": "adyen", "base_url": shop.sim})
    view = await pay(shop, amount=1000)
    await shop.fault("adyen", "status=500", count=3)  # the first try and both resends
    answer = await shop.client.post(
        f"/api/v1/payments/{view['id']}/refund",
        json={"amount": 400},
        headers=shop.agents["alice"][1],
    )
    assert answer.status_code == 502
    assert answer.json()["error"]["code"] == "refund_outcome_unknown"
