"""Finding the call by its numbers and start time: exactly one, or a clear reason why not."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.correlation.conftest import CUSTOMER, LINE, Floor
from transact.contracts import utcnow


def iso(delta: timedelta = timedelta(0)) -> str:
    return (utcnow() + delta).isoformat()


class TestSearch:
    async def test_one_match_is_found_by_numbers_in_any_written_form(self, floor: Floor) -> None:
        headers = await floor.person("alice")
        await floor.start("CA1")
        await floor.start("CA2", "B2-222", customer="+15551230000", line="+15557650000")
        for body in (
            {"to": LINE},
            {"from": "+44 20 7946 0958"},
            {"from": "+44 (20) 7946-0958", "to": "+44 20 7123 0100"},
            {"from": CUSTOMER, "started_after": iso(-timedelta(minutes=5))},
        ):
            found = await floor.client.post("/api/v1/calls/search", json=body, headers=headers)
            assert (found.status_code, found.json().get("id")) == (200, "CA1"), (body, found.text)
            assert found.json()["agent_id"] is None  # found, not claimed
        assert floor.assigned_events() == []

    async def test_claim_true_claims_the_one_found(self, floor: Floor) -> None:
        headers = await floor.person("alice")
        await floor.start("CA1")
        found = await floor.client.post(
            "/api/v1/calls/search", json={"from": CUSTOMER, "claim": True}, headers=headers
        )
        assert (found.status_code, found.json()["agent_id"]) == (200, floor.id_of("alice"))
        again = await floor.client.post(
            "/api/v1/calls/search", json={"from": CUSTOMER, "claim": True}, headers=headers
        )
        assert again.status_code == 200
        audited = await floor.audit_actions("CA1")
        assert [a["details"]["via"] for a in audited] == ["search"]

    async def test_not_found_and_ambiguous(self, floor: Floor) -> None:
        headers = await floor.person("alice")
        await floor.start("CA1")
        await floor.start("CA2", "B2-222")  # the same customer calling twice
        await floor.start("CA3", "C3-333", customer="+15551230000")
        await floor.end("CA3")
        cases = [
            ({"from": CUSTOMER}, 409, "ambiguous"),
            ({"to": LINE}, 409, "ambiguous"),
            ({"from": "+15551230000"}, 404, "not_found"),  # only an ended call
            ({"from": "+33123456789"}, 404, "not_found"),
            ({"from": CUSTOMER, "started_after": iso(timedelta(minutes=1))}, 404, "not_found"),
            ({"from": CUSTOMER, "started_before": iso(-timedelta(hours=1))}, 404, "not_found"),
        ]
        for body, status, code in cases:
            response = await floor.client.post("/api/v1/calls/search", json=body, headers=headers)
            assert (response.status_code, response.json()["error"]["code"]) == (status, code), body
        ambiguous = await floor.client.post(
            "/api/v1/calls/search", json={"from": CUSTOMER, "claim": True}, headers=headers
        )
        assert ambiguous.json()["error"]["count"] == 2
        assert floor.assigned_events() == []

    async def test_numbers_match_within_the_tenant_only(self, floor: Floor) -> None:
        olga = await floor.person("olga", "supervisor", tenant="other")
        await floor.start("CA1")
        response = await floor.client.post(
            "/api/v1/calls/search", json={"from": CUSTOMER}, headers=olga
        )
        assert response.status_code == 404

    async def test_a_call_held_by_another_agent(self, floor: Floor) -> None:
        await floor.person("alice")
        bob = await floor.person("bob")
        sue = await floor.person("sue", "supervisor")
        await floor.start("CA1", agent_hint="alice")
        await floor.until("CA1", lambda c: c.agent_id is not None)
        for claim in (False, True):
            response = await floor.client.post(
                "/api/v1/calls/search", json={"from": CUSTOMER, "claim": claim}, headers=bob
            )
            assert (response.status_code, response.json()["error"]["code"]) == (409, "call_taken")
            assert response.json()["error"]["agent"]["username"] == "alice"
        seen = await floor.client.post("/api/v1/calls/search", json={"from": CUSTOMER}, headers=sue)
        assert (seen.status_code, seen.json()["agent_id"]) == (200, floor.id_of("alice"))

    async def test_api_clients_search_but_do_not_claim(self, floor: Floor) -> None:
        reader = await floor.api_client("calls:read")
        await floor.start("CA1")
        found = await floor.client.post("/api/v1/calls/search", json={"to": LINE}, headers=reader)
        assert (found.status_code, found.json()["id"]) == (200, "CA1")
        claim = await floor.client.post(
            "/api/v1/calls/search", json={"to": LINE, "claim": True}, headers=reader
        )
        assert (claim.status_code, claim.json()["error"]["code"]) == (403, "forbidden")
        unscoped = await floor.api_client("payments:read")
        denied = await floor.client.post(
            "/api/v1/calls/search", json={"to": LINE}, headers=unscoped
        )
        assert denied.status_code == 403

    async def test_bad_searches_are_422_and_say_which_field(self, floor: Floor) -> None:
        headers = await floor.person("alice")
        cases: list[tuple[object, str, str | None]] = [
            ({"from": "02079460958"}, "invalid_number", "from"),
            ({"to": "+44 20 7946 095x"}, "invalid_number", "to"),
            ({"to": "+0442079460958"}, "invalid_number", "to"),
            ({"to": "+12"}, "invalid_number", "to"),
            ({"to": "+" + "1" * 31}, "invalid_number", "to"),
            ({"to": "+" + "1" * 40}, "invalid_request", None),
            ({"to": 442079460958}, "invalid_request", None),
            ({"started_after": "yesterday"}, "invalid_time", "started_after"),
            ({"started_before": "2026-02-30T10:00:00Z"}, "invalid_time", "started_before"),
            ({"started_after": "2026-11-27T10:00:00"}, "invalid_time", "started_after"),
            ({"started_after": "0001-01-01T00:00:00+01:00"}, "invalid_time", "started_after"),
            ({"started_after": 1700000000}, "invalid_request", None),
            (
                {"started_after": iso(timedelta(minutes=1)), "started_before": iso()},
                "invalid_time",
                "started_after",
            ),
            ({}, "no_criteria", None),
            ({"claim": True}, "no_criteria", None),
            ({"claim": "yes"}, "invalid_request", None),
            ({"from_": CUSTOMER}, "invalid_request", None),
            ({"number": CUSTOMER}, "invalid_request", None),
            ("+442079460958", "invalid_request", None),
        ]
        for body, code, field in cases:
            response = await floor.client.post("/api/v1/calls/search", json=body, headers=headers)
            error = response.json()["error"]
            assert (response.status_code, error["code"]) == (422, code), (body, error)
            if field is not None:
                assert error["field"] == field
            # The number typed is never echoed back.
            assert "2079460958" not in response.text
        broken = await floor.client.post(
            "/api/v1/calls/search",
            content=b"{not json",
            headers={**headers, "Content-Type": "application/json"},
        )
        assert (broken.status_code, broken.json()["error"]["code"]) == (422, "invalid_request")
