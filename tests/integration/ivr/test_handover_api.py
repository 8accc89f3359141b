"""`POST /api/v1/calls/{call_id}/ivr`: an agent sends the call they hold to a payment line.
Every refusal has its status and code; nothing is handed over twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.integration.ivr.handover import BILL, Desk, desk_fixture  # noqa: F401  (a fixture)

AMOUNT = {"amount": 4200, "currency": "GBP", "reference": "ORDER-42"}


def code(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


async def test_an_agent_lists_the_lines_and_hands_the_call_over(desk: Desk) -> None:
    await desk.flow(**BILL)
    await desk.flow(name="agent-line", amount_source="agent")
    lines = await desk.client.get("/api/v1/ivr/lines", headers=desk.alice)
    assert lines.status_code == 200
    assert [(f["name"], f["amount_source"]) for f in lines.json()] == [
        ("agent-line", "agent"),
        ("bills", "fixed"),
    ]
    assert "lookup_url" not in lines.json()[0]
    await desk.call("CA-h-ok")
    answer = await desk.hand_over("CA-h-ok", {"flow": "agent-line", **AMOUNT})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["call_id"], body["flow"], body["stage"]) == ("CA-h-ok", "agent-line", "greeting")
    assert (body["amount"], body["currency"], body["reference"]) == (4200, "GBP", "ORDER-42")
    assert body["agent_id"] is not None
    handover = await desk.line.wait_for("call.handover")
    assert (handover[0].on, handover[0].session_id) == (True, body["id"])  # type: ignore[attr-defined]
    # The same call again while it is with the line: refused.
    again = await desk.hand_over("CA-h-ok", {"flow": "bills"})
    assert code(again) == (409, "call_in_ivr")


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"flow": "nope"}, 404, "flow_not_found"),
        ({"flow": "bills", "amount": 0, "currency": "GBP", "reference": "R"}, 422,
         "invalid_amount"),
        ({"flow": "bills", "amount": 100, "currency": "XXX", "reference": "R"}, 422,
         "invalid_currency"),
        ({"flow": "bills", "amount": 100, "currency": "GBP"}, 422, "invalid_reference"),
        ({"flow": "bills", "reference": "R"}, 422, "invalid_amount"),
        ({"flow": "agent-line"}, 422, "amount_required"),
        ({"flow": "bills", "amount": "12.50"}, 422, "validation_error"),
        ({"flow": "bills", "extra": 1}, 422, "validation_error"),
    ],
)  # fmt: skip
async def test_bad_requests_say_what_is_wrong(
    desk: Desk, body: dict[str, Any], status: int, error: str
) -> None:
    await desk.flow(**BILL)
    await desk.flow(name="agent-line", amount_source="agent")
    await desk.call("CA-h-bad")
    answer = await desk.hand_over("CA-h-bad", body)
    assert code(answer)[0] == status, answer.text
    if error != "validation_error":
        assert code(answer) == (status, error)
    assert desk.line.events("call.handover") == []


async def test_only_the_agent_holding_the_call_may_hand_it_over(desk: Desk) -> None:
    await desk.flow(**BILL)
    await desk.call("CA-h-mine")
    assert code(await desk.hand_over("CA-h-mine", {"flow": "bills"}, desk.bob)) == (
        403,
        "not_your_call",
    )
    unknown = await desk.client.post(
        "/api/v1/calls/CA-h-nobody/ivr", json={"flow": "bills"}, headers=desk.alice
    )
    assert code(unknown) == (404, "call_not_found")
    anonymous = await desk.client.post("/api/v1/calls/CA-h-mine/ivr", json={"flow": "bills"})
    assert anonymous.status_code == 401


async def test_a_call_with_a_payment_being_captured_is_not_handed_over(desk: Desk) -> None:
    await desk.flow(**BILL)
    await desk.call("CA-h-busy")
    opened: Any = None
    for _ in range(100):
        opened = await desk.client.post(
            "/api/v1/calls/CA-h-busy/payments", json=AMOUNT, headers=desk.alice
        )
        if opened.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert opened.status_code == 201, opened.text
    await desk.line.wait_for("capture.started")
    busy: Any = None
    for _ in range(100):  # ivr learns of the capture from the bus
        busy = await desk.hand_over("CA-h-busy", {"flow": "bills"})
        if busy.status_code == 409:
            break
        await asyncio.sleep(0.05)
    assert code(busy) == (409, "capture_in_progress")
    cancelled = await desk.client.post(
        f"/api/v1/payments/{opened.json()['id']}/cancel", headers=desk.alice
    )
    assert cancelled.status_code == 200
    for _ in range(100):  # the cancelled capture frees the call
        freed = await desk.hand_over("CA-h-busy", {"flow": "bills"})
        if freed.status_code == 201:
            break
        await asyncio.sleep(0.05)
    assert freed.status_code == 201, freed.text


async def test_an_ended_call_is_not_handed_over(desk: Desk) -> None:
    await desk.flow(**BILL)
    caller, _ = await desk.call("CA-h-gone")
    # Bob is refused once ivr knows the call is Alice's.
    assert code(await desk.hand_over("CA-h-gone", {"flow": "bills"}, desk.bob))[0] == 403
    await caller.hang_up()
    await desk.line.wait_for("call.ended")
    ended: Any = None
    for _ in range(100):
        ended = await desk.hand_over("CA-h-gone", {"flow": "bills"})
        if ended.status_code == 409:
            break
        await asyncio.sleep(0.05)
    assert code(ended) == (409, "call_ended")


async def test_a_repeated_request_with_its_idempotency_key_hands_over_once(desk: Desk) -> None:
    await desk.flow(**BILL)
    await desk.call("CA-h-idem")
    headers = {**desk.alice, "Idempotency-Key": "handover-1"}
    first = await desk.hand_over("CA-h-idem", {"flow": "bills"}, headers)
    second = await desk.hand_over("CA-h-idem", {"flow": "bills"}, headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert second.json()["id"] == first.json()["id"]
    assert second.headers.get("Idempotent-Replayed") == "true"
    other = await desk.hand_over("CA-h-idem", {"flow": "nope"}, headers)
    assert other.status_code == 422  # the same key for another request
