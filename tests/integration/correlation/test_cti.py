"""CTI integrations and supervisors: assigning and transferring calls, finding them by
SIP Call-ID or the CTI's own correlation id."""

from __future__ import annotations

import asyncio

from tests.integration.correlation.conftest import Floor
from tests.waiting import eventually


class TestAssign:
    async def test_assign_then_transfer_publishes_and_audits_each_move(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.person("bob")
        sue = await floor.person("sue", "supervisor")
        cti = await floor.api_client("calls:assign")
        await floor.start("CA1")

        first = await floor.client.post(
            "/api/v1/calls/CA1/assign", json={"agent_username": "Alice"}, headers=sue
        )
        assert (first.status_code, first.json()["agent_id"]) == (200, floor.id_of("alice"))
        moved = await floor.client.post(
            "/api/v1/calls/CA1/assign", json={"agent_id": floor.id_of("bob")}, headers=cti
        )
        assert (moved.status_code, moved.json()["agent_id"]) == (200, floor.id_of("bob"))
        again = await floor.client.post(
            "/api/v1/calls/CA1/assign", json={"agent_id": floor.id_of("bob")}, headers=cti
        )
        assert again.status_code == 200

        await eventually(lambda: len(floor.assigned_events("CA1")) == 2)
        await asyncio.sleep(0.2)
        events = floor.assigned_events("CA1")
        assert len(events) == 2  # the repeat changed nothing
        assert [(e.agent_id, e.previous_agent_id) for e in events] == [
            (floor.id_of("alice"), None),
            (floor.id_of("bob"), floor.id_of("alice")),
        ]
        audited = await floor.audit_actions("CA1")
        assert [a["action"] for a in audited] == [
            "correlation.call_assigned",
            "correlation.call_transferred",
        ]
        transfer = audited[1]
        assert transfer["actor"].startswith("client:")
        assert transfer["details"] == {
            "agent_id": floor.id_of("bob"),
            "previous_agent_id": floor.id_of("alice"),
            "via": "assign",
        }
        # The call moved: bob sees it, alice no longer does.
        bob_sees = await floor.client.get("/api/v1/calls", headers=floor.headers("bob"))
        alice_sees = await floor.client.get("/api/v1/calls", headers=floor.headers("alice"))
        assert ([c["id"] for c in bob_sees.json()], alice_sees.json()) == (["CA1"], [])

    async def test_a_transfer_takes_the_open_payment_along(self, floor: Floor) -> None:
        alice = await floor.person("alice")
        bob = await floor.person("bob")
        sue = await floor.person("sue", "supervisor")
        await floor.start("CA1")
        await floor.client.post("/api/v1/calls/CA1/claim", headers=alice)
        body = {"amount": 500, "currency": "GBP", "reference": "INV-9"}
        opened = None
        for _ in range(100):
            opened = await floor.client.post("/api/v1/calls/CA1/payments", json=body, headers=alice)
            if opened.status_code == 201:
                break
            await asyncio.sleep(0.05)
        assert opened is not None
        assert opened.status_code == 201
        payment = opened.json()["id"]
        await floor.client.post(
            "/api/v1/calls/CA1/assign", json={"agent_username": "bob"}, headers=sue
        )
        for _ in range(100):
            seen = await floor.client.get(f"/api/v1/payments/{payment}", headers=bob)
            if seen.status_code == 200:
                break
            await asyncio.sleep(0.05)
        assert seen.json()["agent_id"] == floor.id_of("bob")

    async def test_assign_errors(self, floor: Floor) -> None:
        alice = await floor.person("alice")
        await floor.person("gone")
        await floor.disable_in_directory("gone")
        sue = await floor.person("sue", "supervisor")
        olga = await floor.person("olga", "supervisor", tenant="other")
        reader = await floor.api_client("calls:read")
        await floor.start("CA1")
        await floor.start("CA2", "B2-222")
        await floor.end("CA2")
        cases: list[tuple[str, object, dict[str, str], int, str]] = [
            ("CA1", {"agent_username": "alice"}, alice, 403, "forbidden"),
            ("CA1", {"agent_username": "alice"}, reader, 403, "insufficient_scope"),
            ("CA1", {"agent_username": "alice"}, olga, 404, "not_found"),
            ("CA2", {"agent_username": "alice"}, sue, 409, "call_ended"),
            ("nope", {"agent_username": "alice"}, sue, 404, "not_found"),
            ("CA1", {"agent_username": "nobody"}, sue, 422, "unknown_agent"),
            ("CA1", {"agent_id": "usr_nobody"}, sue, 422, "unknown_agent"),
            ("CA1", {"agent_username": "olga"}, sue, 422, "unknown_agent"),
            ("CA1", {"agent_username": "gone"}, sue, 422, "agent_disabled"),
            ("CA1", {"agent_id": "x", "agent_username": "alice"}, sue, 422, "invalid_agent"),
            ("CA1", {}, sue, 422, "invalid_agent"),
            ("CA1", {"agent_username": ""}, sue, 422, "invalid_request"),
            ("CA1", {"agent_username": 7}, sue, 422, "invalid_request"),
            ("CA1", {"agent": "alice"}, sue, 422, "invalid_request"),
            ("CA1", "alice", sue, 422, "invalid_request"),
        ]
        for call_id, body, headers, status, code in cases:
            response = await floor.client.post(
                f"/api/v1/calls/{call_id}/assign", json=body, headers=headers
            )
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), (
                call_id,
                body,
            )
        await asyncio.sleep(0.1)
        assert floor.assigned_events() == []


class TestLookup:
    async def test_by_sip_call_id_or_external_id(self, floor: Floor) -> None:
        sue = await floor.person("sue", "supervisor")
        reader = await floor.api_client("calls:read")
        await floor.start("CA1", sip_call_id="a84b4c76e66710@pc33.example.com", external_id="c-1")
        for query in ("sip_call_id=a84b4c76e66710%40pc33.example.com", "external_id=c-1"):
            for headers in (sue, reader):
                found = await floor.client.get(f"/api/v1/calls/lookup?{query}", headers=headers)
                assert (found.status_code, found.json()["id"]) == (200, "CA1")

    async def test_a_live_call_wins_over_ended_ones_with_the_same_id(self, floor: Floor) -> None:
        reader = await floor.api_client("calls:read")
        await floor.start("OLD", "O1-111", external_id="case-9")
        await floor.end("OLD")
        ended_only = await floor.client.get(
            "/api/v1/calls/lookup?external_id=case-9", headers=reader
        )
        assert (ended_only.json()["id"], ended_only.json()["state"]) == ("OLD", "ended")
        await floor.start("NEW", "N1-111", external_id="case-9")
        found = await floor.client.get("/api/v1/calls/lookup?external_id=case-9", headers=reader)
        assert found.json()["id"] == "NEW"
        await floor.start("NEW2", "N2-222", external_id="case-9")
        both = await floor.client.get("/api/v1/calls/lookup?external_id=case-9", headers=reader)
        assert (both.status_code, both.json()["error"]["code"]) == (409, "ambiguous")

    async def test_lookup_errors(self, floor: Floor) -> None:
        alice = await floor.person("alice")
        olga = await floor.person("olga", "supervisor", tenant="other")
        sue = await floor.person("sue", "supervisor")
        assigner = await floor.api_client("calls:assign")
        await floor.start("CA1", sip_call_id="sip-1")
        cases = [
            ("sip_call_id=sip-1", alice, 403, "forbidden"),
            ("sip_call_id=sip-1", assigner, 403, "insufficient_scope"),
            ("sip_call_id=sip-1", olga, 404, "not_found"),
            ("sip_call_id=sip-2", sue, 404, "not_found"),
            ("external_id=crm%00", sue, 404, "not_found"),
            ("", sue, 422, "invalid_lookup"),
            ("sip_call_id=sip-1&external_id=x", sue, 422, "invalid_lookup"),
            ("sip_call_id=", sue, 422, "invalid_request"),
            ("sip_call_id=" + "s" * 256, sue, 422, "invalid_request"),
        ]
        for query, headers, status, code in cases:
            response = await floor.client.get(f"/api/v1/calls/lookup?{query}", headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), query
