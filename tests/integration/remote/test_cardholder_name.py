"""The name on the card, when a tenant asks for it: typed on the page, sealed with the
card, sent to the PSP; refused clearly when it is no name, and never asked otherwise."""

from __future__ import annotations

import httpx

from tests.integration.remote.conftest import (
    VISA,
    Desk,
    open_page,
    page_state,
)


async def post(customer: httpx.AsyncClient, csrf: str, **extra: str) -> httpx.Response:
    form = {"csrf": csrf, "number": VISA, "expiry": "12/35", "cvc": "123", **extra}
    return await customer.post("/pay/card", data=form)


async def at_psp(desk: Desk, payment_id: str) -> list[dict[str, object]]:
    async with httpx.AsyncClient() as http:
        found = (await http.get(f"{desk.psp_url}/_sim/payments")).json()["data"]
    return [p for p in found if p["reference"] == payment_id]


async def test_the_name_on_the_card_goes_to_the_psp(desk: Desk) -> None:
    await desk.link_settings(ask_name=True)
    link = await desk.chat_link()
    async with desk.customer() as customer:
        page, csrf = await open_page(customer, link["url"])
        assert 'autocomplete="cc-name"' in page.text
        nameless = await post(customer, csrf, name="  4 ")
        assert nameless.status_code == 422
        assert "name as it is written on the card" in nameless.text
        assert VISA not in nameless.text
        posted = await post(customer, csrf, name="  Jane   O'Neil ")
        assert posted.status_code == 303
        await page_state(customer, "paid")
    done = await desk.wait_link(link["id"], lambda s: s["status"] == "completed")
    [payment] = await at_psp(desk, done["payment_id"])
    assert payment["holder"] == "Jane O'Neil"
    # A name is no card field: the agent's view of the link shows no trace of it.
    assert "O'Neil" not in str(await desk.get(link["id"]))


async def test_no_name_is_asked_for_unless_the_tenant_wants_it(desk: Desk) -> None:
    link = await desk.chat_link()
    async with desk.customer() as customer:
        page, csrf = await open_page(customer, link["url"])
        assert 'autocomplete="cc-name"' not in page.text
        assert (await post(customer, csrf)).status_code == 303
        await page_state(customer, "paid")
    done = await desk.wait_link(link["id"], lambda s: s["status"] == "completed")
    [payment] = await at_psp(desk, done["payment_id"])
    assert payment["holder"] is None
