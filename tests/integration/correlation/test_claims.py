"""Who sees which calls, and agents claiming them by id or by their short reference."""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.correlation.conftest import Floor
from tests.waiting import eventually


class TestSeeing:
    async def test_agents_see_their_own_calls_supervisors_and_readers_all(
        self, floor: Floor
    ) -> None:
        await floor.person("alice")
        await floor.person("bob")
        await floor.person("sue", "supervisor")
        await floor.person("ada", "admin")
        await floor.person("olga", "supervisor", tenant="other")
        reader = await floor.api_client("calls:read")
        await floor.start("CA1", "A1-111", agent_hint="alice")
        await floor.start("CA2", "B2-222", agent_hint="bob")
        await floor.start("CA3", "C3-333")
        await floor.start("CX1", "X1-111", tenant_id=floor.other_tenant_id)
        await floor.until("CA2", lambda c: c.agent_id is not None)
        await floor.until("CA1", lambda c: c.agent_id is not None)

        async def ids(headers: dict[str, str]) -> list[str]:
            response = await floor.client.get("/api/v1/calls", headers=headers)
            assert response.status_code == 200, response.text
            return sorted(c["id"] for c in response.json())

        assert await ids(floor.headers("alice")) == ["CA1"]
        assert await ids(floor.headers("bob")) == ["CA2"]
        assert await ids(floor.headers("sue")) == ["CA1", "CA2", "CA3"]
        assert await ids(floor.headers("ada")) == ["CA1", "CA2", "CA3"]
        assert await ids(reader) == ["CA1", "CA2", "CA3"]
        assert await ids(floor.headers("olga")) == ["CX1"]

        await floor.end("CA1")
        assert await ids(floor.headers("alice")) == []
        assert await ids(floor.headers("sue")) == ["CA2", "CA3"]

    async def test_the_list_is_newest_first_and_limited(self, floor: Floor) -> None:
        await floor.person("sue", "supervisor")
        for n in range(3):
            await floor.start(f"CA{n}", f"R{n}")
        listed = await floor.client.get("/api/v1/calls?limit=2", headers=floor.headers("sue"))
        assert [c["id"] for c in listed.json()] == ["CA2", "CA1"]
        for bad in ("0", "501", "x"):
            response = await floor.client.get(
                f"/api/v1/calls?limit={bad}", headers=floor.headers("sue")
            )
            assert (response.status_code, response.json()["error"]["code"]) == (
                422,
                "invalid_request",
            )

    async def test_who_may_not_list(self, floor: Floor) -> None:
        assert (await floor.client.get("/api/v1/calls")).status_code == 401
        payments_only = await floor.api_client("payments:read")
        response = await floor.client.get("/api/v1/calls", headers=payments_only)
        assert (response.status_code, response.json()["error"]["code"]) == (
            403,
            "insufficient_scope",
        )
        garbage = await floor.client.get("/api/v1/calls", headers={"Authorization": "Bearer nope"})
        assert garbage.status_code == 401

    async def test_one_call(self, floor: Floor) -> None:
        await floor.person("alice")
        await floor.person("bob")
        await floor.person("sue", "supervisor")
        await floor.person("olga", "supervisor", tenant="other")
        await floor.start("CA1", agent_hint="alice")
        await floor.until("CA1", lambda c: c.agent_id is not None)
        await floor.start("CA2", "B2-222")

        async def status(path: str, who: str) -> int:
            return (await floor.client.get(path, headers=floor.headers(who))).status_code

        assert await status("/api/v1/calls/CA1", "alice") == 200
        assert await status("/api/v1/calls/CA1", "sue") == 200
        assert await status("/api/v1/calls/CA1", "bob") == 404  # another agent's
        assert await status("/api/v1/calls/CA2", "alice") == 404  # nobody's yet
        assert await status("/api/v1/calls/CA1", "olga") == 404  # another tenant's
        assert await status("/api/v1/calls/nope", "sue") == 404
        assert await status("/api/v1/calls/" + "C" * 300, "sue") == 404
        assert await status("/api/v1/calls/CA%001", "sue") == 404  # PostgreSQL refuses NUL
        body = (await floor.client.get("/api/v1/calls/nope", headers=floor.headers("sue"))).json()
        assert body["error"]["code"] == "not_found"


class TestClaimById:
    async def test_an_agent_claims_a_free_call(self, floor: Floor) -> None:
        headers = await floor.person("alice")
        await floor.start("CA1")
        response = await floor.client.post("/api/v1/calls/CA1/claim", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["agent_id"] == floor.id_of("alice")
        assert response.json()["assigned_at"] is not None
        await eventually(lambda: len(floor.assigned_events("CA1")) == 1)
        event = floor.assigned_events("CA1")[0]
        assert (event.agent_id, event.previous_agent_id, event.tenant_id) == (
            floor.id_of("alice"),
            None,
            floor.tenant_id,
        )
        audited = await floor.audit_actions("CA1")
        assert audited[-1]["action"] == "correlation.call_assigned"
        assert audited[-1]["actor"] == f"user:{floor.id_of('alice')}"
        mine = (await floor.client.get("/api/v1/calls", headers=headers)).json()
        assert [c["id"] for c in mine] == ["CA1"]

    async def test_claiming_again_is_idempotent(self, floor: Floor) -> None:
        headers = await floor.person("alice")
        await floor.start("CA1")
        first = await floor.client.post("/api/v1/calls/CA1/claim", headers=headers)
        second = await floor.client.post("/api/v1/calls/CA1/claim", headers=headers)
        assert (first.status_code, second.status_code) == (200, 200)
        assert first.json() == second.json()
        await asyncio.sleep(0.2)
        assert len(floor.assigned_events("CA1")) == 1

    async def test_a_held_call_answers_409_with_its_holder(self, floor: Floor) -> None:
        await floor.person("alice")
        bob = await floor.person("bob")
        await floor.start("CA1", agent_hint="alice")
        await floor.until("CA1", lambda c: c.agent_id is not None)
        response = await floor.client.post("/api/v1/calls/CA1/claim", headers=bob)
        assert response.status_code == 409
        error = response.json()["error"]
        assert error["code"] == "call_taken"
        assert error["agent"] == {"id": floor.id_of("alice"), "username": "alice"}
        assert "alice" in error["message"]
        assert (await floor.call("CA1")).agent_id == floor.id_of("alice")  # type: ignore[union-attr]

    async def test_two_agents_claiming_at_once_get_one_call(self, floor: Floor) -> None:
        alice = await floor.person("alice")
        bob = await floor.person("bob")
        await floor.start("CA1")
        answers = await asyncio.gather(
            floor.client.post("/api/v1/calls/CA1/claim", headers=alice),
            floor.client.post("/api/v1/calls/CA1/claim", headers=bob),
        )
        assert sorted(a.status_code for a in answers) == [200, 409]
        winner = next(a for a in answers if a.status_code == 200).json()["agent_id"]
        assert (await floor.call("CA1")).agent_id == winner  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        assert len(floor.assigned_events("CA1")) == 1

    async def test_claim_errors(self, floor: Floor) -> None:
        alice = await floor.person("alice")
        olga = await floor.person("olga", tenant="other")
        await floor.start("CA1")
        await floor.start("CA2", "B2-222")
        await floor.end("CA2")
        cases = [
            ("/api/v1/calls/CA1/claim", olga, 404, "not_found"),  # another tenant's call
            ("/api/v1/calls/CA2/claim", alice, 409, "call_ended"),
            ("/api/v1/calls/nope/claim", alice, 404, "not_found"),
            ("/api/v1/calls/" + "C" * 200 + "/claim", alice, 404, "not_found"),
            ("/api/v1/calls/CA%001/claim", alice, 404, "not_found"),
        ]
        for path, headers, status, code in cases:
            response = await floor.client.post(path, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code)
        cti = await floor.api_client("calls:read", "calls:assign")
        by_client = await floor.client.post("/api/v1/calls/CA1/claim", headers=cti)
        assert by_client.status_code == 403
        assert (await floor.client.post("/api/v1/calls/CA1/claim")).status_code == 401
        assert floor.assigned_events() == []

    async def test_a_claimed_call_is_ready_for_a_payment(self, floor: Floor) -> None:
        """call.assigned reaches capture: the holder may open a payment on the call."""
        headers = await floor.person("alice")
        await floor.start("CA1")
        await floor.client.post("/api/v1/calls/CA1/claim", headers=headers)
        body = {"amount": 1250, "currency": "GBP", "reference": "INV-1"}

        async def opened() -> int:
            response = await floor.client.post(
                "/api/v1/calls/CA1/payments", json=body, headers=headers
            )
            return response.status_code

        for _ in range(100):
            status = await opened()
            if status == 201:
                break
            await asyncio.sleep(0.05)
        assert status == 201


class TestClaimByReference:
    @pytest.mark.parametrize("typed", ["K7-3Q9", "k7-3q9", "K73Q9", " k7 3q9 ", "K7 - 3Q9"])
    async def test_the_reference_as_people_type_it(self, floor: Floor, typed: str) -> None:
        headers = await floor.person("alice")
        await floor.start("CA1", "K7-3Q9")
        await floor.start("CA2", "B2-222")
        response = await floor.client.post(
            "/api/v1/calls/claim", json={"reference": typed}, headers=headers
        )
        assert response.status_code == 200, response.text
        assert (response.json()["id"], response.json()["agent_id"]) == ("CA1", floor.id_of("alice"))

    async def test_a_reused_reference_of_an_ended_call_does_not_get_in_the_way(
        self, floor: Floor
    ) -> None:
        headers = await floor.person("alice")
        await floor.start("OLD", "K7-3Q9")
        await floor.end("OLD")
        await floor.start("CA1", "K7-3Q9")
        response = await floor.client.post(
            "/api/v1/calls/claim", json={"reference": "k73q9"}, headers=headers
        )
        assert (response.status_code, response.json()["id"]) == (200, "CA1")

    async def test_reference_errors(self, floor: Floor) -> None:
        alice = await floor.person("alice")
        bob = await floor.person("bob")
        olga = await floor.person("olga", tenant="other")
        await floor.start("CA1", "K7-3Q9", agent_hint="alice")
        await floor.until("CA1", lambda c: c.agent_id is not None)
        await floor.start("CA2", "EN-DED")
        await floor.end("CA2")
        await floor.start("CA3", "TW-000")
        await floor.start("CA4", "TW-OOO")  # reads the same as TW-000
        cases: list[tuple[object, dict[str, str], int, str]] = [
            ({"reference": "K7-3Q9"}, bob, 409, "call_taken"),
            ({"reference": "K7-3Q9"}, olga, 404, "not_found"),
            ({"reference": "EN-DED"}, alice, 409, "call_ended"),
            ({"reference": "ZZ-999"}, alice, 404, "not_found"),
            ({"reference": "TW000"}, alice, 409, "ambiguous"),
            ({"reference": "K7/3Q9!"}, alice, 422, "invalid_reference"),
            ({"reference": " - "}, alice, 422, "invalid_reference"),
            ({"reference": ""}, alice, 422, "invalid_request"),
            ({"reference": "R" * 65}, alice, 422, "invalid_request"),
            ({"reference": 73}, alice, 422, "invalid_request"),
            ({"reference": None}, alice, 422, "invalid_request"),
            ({"reference": "K7-3Q9", "call": "CA1"}, alice, 422, "invalid_request"),
            ({}, alice, 422, "invalid_request"),
            (["K7-3Q9"], alice, 422, "invalid_request"),
        ]
        for body, headers, status, code in cases:
            response = await floor.client.post("/api/v1/calls/claim", json=body, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
        ambiguous = await floor.client.post(
            "/api/v1/calls/claim", json={"reference": "TW000"}, headers=alice
        )
        assert ambiguous.json()["error"]["count"] == 2
        taken = await floor.client.post(
            "/api/v1/calls/claim", json={"reference": "K7-3Q9"}, headers=bob
        )
        assert taken.json()["error"]["agent"]["username"] == "alice"
        broken = await floor.client.post(
            "/api/v1/calls/claim",
            content=b'{"reference": ',
            headers={**alice, "Content-Type": "application/json"},
        )
        assert (broken.status_code, broken.json()["error"]["code"]) == (422, "invalid_request")
