"""The live call registry fed by telephony's facts through the real bus: repeats,
redeliveries, out-of-order ends, automatic links from the stream's agent parameter, and
restarts, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.integration.correlation.conftest import CUSTOMER, Floor, database, serving
from tests.waiting import eventually
from transact.contracts.calls import CallAgentCode, CallEnded, CallStarted
from transact.correlation.flow import Correlation


class TestRegistry:
    async def test_a_started_call_is_listed_with_masked_numbers_only(self, floor: Floor) -> None:
        await floor.person("sue", "supervisor")
        await floor.start("CA1", sip_call_id="abc@pbx", external_id="crm-7")
        listed = (await floor.client.get("/api/v1/calls", headers=floor.headers("sue"))).json()
        assert len(listed) == 1
        call = listed[0]
        assert (call["id"], call["reference"], call["state"], call["agent_id"]) == (
            "CA1",
            "K7-3Q9",
            "live",
            None,
        )
        assert (call["from"], call["to"]) == ("+44******0958", "+44******0100")
        assert (call["sip_call_id"], call["external_id"]) == ("abc@pbx", "crm-7")
        assert call["started_at"] is not None
        assert CUSTOMER[1:] not in str(call)
        assert "digest" not in str(call)

    async def test_the_same_call_started_twice_is_one_call(self, floor: Floor) -> None:
        await floor.person("sue", "supervisor")
        first = await floor.start("CA1")
        # Telephony publishing again (a new message id), e.g. after its own retry.
        await floor.kernel.bus.publish(floor.started("CA1", reference="ZZ-000"))
        await floor.start("CA2", "B2-222")  # delivered after the repeat: the repeat is done
        listed = (await floor.client.get("/api/v1/calls", headers=floor.headers("sue"))).json()
        assert sorted(c["id"] for c in listed) == ["CA1", "CA2"]
        assert await floor.call("CA1") == first  # the first delivery's facts are kept

    async def test_a_redelivered_start_links_once(
        self, floor: Floor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """At-least-once: the handler's work commits, its ack is lost, the bus delivers the
        very same message again."""
        await floor.person("alice")
        deliveries: list[str] = []
        original = Correlation.call_started

        async def ack_lost_once(self: Correlation, message: CallStarted) -> None:
            await original(self, message)
            deliveries.append(message.id)
            if len(deliveries) == 1:
                raise RuntimeError("connection reset before the ack")

        monkeypatch.setattr(Correlation, "call_started", ack_lost_once)
        await floor.kernel.bus.publish(floor.started("CA1", agent_hint="alice"))
        await eventually(lambda: len(deliveries) == 2, within=10)
        call = await floor.call("CA1")
        assert call is not None
        assert call.agent_id == floor.id_of("alice")
        await asyncio.sleep(0.2)
        assert len(floor.assigned_events("CA1")) == 1
        assigned = [a for a in await floor.audit_actions("CA1") if a["action"].startswith("corr")]
        assert [a["action"] for a in assigned] == ["correlation.call_assigned"]

    async def test_an_end_before_its_start_stays_ended(self, floor: Floor) -> None:
        await floor.person("sue", "supervisor")
        await floor.person("alice")
        await floor.kernel.bus.publish(
            CallEnded(tenant_id=floor.tenant_id, call_id="CA1", reason="hangup")
        )
        await floor.until("CA1", lambda c: not c.live)
        await floor.kernel.bus.publish(floor.started("CA1", agent_hint="alice"))
        late = await floor.until("CA1", lambda c: c.reference is not None)
        assert late.state.value == "ended"
        assert late.agent_id is None  # an ended call is never linked
        listed = (await floor.client.get("/api/v1/calls", headers=floor.headers("sue"))).json()
        assert listed == []
        seen = await floor.client.get("/api/v1/calls/CA1", headers=floor.headers("sue"))
        assert (seen.json()["state"], seen.json()["reference"]) == ("ended", "K7-3Q9")
        claim = await floor.client.post("/api/v1/calls/CA1/claim", headers=floor.headers("alice"))
        assert (claim.status_code, claim.json()["error"]["code"]) == (409, "call_ended")
        assert floor.assigned_events() == []

    async def test_a_redelivered_end_changes_nothing(
        self, floor: Floor, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        await floor.start("CA1")
        deliveries: list[str] = []
        original = Correlation.call_ended

        async def ack_lost_once(self: Correlation, message: CallEnded) -> None:
            await original(self, message)
            deliveries.append(message.id)
            if len(deliveries) == 1:
                raise RuntimeError("ack lost")

        monkeypatch.setattr(Correlation, "call_ended", ack_lost_once)
        await floor.end("CA1", wait=False)
        await eventually(lambda: len(deliveries) == 2, within=10)
        ended = await floor.call("CA1")
        assert ended is not None
        assert (ended.state.value, ended.end_reason) == ("ended", "hangup")
        # A second, later end (another message) does not move the end time.
        await floor.kernel.bus.publish(
            CallEnded(tenant_id=floor.tenant_id, call_id="CA1", reason="timeout")
        )
        await asyncio.sleep(0.2)
        assert await floor.call("CA1") == ended

    async def test_calls_of_two_tenants_with_one_id_stay_apart(self, floor: Floor) -> None:
        await floor.person("sue", "supervisor")
        await floor.person("olga", "supervisor", tenant="other")
        await floor.start("CA1")
        await floor.start("CA1", "OT-HER", tenant_id=floor.other_tenant_id)
        await floor.kernel.bus.publish(
            CallEnded(tenant_id=floor.other_tenant_id, call_id="CA1", reason="hangup")
        )
        await floor.until("CA1", lambda c: not c.live, floor.other_tenant_id)
        mine = await floor.client.get("/api/v1/calls/CA1", headers=floor.headers("sue"))
        theirs = await floor.client.get("/api/v1/calls/CA1", headers=floor.headers("olga"))
        assert (mine.json()["reference"], mine.json()["state"]) == ("K7-3Q9", "live")
        assert (theirs.json()["reference"], theirs.json()["state"]) == ("OT-HER", "ended")

    async def test_malformed_facts_lose_the_field_not_the_call(self, floor: Floor) -> None:
        await floor.kernel.bus.publish(
            CallStarted(
                tenant_id=floor.tenant_id,
                call_id="CA1",
                reference="R" * 40,
                from_masked="+442079460958",  # a clear number by mistake
                from_digest="not-a-digest",
                sip_call_id="s" * 300,
                external_id="crm\x00",
            )
        )
        for bad_id in ("C" * 129, "CA\x002"):
            await floor.kernel.bus.publish(
                CallStarted(tenant_id=floor.tenant_id, call_id=bad_id, reference="X")
            )
        call = await floor.known("CA1")
        assert (call.reference, call.from_digest, call.sip_call_id, call.external_id) == (
            None,
            None,
            None,
            None,
        )
        assert call.from_masked == "+44******0958"
        await asyncio.sleep(0.1)
        assert await floor.call("C" * 129) is None  # dropped, not dead-lettered
        assert await floor.kernel.bus.dead_letters("call.started", "correlation") == []


class TestAutomaticLink:
    async def test_the_streams_agent_parameter_links_the_call(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.kernel.bus.publish(floor.started("CA1", agent_hint="Alice"))
        call = await floor.until("CA1", lambda c: c.agent_id is not None)
        assert call.agent_id == floor.id_of("alice")
        await eventually(lambda: len(floor.assigned_events("CA1")) == 1)
        event = floor.assigned_events("CA1")[0]
        assert (event.agent_id, event.previous_agent_id) == (floor.id_of("alice"), None)
        mine = (await floor.client.get("/api/v1/calls", headers=floor.headers("alice"))).json()
        assert [c["id"] for c in mine] == ["CA1"]
        audited = await floor.audit_actions("CA1")
        assert audited[-1]["action"] == "correlation.call_assigned"
        assert audited[-1]["details"]["via"] == "agent_hint"

    @pytest.mark.parametrize("hint", ["nobody", "olga", "alice-disabled", " ", "x" * 80])
    async def test_a_hint_that_names_no_usable_agent_leaves_the_call_free(
        self, floor: Floor, hint: str
    ) -> None:
        await floor.person("alice-disabled")
        await floor.disable_in_directory("alice-disabled")
        await floor.person("olga", tenant="other")
        call = await floor.start("CA1", agent_hint=hint)
        assert call.agent_id is None
        assert call.live
        await asyncio.sleep(0.1)
        assert floor.assigned_events() == []

    async def test_a_repeated_start_links_once_the_directory_knows_the_agent(
        self, floor: Floor
    ) -> None:
        await floor.start("CA1", agent_hint="late")
        assert (await floor.call("CA1")).agent_id is None  # type: ignore[union-attr]
        await floor.person("late")
        await floor.kernel.bus.publish(floor.started("CA1", agent_hint="late"))
        call = await floor.until("CA1", lambda c: c.agent_id is not None)
        assert call.agent_id == floor.id_of("late")

    async def test_a_repeated_start_never_moves_a_held_call(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.person("bob")
        await floor.start("CA1", agent_hint="alice")
        await floor.until("CA1", lambda c: c.agent_id is not None)
        await floor.kernel.bus.publish(floor.started("CA1", agent_hint="bob"))
        await floor.start("CA2", "B2-222")
        assert (await floor.call("CA1")).agent_id == floor.id_of("alice")  # type: ignore[union-attr]


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_the_registry_survives_a_restart(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Nothing lives only in the process: a new instance on the same database (and a
    fresh in-process cache and bus) lists the same calls with the same holders."""
    async with database(engine, tmp_path, request) as url:
        async with serving(url, tmp_path) as first:
            await first.person("alice")
            await first.start("CA1", agent_hint="alice")
            await first.until("CA1", lambda c: c.agent_id is not None)
            await first.start("CA2", "B2-222")
            await first.end("CA2")
            alice_id = first.id_of("alice")
            before = (
                await first.client.get("/api/v1/calls", headers=first.headers("alice"))
            ).json()

        async with serving(url, tmp_path) as second:
            headers = await second.login("alice", alice_id)
            after = (await second.client.get("/api/v1/calls", headers=headers)).json()
            assert after == before
            assert [c["id"] for c in after] == ["CA1"]
            assert after[0]["agent_id"] == alice_id
            # The restarted instance keeps enforcing the holder it did not see assigned.
            await second.person("bob")
            taken = await second.client.post(
                "/api/v1/calls/CA1/claim", headers=second.headers("bob")
            )
            assert (taken.status_code, taken.json()["error"]["agent"]["username"]) == (
                409,
                "alice",
            )


async def test_an_agent_code_for_a_call_not_yet_known_waits_for_its_start(floor: Floor) -> None:
    """Out of order on the agent leg: the code arrives before `call.started`."""
    headers = await floor.person("alice")
    code = (await floor.client.post("/api/v1/calls/link-codes", headers=headers)).json()["code"]
    await floor.kernel.bus.publish(
        CallAgentCode(tenant_id=floor.tenant_id, call_id="CA1", code=code)
    )
    await asyncio.sleep(0.1)
    await floor.start("CA1")
    call = await floor.until("CA1", lambda c: c.agent_id is not None, within=10)
    assert call.agent_id == floor.id_of("alice")
