"""The push channel over real sockets: the app under uvicorn on a free port, people who
sign in, and agents' sockets that read what is pushed. Events are published on the bus
as the other services would publish them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.servers import app_server, free_port
from transact import notifications, runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.kernel import Kernel
from transact.kernel.errors import ApiError
from transact.kernel.http import create_app
from transact.kernel.settings import load_settings
from transact.notifications import Hub

KEY = base64.b64encode(b"n" * 32).decode()
PASSWORD = "correct-horse-42"
SERVICES = ["gateway", "auth"]  # and notifications, assembled here to reach its hub


@dataclass(frozen=True)
class Person:
    id: str
    username: str
    token: str
    session_id: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Feed:
    """One push socket, read message by message."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pings = 0

    async def next(self, seconds: float = 5.0, *, pings: bool = False) -> dict[str, Any]:
        """The next message within `seconds` (pings skipped unless asked for)."""
        async with asyncio.timeout(seconds):
            while True:
                message: dict[str, Any] = json.loads(await self.ws.recv())
                if message["type"] == "ping" and not pings:
                    self.pings += 1
                    continue
                return message

    async def expect(self, kind: str, seconds: float = 5.0) -> dict[str, Any]:
        message = await self.next(seconds)
        assert message["type"] == kind, message
        return message

    async def events(self, count: int, seconds: float = 5.0) -> list[dict[str, Any]]:
        return [await self.expect("event", seconds) for _ in range(count)]

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything but pings that arrives within `seconds` (expected: nothing)."""
        found = []
        with contextlib.suppress(TimeoutError):
            while True:
                found.append(await self.next(seconds))
        return found

    async def closed(self, seconds: float = 5.0) -> tuple[int | None, str | None]:
        """The close code and reason, once the server has closed the socket."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(self.ws.recv(), seconds)
        return self.ws.close_code, self.ws.close_reason

    async def close(self) -> None:
        await self.ws.close()


@dataclass
class Desk:
    """A running Transact with the push channel, and the tenants `shop` and `other`."""

    kernel: Kernel
    hub: Hub
    port: int
    http: httpx.AsyncClient
    tenant_id: str = ""
    other_tenant_id: str = ""
    people: dict[str, Person] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/agent"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.kernel, SigningKeys(self.kernel))

    async def tenant(self, name: str) -> str:
        try:
            return (await self.accounts.tenant(name)).id
        except ApiError:
            return (await self.accounts.create_tenant(name, mfa_required=False)).id

    async def person(self, username: str, role: str = "agent", tenant: str = "shop") -> Person:
        tenant_id = self.tenant_id if tenant == "shop" else self.other_tenant_id
        try:
            user, _ = await self.accounts.create_user(tenant_id, username, role, PASSWORD)
            user_id = user.id
        except ApiError:
            user_id = self.people[username].id  # made by another instance
        response = await self.http.post(
            "/api/v1/auth/login",
            json={"tenant": tenant, "username": username, "password": PASSWORD},
        )
        assert response.status_code == 200, response.text
        session_id = _set_cookie(response, "transact_session")
        self.http.cookies.clear()
        person = Person(user_id, username, response.json()["access_token"], session_id)
        self.people[username] = person
        return person

    async def raw(self, query: str = "", **options: Any) -> ClientConnection:
        return await connect(self.url + query, open_timeout=5, **options)

    async def feed(
        self, person: Person, query: str = "", *, scope_ready: bool = True, **options: Any
    ) -> tuple[Feed, dict[str, Any]]:
        """A socket signed in with the person's bearer header, past `ready` and
        `subscribed`; returns the feed and the `subscribed` message."""
        ws = await self.raw(query, additional_headers=person.bearer, **options)
        feed = Feed(ws)
        await feed.expect("ready")
        return feed, await feed.expect("subscribed") if scope_ready else {}

    async def publish(self, *messages: Message) -> None:
        for message in messages:
            await self.kernel.bus.publish(message)


def _set_cookie(response: httpx.Response, name: str) -> str:
    for header in response.headers.get_list("set-cookie"):
        key, _, rest = header.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    raise AssertionError(f"no {name} cookie set")


@contextlib.asynccontextmanager
async def serving(database_url: str, data_dir: Path, **overrides: Any) -> AsyncIterator[Desk]:
    """One instance under uvicorn; `shop` and `other` are made by the first and found by
    later instances on the same database."""
    settings = load_settings(
        **{
            "master_key": KEY,
            "database_url": database_url,
            "data_dir": data_dir,
            "rate_limit_scale": 0,
            "outbox_poll_interval": 0.02,
            "push_heartbeat": 0.5,
            "push_auth_timeout": 0.5,
            **overrides,
        }
    )
    kernel = Kernel.from_settings(settings)
    factories = runtime.service_factories()
    push = notifications.assemble(kernel)
    services = [*(factories[name](kernel) for name in SERVICES), push.service]
    app = create_app(kernel, services, manage_kernel=True)
    await kernel.db.migrate()
    port = free_port()
    server = app_server(app, port)
    running = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            desk = Desk(kernel, push.hub, port, http)
            desk.tenant_id = await desk.tenant("shop")
            desk.other_tenant_id = await desk.tenant("other")
            yield desk
    finally:
        server.should_exit = True
        await asyncio.wait_for(running, 10)


@pytest.fixture
async def desk(tmp_path: Path) -> AsyncIterator[Desk]:
    async with serving(f"sqlite+aiosqlite:///{tmp_path}/transact.db", tmp_path) as running:
        yield running
