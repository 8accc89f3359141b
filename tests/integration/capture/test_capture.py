"""Phone capture end to end over the in-process bus, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta

import pytest

from tests.integration.capture.conftest import Desk
from tests.leaks import card_numbers_in, database_dump
from tests.waiting import eventually
from transact.capture.domain import Card
from transact.contracts.capture import CaptureProgress
from transact.contracts.payments import PaymentRequested
from transact.kernel.errors import VaultError

PAN = "4111111111111111"
CVV = "737"


def future_expiry() -> str:
    later = date.today() + timedelta(days=800)
    return f"{later.month:02d}{later.year % 100:02d}"


async def ready_payment(desk: Desk, call_id: str = "CA1") -> str:
    await desk.agent("alice")
    await desk.call_for("alice", call_id)
    opened = await desk.open("alice", call_id)
    assert opened.status_code == 201, opened.text
    payment_id = str(opened.json()["id"])
    await desk.press(call_id, PAN)
    await desk.press(call_id, future_expiry())
    await desk.press(call_id, CVV)
    await desk.wait_status("alice", payment_id, "ready")
    return payment_id


async def test_keys_become_a_card_and_a_payment_request(desk: Desk) -> None:
    payment_id = await ready_payment(desk)
    view = await desk.payment("alice", payment_id)
    assert view["card"] == {"brand": "visa", "bin": "411111", "last4": "1111"}
    assert [f["status"] for f in view["fields"]] == ["valid", "valid", "valid"]
    assert PAN not in json.dumps(view)

    submitted = await desk.client.post(
        f"/api/v1/payments/{payment_id}/submit", headers=desk.agents["alice"][1]
    )
    assert submitted.status_code == 202
    assert submitted.json()["status"] == "submitted"
    await eventually(lambda: bool(desk.events("payment.requested")))
    request = desk.events("payment.requested")[0]
    assert isinstance(request, PaymentRequested)
    assert (request.amount, request.currency, request.payment_id) == (1250, "GBP", payment_id)

    # The PSP adapter's single-use entry holds the card; nothing else does.
    card = Card.from_bytes(await desk.kernel.vault.take(desk.tenant_id, request.vault_ref))
    assert (card.value("pan"), card.value("expiry"), card.value("cvv")) == (
        PAN,
        future_expiry(),
        CVV,
    )
    with pytest.raises(VaultError):
        await desk.kernel.vault.take(desk.tenant_id, request.vault_ref)

    # Events and rows carry counts and verdicts, never the card.
    progress = [p for p in desk.events("capture.progress") if isinstance(p, CaptureProgress)]
    pan_keys = [p.digits for p in progress if p.field == "pan" and p.event == "key"]
    assert pan_keys == list(range(1, 17))
    assert len(desk.events("capture.completed")) == 1
    for message in desk.published:
        assert card_numbers_in(message.encode()) == []
        assert PAN.encode() not in message.encode()
    dump = await database_dump(desk.kernel.db.engine)
    assert card_numbers_in(dump) == []
    assert PAN not in dump


async def test_submit_twice_requests_one_payment(desk: Desk) -> None:
    payment_id = await ready_payment(desk)
    headers = desk.agents["alice"][1]
    for _ in range(3):
        response = await desk.client.post(f"/api/v1/payments/{payment_id}/submit", headers=headers)
        assert response.status_code == 202
    await eventually(lambda: bool(desk.events("payment.requested")))
    await asyncio.sleep(0.2)
    assert len(desk.events("payment.requested")) == 1


async def test_the_session_draft_is_gone_after_submit_cancel_hangup_and_expiry(
    desk: Desk,
) -> None:
    from transact.capture import store

    async def draft_exists(payment_id: str) -> bool:
        async with desk.kernel.db.transaction() as session:
            row = await store.get(session, payment_id)
        assert row is not None
        try:
            await desk.kernel.vault.get(desk.tenant_id, row.vault_ref)
        except VaultError:
            return False
        return True

    submitted = await ready_payment(desk, "CA1")
    assert await draft_exists(submitted)
    await desk.client.post(f"/api/v1/payments/{submitted}/submit", headers=desk.agents["alice"][1])
    assert not await draft_exists(submitted)

    await desk.call_for("alice", "CA2")
    cancelled = (await desk.open("alice", "CA2")).json()["id"]
    await desk.press("CA2", "4111")
    response = await desk.client.post(
        f"/api/v1/payments/{cancelled}/cancel", headers=desk.agents["alice"][1]
    )
    assert response.json()["status"] == "cancelled"
    assert not await draft_exists(cancelled)

    await desk.call_for("alice", "CA3")
    hung_up = (await desk.open("alice", "CA3")).json()["id"]
    await desk.hang_up("CA3")
    view = await desk.wait_status("alice", hung_up, "cancelled")
    assert view["cancel_reason"] == "call_ended"
    assert not await draft_exists(hung_up)

    await desk.call_for("alice", "CA4")
    expiring = (await desk.open("alice", "CA4")).json()["id"]
    from transact.capture.flow import Capture
    from transact.contracts import utcnow

    assert await Capture(desk.kernel).expire_overdue(utcnow() + timedelta(minutes=11)) == 1
    assert (await desk.payment("alice", expiring))["status"] == "expired"
    assert not await draft_exists(expiring)
    await eventually(lambda: len(desk.events("capture.cancelled")) == 3)


async def test_opening_errors_are_clear(desk: Desk) -> None:
    await desk.agent("alice")
    await desk.agent("bob")
    await desk.call_for("alice", "CA1")
    first = await desk.open("alice", "CA1")
    assert first.status_code == 201
    headers = desk.agents["alice"][1]
    cases = [
        ({"amount": 0}, 422, "invalid_amount"),
        ({"amount": -5}, 422, "invalid_amount"),
        ({"amount": 12.5}, 422, "invalid_request"),
        ({"amount": "1250"}, 422, "invalid_request"),
        ({"amount": True}, 422, "invalid_request"),
        ({"currency": "XYZ"}, 422, "invalid_currency"),
        ({"currency": "gbp"}, 422, "invalid_currency"),
        ({"reference": ""}, 422, "invalid_request"),
        ({"fields": ["cvv", "pan"]}, 422, "invalid_policy"),
    ]
    for change, status, code in cases:
        body = {"amount": 1250, "currency": "GBP", "reference": "R", **change}
        response = await desk.client.post("/api/v1/calls/CA1/payments", json=body, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), change
    second = await desk.client.post(
        "/api/v1/calls/CA1/payments",
        json={"amount": 100, "currency": "GBP", "reference": "R"},
        headers=headers,
    )
    assert (second.status_code, second.json()["error"]["code"]) == (409, "capture_in_progress")
    unknown = await desk.client.post(
        "/api/v1/calls/nope/payments",
        json={"amount": 100, "currency": "GBP", "reference": "R"},
        headers=headers,
    )
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "call_not_found")
    not_hers = await desk.client.post(
        "/api/v1/calls/CA1/payments",
        json={"amount": 100, "currency": "GBP", "reference": "R"},
        headers=desk.agents["bob"][1],
    )
    assert (not_hers.status_code, not_hers.json()["error"]["code"]) == (403, "not_your_call")
    anonymous = await desk.client.post(
        "/api/v1/calls/CA1/payments", json={"amount": 100, "currency": "GBP", "reference": "R"}
    )
    assert anonymous.status_code == 401


async def test_actions_on_a_payment_check_state_and_owner(desk: Desk) -> None:
    await desk.agent("alice")
    await desk.agent("bob")
    await desk.agent("sue", "supervisor")
    await desk.call_for("alice", "CA1")
    payment_id = (await desk.open("alice", "CA1")).json()["id"]
    alice, bob, sue = (desk.agents[n][1] for n in ("alice", "bob", "sue"))
    early = await desk.client.post(f"/api/v1/payments/{payment_id}/submit", headers=alice)
    assert (early.status_code, early.json()["error"]["code"]) == (409, "not_ready")
    assert (await desk.client.get(f"/api/v1/payments/{payment_id}", headers=bob)).status_code == 404
    assert (await desk.client.get(f"/api/v1/payments/{payment_id}", headers=sue)).status_code == 200
    bad_field = await desk.client.post(
        f"/api/v1/payments/{payment_id}/recapture", json={"field": "pin"}, headers=alice
    )
    assert (bad_field.status_code, bad_field.json()["error"]["code"]) == (422, "unknown_field")
    missing = await desk.client.post("/api/v1/payments/pay_nothing/cancel", headers=alice)
    assert missing.status_code == 404


async def test_recapture_asks_for_one_field_again(desk: Desk) -> None:
    payment_id = await ready_payment(desk)
    headers = desk.agents["alice"][1]
    again = await desk.client.post(
        f"/api/v1/payments/{payment_id}/recapture", json={"field": "cvv"}, headers=headers
    )
    assert again.status_code == 200
    assert again.json()["status"] == "capturing"
    assert again.json()["current_field"] == "cvv"
    await desk.press("CA1", "123")
    view = await desk.wait_status("alice", payment_id, "ready")
    assert view["card"]["last4"] == "1111"


async def test_keys_arriving_out_of_order_are_applied_in_order(desk: Desk) -> None:
    await desk.agent("alice")
    await desk.call_for("alice", "CA1")
    payment_id = (await desk.open("alice", "CA1")).json()["id"]
    from transact.contracts.calls import CallKeypad, keypad_context

    async def send(seq: int, keys: str) -> None:
        import base64

        sealed = desk.kernel.vault.seal(desk.tenant_id, keys.encode(), keypad_context("CA1"))
        await desk.kernel.bus.publish(
            CallKeypad(
                tenant_id=desk.tenant_id,
                call_id="CA1",
                seq=seq,
                sealed=base64.b64encode(sealed).decode(),
            )
        )

    await send(2, "11111111")
    await send(1, "41111111")
    await send(2, "11111111")  # a redelivery changes nothing
    view = await desk.wait_status("alice", payment_id, "capturing")
    for _ in range(150):
        view = await desk.payment("alice", payment_id)
        if view["fields"][0]["status"] == "valid":
            break
        await asyncio.sleep(0.02)
    assert view["fields"][0]["status"] == "valid", view
    assert view["card"]["last4"] == "1111"


async def test_an_idempotency_key_replays_and_guards(desk: Desk) -> None:
    await desk.agent("alice")
    await desk.call_for("alice", "CA1")
    await desk.known_call("CA1")
    headers = {**desk.agents["alice"][1], "Idempotency-Key": "open-1"}
    body = {"amount": 1250, "currency": "GBP", "reference": "INV-1"}
    results = await asyncio.gather(
        *(
            desk.client.post("/api/v1/calls/CA1/payments", json=body, headers=headers)
            for _ in range(5)
        )
    )
    statuses = [r.status_code for r in results]
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}, [r.json() for r in results]
    ids = {r.json()["id"] for r in results if r.status_code == 201}
    assert len(ids) == 1, "concurrent duplicates open one capture"
    replay = await desk.client.post("/api/v1/calls/CA1/payments", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.json()["id"] in ids
    assert replay.headers["Idempotent-Replayed"] == "true"
    changed = await desk.client.post(
        "/api/v1/calls/CA1/payments", json={**body, "amount": 99}, headers=headers
    )
    assert (changed.status_code, changed.json()["error"]["code"]) == (422, "idempotency_key_reused")


async def test_admins_set_the_tenant_capture_policy(desk: Desk) -> None:
    await desk.agent("alice")
    admin = await desk.agent("root", "admin")
    policy = {
        "fields": ["pan", "expiry", "cvv", "postcode"],
        "accepted_brands": ["visa"],
        "max_attempts": 2,
        "ttl_seconds": 300,
    }
    saved = await desk.client.put("/api/v1/capture/settings", json=policy, headers=admin)
    assert saved.status_code == 200
    assert (await desk.client.get("/api/v1/capture/settings", headers=admin)).json() == policy
    for bad in (
        {"fields": ["expiry"]},
        {"accepted_brands": ["bitcoin"]},
        {"max_attempts": 0},
        {"ttl_seconds": 5},
    ):
        refused = await desk.client.put(
            "/api/v1/capture/settings", json={**policy, **bad}, headers=admin
        )
        assert refused.status_code == 422, bad
    agent_try = await desk.client.put(
        "/api/v1/capture/settings", json=policy, headers=desk.agents["alice"][1]
    )
    assert agent_try.status_code == 403

    await desk.call_for("alice", "CA1")
    opened = await desk.open("alice", "CA1")
    assert [f["name"] for f in opened.json()["fields"]] == policy["fields"]
    await desk.press("CA1", "5555555555554444#")  # Mastercard: not accepted here
    for _ in range(100):
        view = await desk.payment("alice", opened.json()["id"])
        if view["fields"][0]["attempts"]:
            break
        await asyncio.sleep(0.02)
    assert view["fields"][0]["attempts"] == 1
    assert "not accepted" in (view["fields"][0]["reason"] or "")
    await desk.press("CA1", "5555555555554444#")
    failed = await desk.wait_status("alice", opened.json()["id"], "cancelled")
    assert failed["cancel_reason"] == "failed"


async def test_keys_after_completion_announce_nothing_new(desk: Desk) -> None:
    payment_id = await ready_payment(desk)
    await desk.press("CA1", "999#")
    await asyncio.sleep(0.2)
    view = await desk.payment("alice", payment_id)
    assert view["status"] == "ready"
    await eventually(lambda: len(desk.events("capture.completed")) >= 1)
    assert len(desk.events("capture.completed")) == 1
