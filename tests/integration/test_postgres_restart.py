"""PostgreSQL restarts under a running Transact (`pg_ctl stop -m fast`, then start on the
same data directory and port): while it is down every API request gets a clear 503 with
`Retry-After`, never a 500 or a traceback; afterwards the same process serves again by
itself, and keys the customer pressed during the outage are not lost.

The database server is the test's own (tests/faults.py), so no other test sees it go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults import OwnPostgres, own_postgres
from tests.integration.capture.conftest import Desk, running
from tests.integration.capture.test_capture import CVV, PAN, future_expiry

pytestmark = [pytest.mark.postgres, pytest.mark.faults]


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    with own_postgres() as server:
        yield server


@pytest.fixture
def postgres_admin_url(own_pg: OwnPostgres) -> str:
    """Overrides the session's server: `desk` creates its database on ours."""
    return own_pg.url


@pytest.fixture(params=["postgres"])
async def desk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Desk]:
    topics = ("capture.started", "capture.progress", "capture.completed")
    async with running(request, tmp_path, Desk, ["gateway", "auth", "capture"], topics) as d:
        yield d


def assert_clear_503(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.request.url, response.text)
    assert response.headers["Retry-After"].isdigit()
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "unavailable"
    assert "try again" in error["message"]
    for leak in ("Traceback", "asyncpg", "sqlalchemy", "127.0.0.1", "postgres"):
        assert leak not in response.text


async def test_requests_during_a_postgres_restart_get_503_and_then_recover(
    desk: Desk, own_pg: OwnPostgres
) -> None:
    await desk.agent("alice")
    alice = desk.agents["alice"][1]
    await desk.call_for("alice", "CA1")
    opened = await desk.open("alice", "CA1")
    assert opened.status_code == 201, opened.text
    payment_id = opened.json()["id"]
    await desk.call_for("alice", "CA2")
    await desk.known_call("CA2")

    await asyncio.to_thread(own_pg.stop)
    try:
        during = [
            await desk.client.get(f"/api/v1/payments/{payment_id}", headers=alice),
            await desk.client.get("/api/v1/payments", headers=alice),
            await desk.client.post(
                "/api/v1/calls/CA2/payments",
                json={"amount": 990, "currency": "GBP", "reference": "INV-2"},
                headers=alice,
            ),
            await desk.client.post(f"/api/v1/payments/{payment_id}/cancel", headers=alice),
        ]
        for response in during:
            assert_clear_503(response)
        ready = await desk.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"
        # The customer keys the card while the database is down.
        await desk.press("CA1", PAN)
        await desk.press("CA1", future_expiry())
        await desk.press("CA1", CVV)
        await asyncio.sleep(0.5)
    finally:
        await asyncio.to_thread(own_pg.start)

    # The same process, not restarted: pooled connections are re-made on their own.
    view = await desk.wait_status("alice", payment_id, "ready")
    assert view["card"]["last4"] == PAN[-4:], "keys pressed during the outage were kept"
    again = await desk.client.post(
        "/api/v1/calls/CA2/payments",
        json={"amount": 990, "currency": "GBP", "reference": "INV-2"},
        headers=alice,
    )
    assert again.status_code == 201, again.text
    assert (await desk.client.get("/readyz")).status_code == 200
