"""Captures a self-service flow asks for on the bus: opened without an agent, keyed like any
phone capture, submitted on the caller's confirmation, replaced, refused on a busy call."""

from __future__ import annotations

from tests.integration.capture.conftest import Desk
from tests.integration.capture.test_capture import CVV, PAN, future_expiry
from tests.waiting import eventually
from transact.contracts.capture import CaptureRequested, CaptureSubmitRequested


def requested(
    desk: Desk, capture_id: str, call_id: str = "CA-ss", **extra: object
) -> CaptureRequested:
    return CaptureRequested(
        tenant_id=desk.tenant_id,
        capture_id=capture_id,
        call_id=call_id,
        amount=1250,
        currency="GBP",
        reference="INV-1",
        **extra,  # type: ignore[arg-type]
    )


async def reader(desk: Desk) -> str:
    await desk.agent("sue", role="supervisor")
    return "sue"


async def test_a_flow_opens_keys_and_submits_a_capture_with_no_agent(desk: Desk) -> None:
    sue = await reader(desk)
    await desk.kernel.bus.publish(requested(desk, "pay_ss1", max_attempts=2))
    await eventually(lambda: bool(desk.events("capture.started")))
    started = desk.events("capture.started")[0]
    assert (started.channel, started.agent_id) == ("ivr", None)  # type: ignore[attr-defined]
    view = await desk.payment(sue, "pay_ss1")
    assert (view["status"], view["channel"], view["agent_id"]) == ("capturing", "ivr", None)

    for keys in (PAN, future_expiry(), CVV):
        await desk.press("CA-ss", keys)
    await desk.wait_status(sue, "pay_ss1", "ready")
    await desk.kernel.bus.publish(
        CaptureSubmitRequested(tenant_id=desk.tenant_id, capture_id="pay_ss1", call_id="CA-ss")
    )
    await eventually(lambda: bool(desk.events("payment.requested")))
    payment = desk.events("payment.requested")[0]
    assert (payment.payment_id, payment.channel, payment.agent_id) == ("pay_ss1", "ivr", None)  # type: ignore[attr-defined]
    await desk.wait_status(sue, "pay_ss1", "submitted")


async def test_a_repeated_request_opens_one_capture(desk: Desk) -> None:
    sue = await reader(desk)
    await desk.kernel.bus.publish(requested(desk, "pay_ss2"))
    await desk.kernel.bus.publish(requested(desk, "pay_ss2"))
    await eventually(lambda: bool(desk.events("capture.started")))
    await desk.wait_status(sue, "pay_ss2", "capturing")
    assert len(desk.events("capture.started")) == 1


async def test_keying_again_replaces_the_open_capture(desk: Desk) -> None:
    sue = await reader(desk)
    await desk.kernel.bus.publish(requested(desk, "pay_a"))
    await desk.wait_status(sue, "pay_a", "capturing")
    await desk.kernel.bus.publish(requested(desk, "pay_b", replaces="pay_a"))
    await desk.wait_status(sue, "pay_b", "capturing")
    replaced = await desk.wait_status(sue, "pay_a", "cancelled")
    assert replaced["cancel_reason"] == "ivr"


async def test_a_call_with_another_open_capture_refuses(desk: Desk) -> None:
    sue = await reader(desk)
    await desk.kernel.bus.publish(requested(desk, "pay_a"))
    await desk.wait_status(sue, "pay_a", "capturing")
    await desk.kernel.bus.publish(requested(desk, "pay_c"))
    refused = await desk.wait_status(sue, "pay_c", "cancelled")
    assert refused["cancel_reason"] == "call_busy"
    assert (await desk.payment(sue, "pay_a"))["status"] == "capturing"


async def test_an_ended_call_gets_no_capture(desk: Desk) -> None:
    sue = await reader(desk)
    await desk.hang_up("CA-ss")
    await desk.known_call("CA-ss")
    await desk.kernel.bus.publish(requested(desk, "pay_d"))
    refused = await desk.wait_status(sue, "pay_d", "cancelled")
    assert refused["cancel_reason"] == "call_ended"
    assert not desk.events("capture.started")


async def test_submitting_what_is_not_ready_does_nothing(desk: Desk) -> None:
    sue = await reader(desk)
    await desk.kernel.bus.publish(requested(desk, "pay_e"))
    await desk.wait_status(sue, "pay_e", "capturing")
    await desk.kernel.bus.publish(
        CaptureSubmitRequested(tenant_id=desk.tenant_id, capture_id="pay_e", call_id="CA-ss")
    )
    await desk.kernel.bus.publish(
        CaptureSubmitRequested(tenant_id=desk.tenant_id, capture_id="pay_e", call_id="CA-other")
    )
    await desk.press("CA-ss", PAN)
    await eventually(lambda: any(m.event == "completed" for m in desk.events("capture.progress")))  # type: ignore[attr-defined]
    assert (await desk.payment(sue, "pay_e"))["status"] == "capturing"
    assert not desk.events("payment.requested")
