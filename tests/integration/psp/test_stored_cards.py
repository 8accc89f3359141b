"""Cards kept for later: saved after an approved phone payment, listed masked, charged by
token on the PSP that issued it (never elsewhere), deleted; never card data at rest."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.psp.conftest import Shop
from tests.integration.psp.test_payments import charged
from tests.leaks import card_numbers_in, database_dump
from transact.auth import Accounts, SigningKeys
from transact.kernel.audit import records_for
from transact.psp.store import stored_cards

PAN = "4242424242424242"
SQLITE_ONLY = pytest.mark.parametrize("shop", ["sqlite"], indirect=True)


async def pay(
    shop: Shop, pan: str = PAN, *, save_card: bool = True, amount: int = 1250
) -> dict[str, Any]:
    """A phone payment keyed and submitted by alice; its final view."""
    if "alice" not in shop.agents:
        await shop.agent("alice")
    call_id = f"CA{uuid.uuid4().hex[:8]}"
    await shop.call_for("alice", call_id)
    opened = await shop.open("alice", call_id, amount=amount, save_card=save_card)
    assert opened.status_code == 201, opened.text
    assert opened.json()["save_card"] is save_card
    payment_id = opened.json()["id"]
    await shop.press(call_id, pan)
    await shop.press(call_id, future_expiry())
    await shop.press(call_id, CVV)
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


async def supervisor(shop: Shop) -> dict[str, str]:
    if "sue" not in shop.agents:
        await shop.agent("sue", "supervisor")
    return shop.agents["sue"][1]


async def cards(shop: Shop, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    response = await shop.client.get("/api/v1/cards", headers=headers or await supervisor(shop))
    assert response.status_code == 200, response.text
    return list(response.json())


async def charge(
    shop: Shop,
    card_id: str,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> httpx.Response:
    sent = {"amount": 700, "currency": "GBP", "reference": "REPEAT-1", **body}
    extra = {"Idempotency-Key": key} if key else {}
    return await shop.client.post(
        f"/api/v1/cards/{card_id}/charge",
        json=sent,
        headers={**(headers or await supervisor(shop)), **extra},
    )


async def sim_payment(shop: Shop, provider: str, reference: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        rows = (
            await http.get(
                f"{shop.sim}/_sim/payments", params={"provider": provider, "reference": reference}
            )
        ).json()["data"]
    assert len(rows) == 1, rows
    return dict(rows[0])


async def outcome_event(shop: Shop, payment_id: str) -> Any:
    for _ in range(200):
        found = [e for e in shop.events("payment.authorized") if e.payment_id == payment_id]  # type: ignore[attr-defined]
        if found:
            return found[0]
        await asyncio.sleep(0.02)
    raise AssertionError(f"no payment.authorized for {payment_id}")


@pytest.mark.parametrize("provider", ["stripe", "adyen", "checkout", "sandbox"])
async def test_a_saved_card_is_charged_again_by_token_on_its_psp(shop: Shop, provider: str) -> None:
    await shop.routes({"connector": provider, "base_url": shop.sim})
    first = await pay(shop)
    assert first["status"] == "authorized"
    saved = await outcome_event(shop, first["id"])
    assert saved.stored_card_id
    [card] = await cards(shop)
    assert card == {
        "id": saved.stored_card_id,
        "brand": "visa",
        "bin": "424242",
        "last4": "4242",
        "connector": provider,
        "payment_id": first["id"],
        "created_at": card["created_at"],
        "last_used_at": None,
    }

    response = await charge(shop, card["id"], key="repeat-1")
    assert response.status_code == 201, response.text
    paid = response.json()
    assert paid["status"] == "authorized"
    assert paid["outcome"]["connector"] == provider
    assert (paid["amount"], paid["currency"], paid["stored_card_id"]) == (700, "GBP", card["id"])
    assert await charged(shop, provider, paid["id"]) == 1
    at_psp = await sim_payment(shop, provider, paid["id"])
    assert (at_psp["interaction"], at_psp["last4"]) == ("merchant_initiated", "4242")
    event = await outcome_event(shop, paid["id"])
    assert event.stored_card_id == card["id"]

    # The same key replays the answer and charges nothing more.
    again = await charge(shop, card["id"], key="repeat-1")
    assert again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == paid
    assert await charged(shop, provider, paid["id"]) == 1
    # A second charge (a new key) is a second payment on the same token.
    second = await charge(shop, card["id"], key="repeat-2", amount=300)
    assert second.json()["status"] == "authorized", second.text
    assert second.json()["id"] != paid["id"]
    assert (await cards(shop))[0]["last_used_at"] is not None

    dump = await database_dump(shop.kernel.db.engine)
    assert card_numbers_in(dump) == []
    assert PAN not in dump
    async with shop.kernel.db.transaction() as session:
        sealed = (await session.execute(select(stored_cards.c.token))).scalar_one()
    # The token is stored sealed: no provider id prefix readable in the column.
    assert not any(p in sealed for p in (b"pm_", b"cus_", b"src_", b"sbt_", b"pay_"))


async def test_a_card_is_saved_only_when_asked(shop: Shop) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    view = await pay(shop, save_card=False)
    assert view["status"] == "authorized"
    assert (await outcome_event(shop, view["id"])).stored_card_id is None
    declined = await pay(shop, "4000000000000002")
    assert declined["status"] == "declined"
    assert await cards(shop) == []


async def test_a_token_is_bound_to_its_psp_no_failover(shop: Shop) -> None:
    await shop.routes(
        {"connector": "stripe", "base_url": shop.sim},
        {"connector": "checkout", "base_url": shop.sim, "priority": 1},
    )
    await pay(shop)
    [card] = await cards(shop)
    assert card["connector"] == "stripe"
    await shop.fault("stripe", "status=429")  # provably not charged: a card would fail over
    refused = await charge(shop, card["id"], key="k1")
    assert refused.status_code == 201, refused.text
    assert refused.json()["status"] == "failed"
    assert refused.json()["outcome"]["connector"] == "stripe"
    assert await charged(shop, "checkout", refused.json()["id"]) == 0
    admin = shop.agents["root"][1]
    tried = await shop.client.get(
        f"/api/v1/payments/{refused.json()['id']}/attempts", headers=admin
    )
    assert [(a["connector"], a["operation"]) for a in tried.json()] == [("stripe", "authorize")]
    # Without its PSP in the routing the token cannot be charged at all.
    await shop.routes({"connector": "checkout", "base_url": shop.sim})
    gone = await charge(shop, card["id"], key="k2")
    assert (gone.status_code, gone.json()["error"]["code"]) == (409, "connector_unavailable")


@SQLITE_ONLY
async def test_who_may_list_charge_and_delete_stored_cards(shop: Shop) -> None:
    await shop.routes({"connector": "sandbox", "base_url": shop.sim})
    await pay(shop)
    [card] = await cards(shop)
    agent = shop.agents["alice"][1]
    accounts = Accounts(shop.kernel, SigningKeys(shop.kernel))

    async def client(*scopes: str) -> dict[str, str]:
        made, secret = await accounts.create_client(shop.tenant_id, "crm", list(scopes))
        token = await shop.client.post(
            "/api/v1/auth/token", json={"client_id": made.id, "client_secret": secret}
        )
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    reader, writer = await client("payments:read"), await client("payments:write")
    # Agents: never (a stored card needs no customer on the line).
    assert (await shop.client.get("/api/v1/cards", headers=agent)).status_code == 403
    assert (await charge(shop, card["id"], headers=agent)).status_code == 403
    deleted = await shop.client.delete(f"/api/v1/cards/{card['id']}", headers=agent)
    assert deleted.status_code == 403
    assert (await shop.client.get("/api/v1/cards")).status_code == 401
    # API clients by scope.
    assert [c["id"] for c in await cards(shop, reader)] == [card["id"]]
    assert (await charge(shop, card["id"], headers=reader)).status_code == 403
    paid = await charge(shop, card["id"], key="crm-1", headers=writer)
    assert paid.status_code == 201, paid.text
    assert paid.json()["status"] == "authorized"
    # Bad input is a clear 422; the same key with another body is a 422 too.
    for body in ({"amount": 0}, {"amount": 1.5}, {"currency": "XX"}, {"reference": ""}):
        bad = await charge(shop, card["id"], headers=writer, **body)
        assert bad.status_code == 422, body
    reused = await charge(shop, card["id"], key="crm-1", headers=writer, amount=701)
    assert (reused.status_code, reused.json()["error"]["code"]) == (422, "idempotency_key_reused")

    removed = await shop.client.delete(f"/api/v1/cards/{card['id']}", headers=writer)
    assert removed.status_code == 204
    assert await cards(shop) == []
    assert (await charge(shop, card["id"], key="crm-2", headers=writer)).status_code == 404
    missing = await shop.client.delete(f"/api/v1/cards/{card['id']}", headers=writer)
    assert missing.status_code == 404

    async with shop.kernel.db.transaction() as session:
        trail = await records_for(session, shop.tenant_id, limit=500)
    by_action = {r["action"]: r for r in trail if r["target"] == card["id"]}
    assert by_action["card.saved"]["actor"] == "service:psp"
    assert by_action["card.charged"]["actor"].startswith("client:")
    assert by_action["card.deleted"]["actor"].startswith("client:")
    assert PAN not in str(trail)


@SQLITE_ONLY
async def test_another_tenant_never_sees_or_charges_our_cards(shop: Shop) -> None:
    await shop.routes({"connector": "sandbox", "base_url": shop.sim})
    await pay(shop)
    [card] = await cards(shop)
    accounts = Accounts(shop.kernel, SigningKeys(shop.kernel))
    other = await accounts.create_tenant("elsewhere", mfa_required=False)
    await accounts.create_user(other.id, "eve", "admin", "correct-horse-42")
    login = await shop.client.post(
        "/api/v1/auth/login",
        json={"tenant": "elsewhere", "username": "eve", "password": "correct-horse-42"},
    )
    shop.client.cookies.clear()
    eve = {"Authorization": f"Bearer {login.json()['access_token']}"}
    assert await cards(shop, eve) == []
    assert (await charge(shop, card["id"], key="x", headers=eve)).status_code == 404
    assert (await shop.client.delete(f"/api/v1/cards/{card['id']}", headers=eve)).status_code == 404
    assert len(await cards(shop)) == 1


async def test_a_phone_payment_is_a_telephone_order_at_every_psp(shop: Shop) -> None:
    for provider in ("stripe", "adyen", "checkout"):
        await shop.routes({"connector": provider, "base_url": shop.sim})
        view = await pay(shop, save_card=False)
        assert view["status"] == "authorized"
        assert (await sim_payment(shop, provider, view["id"]))["interaction"] == "moto"
    # MOTO is out of scope for 3-D Secure: the challenge card is simply approved.
    challenged = await pay(shop, "4000000000003220", save_card=False)
    assert challenged["status"] == "authorized"
