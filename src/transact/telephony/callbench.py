"""`transact bench calls`: how many bridged calls one core carries, and the cost per frame.

Every call has both legs attached to a real switchboard with the real DSP; each 20 ms
tick, every leg's inbound `media` message is parsed, detected, masked, re-encoded and
handed to its partner's socket. The sockets are null sinks, so the number is the
media pipeline's CPU cost without the network stack (stated in the output).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from transact.kernel.cache.memory import MemoryCache
from transact.kernel.crypto import Keyring
from transact.kernel.vault import Vault
from transact.telephony import domain, tones
from transact.telephony.audio import FRAME_SAMPLES, SAMPLE_RATE
from transact.telephony.bridge import Call, Leg, Metrics, Switchboard
from transact.telephony.masking import LegDsp
from transact.telephony.simulate import customer_audio, media_frame

FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE


class NullSocket:
    async def send_text(self, data: str) -> None:
        return None

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        return None


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else 0.0


async def _nothing(_: object) -> None:
    return None


async def _attach(board: Switchboard, index: int) -> Call:
    call_id = f"CA{index:06d}"
    start = domain.Start(call_id, f"MZc{index}", {"reference": f"B{index:05d}"}, "audio/x-mulaw")
    call = await board.attach_customer(
        "ten_bench", start, board.new_leg("customer", NullSocket(), f"MZc{index}")
    )
    await board.attach_agent(
        "ten_bench", call_id, board.new_leg("agent", NullSocket(), f"MZa{index}")
    )
    return call


def _frames(audio: np.ndarray, stream_sid: str) -> list[str]:
    count = len(audio) // FRAME_SAMPLES
    return [
        media_frame(stream_sid, i + 2, i + 1, audio[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
        for i in range(count)
    ]


async def bench_calls(calls: int, seconds: float) -> dict[str, Any]:
    keyring = Keyring([os.urandom(32)])
    board = Switchboard(
        Vault(MemoryCache(), keyring), _nothing, LegDsp, Metrics(CollectorRegistry()), 3600.0
    )
    live = [await _attach(board, i) for i in range(calls)]
    rng = np.random.default_rng(7)
    # The customer keys a card over low background noise; the agent talks (noise).
    customer = customer_audio("4111111111111111#1228#123#", 300, 300, None)
    customer = (customer + rng.normal(0, 300, len(customer))).clip(-32768, 32767).astype(np.int16)
    agent = rng.normal(0, 1500, len(customer)).astype(np.int16)
    customer_frames, agent_frames = _frames(customer, "MZc"), _frames(agent, "MZa")
    ticks = max(1, int(seconds / FRAME_SECONDS))
    costs = np.zeros(ticks * calls * 2)
    n = 0
    cpu_started = time.process_time()
    for tick in range(ticks):
        i = tick % len(customer_frames)
        for call in live:
            for leg, raw in ((call.customer, customer_frames[i]), (call.agent, agent_frames[i])):
                assert isinstance(leg, Leg)
                started = time.perf_counter()
                _, message = domain.parse_message(raw)
                assert isinstance(message, domain.Media)
                await board.media(call, leg, message.payload)
                costs[n] = time.perf_counter() - started
                n += 1
    cpu = time.process_time() - cpu_started
    audio_seconds = ticks * FRAME_SECONDS
    return {
        "benchmark": "calls",
        "scope": "media pipeline per leg: parse, detect, mask, encode, forward; no network I/O",
        "calls": calls,
        "legs": calls * 2,
        "audio_seconds": round(audio_seconds, 2),
        "cpu_seconds": round(cpu, 3),
        "calls_per_core": round(calls * audio_seconds / cpu, 1) if cpu else None,
        "frame_p50_ms": round(_percentile(costs[:n], 50) * 1000, 4),
        "frame_p99_ms": round(_percentile(costs[:n], 99) * 1000, 4),
        "masking_delay_ms": round(live[0].customer.dsp.delay_samples * 1000 / SAMPLE_RATE, 1)
        if live[0].customer
        else None,
        "feedback_tone_ms": round(len(tones.ACCEPTED) * 1000 / SAMPLE_RATE),
    }


def run(calls: int, seconds: float) -> str:
    return json.dumps(asyncio.run(bench_calls(calls, seconds)))
