"""A call handed over to a flow, at the switchboard: the bridge cut both ways (the agent
hears only the hold tone), keys to the flow's session, idempotent under redelivery, and
the way back (bridge again, or the end of a call whose agent has left)."""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.unit.telephony.test_bridge import LOUD, TENANT, FakeSocket, ScriptedDsp, bridged
from transact.contracts import Message
from transact.contracts.calls import CallEnded, CallIvrKey, ivr_key_context
from transact.kernel.cache.memory import MemoryCache
from transact.kernel.crypto import Keyring
from transact.kernel.vault import Vault
from transact.telephony import tones
from transact.telephony.audio import ulaw_decode, ulaw_encode
from transact.telephony.bridge import Metrics, Switchboard
from transact.telephony.dtmf import detect_keys


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


def media_count(socket: FakeSocket) -> int:
    return sum(1 for m in socket.sent if m["event"] == "media")


async def test_while_handed_over_the_agent_hears_only_the_hold_tone(board: Switchboard) -> None:
    call, customer, agent = await bridged(board)
    assert call.customer is not None
    assert call.agent is not None
    await board.hand_over(TENANT, "CA1", "ivs_1", on=True)
    for _ in range(50):
        await board.media(call, call.customer, LOUD)
    heard = agent.audio()
    assert len(heard) == 50 * 160
    assert np.abs(heard).max() < 2000  # soft, and nothing of the loud customer
    assert np.array_equal(heard, ulaw_decode(ulaw_encode(tones.hold(0, len(heard)))))
    await board.media(call, call.agent, LOUD)
    assert media_count(customer) == 0  # the customer does not hear the agent


async def test_keys_go_to_the_flows_session_numbered_afresh(
    board: Switchboard, published: list[Message], vault: Vault
) -> None:
    call, _, _ = await bridged(board)
    assert call.customer is not None
    await board.hand_over(TENANT, "CA1", "ivs_1", on=True)
    await board.out_of_band_key(call, call.customer, "1")
    keys = [m for m in published if isinstance(m, CallIvrKey)]
    assert [(k.seq, k.session_id) for k in keys] == [(1, "ivs_1")]
    opened = vault.unseal(TENANT, base64.b64decode(keys[0].sealed), ivr_key_context("CA1"))
    assert opened == b"1"


async def test_a_repeated_or_late_command_changes_nothing(board: Switchboard) -> None:
    call, customer, agent = await bridged(board)
    assert call.customer is not None
    await board.hand_over(TENANT, "CA1", "ivs_1", on=True)
    await board.hand_over(TENANT, "CA1", "ivs_1", on=True)
    await board.hand_over(TENANT, "CA1", "ivs_1", on=False)
    await board.hand_over(TENANT, "CA1", "ivs_1", on=False)
    await board.hand_over(TENANT, "CA1", "ivs_1", on=True)  # redelivered after its end
    assert call.handover is None
    await board.play(TENANT, "CA1", b"\x00" * 320, "ivr-9", barge_in=True, handover="ivs_1")
    assert media_count(customer) == 0  # a prompt of an ended handover is dropped
    await board.media(call, call.customer, LOUD)
    assert np.abs(agent.audio()).max() > 10000  # bridged: the agent hears the customer


async def test_a_prompt_applies_its_handover_if_the_command_is_late(board: Switchboard) -> None:
    call, customer, _ = await bridged(board)
    await board.play(TENANT, "CA1", b"\x00" * 320, "ivr-1", barge_in=True, handover="ivs_2")
    assert call.handover == "ivs_2"
    assert media_count(customer) == 2


async def test_a_call_whose_agent_left_ends_when_it_comes_back(
    board: Switchboard, published: list[Message]
) -> None:
    call, customer, _ = await bridged(board)
    assert call.agent is not None
    await board.hand_over(TENANT, "CA1", "ivs_1", on=True)
    await board.detach(call, call.agent, clean=True)
    assert not call.ended  # the flow has the customer: no waiting for an agent
    assert call.timer is None
    await board.hand_over(TENANT, "CA1", "ivs_1", on=False)
    assert call.ended
    assert customer.closed is not None
    assert [m.reason for m in published if isinstance(m, CallEnded)] == ["completed"]


def test_the_hold_tone_is_soft_single_and_never_a_key() -> None:
    tone = tones.hold(0, 8000 * 12)
    assert np.abs(tone).max() <= tones.HOLD_LEVEL
    assert detect_keys(tone) == ""
    spectrum = np.abs(np.fft.rfft(tone.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(tone), 1 / 8000)
    near = spectrum[np.abs(freqs - tones.HOLD_FREQ) < 75].sum()
    assert near / spectrum.sum() > 0.99
    # Split anywhere, the pieces join into the same pattern (frame by frame).
    assert np.array_equal(
        np.concatenate([tones.hold(0, 1000), tones.hold(1000, 7000)]), tones.hold(0, 8000)
    )
