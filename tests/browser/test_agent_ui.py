"""The Agent UI in a real browser (Debian's Chromium through Playwright) against Transact
under uvicorn, calls streamed on the real media sockets and keyed as DTMF tones: sign-in
with MFA enrolment, a call appearing by itself, payments approved, declined and with a
field asked again, the dots filling as keys arrive; and never a card number in the page.
Screenshots of every step go to the test's tmp folder."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pyotp
import pytest
from playwright.async_api import (
    Browser,
    Page,
    Route,
    WebSocketRoute,
    async_playwright,
    expect,
)

from tests.browser.agent_desk import (
    DECLINED_PAN,
    PAN,
    TABLET,
    Centre,
    Shots,
    Witness,
    card_keys,
    crm_site,
    new_page,
    next_code,
    running,
    sign_in,
)
from tests.browser.conftest import ARGS

# Keys travel as tones in 20 ms frames, through detection, the bus and capture: seconds
# on a loaded two-core machine before the page can show them all.
KEYED = 20_000


async def enrol_through_the_page(page: Page, centre: Centre, shots: Shots) -> pyotp.TOTP:
    await page.goto(f"{centre.base}/")
    await expect(page.locator("#screen-login")).to_be_visible()
    await shots.take(page, "login")
    await page.locator("#login-tenant").fill("shop")
    await page.locator("#login-username").fill("alice")
    await page.locator("#login-password").fill("correct-horse-42")
    await page.locator("#login-password").press("Enter")
    await expect(page.locator("#screen-enrol")).to_be_visible()
    await expect(page.locator("#enrol-qr")).to_have_attribute("src", re.compile(r"^data:image/svg"))
    await shots.take(page, "enrol")
    totp = pyotp.TOTP(await page.locator("#enrol-secret").inner_text())
    await page.locator("#enrol-otp").fill(totp.now())
    await page.locator("#enrol-otp").press("Enter")
    await expect(page.locator("#enrol-codes li")).to_have_count(10)
    await shots.take(page, "recovery-codes")
    await page.locator("#enrol-continue").click()
    await expect(page.locator("#screen-login")).to_be_visible()
    await expect(page.locator("#login-otp")).to_be_visible()
    await page.locator("#login-password").fill("correct-horse-42")
    await page.locator("#login-otp").fill(next_code(totp))
    await page.locator("#login-otp").press("Enter")
    await expect(page.locator("#screen-desk")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("Live")
    return totp


async def take_payment(page: Page, amount: str, reference: str) -> None:
    await expect(page.locator("#start")).to_be_visible()
    await page.locator("#pay-amount").fill(amount)
    await page.locator("#pay-reference").fill(reference)
    await page.locator("#start-submit").click()
    await expect(page.locator("#capture")).to_be_visible()


async def test_an_agent_enrols_and_takes_approved_declined_and_reasked_payments(
    browser: Browser, tmp_path: Path
) -> None:
    shots = Shots(tmp_path)
    async with running(tmp_path) as centre:
        await centre.user("alice")
        page, witness = await new_page(browser)
        await enrol_through_the_page(page, centre, shots)
        await expect(page.locator("#no-call")).to_be_visible()
        await shots.take(page, "desk-waiting")

        # The call names alice: it appears on her screen by itself.
        customer = await centre.call("CA-ui-1", agent="alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-ui-1"))
        await shots.take(page, "call-appeared")

        # 1. Approved, the dots filling as the keys arrive.
        pan, expiry, cvv = card_keys()
        await take_payment(page, "42.00", "INV-42")
        await centre.secure("CA-ui-1")
        seq = await centre.key(customer, pan[:6], 2)
        await expect(page.locator("#field-pan")).to_have_attribute("data-digits", "6")
        await expect(page.locator("#field-pan .dot.on")).to_have_count(6)
        await shots.take(page, "pan-six-digits")
        seq = await centre.key(customer, pan[6:], seq)
        await expect(page.locator("#field-pan")).to_have_attribute("data-state", "valid")
        await expect(page.locator("#field-pan .verdict")).to_contain_text("•••• 4242")
        await expect(page.locator("#field-pan .verdict")).to_contain_text("Visa")
        assert await page.locator("#capture-submit").is_disabled()
        seq = await centre.key(customer, expiry + cvv, seq)
        await expect(page.locator("#field-cvv")).to_have_attribute(
            "data-state", "valid", timeout=KEYED
        )
        await expect(page.locator("#capture-submit")).to_be_enabled(timeout=KEYED)
        await shots.take(page, "all-valid")
        await witness.never_shown(page, PAN)
        await page.locator("#capture-submit").click()
        await expect(page.locator("#outcome-title")).to_have_text("Approved", timeout=10000)
        await expect(page.locator("#outcome-detail")).to_contain_text("Provider reference")
        await shots.take(page, "approved")

        # 2. Declined, with a reason in plain words.
        await page.locator("#outcome-again").click()
        await take_payment(page, "9.99", "INV-43")
        await centre.secure("CA-ui-1", times=2)
        pan, expiry, cvv = card_keys(DECLINED_PAN)
        seq = await centre.key(customer, pan + expiry + cvv, seq)
        await expect(page.locator("#capture-submit")).to_be_enabled(timeout=KEYED)
        await page.locator("#capture-submit").click()
        await expect(page.locator("#outcome-title")).to_have_text("Declined", timeout=10000)
        await expect(page.locator("#outcome-text")).to_contain_text("declined the payment")
        await shots.take(page, "declined")

        # 3. The agent asks for the expiry again; the customer keys it again; approved.
        await page.locator("#outcome-again").click()
        await take_payment(page, "15.00", "INV-44")
        await centre.secure("CA-ui-1", times=3)
        pan, expiry, cvv = card_keys()
        seq = await centre.key(customer, pan + expiry + cvv, seq)
        await expect(page.locator("#capture-submit")).to_be_enabled(timeout=KEYED)
        await page.locator("#field-expiry button").click()
        await expect(page.locator("#field-expiry")).to_have_attribute("data-digits", "0")
        await expect(page.locator("#capture-submit")).to_be_disabled()
        await expect(page.locator("#capture-message")).to_contain_text("expiry")
        await shots.take(page, "expiry-asked-again")
        await centre.secure("CA-ui-1", times=4)  # on again for the field asked again
        seq = await centre.key(customer, expiry, seq)
        await expect(page.locator("#field-expiry")).to_have_attribute(
            "data-state", "valid", timeout=KEYED
        )
        await expect(page.locator("#capture-submit")).to_be_enabled(timeout=KEYED)
        await page.locator("#capture-submit").click()
        await expect(page.locator("#outcome-title")).to_have_text("Approved", timeout=10000)
        await shots.take(page, "reasked-approved")

        # The payments list shows all three, masked.
        await page.locator("[data-nav=payments]").click()
        await expect(page.locator("#payment-rows tr")).to_have_count(3)
        await expect(page.locator("#payment-rows")).to_contain_text("Visa •••• 4242")
        await shots.take(page, "payments")

        await witness.never_shown(page, PAN, DECLINED_PAN)
        assert witness.problems == []
        await centre.hang_up(customer, seq)


@pytest.fixture
async def mapped_browser(chromium: str) -> AsyncIterator[Browser]:
    """Chromium that resolves the made-up CRM hosts to loopback."""
    rules = "--host-resolver-rules=MAP crm.test 127.0.0.1, MAP elsewhere.test 127.0.0.1"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=[*ARGS, rules])
        try:
            yield launched
        finally:
            await launched.close()


def framing(url: str) -> str:
    return (
        "<!doctype html><title>CRM</title><h1>CRM</h1>"
        f'<iframe src="{url}" title="Payments" width="1200" height="620"></iframe>'
    )


async def test_a_crm_frames_the_ui_and_a_launch_link_signs_the_agent_in_there(
    mapped_browser: Browser, tmp_path: Path
) -> None:
    """Inside another site's frame our SameSite=Strict cookies are never sent: the page
    runs on the access token it holds in memory, the push socket signs in with an `auth`
    message. Only the tenant's configured origins may frame it."""
    shots = Shots(tmp_path)
    async with running(tmp_path) as centre, crm_site() as (port, pages):
        await centre.user("bob")
        totp = await centre.enrolled("bob")
        settings = await centre.client.put(
            "/api/v1/agent-ui/settings",
            json={
                "methods": ["keypad"],
                "default_method": "keypad",
                "currencies": ["GBP", "EUR"],
                "default_currency": "EUR",
                "frame_origins": [f"http://crm.test:{port}"],
            },
            headers=centre.admin,
        )
        assert settings.status_code == 200, settings.text
        client, secret = await centre.accounts.create_client(
            centre.line.tenant_id, "crm", ["launch"]
        )
        token = await centre.client.post(
            "/api/v1/auth/token", json={"client_id": client.id, "client_secret": secret}
        )
        crm = {"Authorization": f"Bearer {token.json()['access_token']}"}

        async def launch_url() -> str:
            made = await centre.client.post(
                "/api/v1/auth/launch-links", json={"username": "bob"}, headers=crm
            )
            assert made.status_code == 201, made.text
            return str(made.json()["url"])

        context = await mapped_browser.new_context(viewport={"width": 1280, "height": 720})
        witness = Witness(context)

        # A site the tenant did not list: the browser refuses to show the UI in its frame.
        pages["/other"] = framing(await launch_url())
        elsewhere = await context.new_page()
        await elsewhere.goto(f"http://elsewhere.test:{port}/other")
        await elsewhere.wait_for_timeout(500)
        assert await elsewhere.frame_locator("iframe").locator("#login-form").count() == 0
        assert any("frame-ancestors" in problem for problem in witness.problems)
        witness.problems.clear()
        await shots.take(elsewhere, "other-site-refused")
        await elsewhere.close()

        pages["/desk"] = framing(await launch_url())
        page = await context.new_page()
        await page.goto(f"http://crm.test:{port}/desk")
        frame = page.frame_locator("iframe")
        await expect(frame.locator("#login-otp")).to_be_visible()
        await expect(frame.locator("#login-username")).to_have_value("bob")
        await shots.take(page, "framed-launch-asks-code")
        await frame.locator("#login-otp").fill(next_code(totp))
        await frame.locator("#login-otp").press("Enter")
        await expect(frame.locator("#screen-desk")).to_be_visible()
        await expect(frame.locator("#live")).to_have_text("Live")
        assert await frame.locator("body").get_attribute("data-mode") == "token"
        assert await context.cookies() == []  # nothing stored for a site seen only in a frame

        await centre.call("CA-frame", agent="bob")
        await expect(frame.locator("#call-reference")).to_have_text(centre.reference("CA-frame"))
        await expect(frame.locator("#pay-currency")).to_have_value("EUR")
        await expect(frame.locator("#methods input")).to_have_count(1)
        await shots.take(page, "framed-call")
        await witness.never_shown(page, PAN)
        assert witness.problems == []
        await context.close()


async def test_an_idle_session_returns_to_sign_in_and_sign_out_works(
    browser: Browser, tmp_path: Path
) -> None:
    shots = Shots(tmp_path)
    # Long enough that no step of a loaded CI machine (setting up, signing in) takes it:
    # at 3 s the fixture's own admin session once expired before its second request.
    idle = 8
    async with running(
        tmp_path, mfa=False, session_idle_timeout=idle, push_heartbeat=0.5
    ) as centre:
        await centre.user("alice")
        page, _ = await new_page(browser)
        await sign_in(page, centre.base, "alice")
        await expect(page.locator("#screen-login")).to_be_visible(timeout=(idle + 15) * 1000)
        await expect(page.locator("#login-message")).to_contain_text("signed out")
        await shots.take(page, "idle-signed-out")

        await sign_in(page, centre.base, "alice")
        await page.locator("#logout").click()
        await expect(page.locator("#login-message")).to_have_text("You have signed out.")
        await page.reload()
        await expect(page.locator("#screen-login")).to_be_visible()  # the session is gone


async def test_a_supervisor_on_a_tablet_sees_the_tenant_claims_and_refunds(
    browser: Browser, tmp_path: Path
) -> None:
    shots = Shots(tmp_path)
    async with running(tmp_path, mfa=False) as centre:
        await centre.user("alice")
        await centre.user("sue", "supervisor")
        customer = await centre.call("CA-alice", agent="alice")
        await centre.phone_payment("alice", "CA-alice", customer, "INV-S1")

        page, witness = await new_page(browser, **TABLET)
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        await sign_in(page, centre.base, "sue")
        # Supervisors watch the whole tenant: alice's call, by name.
        alice_call = page.locator("#call-list li[data-call='CA-alice']")
        await expect(alice_call).to_contain_text("held by alice")
        await shots.take(page, "supervisor-calls")

        # A reconnect resumes from the last event: a call started meanwhile still shows.
        await page.evaluate("window.dispatchEvent(new Event('online'))")
        await expect(page.locator("#live")).to_have_text("Live")
        await centre.call("CA-free", agent="")
        free = page.locator("#call-list li[data-call='CA-free']")
        await expect(free).to_contain_text("nobody yet")
        assert len(sockets) == 2
        assert "scope=tenant" in sockets[1]
        assert "after=" in sockets[1]

        # Claimed by its reference, typed loosely (lower case, no dash).
        await page.locator("#claim-reference").fill(centre.reference("CA-free").lower())
        await page.locator("#claim-reference").press("Enter")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-free"))
        await expect(free).to_contain_text("held by you")
        await page.locator("#link-code").click()
        await expect(page.locator("#link-code-value")).to_have_text(re.compile(r"^(\d ){5}\d$"))
        await shots.take(page, "claimed-and-code")

        # A supervisor takes over a call another agent holds, after saying yes.
        await alice_call.get_by_role("button", name="Take over").click()
        await page.locator("#confirm-yes").click()
        await expect(alice_call).to_contain_text("held by you")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-alice"))

        # Refund part of alice's payment, after saying yes.
        await page.locator("[data-nav=payments]").click()
        await page.locator("#payment-rows a", has_text="INV-S1").click()
        await expect(page.locator("#payment-facts")).to_contain_text("Visa · 424242… •••• 4242")
        await expect(page.locator("#payment-facts")).to_contain_text("sandbox")
        await expect(page.locator("#attempt-rows tr")).to_have_count(1)
        await page.locator("#refund-open").click()
        await expect(page.locator("#refund-dialog")).to_be_visible()
        await page.locator("#refund-amount").fill("5.00")
        await shots.take(page, "refund-confirm")
        await page.locator("#refund-confirm").click()
        await expect(page.locator("#notice")).to_contain_text("Refunded £5.00")
        await expect(page.locator("#payment-facts")).to_contain_text("Partly refunded")
        await shots.take(page, "refunded")
        await witness.never_shown(page, PAN)
        assert witness.problems == []


async def test_pay_by_link_from_the_start_menu_to_paid(browser: Browser, tmp_path: Path) -> None:
    shots = Shots(tmp_path)
    async with running(tmp_path, mfa=False) as centre:
        await centre.user("alice")
        page, witness = await new_page(browser)
        await sign_in(page, centre.base, "alice")
        await centre.call("CA-link", agent="alice")
        await expect(page.locator("#start")).to_be_visible()
        await page.locator("label[for=method-link_chat]").click()
        await expect(page.locator("#start-submit")).to_have_text("Create link")
        await page.locator("#pay-amount").fill("25.99")
        await page.locator("#pay-reference").fill("INV-L1")
        await page.locator("#start-submit").click()
        await expect(page.locator("#link")).to_be_visible()
        url = await page.locator("#link-url").input_value()
        await shots.take(page, "link-created")

        customer = await page.context.new_page()
        await customer.goto(url)
        await customer.wait_for_url("**/pay")
        pan, expiry, cvv = card_keys()
        await customer.fill("#number", pan)
        await customer.fill("#expiry", expiry)
        await customer.fill("#cvc", cvv)
        await customer.click("#pay")
        await expect(customer.locator("#result")).to_have_text("Payment received", timeout=15000)
        await customer.close()

        await expect(page.locator("#outcome-title")).to_have_text("Approved", timeout=10000)
        await shots.take(page, "link-paid")

        # Mid-capture the customer would rather pay online: the same payment as a link.
        await page.locator("#outcome-again").click()
        await page.locator("label[for=method-keypad]").click()
        await page.locator("#pay-amount").fill("12.00")
        await page.locator("#pay-reference").fill("INV-L2")
        await page.locator("#start-submit").click()
        await expect(page.locator("#capture")).to_be_visible()
        await page.locator("#capture-to-link").click()
        await page.locator("#switch-channel").select_option("chat")
        await page.locator("#switch-submit").click()
        await expect(page.locator("#link")).to_be_visible()
        await expect(page.locator("#link-summary")).to_contain_text("INV-L2")
        await expect(page.locator("#link-url")).to_have_value(re.compile(r"/pay/"))
        await shots.take(page, "switched-to-link")
        await page.locator("#link-cancel").click()
        await page.locator("#confirm-yes").click()
        await expect(page.locator("#link-steps li[data-step=cancelled]")).to_be_visible()
        await shots.take(page, "link-cancelled")
        await witness.never_shown(page, PAN)
        assert witness.problems == []


async def test_a_payment_keyed_before_its_creation_reply_arrives_is_shown_as_it_is(
    browser: Browser, tmp_path: Path
) -> None:
    """On a loaded machine the push of `capture.started` and every key can overtake the
    reply to the POST that opened the payment: the page shows the capture from the push
    alone, and that reply, when it comes, leaves the page as it is."""
    async with running(tmp_path, mfa=False) as centre:
        await centre.user("alice")
        page, _ = await new_page(browser)
        await sign_in(page, centre.base, "alice")
        customer = await centre.call("CA-late", agent="alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-late"))
        created: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        release = asyncio.Event()

        async def hold_the_reply(route: Route) -> None:
            reply = await route.fetch()
            body = await reply.body()
            created.set_result(json.loads(body)["id"])
            await release.wait()
            await route.fulfill(status=reply.status, headers=reply.headers, body=body)

        await page.route("**/api/v1/calls/*/payments", hold_the_reply)
        await take_payment(page, "12.00", "INV-LATE")  # shown from the push alone
        await centre.secure("CA-late")
        await centre.key(customer, "".join(card_keys()), 2)
        agent = await centre.bearer("alice")
        payment = f"/api/v1/payments/{await created}"
        for _ in range(400):
            if (await centre.client.get(payment, headers=agent)).json()["status"] == "ready":
                break
            await asyncio.sleep(0.05)
        await expect(page.locator("#capture-submit")).to_be_enabled(timeout=KEYED)
        release.set()  # the old reply lands now, and nothing comes after it
        await page.wait_for_timeout(1000)
        assert await page.locator("#capture-submit").is_enabled()
        assert await page.locator("#field-cvv").get_attribute("data-state") == "valid"


LOST_TOPICS = r'"topic":\s*"capture\.(progress|completed)"'


async def test_a_capture_whose_pushes_are_lost_still_reaches_ready_on_the_page(
    browser: Browser, tmp_path: Path
) -> None:
    """Every push about the capture after its start (`capture.progress`, `.completed`) is
    lost on the way: the desk fetches a quiet open capture again, so the agent still sees
    the card complete and may submit. (A CI run once left Submit disabled for 20 s with
    the capture ready: the page never learnt it.)"""
    async with running(tmp_path, mfa=False) as centre:
        await centre.user("alice")
        page, _ = await new_page(browser)
        lost: list[str] = []

        def without_progress(socket: WebSocketRoute) -> None:
            server = socket.connect_to_server()

            def to_page(message: str | bytes) -> None:
                if isinstance(message, str) and re.search(LOST_TOPICS, message):
                    lost.append(message)
                    return
                socket.send(message)

            server.on_message(to_page)
            socket.on_message(server.send)

        await page.route_web_socket(re.compile(r".*/ws/agent.*"), without_progress)
        await sign_in(page, centre.base, "alice")
        customer = await centre.call("CA-lost", agent="alice")
        await expect(page.locator("#call-reference")).to_have_text(centre.reference("CA-lost"))
        await take_payment(page, "12.00", "INV-LOST")
        await centre.secure("CA-lost")
        await centre.key(customer, "".join(card_keys()), 2)
        await expect(page.locator("#capture-submit")).to_be_enabled(timeout=KEYED)
        await expect(page.locator("#field-cvv")).to_have_attribute("data-state", "valid")
        assert lost, "the pushes were lost, so the page fetched the state itself"
