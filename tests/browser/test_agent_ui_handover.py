"""Handing a call to the payment line from the Agent UI, in a real browser: the agent
sends the live call to an IVR flow with an amount, the page follows the customer through
the flow ("With the payment line: ..."), the caller keys the card in-band and confirms,
the sandbox PSP approves, and the outcome is on the agent's screen when the call comes
back. (What the agent's leg hears meanwhile is checked by ear in
tests/e2e/test_ivr_handover.py; here it is what the agent sees.)"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from websockets.asyncio.client import ClientConnection

from tests.browser import agent_desk
from tests.browser.agent_desk import PAN, Centre, Shots, card_keys, new_page, running, sign_in
from tests.integration.ivr.conftest import Caller, spoken

CALL = "CA-handover-ui"
BILL = {"name": "bills", "amount": 1250, "currency": "GBP", "reference": "INV-1250"}
CONFIRMATION = re.compile(r"confirmation [0-9A-Z]{6}$")


async def drain(leg: ClientConnection) -> None:
    """What the agent hears is not looked at here."""
    with contextlib.suppress(Exception):
        async for _ in leg:
            pass


async def phone_call(centre: Centre, call_id: str, agent: str) -> Caller:
    """A call with both legs, the customer's played by a `Caller` that echoes each
    prompt's mark (the prompt "played" at once) and keys in-band."""
    customer, agent_leg = await centre.line.open_call(call_id, agent=agent)
    centre.calls.append((customer, agent_leg))
    assert agent_leg is not None
    centre.drains.append(asyncio.create_task(drain(agent_leg)))
    caller = Caller(customer)
    caller.start()
    return caller


async def test_an_agent_sends_a_call_to_the_payment_line_and_sees_it_paid(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_desk, "SERVICES", [*agent_desk.SERVICES, "ivr"])
    shots = Shots(tmp_path)
    async with running(tmp_path, mfa=False) as centre:
        created = await centre.client.post("/api/v1/ivr/flows", json=BILL, headers=centre.admin)
        assert created.status_code == 201, created.text
        flow = created.json()
        await centre.user("alice")
        page, witness = await new_page(browser)
        await sign_in(page, centre.base, "alice")
        caller = await phone_call(centre, CALL, "alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference(CALL))

        # The start menu offers the payment line; the amount typed goes with the call.
        await expect(page.locator("#handover")).to_be_visible()
        await page.locator("#handover-line").select_option("bills")
        await page.locator("#pay-amount").fill("42.00")
        await page.locator("#pay-reference").fill("ORDER-42")
        await shots.take(page, "ready-to-send")
        await page.locator("#handover-submit").click()

        # The customer is with the line: the page says so, the start menu waits.
        status = page.locator("#handover-status")
        await expect(status).to_contain_text("With the payment line: ")
        await expect(page.locator("#start")).to_be_hidden()
        assert (await caller.hear()).mark  # the greeting and the amount due
        assert (await caller.hear()).audio == spoken(flow, "enter_pan")
        await expect(status).to_have_text("With the payment line: the customer is keying the card")
        await shots.take(page, "with-the-payment-line")
        pan, expiry, cvv = card_keys()
        await caller.press(pan)
        assert (await caller.hear()).audio == spoken(flow, "enter_expiry")
        await caller.press(expiry)
        assert (await caller.hear()).audio == spoken(flow, "enter_cvv")
        await caller.press(cvv)
        await caller.hear()  # the read-back: the last four and the amount
        await expect(status).to_have_text(
            "With the payment line: the customer is confirming the payment"
        )
        await shots.take(page, "customer-confirming")
        await caller.press("1")
        assert (await caller.hear()).audio == spoken(flow, "processing")
        await caller.hear()  # approved, and the confirmation number
        await caller.hear()  # returning you to your agent

        # The call is back: the outcome is on the agent's screen, the start menu too.
        await expect(status).to_contain_text(
            "Back from the payment line. Paid · £42.00 · Visa •••• 4242 · confirmation ",
            timeout=15000,
        )
        await expect(status).to_have_text(CONFIRMATION)
        await expect(page.locator("#start")).to_be_visible()
        await expect(page.locator("#handover")).to_be_visible()
        await shots.take(page, "back-and-paid")
        await witness.never_shown(page, PAN)
        assert witness.problems == []
