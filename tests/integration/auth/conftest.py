"""An app running the auth service on each database engine, and helpers to drive it."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pyotp
import pytest
from fastapi import FastAPI

from tests.conftest import create_database, drop_database
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.kernel import Kernel
from transact.kernel.settings import load_settings

KEY = base64.b64encode(b"a" * 32).decode()
PASSWORD = "correct-horse-42"


@dataclass
class World:
    app: FastAPI
    kernel: Kernel
    accounts: Accounts
    client: httpx.AsyncClient

    async def tenant(self, name: str, *, mfa: bool = False, sso: bool = False) -> str:
        tenant = await self.accounts.create_tenant(name, mfa_required=mfa, mfa_delegated_to_sso=sso)
        return tenant.id

    async def user(self, tenant_id: str, username: str, role: str = "agent") -> str:
        user, _ = await self.accounts.create_user(tenant_id, username, role, PASSWORD)
        return user.id

    async def login(
        self, tenant: str, username: str, password: str = PASSWORD, otp: str | None = None
    ) -> httpx.Response:
        body: dict[str, Any] = {"tenant": tenant, "username": username, "password": password}
        if otp is not None:
            body["otp"] = otp
        return await self.client.post("/api/v1/auth/login", json=body)

    async def bearer(self, tenant: str, username: str) -> dict[str, str]:
        response = await self.login(tenant, username)
        assert response.status_code == 200, response.text
        self.client.cookies.clear()  # bearer only: cookies would mask a broken token path
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def client_headers(self, tenant_id: str, scopes: list[str]) -> dict[str, str]:
        """A new API client's bearer header, its token got with client credentials."""
        client, secret = await self.accounts.create_client(tenant_id, "crm", scopes)
        token = await self.client.post(
            "/api/v1/auth/token", json={"client_id": client.id, "client_secret": secret}
        )
        assert token.status_code == 200, token.text
        return {"Authorization": f"Bearer {token.json()['access_token']}"}

    async def launch_link(self, headers: dict[str, str], username: str) -> httpx.Response:
        return await self.client.post(
            "/api/v1/auth/launch-links", json={"username": username}, headers=headers
        )

    @staticmethod
    def launch_query(response: httpx.Response) -> dict[str, str]:
        """The sign-in fields a launch link carries in its query string."""
        query = parse_qs(urlsplit(response.json()["url"]).query)
        return {k: v[0] for k, v in query.items()}

    async def enrol_mfa(self, ticket_or_headers: str | dict[str, str]) -> pyotp.TOTP:
        if isinstance(ticket_or_headers, str):
            body, headers = {"enrolment_token": ticket_or_headers}, {}
        else:
            body, headers = {}, ticket_or_headers
        started = await self.client.post("/api/v1/auth/mfa/enroll", json=body, headers=headers)
        assert started.status_code == 200, started.text
        totp = pyotp.TOTP(started.json()["secret"])
        done = await self.client.post(
            "/api/v1/auth/mfa/verify", json={**body, "otp": totp.now()}, headers=headers
        )
        assert done.status_code == 200, done.text
        self.recovery_codes: list[str] = done.json()["recovery_codes"]
        return totp


@pytest.fixture(params=["sqlite", "postgres"])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    admin_url = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/auth.db"
    else:
        admin_url = request.getfixturevalue("postgres_admin_url")
        url = await create_database(admin_url)
    overrides = getattr(request, "param_overrides", {})
    settings = load_settings(
        master_key=KEY, database_url=url, data_dir=tmp_path, rate_limit_scale=0, **overrides
    )
    kernel, app = runtime.build(settings, ["auth"])
    await kernel.db.migrate()  # as `transact migrate` does before distributed services start
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            yield World(app, kernel, Accounts(kernel, SigningKeys(kernel)), c)
    if admin_url:
        await drop_database(admin_url, url)
