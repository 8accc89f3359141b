"""`GET /api/v1/payments`: newest first, an agent's own, a supervisor's or API client's
whole tenant, narrowed by call and status; every item the same masked view as a GET."""

from __future__ import annotations

import pytest

from tests.integration.capture.conftest import Desk
from tests.integration.capture.test_capture import ready_payment
from transact.auth import Accounts, SigningKeys


async def client_headers(desk: Desk, scopes: list[str]) -> dict[str, str]:
    client, secret = await Accounts(desk.kernel, SigningKeys(desk.kernel)).create_client(
        desk.tenant_id, "reports", scopes
    )
    token = await desk.client.post(
        "/api/v1/auth/token", json={"client_id": client.id, "client_secret": secret}
    )
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def listed(desk: Desk, headers: dict[str, str], query: str = "") -> list[dict[str, object]]:
    answer = await desk.client.get(f"/api/v1/payments{query}", headers=headers)
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def test_agents_list_their_own_and_supervisors_the_tenants(desk: Desk) -> None:
    ready = await ready_payment(desk, "CA1")  # alice's, every field valid
    bob = await desk.agent("bob")
    await desk.call_for("bob", "CA2")
    opened = await desk.open("bob", "CA2", reference="INV-2")
    assert opened.status_code == 201
    alice = desk.agents["alice"][1]
    supervisor = await desk.agent("sue", "supervisor")

    mine = await listed(desk, alice)
    assert [p["id"] for p in mine] == [ready]
    assert mine[0] == (await desk.client.get(f"/api/v1/payments/{ready}", headers=alice)).json()
    assert mine[0]["card"]["last4"] == "1111"
    assert mine[0]["max_attempts"] == 3
    assert [p["reference"] for p in await listed(desk, bob)] == ["INV-2"]
    everyone = await listed(desk, supervisor)
    assert [p["reference"] for p in everyone] == ["INV-2", "INV-1"]  # newest first
    reader = await client_headers(desk, ["payments:read"])
    assert len(await listed(desk, reader)) == 2
    nobody = await client_headers(desk, ["calls:read"])
    refused = await desk.client.get("/api/v1/payments", headers=nobody)
    assert refused.status_code == 403


async def test_the_list_narrows_by_call_status_and_count(desk: Desk) -> None:
    await ready_payment(desk, "CA1")
    supervisor = await desk.agent("sue", "supervisor")
    await desk.call_for("alice", "CA3")
    await desk.open("alice", "CA3", reference="INV-3")

    by_call = await listed(desk, supervisor, "?call_id=CA3")
    assert [p["reference"] for p in by_call] == ["INV-3"]
    ready = await listed(desk, supervisor, "?status=ready")
    assert [p["reference"] for p in ready] == ["INV-1"]
    both = await listed(desk, supervisor, "?status=ready,capturing&limit=1")
    assert [p["reference"] for p in both] == ["INV-3"]
    assert await listed(desk, supervisor, "?status=authorized") == []


@pytest.mark.parametrize(
    "query", ["?status=paid", "?status=ready,nope", "?limit=0", "?limit=501", "?call_id="]
)
async def test_a_bad_filter_is_a_clear_422(desk: Desk, query: str) -> None:
    supervisor = await desk.agent("sue", "supervisor")
    answer = await desk.client.get(f"/api/v1/payments{query}", headers=supervisor)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] in ("invalid_status", "invalid_request")
