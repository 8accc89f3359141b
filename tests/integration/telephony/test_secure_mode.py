"""Keys on a live call: masked for the agent always, sealed to card capture only in secure
mode, merged with out-of-band reports, agent codes, feedback tones, the simulator."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
from websockets.asyncio.client import ClientConnection

from tests.integration.telephony.conftest import Line, frame_message
from tests.integration.telephony.test_media_streams import heard
from tests.leaks import card_numbers_in
from transact.contracts.calls import CallAgentCode, CallKeypad, CallSecureMode, keypad_context
from transact.contracts.capture import CaptureCompleted, CaptureProgress, CaptureStarted
from transact.telephony import tones
from transact.telephony.audio import FRAME_SAMPLES
from transact.telephony.dtmf import detect_keys
from transact.telephony.simulate import CallPlan, customer_audio, simulate_call


async def play(ws: ClientConnection, audio: np.ndarray, first_seq: int = 2) -> int:
    """Send audio as 20 ms frames; returns the next sequence number."""
    seq = first_seq
    for i in range(0, len(audio), FRAME_SAMPLES):
        frame = np.pad(audio[i : i + FRAME_SAMPLES], (0, max(0, i + FRAME_SAMPLES - len(audio))))
        await ws.send(frame_message("MZ", seq, frame))
        seq += 1
    return seq


async def secure(line: Line, call_id: str, capture_id: str = "cap_1") -> None:
    await line.kernel.bus.publish(
        CaptureStarted(
            tenant_id=line.tenant_id,
            capture_id=capture_id,
            call_id=call_id,
            channel="phone",
            agent_id="usr_1",
            fields=["pan", "expiry", "cvv"],
        )
    )
    await line.wait_for("call.secure_mode")


def opened(line: Line, message: CallKeypad) -> str:
    blob = base64.b64decode(message.sealed)
    return line.kernel.vault.unseal(line.tenant_id, blob, keypad_context(message.call_id)).decode()


async def test_outside_secure_mode_keys_are_masked_and_dropped(line: Line) -> None:
    customer, agent = await line.open_call("CA-plain")
    assert agent is not None
    audio = customer_audio("4242", 100, 400, None)
    await play(customer, audio)
    agent_heard = await heard(agent, len(audio) // FRAME_SAMPLES)
    assert detect_keys(audio) == "4242"
    assert detect_keys(agent_heard) == ""
    await asyncio.sleep(0.2)
    assert not line.events("call.keypad")
    # One notice for the burst, so the agent can ask the customer to wait.
    assert len(line.events("call.keys_outside_capture")) == 1


async def test_in_secure_mode_keys_go_sealed_to_capture_in_order(line: Line) -> None:
    customer, agent = await line.open_call("CA-secure")
    assert agent is not None
    await secure(line, "CA-secure")
    mode = line.events("call.secure_mode")[0]
    assert isinstance(mode, CallSecureMode)
    assert (mode.on, mode.capture_id) == (True, "cap_1")
    keys = "4111111111111111#1228#"
    audio = customer_audio(keys, 100, 400, None)
    await play(customer, audio)
    pressed = await line.wait_for("call.keypad", len(keys))
    assert all(isinstance(m, CallKeypad) for m in pressed)
    assert [m.seq for m in pressed] == list(range(1, len(keys) + 1))  # type: ignore[attr-defined]
    assert "".join(opened(line, m) for m in pressed) == keys  # type: ignore[arg-type]
    assert card_numbers_in(" ".join(m.model_dump_json() for m in pressed)) == []
    assert detect_keys(await heard(agent, len(audio) // FRAME_SAMPLES)) == ""


async def test_secure_mode_ends_with_the_capture(line: Line) -> None:
    customer, _ = await line.open_call("CA-done")
    await secure(line, "CA-done")
    await line.kernel.bus.publish(
        CaptureCompleted(
            tenant_id=line.tenant_id,
            capture_id="cap_1",
            call_id="CA-done",
            brand="visa",
            bin="424242",
            last4="4242",
        )
    )
    await line.wait_for("call.secure_mode", 2)
    assert line.events("call.secure_mode")[1].on is False  # type: ignore[attr-defined]
    await play(customer, customer_audio("12", 100, 400, None))
    await asyncio.sleep(0.3)
    assert not line.events("call.keypad")


async def test_an_out_of_band_report_of_a_heard_key_counts_once(line: Line) -> None:
    customer, _ = await line.open_call("CA-oob")
    await secure(line, "CA-oob")
    seq = await play(customer, customer_audio("5", 100, 60, None))
    await customer.send(
        json.dumps({"event": "dtmf", "sequenceNumber": str(seq), "dtmf": {"digit": "5"}})
    )
    seq = await play(customer, customer_audio("", 0, 400, None), seq + 1)
    # A key only the platform saw (no tone in the audio) still counts.
    await customer.send(
        json.dumps({"event": "dtmf", "sequenceNumber": str(seq), "dtmf": {"digit": "9"}})
    )
    pressed = await line.wait_for("call.keypad", 2)
    await asyncio.sleep(0.3)
    assert [opened(line, m) for m in line.events("call.keypad")] == ["5", "9"]  # type: ignore[arg-type]
    assert len(pressed) == 2


async def test_the_agent_keying_a_code_on_their_phone_publishes_it(line: Line) -> None:
    customer, agent = await line.open_call("CA-code")
    assert agent is not None
    audio = customer_audio("482913", 100, 400, None)
    await play(agent, audio)
    code = (await line.wait_for("call.agent_code"))[0]
    assert isinstance(code, CallAgentCode)
    assert (code.call_id, code.code) == ("CA-code", "482913")
    # The customer hears the agent's keys masked too.
    assert detect_keys(await heard(customer, len(audio) // FRAME_SAMPLES)) == ""


async def test_capture_verdicts_play_feedback_tones_to_the_customer(line: Line) -> None:
    customer, agent = await line.open_call("CA-tone")
    assert agent is not None
    await secure(line, "CA-tone")
    await line.kernel.bus.publish(
        CaptureProgress(
            tenant_id=line.tenant_id,
            capture_id="cap_1",
            call_id="CA-tone",
            field="pan",
            event="completed",
            digits=16,
            complete=True,
            valid=True,
        )
    )
    await asyncio.sleep(0.2)
    silence = np.zeros(len(tones.ACCEPTED) + FRAME_SAMPLES, dtype=np.int16)
    await play(agent, silence)
    got = await heard(customer, len(silence) // FRAME_SAMPLES)
    assert np.abs(got).max() > 3000  # the beeps, riding on the agent's silent audio
    assert detect_keys(got) == ""


async def test_the_simulator_plays_a_call_and_records_what_the_agent_hears(line: Line) -> None:
    plan = CallPlan(url=line.url, tenant="shop", token=line.token, keys="0123456789*#ABCD")
    plan.realtime = False
    report = await simulate_call(plan)
    summary = report.summary()
    assert summary["keys_sent"] == "0123456789*#ABCD"
    assert summary["keys_agent_could_decode"] == ""
    assert summary["agent_heard_seconds"] > 5
    ended = await line.wait_for("call.ended")
    assert ended[0].reason == "hangup"  # type: ignore[attr-defined]
