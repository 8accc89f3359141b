"""The payment-link API and the hosted page over real HTTP: every error a caller or a
customer can meet, and the happy path to a paid link."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import update

from tests.integration.remote.conftest import (
    DECLINED_CARD,
    VISA,
    Desk,
    open_page,
    page_state,
    post_card,
)
from transact.contracts import utcnow
from transact.remote import store


def error_code(response: object) -> str:
    return str(response.json()["error"]["code"])  # type: ignore[attr-defined]


async def test_a_chat_link_is_paid_and_then_dead(desk: Desk) -> None:
    link = await desk.chat_link()
    assert link["status"] == "active"
    assert link["url"].startswith(f"{desk.url}/pay/")
    token = link["url"].rsplit("/", 1)[1]
    assert len(token) >= 43  # 256 bits, URL-safe base64
    assert "1250" not in link["url"]
    assert "INV-1" not in link["url"]
    assert link["message"] is None  # chat: the agent pastes the URL; nothing is sent

    async with desk.customer() as customer:
        opened = await customer.get(link["url"])
        assert opened.status_code == 200
        cookie = opened.headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "path=/pay" in cookie
        assert 'http-equiv="refresh" content="0;url=/pay"' in opened.text
        page, csrf = await open_page(customer, link["url"])
        assert "£12.50" in page.text
        assert "INV-1" in page.text
        assert 'autocomplete="cc-number"' in page.text
        assert 'autocomplete="cc-exp"' in page.text
        assert 'autocomplete="cc-csc"' in page.text
        posted = await post_card(customer, csrf, VISA)
        assert posted.status_code == 303
        await page_state(customer, "paid")
        paid = await customer.get("/pay")
        assert "Payment received" in paid.text
        assert VISA not in paid.text

        again = await customer.get(link["url"])
        assert again.status_code == 410
        assert "payment has been made" in again.text

    done = await desk.wait_link(link["id"], lambda seen: seen["status"] == "completed")
    assert done["payment_id"]
    assert done["attempts"] == 1
    assert done["attempt"]["status"] == "authorized"
    [completed] = await desk.wait_for("link.completed")
    assert completed.payment_id == done["payment_id"]  # type: ignore[attr-defined]
    assert [m.topic for m in desk.events("link.opened")] == ["link.opened"]


async def test_creating_refuses_bad_input_with_clear_errors(desk: Desk) -> None:
    cases = [
        ({"channel": "fax"}, "invalid_channel"),
        ({"channel": "sms", "to": "07700 900123"}, "invalid_number"),
        ({"channel": "sms", "to": "+12"}, "invalid_number"),
        ({"channel": "email", "to": "not-an-address"}, "invalid_email"),
        ({"channel": "email", "to": "a@b"}, "invalid_email"),
        ({"channel": "email"}, "missing_destination"),
        ({"channel": "chat", "to": "+447700900123"}, "unexpected_destination"),
        ({"amount": 0}, "invalid_amount"),
        ({"currency": "XXX"}, "invalid_currency"),
        ({"expires_in": 10}, "invalid_expiry"),
        ({"expires_in": 8 * 24 * 3600}, "invalid_expiry"),
    ]
    for body, code in cases:
        response = await desk.create(**body)
        assert response.status_code == 422, (body, response.text)
        assert error_code(response) == code, (body, response.text)
        assert "07700" not in response.text
        assert "not-an-address" not in response.text


async def test_idempotency_key_replays_the_first_answer(desk: Desk) -> None:
    headers = {**(await desk.user("alice")), "Idempotency-Key": "k-1"}
    body = {"amount": 500, "currency": "EUR", "reference": "R-9", "channel": "chat"}
    first = await desk.http.post("/api/v1/payment-links", json=body, headers=headers)
    second = await desk.http.post("/api/v1/payment-links", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    other = await desk.http.post(
        "/api/v1/payment-links", json={**body, "amount": 501}, headers=headers
    )
    assert other.status_code == 422
    assert error_code(other) == "idempotency_key_reused"


async def test_agents_see_their_own_links_supervisors_the_tenant(desk: Desk) -> None:
    mine = await desk.chat_link("alice")
    theirs = await desk.chat_link("bob")
    listed = await desk.http.get("/api/v1/payment-links", headers=await desk.user("alice"))
    assert [link["id"] for link in listed.json()] == [mine["id"]]
    hidden = await desk.http.get(
        f"/api/v1/payment-links/{theirs['id']}", headers=await desk.user("alice")
    )
    assert hidden.status_code == 404
    boss = await desk.user("carol", "supervisor")
    everything = await desk.http.get("/api/v1/payment-links", headers=boss)
    assert {link["id"] for link in everything.json()} == {mine["id"], theirs["id"]}
    assert all("url" not in link for link in everything.json())


async def test_a_tampered_or_unknown_token_is_not_found(desk: Desk) -> None:
    link = await desk.chat_link()
    token = link["url"].rsplit("/", 1)[1]
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    async with desk.customer() as customer:
        for path in (f"/pay/{tampered}", "/pay/short", f"/pay/{token}x"):
            response = await customer.get(path)
            assert response.status_code == 404, path
            assert "not valid" in response.text
            assert "set-cookie" not in response.headers
        no_session = await customer.get("/pay")
        assert no_session.status_code == 401


async def test_cancelled_and_expired_links_are_gone(desk: Desk) -> None:
    cancelled = await desk.chat_link()
    response = await desk.http.post(
        f"/api/v1/payment-links/{cancelled['id']}/cancel", headers=await desk.user("alice")
    )
    assert response.json()["status"] == "cancelled"
    expired = await desk.chat_link()
    async with desk.kernel.db.transaction() as session:
        await session.execute(
            update(store.links)
            .where(store.links.c.id == expired["id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    async with desk.customer() as customer:
        gone = await customer.get(cancelled["url"])
        assert gone.status_code == 410
        assert "cancelled" in gone.text
        late = await customer.get(expired["url"])
        assert late.status_code == 410
        assert "expired" in late.text
    assert (await desk.get(expired["id"]))["status"] == "expired"
    await desk.wait_link(expired["id"], lambda seen: seen["status"] == "expired")
    await desk.wait_for("link.expired")
    resend = await desk.http.post(
        f"/api/v1/payment-links/{cancelled['id']}/resend", headers=await desk.user("alice")
    )
    assert resend.status_code == 409
    assert error_code(resend) == "link_not_open"


async def test_a_cancelled_link_stops_a_customer_mid_page(desk: Desk) -> None:
    link = await desk.chat_link()
    async with desk.customer() as customer:
        _, csrf = await open_page(customer, link["url"])
        await desk.http.post(
            f"/api/v1/payment-links/{link['id']}/cancel", headers=await desk.user("alice")
        )
        posted = await post_card(customer, csrf, VISA)
        assert posted.status_code == 410
        assert (await customer.get("/pay")).status_code == 410


async def test_resend_rotates_the_token(desk: Desk) -> None:
    link = await desk.chat_link()
    again = await desk.http.post(
        f"/api/v1/payment-links/{link['id']}/resend", headers=await desk.user("alice")
    )
    assert again.status_code == 200
    assert again.json()["url"] != link["url"]
    async with desk.customer() as customer:
        assert (await customer.get(link["url"])).status_code == 404
        assert (await customer.get(again.json()["url"])).status_code == 200


async def test_a_form_without_its_csrf_token_is_refused(desk: Desk) -> None:
    link = await desk.chat_link()
    async with desk.customer() as customer:
        await open_page(customer, link["url"])
        forged = await post_card(customer, "forged", VISA)
        assert forged.status_code == 403
    assert (await desk.get(link["id"]))["attempts"] == 0


async def test_too_many_attempts_kill_the_link(desk: Desk) -> None:
    await desk.link_settings(max_attempts=2)
    link = await desk.chat_link()
    async with desk.customer() as customer:
        _, csrf = await open_page(customer, link["url"])
        await post_card(customer, csrf, "4242424242424241")  # fails Luhn: capture refuses
        await page_state(customer, "form")
        page = await customer.get("/pay")
        assert "Enter a valid card number" in page.text
        assert "1 try left" in page.text
        assert "4242424242424241" not in page.text
        await post_card(customer, csrf, DECLINED_CARD)
        await page_state(customer, "ended")
        dead = await customer.get("/pay")
        assert dead.status_code == 410
        assert "several unsuccessful tries" in dead.text
        third = await post_card(customer, csrf, VISA)
        assert third.status_code == 410
    seen = await desk.wait_link(link["id"], lambda s: s["status"] == "failed")
    assert seen["attempts"] == 2
    assert seen["attempt"]["decline_code"] == "card_declined"
    await desk.wait_for("link.failed")


async def test_velocity_limits_card_posts_per_address(desk: Desk) -> None:
    await desk.link_settings(card_posts_per_ip_per_hour=2, max_attempts=10)
    links = [await desk.chat_link() for _ in range(3)]
    answers = []
    for link in links:
        async with desk.customer() as customer:
            _, csrf = await open_page(customer, link["url"])
            answers.append(await post_card(customer, csrf, "4242424242424241"))
            await asyncio.sleep(0)
    assert [a.status_code for a in answers] == [303, 303, 429]
    assert "Too many tries" in answers[2].text


async def test_an_attempt_in_flight_blocks_a_second_post(desk: Desk) -> None:
    await desk.link_settings(submitter="agent")
    link = await desk.chat_link()
    async with desk.customer() as customer:
        _, csrf = await open_page(customer, link["url"])
        await post_card(customer, csrf, VISA)
        await page_state(customer, "agent")
        second = await post_card(customer, csrf, VISA)
        assert second.status_code == 303  # back to the page, which says it waits
        ready = await desk.wait_link(link["id"], lambda s: s["attempt"]["status"] == "ready")
        assert ready["attempts"] == 1
        # The agent takes the payment once the page's card is complete and valid.
        submitted = await desk.http.post(
            f"/api/v1/payments/{ready['attempt']['payment_id']}/submit",
            headers=await desk.user("alice"),
        )
        assert submitted.status_code == 202, submitted.text
        await page_state(customer, "paid")
    assert (await desk.get(link["id"]))["status"] == "completed"


async def test_the_page_answers_with_the_inventorys_headers_and_scripts(desk: Desk) -> None:
    from transact.remote import page as pay_page

    listed = pay_page.inventory()
    link = await desk.chat_link()
    async with desk.customer() as customer:
        shown, _ = await open_page(customer, link["url"])
        for name, value in listed["headers"].items():
            assert shown.headers[name] == value, name
        [script] = listed["scripts"]
        assert f'src="{script["src"]}" integrity="{script["integrity"]}"' in shown.text
        served = await customer.get(script["src"])
        assert served.status_code == 200
        assert served.headers["content-type"].startswith("text/javascript")
        assert (await customer.get("/pay/static/other.js")).status_code == 404
