"""The switchboard with fake sockets and scripted DSPs: fail-closed masking, sealing, modes."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from transact.contracts import Message
from transact.contracts.calls import CallKeypad, CallSecureMode, keypad_context
from transact.kernel.cache.memory import MemoryCache
from transact.kernel.crypto import Keyring
from transact.kernel.vault import Vault
from transact.telephony import domain, tones
from transact.telephony.audio import ulaw_decode, ulaw_encode
from transact.telephony.bridge import Call, Metrics, Switchboard
from transact.telephony.dtmf import KeyEvent

TENANT = "ten_1"


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []
        self.closed: tuple[int, str | None] | None = None

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def audio(self) -> np.ndarray:
        payloads = [m["media"]["payload"] for m in self.sent if m["event"] == "media"]  # type: ignore[index]
        return np.concatenate([ulaw_decode(base64.b64decode(p)) for p in payloads])


class ScriptedDsp:
    """Passes audio through and reports the keys it is told to, or breaks when told to."""

    delay_samples = 0

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.broken = False

    def process(self, frame: np.ndarray) -> tuple[np.ndarray, list[KeyEvent]]:
        if self.broken:
            raise RuntimeError("masker fault")
        keys, self.keys = [KeyEvent(k, 0, None) for k in self.keys], []
        return frame, keys


@pytest.fixture
def vault() -> Vault:
    return Vault(MemoryCache(), Keyring([os.urandom(32)]))


@pytest.fixture
def published() -> list[Message]:
    return []


@pytest.fixture
def board(vault: Vault, published: list[Message]) -> Switchboard:
    async def publish(message: Message) -> None:
        published.append(message)

    return Switchboard(vault, publish, ScriptedDsp, Metrics(CollectorRegistry()), 60.0)


async def bridged(board: Switchboard) -> tuple[Call, FakeSocket, FakeSocket]:
    customer, agent = FakeSocket(), FakeSocket()
    start = domain.Start("CA1", "MZc", {}, "audio/x-mulaw")
    call = await board.attach_customer(TENANT, start, board.new_leg("customer", customer, "MZc"))
    await board.attach_agent(TENANT, "CA1", board.new_leg("agent", agent, "MZa"))
    return call, customer, agent


LOUD = ulaw_encode(np.full(160, 12000, dtype=np.int16))


async def test_a_failing_masker_sends_silence_not_the_audio(board: Switchboard) -> None:
    call, _, agent = await bridged(board)
    assert call.customer is not None
    broken = call.customer.dsp
    assert isinstance(broken, ScriptedDsp)
    broken.broken = True
    await board.media(call, call.customer, LOUD)
    assert len(agent.audio()) == 160
    assert not agent.audio().any()
    assert call.customer.dsp is not broken  # a fresh DSP takes the next frame
    await board.media(call, call.customer, LOUD)
    assert agent.audio()[160:].min() > 10000
    assert board.metrics.masker_failures._value.get() == 1


async def test_keys_are_sealed_and_numbered_only_in_secure_mode(
    board: Switchboard, vault: Vault, published: list[Message]
) -> None:
    call, _, _ = await bridged(board)
    assert call.customer is not None
    dsp = call.customer.dsp
    assert isinstance(dsp, ScriptedDsp)
    dsp.keys = ["1"]
    await board.media(call, call.customer, LOUD)  # not secure: dropped
    await board.secure_mode(TENANT, "CA1", True, "cap_1")
    for key in "42#":
        dsp.keys = [key]
        call.customer.samples += 8000  # a second later each time: never merged
        await board.media(call, call.customer, LOUD)
    keypad = [m for m in published if isinstance(m, CallKeypad)]
    assert [m.seq for m in keypad] == [1, 2, 3]
    opened = [
        vault.unseal(TENANT, base64.b64decode(m.sealed), keypad_context("CA1")).decode()
        for m in keypad
    ]
    assert opened == ["4", "2", "#"]
    assert all(m.correlation_id == "cap_1" for m in keypad)


async def test_the_end_of_an_older_capture_keeps_the_new_one_secure(
    board: Switchboard, published: list[Message]
) -> None:
    call, _, _ = await bridged(board)
    await board.secure_mode(TENANT, "CA1", True, "cap_2")
    await board.secure_mode(TENANT, "CA1", False, "cap_1")
    assert call.secure
    await board.secure_mode(TENANT, "CA1", True, "cap_2")  # redelivered: no second event
    await board.secure_mode(TENANT, "CA1", False, "cap_2")
    assert not call.secure
    modes = [m.on for m in published if isinstance(m, CallSecureMode)]
    assert modes == [True, False]


async def test_feedback_with_no_agent_leg_goes_straight_to_the_customer(
    board: Switchboard,
) -> None:
    customer = FakeSocket()
    start = domain.Start("CA9", "MZc", {}, "audio/x-mulaw")
    await board.attach_customer(TENANT, start, board.new_leg("customer", customer, "MZc"))
    await board.feedback(TENANT, "CA9", accepted=False)
    assert len(customer.audio()) == len(tones.REJECTED)


async def test_ending_a_call_closes_both_legs_once(
    board: Switchboard, published: list[Message]
) -> None:
    call, customer, agent = await bridged(board)
    await board.end(call, "hangup", close_reason="call ended")
    await board.end(call, "hangup", close_reason="call ended")
    assert customer.closed == agent.closed == (1000, "call ended")
    assert [m.topic for m in published] == ["call.started", "call.ended"]
    assert board.find(TENANT, "CA1") is None
