"""A field asked for again after the card was complete: secure mode, which ended with
`capture.completed`, comes back on, so the customer's new keys reach card capture."""

from __future__ import annotations

from tests.integration.telephony.conftest import Line
from tests.integration.telephony.test_secure_mode import play, secure
from transact.contracts.capture import CaptureCompleted, CaptureProgress
from transact.telephony.simulate import customer_audio


async def test_a_field_asked_again_turns_secure_mode_back_on(line: Line) -> None:
    customer, _ = await line.open_call("CA-again")
    await secure(line, "CA-again")
    await line.kernel.bus.publish(
        CaptureCompleted(
            tenant_id=line.tenant_id,
            capture_id="cap_1",
            call_id="CA-again",
            brand="visa",
            bin="424242",
            last4="4242",
        )
    )
    await line.wait_for("call.secure_mode", 2)
    await line.kernel.bus.publish(
        CaptureProgress(
            tenant_id=line.tenant_id,
            capture_id="cap_1",
            call_id="CA-again",
            field="expiry",
            event="recapture",
            digits=0,
            complete=False,
            valid=None,
        )
    )
    modes = await line.wait_for("call.secure_mode", 3)
    assert (modes[2].on, modes[2].capture_id) == (True, "cap_1")  # type: ignore[attr-defined]
    await play(customer, customer_audio("1228", 100, 400, None))
    pressed = await line.wait_for("call.keypad", 4)
    assert len(pressed) == 4
    assert not line.events("call.keys_outside_capture")
