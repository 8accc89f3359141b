"""Auth and capture on each database engine, driven by keys sealed as telephony seals them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import create_database, drop_database
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.contracts.calls import CallAssigned, CallEnded, CallKeypad, keypad_context
from transact.kernel import Kernel
from transact.kernel.settings import load_settings

KEY = base64.b64encode(b"c" * 32).decode()
PASSWORD = "correct-horse-42"


@dataclass
class Desk:
    """One tenant's contact centre: agents, their calls, and everything published."""

    app: FastAPI
    kernel: Kernel
    client: httpx.AsyncClient
    tenant_id: str = ""
    agents: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    seq: dict[str, int] = field(default_factory=dict)
    published: list[Message] = field(default_factory=list)

    async def agent(self, username: str, role: str = "agent") -> dict[str, str]:
        accounts = Accounts(self.kernel, SigningKeys(self.kernel))
        user, _ = await accounts.create_user(self.tenant_id, username, role, PASSWORD)
        login = await self.client.post(
            "/api/v1/auth/login",
            json={"tenant": "shop", "username": username, "password": PASSWORD},
        )
        self.client.cookies.clear()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        self.agents[username] = (user.id, headers)
        return headers

    async def call_for(self, username: str, call_id: str) -> None:
        await self.kernel.bus.publish(
            CallAssigned(
                tenant_id=self.tenant_id, call_id=call_id, agent_id=self.agents[username][0]
            )
        )

    async def known_call(self, call_id: str) -> None:
        """Wait until capture has projected the call's assignment from the bus."""
        from transact.capture import store

        for _ in range(250):
            async with self.kernel.db.transaction() as session:
                if await store.call(session, call_id) is not None:
                    return
            await asyncio.sleep(0.02)
        raise AssertionError(f"capture never heard of call {call_id}")

    async def open(self, username: str, call_id: str, **body: Any) -> httpx.Response:
        payload = {"amount": 1250, "currency": "GBP", "reference": "INV-1", **body}
        await self.known_call(call_id)
        return await self.client.post(
            f"/api/v1/calls/{call_id}/payments", json=payload, headers=self.agents[username][1]
        )

    async def press(self, call_id: str, keys: str) -> None:
        self.seq[call_id] = self.seq.get(call_id, 0) + 1
        sealed = self.kernel.vault.seal(self.tenant_id, keys.encode(), keypad_context(call_id))
        await self.kernel.bus.publish(
            CallKeypad(
                tenant_id=self.tenant_id,
                call_id=call_id,
                seq=self.seq[call_id],
                sealed=base64.b64encode(sealed).decode(),
            )
        )

    async def hang_up(self, call_id: str) -> None:
        await self.kernel.bus.publish(
            CallEnded(tenant_id=self.tenant_id, call_id=call_id, reason="hangup")
        )

    async def payment(self, username: str, payment_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/v1/payments/{payment_id}", headers=self.agents[username][1]
        )
        return dict(response.json())

    async def wait_status(self, username: str, payment_id: str, status: str) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        async def poll() -> None:
            seen.update(await self.payment(username, payment_id))

        for _ in range(250):
            await poll()
            if seen.get("status") == status:
                return seen
            await asyncio.sleep(0.02)
        raise AssertionError(f"status stayed {seen.get('status')!r}, wanted {status!r}: {seen}")

    def events(self, topic: str) -> list[Message]:
        return [m for m in self.published if m.topic == topic]


D = TypeVar("D", bound=Desk)


@contextlib.asynccontextmanager
async def running(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kind: type[D],
    services: list[str],
    topics: tuple[str, ...],
) -> AsyncIterator[D]:
    """`services` running on the engine the test is parametrized with, one tenant made,
    every message of `topics` recorded."""
    admin_url = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/transact.db"
    else:
        admin_url = request.getfixturevalue("postgres_admin_url")
        url = await create_database(admin_url)
    settings = load_settings(
        master_key=KEY,
        database_url=url,
        data_dir=tmp_path,
        rate_limit_scale=0,
        outbox_poll_interval=0.02,
    )
    kernel, app = runtime.build(settings, services)
    await kernel.db.migrate()
    d = kind(app, kernel, None)  # type: ignore[arg-type]

    async def record(message: Message) -> None:
        d.published.append(message)

    for topic in topics:
        kernel.bus.subscribe(topic, "test-observer", record)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
                d.client = c
                tenant = await Accounts(kernel, SigningKeys(kernel)).create_tenant(
                    "shop", mfa_required=False
                )
                d.tenant_id = tenant.id
                yield d
    finally:
        if admin_url:
            await drop_database(admin_url, url)


@pytest.fixture(params=["sqlite", "postgres"])
async def desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    topics = (
        "capture.started",
        "capture.progress",
        "capture.completed",
        "capture.cancelled",
        "payment.requested",
    )
    async with running(request, tmp_path, Desk, ["gateway", "auth", "capture"], topics) as d:
        yield d
