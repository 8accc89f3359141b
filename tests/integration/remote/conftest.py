"""Pay by link over real HTTP: the app under uvicorn on a free port (links point at it, the
SMS simulator calls it back), a real SMTP server (aiosmtpd), the PSP simulator and the SMS
simulator, each on its own port; one tenant with an admin and agents; every message of
interest recorded."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiosmtpd.controller import Controller

from tests.integration.capture.conftest import KEY, PASSWORD
from tests.integration.psp.conftest import CREDENTIALS, simulator  # noqa: F401  (a fixture)
from tests.servers import app_server, free_port
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.communications.sms_simulator import DEFAULT_AUTH_TOKEN, create_sms_simulator
from transact.contracts import Message
from transact.kernel import Kernel
from transact.kernel.settings import load_settings

SERVICES = ["gateway", "auth", "capture", "psp", "communications", "remote"]
TOPICS = (
    "link.created",
    "link.opened",
    "link.progress",
    "link.completed",
    "link.expired",
    "link.cancelled",
    "link.failed",
    "message.send",
    "message.sent",
    "message.delivered",
    "message.failed",
    "capture.started",
    "capture.progress",
    "capture.completed",
    "capture.cancelled",
    "payment.requested",
    "payment.pending",
    "payment.authorized",
    "payment.declined",
    "payment.failed",
)
VISA = "4242424242424242"
CHALLENGE_CARD = "4000000000003220"
DECLINED_CARD = "4000000000000002"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_LINK = re.compile(r"https?://[^\s\"'<>]+/pay/[A-Za-z0-9_-]{43}")


def future_expiry() -> str:
    return f"12/{(time.gmtime().tm_year + 3) % 100:02d}"


class Mailbox:
    """A real SMTP server (aiosmtpd) on a free port; `refuse` queues answers to RCPT."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[EmailMessage] = []
        self.refuse: list[str] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.refuse:
            return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.received.append(parsed)
        return "250 Message accepted for delivery"

    async def wait(self, count: int = 1, seconds: float = 10.0) -> list[EmailMessage]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} e-mails came, wanted {count}")
            await asyncio.sleep(0.02)
        return self.received


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    box.controller.start()
    yield box
    box.controller.stop()


@pytest.fixture(scope="session")
def sms_simulator() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_sms_simulator(), host="127.0.0.1", port=port, log_config=None, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@dataclass
class Desk:
    """One tenant's pay-by-link desk, seen from outside over HTTP."""

    kernel: Kernel
    url: str
    http: httpx.AsyncClient
    psp_url: str = ""
    tenant_id: str = ""
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    published: list[Message] = field(default_factory=list)

    async def user(self, username: str, role: str = "agent") -> dict[str, str]:
        if username in self.users:
            return self.users[username]
        accounts = Accounts(self.kernel, SigningKeys(self.kernel))
        made, _ = await accounts.create_user(self.tenant_id, username, role, PASSWORD)
        login = await self.http.post(
            "/api/v1/auth/login",
            json={"tenant": "shop", "username": username, "password": PASSWORD},
        )
        assert login.status_code == 200, login.text
        self.http.cookies.clear()
        self.users[username] = {"Authorization": f"Bearer {login.json()['access_token']}"}
        self.ids[username] = made.id
        return self.users[username]

    async def admin(self) -> dict[str, str]:
        return await self.user("root", "admin")

    async def psp_routes(self, connector: str = "stripe") -> None:
        response = await self.http.put(
            "/api/v1/psp/routes",
            json={
                "mode": "sale",
                "routes": [{"connector": connector, "base_url": self.psp_url}],
                "credentials": CREDENTIALS,
            },
            headers=await self.admin(),
        )
        assert response.status_code == 200, response.text

    async def link_settings(self, **values: Any) -> None:
        response = await self.http.put(
            "/api/v1/payment-links/settings", json=values, headers=await self.admin()
        )
        assert response.status_code == 200, response.text

    async def comms_settings(self, body: dict[str, Any]) -> None:
        response = await self.http.put(
            "/api/v1/communications/settings", json=body, headers=await self.admin()
        )
        assert response.status_code == 200, response.text

    async def create(self, username: str = "alice", **body: Any) -> httpx.Response:
        payload = {"amount": 1250, "currency": "GBP", "reference": "INV-1", "channel": "chat"}
        payload.update(body)
        return await self.http.post(
            "/api/v1/payment-links", json=payload, headers=await self.user(username)
        )

    async def chat_link(self, username: str = "alice", **body: Any) -> dict[str, Any]:
        response = await self.create(username, **body)
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def get(self, link_id: str, username: str = "alice") -> dict[str, Any]:
        response = await self.http.get(
            f"/api/v1/payment-links/{link_id}", headers=await self.user(username)
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_link(
        self, link_id: str, check: Callable[[dict[str, Any]], bool], seconds: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen = await self.get(link_id)
            if check(seen):
                return seen
            await asyncio.sleep(0.05)
        raise AssertionError(f"link never got there: {seen}")

    def events(self, topic: str) -> list[Message]:
        return [m for m in self.published if m.topic == topic]

    async def wait_for(self, topic: str, count: int = 1, seconds: float = 15.0) -> list[Message]:
        deadline = time.monotonic() + seconds
        while len(self.events(topic)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: saw {len(self.events(topic))}, wanted {count}")
            await asyncio.sleep(0.02)
        return self.events(topic)

    def customer(self) -> httpx.AsyncClient:
        """A customer's browser: its own cookie jar, no agent credentials."""
        return httpx.AsyncClient(base_url=self.url, timeout=20.0)


async def open_page(customer: httpx.AsyncClient, url: str) -> tuple[httpx.Response, str]:
    """Follow a link as a browser does: the token page, then `/pay`; the form's CSRF token."""
    opened = await customer.get(url)
    assert opened.status_code == 200, opened.text
    page = await customer.get("/pay")
    found = _CSRF.search(page.text)
    return page, found.group(1) if found else ""


async def post_card(
    customer: httpx.AsyncClient, csrf: str, number: str, expiry: str | None = None, cvc: str = "123"
) -> httpx.Response:
    return await customer.post(
        "/pay/card",
        data={"csrf": csrf, "number": number, "expiry": expiry or future_expiry(), "cvc": cvc},
    )


async def page_state(customer: httpx.AsyncClient, want: str, seconds: float = 15.0) -> str:
    deadline = time.monotonic() + seconds
    state = ""
    while time.monotonic() < deadline:
        state = (await customer.get("/pay/status")).json()["state"]
        if state == want:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"page stayed {state!r}, wanted {want!r}")


def link_in(text: str) -> str:
    found = _LINK.search(text)
    assert found, "no payment link in the message"
    return found.group(0)


@contextlib.asynccontextmanager
async def running_desk(tmp_path: Path, psp_url: str, **overrides: Any) -> AsyncIterator[Desk]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = load_settings(
        **{
            "master_key": KEY,
            "database_url": f"sqlite+aiosqlite:///{tmp_path}/transact.db",
            "data_dir": tmp_path,
            "rate_limit_scale": 0,
            "outbox_poll_interval": 0.02,
            "psp_reconcile_after": 1.0,
            "public_url": url,
            **overrides,
        }
    )
    kernel, app = runtime.build(settings, SERVICES)
    await kernel.db.migrate()
    desk = Desk(kernel, url, httpx.AsyncClient(base_url=url, timeout=20.0), psp_url)

    async def record(message: Message) -> None:
        desk.published.append(message)

    for topic in TOPICS:
        kernel.bus.subscribe(topic, "test-observer", record)
    server = app_server(app, port)
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        tenant = await Accounts(kernel, SigningKeys(kernel)).create_tenant(
            "shop", mfa_required=False
        )
        desk.tenant_id = tenant.id
        await desk.psp_routes()
        yield desk
    finally:
        await desk.http.aclose()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


@pytest.fixture
async def desk(tmp_path: Path, simulator: str) -> AsyncIterator[Desk]:  # noqa: F811
    async with running_desk(tmp_path, simulator) as the_desk:
        yield the_desk


SMS_TOKEN = DEFAULT_AUTH_TOKEN
