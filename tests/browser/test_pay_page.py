"""The hosted payment page in a real browser, on a phone and on a desktop: opened from a link
in another site's page (an e-mail), the comfort checks' messages, a 3-D Secure challenge
through the PSP simulator's page and back, and the final page. Screenshots go to the
test's tmp folder."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Route, expect

from tests.integration.remote.conftest import (  # noqa: F401  (fixtures)
    CHALLENGE_CARD,
    VISA,
    Desk,
    desk,
    future_expiry,
    simulator,
)

VIEWPORTS: dict[str, dict[str, Any]] = {
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
    "desktop": {"viewport": {"width": 1280, "height": 900}},
}
MAIL = "https://mail.example/inbox"


async def context_for(browser: Browser, kind: str, problems: list[str]) -> BrowserContext:
    context = await browser.new_context(**VIEWPORTS[kind])

    def watch(page: Page) -> None:
        # A CSP or SRI refusal shows only in the console: collect them to fail the test.
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))

    context.on("page", watch)
    return context


async def open_from_mail(context: BrowserContext, url: str) -> Page:
    """Follow the link from another site's page, as from a web-mail inbox: a cross-site
    navigation, after which the Strict session cookie must still work."""

    async def inbox(route: Route) -> None:
        await route.fulfill(
            content_type="text/html",
            body=f'<!doctype html><a id="pay" href="{url}">Pay your bill</a>',
        )

    await context.route(MAIL, inbox)
    page = await context.new_page()
    await page.goto(MAIL)
    await page.click("#pay")
    await page.wait_for_url("**/pay")
    return page


@pytest.mark.parametrize("kind", ["phone", "desktop"])
async def test_validation_messages_and_a_payment(
    browser: Browser,
    desk: Desk,  # noqa: F811
    kind: str,
    tmp_path: Path,
) -> None:
    await desk.link_settings(merchant_name="Example Shop", ask_postcode=True)
    link = await desk.chat_link(amount=2599, reference="INV-42")
    problems: list[str] = []
    context = await context_for(browser, kind, problems)
    page = await open_from_mail(context, link["url"])

    await expect(page.locator("h1")).to_have_text("Pay Example Shop")
    await expect(page.locator("#amount")).to_have_text("£25.99")
    await expect(page.locator("#reference")).to_have_text("INV-42")
    assert await page.get_attribute("#number", "autocomplete") == "cc-number"
    assert await page.get_attribute("#expiry", "autocomplete") == "cc-exp"
    assert await page.get_attribute("#cvc", "autocomplete") == "cc-csc"
    assert await page.get_attribute("#postcode", "autocomplete") == "postal-code"

    await page.fill("#number", "4242424242424241")
    await expect(page.locator("#number")).to_have_value("4242 4242 4242 4241")
    await page.fill("#expiry", "0120")
    await expect(page.locator("#expiry")).to_have_value("01/20")
    await page.fill("#postcode", "SW1A_1AA")
    await page.click("#pay")
    await expect(page.locator("#number-error")).to_have_text(
        "This card number is not valid. Please check it."
    )
    await expect(page.locator("#expiry-error")).to_have_text("This card has expired.")
    await expect(page.locator("#cvc-error")).to_have_text("Enter the security code.")
    await expect(page.locator("#postcode-error")).to_have_text(
        "Enter a postcode of 3 to 10 letters, numbers, spaces or hyphens."
    )
    await expect(page.locator("#number")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#number")).to_be_focused()
    await page.screenshot(path=tmp_path / f"{kind}-validation.png", full_page=True)
    assert page.url.endswith("/pay")  # nothing was sent

    await page.fill("#number", VISA)
    await page.fill("#expiry", future_expiry().replace("/", ""))
    await page.fill("#cvc", "123")
    await page.fill("#postcode", "sw1a 1aa")  # a UK postcode, as people type it
    await expect(page.locator("#number-error")).to_have_text("")
    await expect(page.locator("#postcode-error")).to_have_text("")
    await page.screenshot(path=tmp_path / f"{kind}-ready.png", full_page=True)
    await page.click("#pay")
    await expect(page.locator("#result")).to_have_text("Payment received", timeout=15000)
    await page.screenshot(path=tmp_path / f"{kind}-paid.png", full_page=True)

    progress = [m for m in desk.events("link.progress") if m.complete]  # type: ignore[attr-defined]
    assert {m.field for m in progress} >= {"pan", "expiry", "cvv", "postcode"}  # type: ignore[attr-defined]
    done = await desk.wait_link(link["id"], lambda s: s["status"] == "completed")
    async with httpx.AsyncClient() as http:
        at_psp = (await http.get(f"{desk.psp_url}/_sim/payments")).json()["data"]
    [payment] = [p for p in at_psp if p["reference"] == done["payment_id"]]
    assert payment["postcode_check"] == "pass"  # the postcode reached the PSP
    assert problems == []
    await context.close()


async def test_a_3d_secure_challenge_and_back(
    browser: Browser,
    desk: Desk,  # noqa: F811
    simulator: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    link = await desk.chat_link(amount=9900, reference="3DS-1")
    problems: list[str] = []
    context = await context_for(browser, "desktop", problems)

    async def to_the_bank(route: Route) -> None:
        # The simulator names its challenge page https://sim.invalid/3ds/...; a browser
        # reaches it at the simulator's own address (Playwright cannot intercept a
        # redirect's target, so the redirect is re-aimed where it starts).
        answer = await route.fetch(max_redirects=0)
        location = answer.headers.get("location", "")
        if answer.status == 303 and location.startswith("https://sim.invalid/"):
            parts = urlsplit(location)
            location = f"{simulator}{parts.path}?{parts.query}"
        await route.fulfill(response=answer, headers={**answer.headers, "location": location})

    await context.route("**/pay/challenge", to_the_bank)
    page = await context.new_page()
    await page.goto(link["url"])
    await page.wait_for_url("**/pay")
    await page.fill("#number", CHALLENGE_CARD)
    await page.fill("#expiry", future_expiry())
    await page.fill("#cvc", "123")
    await page.click("#pay")

    await page.wait_for_url(f"{simulator}/3ds/**", timeout=15000)
    await expect(page.locator("h1")).to_have_text("Simulated bank security check")
    await page.screenshot(path=tmp_path / "challenge.png", full_page=True)
    await page.click("text=Confirm payment")

    await page.wait_for_url("**/pay", timeout=15000)
    await expect(page.locator("#result")).to_have_text("Payment received", timeout=20000)
    await page.screenshot(path=tmp_path / "challenge-paid.png", full_page=True)
    seen = await desk.wait_link(link["id"], lambda s: s["status"] == "completed")
    assert seen["attempt"]["status"] == "authorized"
    await desk.wait_for("payment.pending")
    assert problems == []
    await context.close()
    await asyncio.sleep(0)
