"""The billing postcode, when a tenant asks for it: a UK (or any) postcode typed on the
page, judged by the server, sealed with the card, sent to the PSP for the issuer's
address check; the check comes back and never declines by itself. The postcode is
personal data: it stays out of the database, the bus and the agent's view."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.remote.conftest import VISA, Desk, future_expiry, open_page, page_state
from tests.leaks import database_dump


async def post(customer: httpx.AsyncClient, csrf: str, postcode: str) -> httpx.Response:
    form = {
        "csrf": csrf,
        "number": VISA,
        "expiry": future_expiry(),
        "cvc": "123",
        "postcode": postcode,
    }
    return await customer.post("/pay/card", data=form)


async def at_psp(desk: Desk, payment_id: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        found = (await http.get(f"{desk.psp_url}/_sim/payments")).json()["data"]
    [payment] = [p for p in found if p["reference"] == payment_id]
    return dict(payment)


async def pay_with(desk: Desk, postcode: str) -> tuple[dict[str, object], dict[str, object]]:
    link = await desk.chat_link()
    async with desk.customer() as customer:
        page, csrf = await open_page(customer, link["url"])
        assert 'autocomplete="postal-code"' in page.text
        posted = await post(customer, csrf, postcode)
        assert posted.status_code == 303, posted.text
        await page_state(customer, "paid")
    done = await desk.wait_link(link["id"], lambda s: s["status"] == "completed")
    return done, await at_psp(desk, done["payment_id"])


async def test_a_uk_postcode_is_taken_and_checked_by_the_psp(desk: Desk) -> None:
    await desk.link_settings(ask_postcode=True)
    done, payment = await pay_with(desk, " sw1a   1aa ")
    assert payment["postcode_check"] == "pass"
    # Personal data: nowhere in the database (transcripts masked), on the bus, or in
    # what the agent sees.
    dump = await database_dump(desk.kernel.db.engine)
    assert "[postal_code]" in dump  # the PSP call's transcript is there, masked
    assert "SW1A" not in dump.upper()
    assert "SW1A" not in " ".join(m.model_dump_json() for m in desk.published).upper()
    assert "SW1A" not in str(await desk.get(str(done["id"]))).upper()


async def test_a_failed_address_check_is_reported_not_declined(desk: Desk) -> None:
    await desk.link_settings(ask_postcode=True)
    _done, payment = await pay_with(desk, "ZZ1 1ZZ")
    assert payment["outcome"] == "approved"
    assert payment["postcode_check"] == "fail"


@pytest.mark.parametrize("bad", ["<script>", "SW1A 1AA 9Z", "12345678901", "", "£1 1AA"])
async def test_what_is_no_postcode_is_a_clear_422_that_costs_no_attempt(
    desk: Desk, bad: str
) -> None:
    await desk.link_settings(ask_postcode=True)
    link = await desk.chat_link()
    async with desk.customer() as customer:
        _page, csrf = await open_page(customer, link["url"])
        refused = await post(customer, csrf, bad)
        assert refused.status_code == 422
        assert "3 to 10 letters, numbers, spaces or hyphens" in refused.text
        assert "<script>" not in refused.text
        assert VISA not in refused.text
    assert (await desk.get(link["id"]))["attempts"] == 0
