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

from tests.integration.capture.conftest import Desk, running
from tests.servers import free_port
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
    topics = (
        "payment.authorized",
        "payment.declined",
        "payment.failed",
        "payment.pending",
        "payment.refunded",
    )
    services = ["gateway", "auth", "capture", "psp"]
    async with running(request, tmp_path, Shop, services, topics) as shop:
        shop.sim = simulator
        yield shop
