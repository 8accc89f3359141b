"""`transact bench calls`: how many bridged calls one core carries, and the cost per frame.

Every call has both legs attached to a real switchboard with the real DSP (the pooled
one the service uses); each leg has its own task reading its socket, as the media
endpoint does. Each 20 ms tick, every leg's inbound `media` message arrives at once;
each task parses it and hands it to `board.media`, which detects, masks (frames of one
event-loop turn share a numpy pass), re-encodes and sends it to the partner's socket.
The sockets are in-memory sinks, so the number is the media pipeline's CPU cost without
the network stack (stated in the output). It runs in its own process on one core with
one BLAS thread (as `transact bench dtmf` does): calls per core means one core.

Per-frame cost is the tick's time over the frames in it (the pass is shared); latency is
each frame's time from arrival to the partner's socket. Every frame of a tick arrives at
the same instant, a worst case: a frame waits behind the whole tick.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from transact.kernel import isolated
from transact.kernel.cache.memory import MemoryCache
from transact.kernel.core import settle_heap
from transact.kernel.crypto import Keyring
from transact.kernel.vault import Vault
from transact.telephony import domain, tones
from transact.telephony.audio import FRAME_SAMPLES, SAMPLE_RATE
from transact.telephony.bench import setup
from transact.telephony.bridge import Call, Leg, Metrics, Switchboard
from transact.telephony.masking import DspPool
from transact.telephony.simulate import customer_audio, media_frame

FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


class Tick:
    """One 20 ms tick: when its frames arrived, and when the last one has left."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self._waiting = 0
        self._done: asyncio.Future[None] | None = None

    def begin(self, frames: int) -> asyncio.Future[None]:
        self._waiting = frames
        self._done = asyncio.get_running_loop().create_future()
        return self._done

    def sent(self, arrived: float) -> None:
        self.latencies.append(time.perf_counter() - arrived)
        self._waiting -= 1
        if not self._waiting and self._done is not None:
            self._done.set_result(None)


class SinkSocket:
    """A leg's socket: what it is sent goes nowhere, noting how long the frame took since
    its partner received it (`arrived`)."""

    def __init__(self, tick: Tick) -> None:
        self.tick = tick
        self.arrived = 0.0

    async def send_text(self, data: str) -> None:
        self.tick.sent(self.arrived)

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        return None


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


async def _nothing(_: object) -> None:
    return None


async def _attach(board: Switchboard, index: int, tick: Tick) -> Call:
    call_id = f"CA{index:06d}"
    start = domain.Start(call_id, f"MZc{index}", {"reference": f"B{index:05d}"}, "audio/x-mulaw")
    call = await board.attach_customer(
        "ten_bench", start, board.new_leg("customer", SinkSocket(tick), f"MZc{index}")
    )
    await board.attach_agent(
        "ten_bench", call_id, board.new_leg("agent", SinkSocket(tick), f"MZa{index}")
    )
    return call


def _frames(audio: np.ndarray, stream_sid: str) -> list[str]:
    count = len(audio) // FRAME_SAMPLES
    return [
        media_frame(stream_sid, i + 2, i + 1, audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
        for i in range(count)
    ]


class Inbox:
    """A leg's inbound socket: one message at a time, as the platform sends them."""

    def __init__(self) -> None:
        self._next: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def deliver(self, raw: str) -> None:
        self._next.set_result(raw)

    async def receive(self) -> str:
        raw = await self._next
        self._next = asyncio.get_running_loop().create_future()
        return raw


async def _pump(board: Switchboard, call: Call, leg: Leg, inbox: Inbox) -> None:
    """One leg's socket reader, as the media endpoint runs it."""
    while True:
        raw = await inbox.receive()
        _, message = domain.parse_message(raw)
        assert isinstance(message, domain.Media)
        await board.media(call, leg, message.payload)


def _partner_socket(call: Call, leg: Leg) -> SinkSocket:
    partner = call.agent if leg is call.customer else call.customer
    assert partner is not None
    assert isinstance(partner.socket, SinkSocket)
    return partner.socket


async def bench_calls(calls: int, seconds: float) -> dict[str, Any]:
    keyring = Keyring([os.urandom(32)])
    pool = DspPool()
    board = Switchboard(
        Vault(MemoryCache(), keyring), _nothing, pool.lease, Metrics(CollectorRegistry()), 3600.0
    )
    tick = Tick()
    live = [await _attach(board, i, tick) for i in range(calls)]
    rng = np.random.default_rng(7)
    # The customer keys a card over low background noise; the agent talks (noise).
    customer = customer_audio("4111111111111111#1228#123#", 300, 300, None)
    customer = (customer + rng.normal(0, 300, len(customer))).clip(-32768, 32767).astype(np.int16)
    agent = rng.normal(0, 1500, len(customer)).astype(np.int16)
    customer_frames, agent_frames = _frames(customer, "MZc"), _frames(agent, "MZa")
    legs: list[tuple[list[str], SinkSocket, Inbox]] = []
    pumps: list[asyncio.Task[None]] = []
    for call in live:
        for leg, frames in ((call.customer, customer_frames), (call.agent, agent_frames)):
            assert isinstance(leg, Leg)
            inbox = Inbox()
            legs.append((frames, _partner_socket(call, leg), inbox))
            pumps.append(asyncio.create_task(_pump(board, call, leg, inbox)))
    settle_heap()  # as a serving process does before it serves
    ticks = max(1, int(seconds / FRAME_SECONDS))
    per_frame = np.zeros(ticks)
    cpu_started = time.process_time()
    for index in range(ticks):
        i = index % len(customer_frames)
        done = tick.begin(len(legs))
        started = time.perf_counter()
        for frames, partner, inbox in legs:
            partner.arrived = time.perf_counter()
            inbox.deliver(frames[i])
        await done
        per_frame[index] = (time.perf_counter() - started) / len(legs)
    cpu = time.process_time() - cpu_started
    for pump in pumps:
        pump.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)
    latencies = np.asarray(tick.latencies)
    audio_seconds = ticks * FRAME_SECONDS
    return {
        "benchmark": "calls",
        "scope": "media pipeline per leg: parse, detect, mask, encode, forward; no network I/O",
        "calls": calls,
        "legs": len(legs),
        "audio_seconds": round(audio_seconds, 2),
        "cpu_seconds": round(cpu, 3),
        "calls_per_core": round(calls * audio_seconds / cpu, 1) if cpu else None,
        "frame_p50_ms": round(_percentile(per_frame, 50) * 1000, 4),
        "frame_p99_ms": round(_percentile(per_frame, 99) * 1000, 4),
        "frame_cost": "tick time / frames in the tick (all legs' frames arrive together)",
        "latency_p50_ms": round(_percentile(latencies, 50) * 1000, 3),
        "latency_p99_ms": round(_percentile(latencies, 99) * 1000, 3),
        "frames_per_pass": round(pool.passed_frames / pool.passes, 1) if pool.passes else None,
        "masking_delay_ms": round(pool.delay_samples * 1000 / SAMPLE_RATE, 1),
        "feedback_tone_ms": round(len(tones.ACCEPTED) * 1000 / SAMPLE_RATE),
        "setup": setup(),
    }


def run(calls: int, seconds: float) -> str:
    """`bench_calls` in a fresh interpreter on one core, BLAS limited to one thread before
    numpy loads (a second BLAS thread spinning on the shared pass would double the CPU
    time of the same work and hide it on another core)."""
    return isolated.run_isolated("transact.telephony.callbench", str(calls), str(seconds))


if __name__ == "__main__":
    isolated.pin_to_one_core()
    print(json.dumps(asyncio.run(bench_calls(int(sys.argv[1]), float(sys.argv[2])))))
