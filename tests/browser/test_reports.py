"""The supervisor's Reports view in a real browser: the numbers shown are the data's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.browser import agent_desk
from tests.browser.agent_desk import Shots, new_page, running, sign_in
from transact.contracts.payments import (
    AttemptSummary,
    PaymentAuthorized,
    PaymentDeclined,
    PaymentRequested,
)


async def test_a_supervisor_sees_the_scripted_payments(
    browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_desk, "SERVICES", [*agent_desk.SERVICES, "reporting"])
    shots = Shots(tmp_path)
    async with running(tmp_path, mfa=False) as centre:
        await centre.user("sue", "supervisor")
        await centre.user("alice")
        tenant = centre.line.tenant_id
        now = datetime.now(UTC) - timedelta(minutes=1)
        # Scripted: 3 approved keypad payments (10.00, 20.00, 30.00), 1 link payment
        # declined for insufficient funds; the second approval failed over stripe -> sandbox.
        plan = [
            ("p1", "phone", 1000, None),
            ("p2", "phone", 2000, None),
            ("p3", "phone", 3000, None),
            ("p4", "link", 4000, "insufficient_funds"),
        ]
        for payment_id, channel, amount, declined in plan:
            await centre.line.kernel.bus.publish(
                PaymentRequested(
                    tenant_id=tenant,
                    payment_id=payment_id,
                    capture_id=payment_id,
                    amount=amount,
                    currency="GBP",
                    reference="INV",
                    channel=channel,
                    agent_id=None,
                    vault_ref="none",
                    idempotency_key=payment_id,
                    occurred_at=now,
                )
            )
            tried = [AttemptSummary(connector="sandbox", outcome="approved", latency_ms=50)]
            if payment_id == "p2":
                tried.insert(0, AttemptSummary(connector="stripe", outcome="error", latency_ms=5))
            outcome = (
                PaymentDeclined(
                    tenant_id=tenant,
                    payment_id=payment_id,
                    connector="sandbox",
                    decline_code=declined,
                    attempts=1,
                    occurred_at=now,
                )
                if declined
                else PaymentAuthorized(
                    tenant_id=tenant,
                    payment_id=payment_id,
                    connector="sandbox",
                    attempts=len(tried),
                    tried=tried,
                    occurred_at=now,
                )
            )
            await centre.line.kernel.bus.publish(outcome)
        sue = await centre.bearer("sue")
        async with asyncio.timeout(10):
            while True:
                answer = await centre.client.get("/api/v1/reports/summary", headers=sue)
                if answer.json()["totals"]["payments"] == 4:
                    break
                await asyncio.sleep(0.05)

        page, witness = await new_page(browser)
        await sign_in(page, centre.base, "sue")
        reports_link = page.get_by_role("link", name="Reports")
        await expect(reports_link).to_be_visible()
        await reports_link.focus()
        await page.keyboard.press("Enter")
        await expect(page.locator("#view-reports")).to_be_visible()
        await expect(page.locator("#reports-total-payments")).to_have_text("4")
        await expect(page.locator("#reports-total-approved")).to_have_text("3")
        await expect(page.locator("#reports-total-declined")).to_have_text("1")
        await expect(page.locator("#reports-total-rate")).to_have_text("75.0%")
        await expect(page.locator("#reports-total-amount")).to_contain_text("60.00")
        declines = page.locator("#reports-declines-table tbody tr")
        await expect(declines).to_have_count(1)
        await expect(declines.first).to_contain_text("insufficient_funds")
        sandbox = page.locator("#reports-connectors-table tbody tr", has_text="sandbox")
        await expect(sandbox).to_contain_text("3")  # approved at sandbox
        stripe = page.locator("#reports-connectors-table tbody tr", has_text="stripe")
        await expect(stripe.locator("td").nth(4)).to_have_text("1")  # one failover
        channels = page.locator("#reports-channels-table tbody tr")
        await expect(channels).to_have_count(2)
        await expect(page.locator("#reports-chart canvas").first).to_be_attached()
        await shots.take(page, "reports")

        # Filtered by channel, with the keyboard: the link payment only.
        await page.locator("#reports-channel").select_option("link")
        await page.locator("#reports-form button[type=submit]").press("Enter")
        await expect(page.locator("#reports-total-payments")).to_have_text("1")
        await expect(page.locator("#reports-total-rate")).to_have_text("0.0%")
        await shots.take(page, "reports-link-only")
        assert witness.problems == []

        # An agent has no Reports link, and the route sends them back to calls.
        agent_page, _ = await new_page(browser)
        await sign_in(agent_page, centre.base, "alice")
        await expect(agent_page.get_by_role("link", name="Reports")).to_be_hidden()
        await agent_page.goto(f"{centre.base}/ui/#/reports")
        await expect(agent_page.locator("#view-reports")).to_be_hidden()
