"""Two instances of the service on one PostgreSQL database, one Redis bus and one Redis
cache, as in a distributed deployment: either may handle a message or a request, and
both always agree, because nothing lives in only one process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.correlation.conftest import Floor, database, serving
from tests.waiting import eventually
from transact.contracts.calls import CallAgentCode


async def test_two_instances_share_calls_claims_and_link_codes(
    tmp_path: Path, request: pytest.FixtureRequest, redis_url: str, namespace: str
) -> None:
    shared = {"bus_url": redis_url, "cache_url": redis_url, "namespace": namespace}
    async with (
        database("postgres", tmp_path, request) as url,
        serving(url, tmp_path, **shared) as one,
        serving(url, tmp_path, **shared) as two,
    ):
        alice = await one.person("alice")
        bob = await one.person("bob")
        alice_id = one.id_of("alice")
        # The tokens one instance issued are honoured by the other (shared sessions).
        two.users.update(one.users)

        # Telephony's facts reach whichever instance's consumer is free.
        for n in range(4):
            await one.kernel.bus.publish(one.started(f"CA{n}", f"R{n}-000"))
        for n in range(4):
            await two.until(f"CA{n}", lambda c: True)

        # A claim on one instance holds on the other, however the requests interleave.
        answers = await asyncio.gather(
            one.client.post("/api/v1/calls/CA0/claim", headers=alice),
            two.client.post("/api/v1/calls/CA0/claim", headers=bob),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        holder = next(a for a in answers if a.status_code == 200).json()["agent_id"]
        for floor in (one, two):
            held = await floor.client.get(
                "/api/v1/calls/CA0", headers=alice if holder == alice_id else bob
            )
            assert held.json()["agent_id"] == holder

        # A code issued by one instance is redeemed by whichever handles the keyed code.
        response = await two.client.post("/api/v1/calls/link-codes", headers=alice)
        code = response.json()["code"]
        await one.kernel.bus.publish(
            CallAgentCode(tenant_id=one.tenant_id, call_id="CA1", code=code)
        )
        await one.until("CA1", lambda c: c.agent_id == alice_id, within=10)

        # Each call.assigned is published once, whichever instance made it.
        def assigned(floor: Floor) -> int:
            return len(floor.assigned_events())

        await eventually(lambda: assigned(one) + assigned(two) >= 2, within=10)
        await asyncio.sleep(0.3)
        # Every observer group gets every message, once.
        assert (assigned(one), assigned(two)) == (2, 2)
        mine = (await two.client.get("/api/v1/calls", headers=alice)).json()
        assert sorted(c["id"] for c in mine) == sorted(
            ["CA1", *(["CA0"] if holder == alice_id else [])]
        )
