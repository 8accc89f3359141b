"""An agent turns an open phone capture into a payment link (same amount and reference),
over real HTTP on SQLite: remote learns of phone captures from capture's events only, and
capture closes the phone capture, card data wiped, when remote asks on the bus."""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from typing import Any

import httpx

from tests.integration.capture.conftest import PASSWORD
from tests.integration.remote.conftest import VISA, Desk, open_page, page_state, post_card
from tests.leaks import card_numbers_in
from tests.waiting import eventually
from transact.auth import Accounts, SigningKeys
from transact.capture import store as capture_store
from transact.capture.flow import Capture
from transact.contracts import utcnow
from transact.contracts.calls import CallAssigned, CallKeypad, keypad_context
from transact.contracts.capture import CaptureCancelled, CaptureCancelRequested, CaptureProgress
from transact.contracts.links import LinkCancelled, LinkCreated
from transact.contracts.payments import PaymentAuthorized, PaymentRequested
from transact.kernel.errors import VaultError
from transact.remote import store
from transact.remote.domain import PhoneStatus
from transact.remote.flow import Remote

LINKS = "/api/v1/payment-links"


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


async def hand_call(desk: Desk, username: str, call_id: str) -> None:
    """Correlation's word that `username` holds the call; wait until capture knows it."""
    await desk.user(username)
    await desk.kernel.bus.publish(
        CallAssigned(tenant_id=desk.tenant_id, call_id=call_id, agent_id=desk.ids[username])
    )

    async def known() -> bool:
        async with desk.kernel.db.transaction() as session:
            call = await capture_store.call(session, call_id)
        return call is not None and call.agent_id == desk.ids[username]

    for _ in range(250):
        if await known():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"capture never heard of call {call_id}")


async def projected(desk: Desk, payment_id: str, status: PhoneStatus) -> None:
    """Wait until remote's view of the phone capture has reached `status`."""
    for _ in range(500):
        async with desk.kernel.db.transaction() as session:
            seen = await store.phone_capture(session, payment_id)
        if seen is not None and seen.status is status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"remote never saw {payment_id} {status.value}")


async def phone_capture(
    desk: Desk, call_id: str = "CA1", username: str = "alice", **body: Any
) -> str:
    """An agent's open phone capture that remote has heard of."""
    await hand_call(desk, username, call_id)
    payload = {"amount": 4999, "currency": "GBP", "reference": "ORDER-77", **body}
    opened = await desk.http.post(
        f"/api/v1/calls/{call_id}/payments", json=payload, headers=await desk.user(username)
    )
    assert opened.status_code == 201, opened.text
    payment_id = str(opened.json()["id"])
    await projected(desk, payment_id, PhoneStatus.CAPTURING)
    return payment_id


async def press(desk: Desk, call_id: str, seq: int, keys: str) -> None:
    sealed = desk.kernel.vault.seal(desk.tenant_id, keys.encode(), keypad_context(call_id))
    await desk.kernel.bus.publish(
        CallKeypad(
            tenant_id=desk.tenant_id,
            call_id=call_id,
            seq=seq,
            sealed=base64.b64encode(sealed).decode(),
        )
    )


async def convert(
    desk: Desk, payment_id: str, username: str = "alice", **body: Any
) -> httpx.Response:
    payload = {"from_payment_id": payment_id, "channel": "chat", **body}
    return await desk.http.post(LINKS, json=payload, headers=await desk.user(username))


async def payment(desk: Desk, payment_id: str, username: str = "alice") -> dict[str, Any]:
    response = await desk.http.get(
        f"/api/v1/payments/{payment_id}", headers=await desk.user(username)
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_payment(desk: Desk, payment_id: str, status: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for _ in range(500):
        seen = await payment(desk, payment_id)
        if seen["status"] == status:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"payment stayed {seen.get('status')!r}, wanted {status!r}")


async def test_an_open_phone_capture_becomes_a_link_the_customer_pays(desk: Desk) -> None:
    phone_id = await phone_capture(desk)
    await press(desk, "CA1", 1, VISA[:6])  # the customer began on the keypad, then gave up
    await eventually(
        lambda: any(
            isinstance(p, CaptureProgress) and p.capture_id == phone_id and p.digits == 6
            for p in desk.events("capture.progress")
        )
    )
    async with desk.kernel.db.transaction() as session:
        row = await capture_store.get(session, phone_id)
    assert row is not None
    vault_ref = row.vault_ref

    converted = await convert(desk, phone_id)
    assert converted.status_code == 201, converted.text
    link = converted.json()
    assert (link["amount"], link["currency"], link["reference"]) == (4999, "GBP", "ORDER-77")
    assert link["source_payment_id"] == phone_id
    assert link["agent_id"] == desk.ids["alice"]
    assert link["url"].startswith(f"{desk.url}/pay/")

    # The phone capture closes, its card draft wiped; the agent sees why.
    closed = await wait_payment(desk, phone_id, "cancelled")
    assert closed["cancel_reason"] == "replaced_by_link"
    try:
        await desk.kernel.vault.get(desk.tenant_id, vault_ref)
        raise AssertionError("the phone capture's card draft outlived it")
    except VaultError:
        pass
    await desk.wait_for("capture.cancelled")
    [cancelled] = [
        m
        for m in desk.events("capture.cancelled")
        if isinstance(m, CaptureCancelled) and m.capture_id == phone_id
    ]
    assert cancelled.reason == "replaced_by_link"
    assert cancelled.link_id == link["id"]
    assert cancelled.agent_id == desk.ids["alice"]
    [created] = desk.events("link.created")
    assert isinstance(created, LinkCreated)
    assert created.source_payment_id == phone_id
    assert created.agent_id == desk.ids["alice"]
    await projected(desk, phone_id, PhoneStatus.CANCELLED)

    # The customer pays on the page: the same amount and reference reach the PSP.
    async with desk.customer() as customer:
        page, csrf = await open_page(customer, link["url"])
        assert "£49.99" in page.text
        assert "ORDER-77" in page.text
        posted = await post_card(customer, csrf, VISA)
        assert posted.status_code == 303
        await page_state(customer, "paid")
    done = await desk.wait_link(link["id"], lambda seen: seen["status"] == "completed")
    assert done["source_payment_id"] == phone_id
    [authorized] = await desk.wait_for("payment.authorized")
    assert isinstance(authorized, PaymentAuthorized)
    assert authorized.payment_id == done["payment_id"] != phone_id
    requested = [
        m
        for m in desk.events("payment.requested")
        if isinstance(m, PaymentRequested) and m.payment_id == done["payment_id"]
    ]
    assert [(m.amount, m.currency, m.reference, m.channel) for m in requested] == [
        (4999, "GBP", "ORDER-77", "link")
    ]
    paid = await payment(desk, done["payment_id"])
    assert (paid["status"], paid["amount"], paid["reference"]) == ("authorized", 4999, "ORDER-77")
    # The phone capture was never charged, and no card number travelled on the bus.
    assert not [
        m
        for m in desk.events("payment.requested")
        if isinstance(m, PaymentRequested) and m.payment_id == phone_id
    ]
    for message in desk.published:
        assert card_numbers_in(message.encode()) == []


async def test_converting_refuses_what_it_must(desk: Desk) -> None:
    phone_id = await phone_capture(desk)

    # Another agent's payment, an unknown one: not found, as for any other resource.
    for username, payment_id in (("bob", phone_id), ("alice", "pay_unknown")):
        hidden = await convert(desk, payment_id, username)
        assert hidden.status_code == 404, hidden.text
        assert error_code(hidden) == "not_found"

    # A body that names another sum or reference than the capture's.
    for body in ({"amount": 5000}, {"currency": "EUR"}, {"reference": "ORDER-78"}):
        refused = await convert(desk, phone_id, **body)
        assert refused.status_code == 422, (body, refused.text)
        assert error_code(refused) == "source_mismatch", body
    bad_channel = await convert(desk, phone_id, channel="fax")
    assert error_code(bad_channel) == "invalid_channel"
    no_to = await convert(desk, phone_id, channel="sms")
    assert error_code(no_to) == "missing_destination"
    assert not desk.events("link.created")

    # Repeating the capture's own terms is fine.
    same = await convert(desk, phone_id, amount=4999, currency="GBP", reference="ORDER-77")
    assert same.status_code == 201, same.text
    # Once turned into a link, it cannot be turned into another.
    again = await convert(desk, phone_id)
    assert again.status_code == 409
    assert error_code(again) == "not_capturing"
    await projected(desk, phone_id, PhoneStatus.CANCELLED)
    later = await convert(desk, phone_id)
    assert later.status_code == 409

    # A capture the agent cancelled is no longer capturing.
    cancelled_id = await phone_capture(desk, "CA2")
    response = await desk.http.post(
        f"/api/v1/payments/{cancelled_id}/cancel", headers=await desk.user("alice")
    )
    assert response.status_code == 200, response.text
    await projected(desk, cancelled_id, PhoneStatus.CANCELLED)
    gone = await convert(desk, cancelled_id)
    assert gone.status_code == 409
    assert error_code(gone) == "not_capturing"

    # A plain link still needs its terms.
    bare = await desk.http.post(
        LINKS, json={"channel": "chat", "currency": "GBP"}, headers=await desk.user("alice")
    )
    assert bare.status_code == 422
    assert error_code(bare) == "invalid_amount"
    assert len(desk.events("link.created")) == 1


async def test_another_tenants_payment_is_not_found(desk: Desk) -> None:
    phone_id = await phone_capture(desk)
    accounts = Accounts(desk.kernel, SigningKeys(desk.kernel))
    other = await accounts.create_tenant("elsewhere", mfa_required=False)
    await accounts.create_user(other.id, "eve", "admin", PASSWORD)
    login = await desk.http.post(
        "/api/v1/auth/login", json={"tenant": "elsewhere", "username": "eve", "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    desk.http.cookies.clear()
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    response = await desk.http.post(
        LINKS, json={"from_payment_id": phone_id, "channel": "chat"}, headers=headers
    )
    assert response.status_code == 404
    assert error_code(response) == "not_found"


async def test_a_supervisor_may_convert_and_the_link_stays_with_the_agent(desk: Desk) -> None:
    phone_id = await phone_capture(desk)
    await desk.user("carol", "supervisor")
    converted = await convert(desk, phone_id, "carol")
    assert converted.status_code == 201, converted.text
    assert converted.json()["agent_id"] == desk.ids["alice"]
    # Alice, on the call, follows the link.
    assert (await desk.get(converted.json()["id"], "alice"))["source_payment_id"] == phone_id


async def test_a_transferred_call_takes_its_capture_to_the_new_agent(desk: Desk) -> None:
    phone_id = await phone_capture(desk)
    await hand_call(desk, "bob", "CA1")

    async def agent_of() -> str | None:
        async with desk.kernel.db.transaction() as session:
            seen = await store.phone_capture(session, phone_id)
        return seen.agent_id if seen else None

    for _ in range(250):
        if await agent_of() == desk.ids["bob"]:
            break
        await asyncio.sleep(0.02)
    assert (await convert(desk, phone_id, "alice")).status_code == 404
    assert (await convert(desk, phone_id, "bob")).status_code == 201


async def test_an_idempotency_key_replays_the_conversion(desk: Desk) -> None:
    phone_id = await phone_capture(desk)
    headers = {**(await desk.user("alice")), "Idempotency-Key": "convert-1"}
    body = {"from_payment_id": phone_id, "channel": "chat"}
    first = await desk.http.post(LINKS, json=body, headers=headers)
    second = await desk.http.post(LINKS, json=body, headers=headers)
    assert first.status_code == second.status_code == 201, second.text
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = await desk.http.post(LINKS, json={**body, "channel": "email"}, headers=headers)
    assert other.status_code == 422
    assert error_code(other) == "idempotency_key_reused"
    await wait_payment(desk, phone_id, "cancelled")
    assert len(desk.events("link.created")) == 1


async def test_a_phone_payment_submitted_meanwhile_withdraws_the_link(desk: Desk) -> None:
    """Capture took the card and requested the payment before it got the request to close
    the capture: the link goes (reason `replaced`), so the customer is not asked twice."""
    phone_id = await phone_capture(desk)
    remote = Remote(desk.kernel)
    link = (await convert(desk, phone_id)).json()
    await remote.phone_submitted(desk.tenant_id, phone_id, desk.ids["alice"], 4999, "GBP", "X")
    seen = await desk.wait_link(link["id"], lambda s: s["status"] == "cancelled")
    assert seen["source_payment_id"] == phone_id
    [withdrawn] = await desk.wait_for("link.cancelled")
    assert isinstance(withdrawn, LinkCancelled)
    assert withdrawn.reason == "replaced"
    # Told again (at-least-once), nothing more happens.
    await remote.phone_submitted(desk.tenant_id, phone_id, desk.ids["alice"], 4999, "GBP", "X")
    assert len(desk.events("link.cancelled")) == 1


async def test_capture_ignores_a_cancel_request_for_a_capture_no_longer_open(
    desk: Desk,
) -> None:
    phone_id = await phone_capture(desk)
    await desk.http.post(f"/api/v1/payments/{phone_id}/cancel", headers=await desk.user("alice"))
    await wait_payment(desk, phone_id, "cancelled")
    await eventually(lambda: len(desk.events("capture.cancelled")) == 1)
    await Capture(desk.kernel).cancel_requested(
        CaptureCancelRequested(tenant_id=desk.tenant_id, capture_id=phone_id, link_id="lnk_x")
    )
    seen = await payment(desk, phone_id)
    assert seen["cancel_reason"] == "agent"
    # Another tenant's word closes nobody's capture.
    open_id = await phone_capture(desk, "CA2")
    await Capture(desk.kernel).cancel_requested(
        CaptureCancelRequested(tenant_id="tnt_other", capture_id=open_id, link_id="lnk_x")
    )
    assert (await payment(desk, open_id))["status"] == "capturing"
    await asyncio.sleep(0.1)
    assert len(desk.events("capture.cancelled")) == 1


async def test_remote_forgets_phone_captures_a_day_after_their_last_news(desk: Desk) -> None:
    phone_id = await phone_capture(desk)
    remote = Remote(desk.kernel)
    assert await remote.forget_phone_captures() == 0
    assert await remote.forget_phone_captures(utcnow() + timedelta(days=1, minutes=1)) == 1
    assert (await convert(desk, phone_id)).status_code == 404
