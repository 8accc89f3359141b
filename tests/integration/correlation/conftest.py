"""A running app with correlation (and auth, capture) on each database engine, telephony
played by publishing its contract messages on the kernel bus."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import create_database, drop_database
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.contracts.calls import CallAgentCode, CallEnded, CallStarted
from transact.correlation import store
from transact.correlation.domain import Call
from transact.kernel import Kernel, audit
from transact.kernel.directory import DirectoryUser
from transact.kernel.errors import ApiError
from transact.kernel.settings import load_settings

KEY = base64.b64encode(b"k" * 32).decode()
PASSWORD = "correct-horse-42"
SERVICES = ["gateway", "auth", "correlation", "capture"]
CUSTOMER = "+442079460958"
LINE = "+442071230100"


@dataclass
class Floor:
    """One contact centre (plus a second tenant next door), its people and its calls."""

    app: FastAPI
    kernel: Kernel
    client: httpx.AsyncClient = None  # type: ignore[assignment]
    tenant_id: str = ""
    other_tenant_id: str = ""
    users: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    published: list[Message] = field(default_factory=list)

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.kernel, SigningKeys(self.kernel))

    # --- people ------------------------------------------------------------------------

    async def tenant(self, name: str) -> str:
        try:
            return (await self.accounts.tenant(name)).id
        except ApiError:
            return (await self.accounts.create_tenant(name, mfa_required=False)).id

    async def person(
        self, username: str, role: str = "agent", *, tenant: str = "shop"
    ) -> dict[str, str]:
        tenant_id = self.tenant_id if tenant == "shop" else self.other_tenant_id
        user, _ = await self.accounts.create_user(tenant_id, username, role, PASSWORD)
        # Auth keeps the directory; written here too so these tests do not wait for it.
        await self.kernel.directory.put_user(
            DirectoryUser(user.id, tenant_id, username, role, False)
        )
        return await self.login(username, user.id, tenant)

    async def login(self, username: str, user_id: str, tenant: str = "shop") -> dict[str, str]:
        response = await self.client.post(
            "/api/v1/auth/login",
            json={"tenant": tenant, "username": username, "password": PASSWORD},
        )
        assert response.status_code == 200, response.text
        self.client.cookies.clear()
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        self.users[username] = (user_id, headers)
        return headers

    def id_of(self, username: str) -> str:
        return self.users[username][0]

    def headers(self, username: str) -> dict[str, str]:
        return self.users[username][1]

    async def disable_in_directory(self, username: str) -> None:
        user_id = self.id_of(username)
        entry = await self.kernel.directory.user_by_id(self.tenant_id, user_id)
        assert entry is not None
        await self.kernel.directory.put_user(
            DirectoryUser(entry.id, entry.tenant_id, entry.username, entry.role, True)
        )

    async def api_client(self, *scopes: str) -> dict[str, str]:
        client, secret = await self.accounts.create_client(self.tenant_id, "cti", list(scopes))
        token = await self.client.post(
            "/api/v1/auth/token", json={"client_id": client.id, "client_secret": secret}
        )
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    # --- telephony ---------------------------------------------------------------------

    def started(
        self,
        call_id: str,
        reference: str = "K7-3Q9",
        *,
        tenant_id: str | None = None,
        customer: str | None = CUSTOMER,
        line: str | None = LINE,
        **extra: Any,
    ) -> CallStarted:
        """`call.started` as telephony publishes it: numbers masked and digested."""
        tenant = tenant_id or self.tenant_id
        vault = self.kernel.vault
        return CallStarted(
            tenant_id=tenant,
            call_id=call_id,
            reference=reference,
            from_masked=customer[:3] + "******" + customer[-4:] if customer else None,
            to_masked=line[:3] + "******" + line[-4:] if line else None,
            from_digest=vault.digest(tenant, "phone", customer) if customer else None,
            to_digest=vault.digest(tenant, "phone", line) if line else None,
            **extra,
        )

    async def start(self, call_id: str, reference: str = "K7-3Q9", **extra: Any) -> Call:
        await self.kernel.bus.publish(self.started(call_id, reference, **extra))
        return await self.known(call_id, extra.get("tenant_id"))

    async def end(self, call_id: str, *, wait: bool = True) -> None:
        await self.kernel.bus.publish(
            CallEnded(tenant_id=self.tenant_id, call_id=call_id, reason="hangup")
        )
        if wait:
            await self.until(call_id, lambda c: not c.live)

    async def key_code(self, call_id: str, code: str, **extra: Any) -> CallAgentCode:
        message = CallAgentCode(tenant_id=self.tenant_id, call_id=call_id, code=code, **extra)
        await self.kernel.bus.publish(message)
        return message

    # --- looking -----------------------------------------------------------------------

    async def call(self, call_id: str, tenant_id: str | None = None) -> Call | None:
        async with self.kernel.db.transaction() as session:
            return await store.get(session, tenant_id or self.tenant_id, call_id)

    async def known(self, call_id: str, tenant_id: str | None = None) -> Call:
        return await self.until(call_id, lambda c: True, tenant_id)

    async def until(
        self, call_id: str, check: Any, tenant_id: str | None = None, within: float = 5.0
    ) -> Call:
        """The call once `check(call)` holds; fails after `within` seconds."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = await self.call(call_id, tenant_id)
            if found is not None and check(found):
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"call {call_id} never got there: {found}")
            await asyncio.sleep(0.02)

    def assigned_events(self, call_id: str | None = None) -> list[Any]:
        return [
            m
            for m in self.published
            if m.topic == "call.assigned" and (call_id is None or m.call_id == call_id)  # type: ignore[attr-defined]
        ]

    async def audit_actions(self, call_id: str) -> list[dict[str, Any]]:
        async with self.kernel.db.transaction() as session:
            records = await audit.records_for(session, self.tenant_id, limit=500)
        return [r for r in reversed(records) if r["target"] == call_id]


@contextlib.asynccontextmanager
async def database(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """The URL of an empty database on `engine`, dropped afterwards."""
    if engine == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path}/transact.db"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    url = await create_database(admin_url)
    try:
        yield url
    finally:
        await drop_database(admin_url, url)


@contextlib.asynccontextmanager
async def serving(url: str, tmp_path: Path, **overrides: Any) -> AsyncIterator[Floor]:
    """One running instance on the database at `url`; the tenants `shop` and `other`
    are made by the first instance and found by later ones."""
    settings = load_settings(
        master_key=KEY,
        database_url=url,
        data_dir=tmp_path,
        rate_limit_scale=0,
        outbox_poll_interval=0.02,
        **overrides,
    )
    kernel, app = runtime.build(settings, SERVICES)
    await kernel.db.migrate()
    floor = Floor(app, kernel)

    async def record(message: Message) -> None:
        floor.published.append(message)

    kernel.bus.subscribe("call.assigned", f"test-observer-{id(floor)}", record)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            floor.client = c
            floor.tenant_id = await floor.tenant("shop")
            floor.other_tenant_id = await floor.tenant("other")
            yield floor


@contextlib.asynccontextmanager
async def running(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Floor]:
    async with database(engine, tmp_path, request) as url, serving(url, tmp_path) as floor:
        yield floor


@pytest.fixture(params=["sqlite", "postgres"])
async def floor(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Floor]:
    async with running(request.param, tmp_path, request) as f:
        yield f
