"""The media stream protocol over a real WebSocket: both legs, bad input, pairing, hang-ups."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.integration.telephony.conftest import Line, frame_message
from transact.contracts.calls import CallEnded, CallStarted
from transact.kernel.audit import audit_log
from transact.telephony.audio import FRAME_SAMPLES, ulaw_decode, ulaw_encode


async def closed_with(ws: ClientConnection, seconds: float = 5.0) -> tuple[int | None, str]:
    """Read until the server closes; its close code and reason."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in ws:
                pass
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""


async def heard(ws: ClientConnection, frames: int, seconds: float = 5.0) -> np.ndarray:
    chunks: list[np.ndarray] = []
    async with asyncio.timeout(seconds):
        while len(chunks) < frames:
            message = json.loads(await ws.recv())
            if message["event"] == "media":
                chunks.append(ulaw_decode(base64.b64decode(message["media"]["payload"])))
    return np.concatenate(chunks)


def speechlike(frames: int, seed: int = 1) -> np.ndarray:
    """A random low-level signal: passes the masker untouched (not a dual tone)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(frames * FRAME_SAMPLES) * 800).astype(np.int16)


class TestRefusals:
    async def test_a_wrong_token_closes_with_a_reason_and_is_audited(self, line: Line) -> None:
        ws = await line.leg("customer")
        start = json.loads(line.start("CA-bad"))
        start["start"]["customParameters"]["token"] = "not-the-token"
        await ws.send(json.dumps(start))
        code, reason = await closed_with(ws)
        assert code == 1008
        assert "invalid media credentials" in reason
        async with line.kernel.db.transaction() as session:
            actions = (await session.scalars(select(audit_log.c.action))).all()
        assert "telephony.stream_refused" in actions
        assert not line.events("call.started")

    async def test_an_unknown_tenant_is_refused_the_same_way(self, line: Line) -> None:
        ws = await line.leg("agent")
        start = json.loads(line.start("CA-x", "agent"))
        start["start"]["customParameters"]["tenant"] = "nobody"
        await ws.send(json.dumps(start))
        assert (await closed_with(ws))[0] == 1008

    async def test_bad_json_closes_with_a_protocol_error(self, line: Line) -> None:
        ws = await line.leg("customer")
        await ws.send("{this is not json")
        code, reason = await closed_with(ws)
        assert (code, reason) == (1002, "message is not valid JSON")

    async def test_media_before_start_is_a_protocol_error(self, line: Line) -> None:
        ws = await line.leg("customer")
        await ws.send(frame_message("MZ", 1, np.zeros(FRAME_SAMPLES, dtype=np.int16)))
        code, reason = await closed_with(ws)
        assert code == 1002
        assert "start" in reason

    async def test_binary_frames_are_refused(self, line: Line) -> None:
        ws = await line.leg("customer")
        await ws.send(b"\x00\x01")
        assert (await closed_with(ws))[0] == 1002

    async def test_a_socket_that_never_starts_is_closed(self, line: Line) -> None:
        ws = await line.leg("customer")
        await ws.send(json.dumps({"event": "connected"}))
        code, reason = await closed_with(ws)
        assert (code, reason) == (1002, "no start message in time")

    async def test_an_agent_leg_without_its_call_parameter_is_refused(self, line: Line) -> None:
        ws = await line.leg("agent")
        start = json.loads(line.start("CA-1", "agent"))
        del start["start"]["customParameters"]["call"]
        await ws.send(json.dumps(start))
        code, reason = await closed_with(ws)
        assert code == 1002
        assert "customParameters.call" in reason

    async def test_unknown_events_are_tolerated(self, line: Line) -> None:
        customer, agent = await line.open_call("CA-unknown")
        await customer.send(json.dumps({"event": "something-new", "sequenceNumber": "2"}))
        await customer.send(frame_message("MZ", 3, speechlike(1)))
        assert agent is not None
        assert len(await heard(agent, 1)) == FRAME_SAMPLES


class TestPairingAndEnding:
    async def test_legs_pair_in_either_order_and_audio_flows_both_ways(self, line: Line) -> None:
        agent = await line.leg("agent")
        await agent.send(line.start("CA-order", "agent"))
        await asyncio.sleep(0.1)
        customer = await line.leg("customer")
        await customer.send(line.start("CA-order", agent="agent1", reference="K7-3Q9"))
        started = (await line.wait_for("call.started"))[0]
        assert isinstance(started, CallStarted)
        assert (started.call_id, started.reference, started.agent_hint) == (
            "CA-order",
            "K7-3Q9",
            "agent1",
        )
        await customer.send(frame_message("MZ", 2, speechlike(1)))
        await agent.send(frame_message("MZ", 2, speechlike(1, seed=2)))
        assert len(await heard(agent, 1)) == FRAME_SAMPLES
        assert len(await heard(customer, 1)) == FRAME_SAMPLES

    async def test_numbers_travel_masked_and_as_digests(self, line: Line) -> None:
        await line.open_call("CA-num", **{"from": "+447700900123", "to": "+442079460958"})
        started = line.events("call.started")[0]
        assert isinstance(started, CallStarted)
        assert started.from_masked == "+44******0123"
        assert started.to_digest == line.kernel.vault.digest(
            line.tenant_id, "phone", "+442079460958"
        )
        assert "7700900123" not in started.model_dump_json()

    async def test_a_customer_leg_alone_times_out(self, line: Line) -> None:
        customer, _ = await line.open_call("CA-alone", agent_leg=False)
        code, reason = await closed_with(customer)
        assert code == 1000
        assert "never came" in reason
        ended = (await line.wait_for("call.ended"))[0]
        assert isinstance(ended, CallEnded)
        assert ended.reason == "timeout"

    async def test_an_agent_leg_alone_times_out_without_any_call_event(self, line: Line) -> None:
        agent = await line.leg("agent")
        await agent.send(line.start("CA-ghost", "agent"))
        code, _ = await closed_with(agent)
        assert code == 1000
        assert not line.events("call.started")
        assert not line.events("call.ended")

    async def test_stop_hangs_up_and_closes_the_agent_leg(self, line: Line) -> None:
        customer, agent = await line.open_call("CA-stop")
        await customer.send(json.dumps({"event": "stop", "sequenceNumber": "2"}))
        assert agent is not None
        assert (await closed_with(agent))[0] == 1000
        ended = (await line.wait_for("call.ended"))[0]
        assert isinstance(ended, CallEnded)
        assert ended.reason == "hangup"

    async def test_an_abrupt_disconnect_ends_the_call_with_error(self, line: Line) -> None:
        customer, agent = await line.open_call("CA-abrupt")
        customer.transport.abort()  # no close frame, no stop
        ended = (await line.wait_for("call.ended"))[0]
        assert isinstance(ended, CallEnded)
        assert ended.reason == "error"
        assert agent is not None
        assert (await closed_with(agent))[0] == 1000

    async def test_an_agent_may_drop_and_come_back(self, line: Line) -> None:
        customer, agent = await line.open_call("CA-back")
        assert agent is not None
        await agent.close()
        await asyncio.sleep(0.1)
        again = await line.leg("agent")
        await again.send(line.start("CA-back", "agent"))
        await asyncio.sleep(0.1)
        await customer.send(frame_message("MZ", 2, speechlike(1)))
        assert len(await heard(again, 1)) == FRAME_SAMPLES
        assert not line.events("call.ended")

    async def test_a_second_customer_leg_for_a_live_call_is_refused(self, line: Line) -> None:
        await line.open_call("CA-dup")
        intruder = await line.leg("customer")
        await intruder.send(line.start("CA-dup"))
        code, reason = await closed_with(intruder)
        assert code == 1002
        assert "already" in reason


class TestOrdering:
    async def test_frames_out_of_order_are_played_in_order(self, line: Line) -> None:
        customer, agent = await line.open_call("CA-jitter")
        assert agent is not None
        audio = speechlike(8)
        frames = [audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(8)]
        order = [0, 2, 1, 3, 5, 4, 6, 7]
        for i in order:
            await customer.send(frame_message("MZ", i + 2, frames[i]))
        got = await heard(agent, 8)
        expected = ulaw_decode(ulaw_encode(audio))
        lag = _lag(expected, got)
        assert np.array_equal(got[lag:], expected[: len(got) - lag])

    async def test_a_lost_frame_does_not_stall_the_call(self, line: Line) -> None:
        customer, agent = await line.open_call("CA-lost")
        assert agent is not None
        for seq in [2, 4, 5, 6, 7, 8, 9, 10]:  # 3 never comes
            await customer.send(frame_message("MZ", seq, speechlike(1, seed=seq)))
        assert len(await heard(agent, 7)) == 7 * FRAME_SAMPLES


def _lag(expected: np.ndarray, got: np.ndarray) -> int:
    """Where the masker's delay line puts the first real sample in what the agent hears."""
    for lag in range(0, min(len(got), 2000)):
        if np.array_equal(got[lag : lag + 320], expected[:320]):
            return lag
    pytest.fail("the agent never heard the customer's audio")
