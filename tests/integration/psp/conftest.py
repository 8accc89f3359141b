"""The whole phone payment: capture, the PSP adapter, and a PSP simulator over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from tests.conftest import create_database, drop_database
from tests.integration.capture.conftest import KEY, Desk
from tests.servers import free_port
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.kernel.settings import load_settings
from transact.psp.simulator import create_simulator_app

CREDENTIALS = {
    "stripe": {"secret_key": "sk_test_simulator"},
    "adyen": {"api_key": "sim-api-key", "merchant_account": "TransactTest"},
    "checkout": {"secret_key": "sk_sbox_simulator"},
}
OPTIONS = {"adyen": {"status_query": "true"}}


@pytest.fixture(scope="session")
def simulator() -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_simulator_app(hang_seconds=3),
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="off",
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


class Shop(Desk):
    sim: str = ""

    async def routes(self, *routes: dict[str, Any], mode: str = "sale") -> None:
        admin = self.agents.get("root") or (None, await self.agent("root", "admin"))
        response = await self.client.put(
            "/api/v1/psp/routes",
            json={
                "mode": mode,
                "routes": list(routes),
                "credentials": CREDENTIALS,
                "options": OPTIONS,
            },
            headers=admin[1],
        )
        assert response.status_code == 200, response.text

    async def charges(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            return dict((await http.get(f"{self.sim}/_sim/charges")).json())

    async def fault(self, provider: str, fault: str, count: int = 1) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{self.sim}/_sim/faults",
                json={"provider": provider, "fault": fault, "count": count},
            )
            assert response.status_code < 300, response.text


@pytest.fixture(params=["sqlite", "postgres"])
async def shop(
    request: pytest.FixtureRequest, tmp_path: Path, simulator: str
) -> AsyncIterator[Shop]:
    admin_url = ""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/psp.db"
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
    kernel, app = runtime.build(settings, ["gateway", "auth", "capture", "psp"])
    await kernel.db.migrate()
    shop = Shop(app, kernel, None)  # type: ignore[arg-type]
    shop.sim = simulator

    async def record(message: Message) -> None:
        shop.published.append(message)

    for topic in ("payment.authorized", "payment.declined", "payment.failed", "payment.refunded"):
        kernel.bus.subscribe(topic, "test-observer", record)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            shop.client = c
            tenant = await Accounts(kernel, SigningKeys(kernel)).create_tenant(
                "shop", mfa_required=False
            )
            shop.tenant_id = tenant.id
            yield shop
    if admin_url:
        await drop_database(admin_url, url)
