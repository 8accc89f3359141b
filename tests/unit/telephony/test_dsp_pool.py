"""The pooled DSP: many legs' detection and masking in shared arrays, the frames of one
event-loop turn in one pass. Every leg must get exactly what a `LegDsp` of its own gives
(the same masked audio, the same keys), whoever shares its pass, whatever the frames."""

from __future__ import annotations

import asyncio
import gc
import os

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from tests.unit.telephony.test_bridge import TENANT, FakeSocket
from tests.unit.telephony.test_dtmf_conformance import mixed_streams
from tests.unit.telephony.test_masking import customer_call
from transact.kernel.cache.memory import MemoryCache
from transact.kernel.crypto import Keyring
from transact.kernel.vault import Vault
from transact.telephony import domain
from transact.telephony.audio import ulaw_decode, ulaw_encode
from transact.telephony.bridge import Call, Metrics, Switchboard
from transact.telephony.dtmf import DetectorSlots, DtmfDetector, KeyEvent
from transact.telephony.masking import DspFailed, DspPool, LegDsp, PooledDsp

Samples = np.ndarray
Output = tuple[list[Samples], list[KeyEvent]]


def alone(signal: Samples, sizes: list[int]) -> Output:
    """What a leg of its own makes of `signal` cut into frames of `sizes`."""
    dsp = LegDsp()
    audio: list[Samples] = []
    keys: list[KeyEvent] = []
    position = 0
    for size in sizes:
        out, found = dsp.process(signal[position : position + size])
        audio.append(out)
        keys += found
        position += size
    return audio, keys


def same(got: Output, expected: Output) -> bool:
    return bool((np.concatenate(got[0]) == np.concatenate(expected[0])).all()) and (
        got[1] == expected[1]
    )


def frames_of(signal: Samples, size: int = 160) -> list[int]:
    return [size] * (len(signal) // size)


# --- one pass for many legs ---------------------------------------------------------------


def test_two_legs_in_one_pass_get_exactly_what_each_gets_alone() -> None:
    calls = [customer_call(1), customer_call(2)]
    length = min(len(call) for call in calls) // 160 * 160
    pool = DspPool(capacity=2)
    legs = [pool.lease() for _ in calls]
    together: list[Output] = [([], []) for _ in calls]
    for start in range(0, length, 160):
        results = pool.process_many(
            [(leg, call[start : start + 160]) for leg, call in zip(legs, calls, strict=True)]
        )
        for index, (out, found) in enumerate(results):
            together[index][0].append(out)
            together[index][1].extend(found)
    for index, call in enumerate(calls):
        expected = alone(call, frames_of(call[:length]))
        assert same(together[index], expected), index
        assert expected[1]  # the calls hold keys...
        assert (np.concatenate(expected[0])[320:] != call[: length - 320]).any()  # ...masked
    assert pool.capacity == 2  # nothing leaked or grew


def test_any_frames_in_any_company_agree_with_a_leg_alone() -> None:
    """Legs that skip a turn, send twice in one pass, frames of odd lengths and of more
    than a second: every leg still gets what it gets alone."""
    rng = np.random.default_rng(5)
    calls = [customer_call(seed) for seed in range(6)]
    pool = DspPool(capacity=1)  # grows
    legs = [pool.lease() for _ in calls]
    sizes: list[list[int]] = [[] for _ in calls]
    got: list[Output] = [([], []) for _ in calls]
    position = [0] * len(calls)
    while any(at < len(call) for at, call in zip(position, calls, strict=True)):
        work: list[tuple[int, Samples]] = []
        for index in rng.permutation(len(calls)).tolist():
            for _ in range(int(rng.choice([0, 1, 1, 1, 2]))):
                size = int(rng.choice([1, 7, 40, 159, 160, 160, 160, 161, 320, 1000, 9000]))
                frame = calls[index][position[index] : position[index] + size]
                position[index] += len(frame)
                sizes[index].append(len(frame))
                work.append((index, frame))
        results = pool.process_many([(legs[index], frame) for index, frame in work])
        for (index, frame), (out, found) in zip(work, results, strict=True):
            assert len(out) == len(frame)
            got[index][0].append(out)
            got[index][1].extend(found)
    for index, call in enumerate(calls):
        assert same(got[index], alone(call, sizes[index])), index


def test_streams_fed_in_any_subsets_agree_with_single_detectors() -> None:
    streams = mixed_streams(12, 1.5)
    slots = DetectorSlots(len(streams))
    rng = np.random.default_rng(3)
    found: list[list[KeyEvent]] = [[] for _ in streams]
    position = [0] * len(streams)
    length = len(streams[0]) // 160 * 160
    while min(position) < length:
        chosen = [i for i in range(len(streams)) if position[i] < length and rng.random() < 0.6]
        if not chosen:
            continue
        rows = np.array(chosen)
        frames = np.stack([streams[i][position[i] : position[i] + 160] for i in chosen])
        events, _ = slots.analyse(rows, frames)
        for row, stream in enumerate(chosen):
            found[stream] += events.get(row, [])
            position[stream] += 160
    for index, signal in enumerate(streams):
        assert found[index] == DtmfDetector().feed(signal[:length]), index
    assert sum(len(events) for events in found) > 20


def test_a_slot_is_fed_once_per_pass() -> None:
    with pytest.raises(ValueError, match="once per pass"):
        DetectorSlots(2).analyse(np.array([1, 1]), np.zeros((2, 160), dtype=np.int16))


# --- slots ----------------------------------------------------------------------------------


def test_slots_come_back_when_closed_or_forgotten_and_start_afresh() -> None:
    pool = DspPool(capacity=2)
    first, second = pool.lease(), pool.lease()
    third = pool.lease()  # grows
    assert pool.capacity == 4
    assert pool.leased == 3
    loud = np.full(160, 5000, dtype=np.int16)
    for _ in range(3):
        first.process(loud)
    slot = first.slot
    first.close()
    first.close()  # twice is once
    assert pool.leased == 2
    del second
    gc.collect()
    assert pool.leased == 1
    reused = [pool.lease() for _ in range(3)]
    assert slot in {dsp.slot for dsp in reused}
    for dsp in reused:
        out, keys = dsp.process(np.zeros(160, dtype=np.int16))
        assert not out.any()  # nothing of the old call's delayed audio
        assert keys == []
    assert third.slot not in {dsp.slot for dsp in reused}


def test_a_closed_leg_gets_silence_and_touches_no_slot() -> None:
    pool = DspPool(capacity=1)
    gone = pool.lease()
    gone.close()
    taken = pool.lease()  # the same slot, for another call
    assert taken.slot == gone.slot
    loud = np.full(160, 5000, dtype=np.int16)
    (silent, keys), (out, _) = pool.process_many([(gone, loud), (taken, loud)])
    assert not silent.any()
    assert keys == []
    assert (out == LegDsp().process(loud)[0]).all()


# --- one pass per event-loop turn -------------------------------------------------------------


async def test_frames_of_one_turn_share_a_pass_and_each_leg_keeps_its_order() -> None:
    calls = [customer_call(seed) for seed in range(4)]
    length = min(len(call) for call in calls) // 160 * 160
    pool = DspPool()
    legs = [pool.lease() for _ in calls]

    async def send(leg: PooledDsp, call: Samples) -> Output:
        audio: list[Samples] = []
        keys: list[KeyEvent] = []
        for start in range(0, length, 160):
            out, found = await leg.process_soon(call[start : start + 160])
            audio.append(out)
            keys += found
        return audio, keys

    results = await asyncio.gather(
        *(send(leg, call) for leg, call in zip(legs, calls, strict=True))
    )
    for call, got in zip(calls, results, strict=True):
        assert same(got, alone(call, frames_of(call[:length])))
    assert pool.passed_frames == len(calls) * length // 160
    assert pool.passes == length // 160  # every leg's frame of a turn in one pass


async def test_a_leg_closed_while_its_frame_waits_gets_silence() -> None:
    pool = DspPool(capacity=2)
    staying, leaving = pool.lease(), pool.lease()
    call = customer_call(7)
    frame = call[:160]
    waiting = asyncio.ensure_future(leaving.process_soon(frame))
    kept = asyncio.ensure_future(staying.process_soon(frame))
    await asyncio.sleep(0)  # both queued, not yet flushed
    leaving.close()
    newcomer = pool.lease()  # takes the slot back in the same turn
    fresh = asyncio.ensure_future(newcomer.process_soon(frame))
    (silent, keys), (out, _), (new_out, _) = await asyncio.gather(waiting, kept, fresh)
    assert not silent.any()
    assert keys == []
    expected = LegDsp().process(frame)[0]
    assert (out == expected).all()
    assert (new_out == expected).all()


async def test_a_failing_pass_fails_every_leg_in_it_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = DspPool()
    legs = [pool.lease() for _ in range(3)]

    def broken(*_: object) -> None:
        raise FloatingPointError("masker fault")

    monkeypatch.setattr(pool.detector, "analyse", broken)
    outcomes = await asyncio.gather(
        *(leg.process_soon(np.ones(160, dtype=np.int16)) for leg in legs), return_exceptions=True
    )
    assert all(isinstance(outcome, DspFailed) for outcome in outcomes)


# --- the switchboard on the pool ---------------------------------------------------------------


@pytest.fixture
def pooled_board() -> tuple[Switchboard, DspPool]:
    async def publish(_: object) -> None:
        return None

    vault = Vault(MemoryCache(), Keyring([os.urandom(32)]))
    pool = DspPool(capacity=2)
    return Switchboard(vault, publish, pool.lease, Metrics(CollectorRegistry()), 60.0), pool


async def bridge(board: Switchboard, name: str) -> tuple[Call, FakeSocket]:
    start = domain.Start(name, f"MZc{name}", {}, "audio/x-mulaw")
    call = await board.attach_customer(TENANT, start, board.new_leg("customer", FakeSocket(), "c"))
    agent = FakeSocket()
    await board.attach_agent(TENANT, name, board.new_leg("agent", agent, "a"))
    return call, agent


async def test_the_switchboard_batches_calls_and_each_agent_hears_its_own_customer(
    pooled_board: tuple[Switchboard, DspPool],
) -> None:
    board, pool = pooled_board
    calls = [customer_call(seed) for seed in (3, 4)]
    length = min(len(call) for call in calls) // 160 * 160
    bridged = [await bridge(board, f"CA{index}") for index in range(len(calls))]

    async def speak(call: Call, audio: Samples) -> None:
        assert call.customer is not None
        for start in range(0, length, 160):
            await board.media(call, call.customer, ulaw_encode(audio[start : start + 160]))

    await asyncio.gather(
        *(speak(call, audio) for (call, _), audio in zip(bridged, calls, strict=True))
    )
    for (_, agent), audio in zip(bridged, calls, strict=True):
        # What a leg of its own makes of the customer's audio after the mu-law round trip,
        # itself sent through mu-law.
        wire = ulaw_decode(ulaw_encode(audio[:length]))
        expected = np.concatenate(alone(wire, frames_of(wire))[0])
        assert (agent.audio() == ulaw_decode(ulaw_encode(expected))).all()
    assert pool.passes < pool.passed_frames  # frames shared passes


async def test_ending_a_call_gives_its_slots_back(
    pooled_board: tuple[Switchboard, DspPool],
) -> None:
    board, pool = pooled_board
    call, _ = await bridge(board, "CA1")
    assert pool.leased == 2
    await board.hang_up(TENANT, "CA1")
    assert call.ended
    assert pool.leased == 0


async def test_a_call_ending_while_its_frame_waits_sends_nothing(
    pooled_board: tuple[Switchboard, DspPool],
) -> None:
    board, pool = pooled_board
    call, agent = await bridge(board, "CA1")
    assert call.customer is not None
    frame = asyncio.ensure_future(
        board.media(call, call.customer, ulaw_encode(np.ones(160, dtype=np.int16)))
    )
    await asyncio.sleep(0)  # queued for the pass
    await board.hang_up(TENANT, "CA1")
    await frame
    assert agent.sent == []
    assert pool.leased == 0


async def test_a_failing_pass_sends_silence_and_the_leg_gets_a_fresh_slot(
    pooled_board: tuple[Switchboard, DspPool], monkeypatch: pytest.MonkeyPatch
) -> None:
    board, pool = pooled_board
    call, agent = await bridge(board, "CA1")
    assert call.customer is not None
    broken_dsp = call.customer.dsp
    loud = ulaw_encode(np.full(160, 12000, dtype=np.int16))
    real = pool.detector.analyse

    def broken(*_: object) -> None:
        raise FloatingPointError("masker fault")

    monkeypatch.setattr(pool.detector, "analyse", broken)
    await board.media(call, call.customer, loud)
    assert len(agent.audio()) == 160
    assert not agent.audio().any()
    assert call.customer.dsp is not broken_dsp
    assert isinstance(broken_dsp, PooledDsp)
    assert broken_dsp.closed
    assert pool.leased == 2  # the old slot went back, a fresh one took over
    assert board.metrics.masker_failures._value.get() == 1
    monkeypatch.setattr(pool.detector, "analyse", real)
    for _ in range(3):
        await board.media(call, call.customer, loud)
    assert agent.audio()[160 + 320 :].min() > 10000  # after the fresh delay line
