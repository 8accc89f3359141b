"""Many agents claiming one call at the same moment: exactly one wins, every other gets
a clear 409 naming the holder, and `call.assigned` is published once. (Two agents at
once, and two service instances, are in test_claims.py and test_instances.py.)"""

from __future__ import annotations

import asyncio

from tests.integration.correlation.conftest import Floor

AGENTS = 12


async def test_many_agents_claiming_one_call_give_one_winner(floor: Floor) -> None:
    people = [await floor.person(f"agent{n}") for n in range(AGENTS)]
    await floor.start("CA-rush")
    answers = await asyncio.gather(
        *(floor.client.post("/api/v1/calls/CA-rush/claim", headers=h) for h in people)
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * (AGENTS - 1), [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()["agent_id"]
    for lost in (a for a in answers if a.status_code == 409):
        error = lost.json()["error"]
        assert error["code"] == "call_taken"
        assert error["agent"]["id"] == winner
    call = await floor.call("CA-rush")
    assert call is not None
    assert call.agent_id == winner
    await asyncio.sleep(0.3)
    assert len(floor.assigned_events("CA-rush")) == 1
