"""A running contact centre for the Agent UI's browser tests: every service the agent's
screen needs under uvicorn on a free port, tenant `shop`, an admin signed in over the API,
calls streamed on the real media sockets, and a witness that the page never gets a card
number."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    WebSocket,
    expect,
)
from websockets.asyncio.client import ClientConnection

from tests.integration.capture.conftest import KEY
from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.telephony.conftest import TOPICS, Line
from tests.integration.telephony.test_secure_mode import play
from tests.servers import app_server, free_port
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.kernel.settings import load_settings
from transact.telephony.simulate import customer_audio

PAN = "4242424242424242"
DECLINED_PAN = "4000000000000002"
PASSWORD = "correct-horse-42"
SERVICES = [
    "gateway",
    "auth",
    "correlation",
    "capture",
    "psp",
    "telephony",
    "notifications",
    "communications",
    "remote",
    "agent-ui",
]
DESKTOP = {"viewport": {"width": 1280, "height": 720}}
TABLET = {"viewport": {"width": 820, "height": 1180}, "has_touch": True}


def next_code(totp: pyotp.TOTP) -> str:
    """The code after the current one: a code is accepted once, and the server allows one
    step of drift, so a second sign-in right after the first uses the next step's."""
    return totp.at(time.time() + totp.interval)


@dataclass
class Centre:
    line: Line
    base: str  # http://127.0.0.1:PORT
    client: httpx.AsyncClient
    accounts: Accounts
    admin: dict[str, str] = field(default_factory=dict)
    calls: list[tuple[ClientConnection, ClientConnection | None]] = field(default_factory=list)
    drains: list[asyncio.Task[None]] = field(default_factory=list)
    mfa: bool = True

    async def user(self, username: str, role: str = "agent") -> None:
        await self.accounts.create_user(self.line.tenant_id, username, role, PASSWORD)

    async def bearer(self, username: str, otp: str | None = None) -> dict[str, str]:
        body: dict[str, Any] = {"tenant": "shop", "username": username, "password": PASSWORD}
        if otp is not None:
            body["otp"] = otp
        login = await self.client.post("/api/v1/auth/login", json=body)
        assert login.status_code == 200, login.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {login.json()['access_token']}"}

    async def enrolled(self, username: str) -> pyotp.TOTP:
        """Enrol `username` in MFA over the API, as its first sign-in would."""
        body = {"tenant": "shop", "username": username, "password": PASSWORD}
        refused = await self.client.post("/api/v1/auth/login", json=body)
        assert refused.status_code == 403, refused.text
        ticket = {"enrolment_token": refused.json()["error"]["enrolment_token"]}
        started = await self.client.post("/api/v1/auth/mfa/enroll", json=ticket)
        totp = pyotp.TOTP(started.json()["secret"])
        done = await self.client.post("/api/v1/auth/mfa/verify", json={**ticket, "otp": totp.now()})
        assert done.status_code == 200, done.text
        return totp

    async def sign_in_admin(self) -> None:
        await self.user("root", "admin")
        otp = next_code(await self.enrolled("root")) if self.mfa else None
        self.admin = await self.bearer("root", otp)
        routes = await self.client.put(
            "/api/v1/psp/routes", json={"routes": [{"connector": "sandbox"}]}, headers=self.admin
        )
        assert routes.status_code == 200, routes.text

    async def call(self, call_id: str, agent: str) -> ClientConnection:
        """A customer on the line, the stream naming `agent`; both legs drained (what the
        customer and the agent hear is not what these tests look at)."""
        customer, agent_leg = await self.line.open_call(call_id, agent=agent)
        self.calls.append((customer, agent_leg))
        for leg in (customer, agent_leg):
            if leg is not None:
                self.drains.append(asyncio.create_task(_drain(leg)))
        return customer

    def reference(self, call_id: str) -> str:
        started = [m for m in self.line.events("call.started") if m.call_id == call_id]  # type: ignore[attr-defined]
        return str(started[0].reference)  # type: ignore[attr-defined]

    async def secure(self, call_id: str, times: int = 1) -> None:
        """Until telephony has put the call in secure mode `times` times: keys pressed
        before that are dropped."""
        for _ in range(250):
            switched = [
                m
                for m in self.line.events("call.secure_mode")
                if m.call_id == call_id and m.on  # type: ignore[attr-defined]
            ]
            if len(switched) >= times:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{call_id} never went secure")

    async def key(self, customer: ClientConnection, keys: str, seq: int) -> int:
        """The customer presses `keys` on the keypad (tones in the audio); the next frame's
        sequence number comes back."""
        return await play(customer, customer_audio(keys, 60, 200, None), seq)

    async def phone_payment(
        self, username: str, call_id: str, customer: ClientConnection, reference: str
    ) -> str:
        """A payment taken over the API (not the page): keyed on the phone, approved."""
        agent = await self.bearer(username)
        body = {"amount": 2000, "currency": "GBP", "reference": reference}
        for _ in range(100):  # capture learns of the call's agent from the bus
            opened = await self.client.post(
                f"/api/v1/calls/{call_id}/payments", json=body, headers=agent
            )
            if opened.status_code != 404:
                break
            await asyncio.sleep(0.05)
        assert opened.status_code == 201, opened.text
        payment = f"/api/v1/payments/{opened.json()['id']}"
        await self.secure(call_id)
        await self.key(customer, "".join(card_keys()), 2)
        for _ in range(200):
            if (await self.client.get(payment, headers=agent)).json()["status"] == "ready":
                break
            await asyncio.sleep(0.05)
        assert (await self.client.post(f"{payment}/submit", headers=agent)).status_code == 202
        for _ in range(200):
            if (await self.client.get(payment, headers=agent)).json()["status"] == "authorized":
                return str(opened.json()["id"])
            await asyncio.sleep(0.05)
        raise AssertionError("the payment was never approved")

    async def hang_up(self, customer: ClientConnection, seq: int) -> None:
        await customer.send(json.dumps({"event": "stop", "sequenceNumber": str(seq)}))


async def _drain(leg: ClientConnection) -> None:
    with contextlib.suppress(Exception):
        async for _ in leg:
            pass


def card_keys(pan: str = PAN) -> tuple[str, str, str]:
    return pan, future_expiry(), CVV


@contextlib.asynccontextmanager
async def running(tmp_path: Path, *, mfa: bool = True, **settings: Any) -> AsyncIterator[Centre]:
    config = load_settings(
        **{
            "master_key": KEY,
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/transact.db",
            "data_dir": tmp_path,
            "rate_limit_scale": 0,
            "outbox_poll_interval": 0.02,
            "media_pair_timeout": 30.0,
            "media_start_timeout": 5.0,
            "webhook_allow_private": True,
            **settings,
        }
    )
    kernel, app = runtime.build(config, SERVICES)
    await kernel.db.migrate()
    port = free_port()
    line = Line(kernel, f"ws://127.0.0.1:{port}")

    async def record(message: Message) -> None:
        line.published.append(message)

    for topic in TOPICS:
        kernel.bus.subscribe(topic, "test-observer", record)
    server = app_server(app, port)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    accounts = Accounts(kernel, SigningKeys(kernel))
    tenant = await accounts.create_tenant("shop", mfa_required=mfa)
    line.tenant_id = tenant.id
    # Issuing the media token also publishes the tenant's name in the directory.
    line.token = await accounts.issue_media_token(tenant.id)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        centre = Centre(line, base, client, accounts, mfa=mfa)
        try:
            await centre.sign_in_admin()
            yield centre
        finally:
            for task in centre.drains:
                task.cancel()
            for legs in centre.calls:
                for leg in legs:
                    if leg is not None:
                        await leg.close()
            server.should_exit = True
            await asyncio.wait_for(serving, 10)


class Witness:
    """Everything the page is sent (HTTP bodies, push frames) and shows (its HTML), kept
    to prove no card number ever reaches the agent's browser."""

    def __init__(self, context: BrowserContext) -> None:
        self.received: list[str] = []
        self.problems: list[str] = []
        self._reads: list[asyncio.Task[None]] = []
        context.on("page", self.watch)

    def watch(self, page: Page) -> None:
        page.on("response", lambda r: self._reads.append(asyncio.ensure_future(self._read(r))))
        page.on("websocket", self._socket)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.problems.append(str(e)))

    def _console(self, message: ConsoleMessage) -> None:
        # Chrome logs every 4xx it fetched; the page expects some (401 before sign-in, 403
        # asking for enrolment). A CSP refusal or a script error is what counts.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(message.text)

    async def _read(self, response: Any) -> None:
        with contextlib.suppress(Exception):
            self.received.append(await response.text())

    def _socket(self, socket: WebSocket) -> None:
        socket.on("framereceived", lambda frame: self.received.append(str(frame)))

    async def never_shown(self, page: Page, *secrets: str) -> None:
        await asyncio.gather(*self._reads, return_exceptions=True)
        everything = [await page.content(), *self.received]
        for frame in page.frames:
            with contextlib.suppress(Exception):
                everything.append(await frame.content())
        for secret in secrets:
            assert not any(secret in text for text in everything), "a card number reached the page"


class Shots:
    """Numbered screenshots of each step, in the test's own tmp folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def take(self, page: Page, name: str) -> None:
        self.count += 1
        await page.screenshot(path=self.folder / f"{self.count:02d}-{name}.png", full_page=True)


async def new_page(browser: Browser, **kind: Any) -> tuple[Page, Witness]:
    context = await browser.new_context(**(kind or DESKTOP))
    witness = Witness(context)
    page = await context.new_page()
    return page, witness


async def sign_in(page: Page, base: str, username: str, otp: str | None = None) -> None:
    """Through the form, by keyboard: type, Tab to the next field, Enter to send."""
    await page.goto(f"{base}/")
    await expect(page.locator("#screen-login")).to_be_visible()
    await page.locator("#login-tenant").fill("shop")
    await page.keyboard.press("Tab")
    await page.keyboard.type(username)
    await page.keyboard.press("Tab")
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Enter")
    if otp is not None:
        await expect(page.locator("#login-otp")).to_be_visible()
        await page.locator("#login-otp").fill(otp)
        await page.keyboard.press("Enter")
    await expect(page.locator("#screen-desk")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("Live")


@contextlib.asynccontextmanager
async def crm_site() -> AsyncIterator[tuple[int, dict[str, str]]]:
    """Another site's pages (a CRM), served for real on loopback: Chromium does not let a
    page Playwright made up frame a loopback address, and a real server under a mapped
    host name (`--host-resolver-rules`) is a cross-site parent, as a CRM is. The test puts
    each page's HTML in the dict under its path."""
    pages: dict[str, str] = {}

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        path = request.split(b" ", 2)[1].decode()
        body = pages.get(path, "not here").encode()
        status = b"200 OK" if path in pages else b"404 Not Found"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: text/html; charset=utf-8\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
        )
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, pages
