"""`transact bench push`: how long from a key on the customer's phone to the agent's screen.

The whole embedded default runs in this one process: every service, the in-process bus,
SQLite in a temporary directory and the in-process cache, under uvicorn on a free
loopback port. A customer leg and an agent leg stream a call over real WebSockets
(Twilio Media Streams format), the agent signs in over HTTP, opens a payment and
watches `/ws/agent`. The customer then keys, at a phone's pace (100 ms tones, 80 ms
apart, every 20 ms frame sent in real time), a digit and `*` (clear) in turn, so
every key makes exactly one `capture.progress`.

Each key is timed from the moment the frame that starts its tone was sent to the
moment its `capture.progress` arrived on the agent's socket (`key_to_screen_ms`).
That includes the tone itself: DTMF detection needs about 40 ms of it, by the
standard. `detect_to_screen_ms` starts instead at the frame with which a detector fed
the same audio first recognises the key, which leaves the pipeline: telephony,
`call.keypad` on the bus, card capture (a SQLite transaction and its outbox), the bus
again, notifications (a SQLite transaction) and the socket.

A harness, like the composition root: it assembles services (and uses telephony's call
simulator and tones), which no service does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import socket
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

TARGET_P99_MS = 150.0
FRAME_SECONDS = 0.02
TONE_FRAMES = 5  # 100 ms, as a person presses a key
GAP_FRAMES = 4  # 80 ms between keys: enough for the detector to hear the key end
LEAD_FRAMES = 10
PASSWORD = secrets.token_urlsafe(18)  # a throwaway tenant in a throwaway database
TENANT = "bench"
AGENT = "agent"


@dataclass
class Plan:
    """The customer's audio, frame by frame, and which frames matter for each key."""

    keys: str
    frames: list[np.ndarray]
    tone_starts: list[int]  # frame index where each key's tone begins
    detected_at: list[int]  # frame index with which a detector recognises each key


@dataclass
class Run:
    sent_at: dict[int, float] = field(default_factory=dict)  # frame index -> perf_counter
    progress: list[tuple[float, dict[str, Any]]] = field(default_factory=list)


def key_sequence(count: int) -> str:
    """A digit then `*` (clear the field), repeated: one progress event per key, and the
    card number never grows long enough to complete."""
    digits = "1234567890"
    return "".join(digits[i // 2 % 10] if i % 2 == 0 else "*" for i in range(count))


def plan_audio(keys: str) -> Plan:
    from transact.telephony import tones
    from transact.telephony.audio import FRAME_SAMPLES, ulaw_decode, ulaw_encode
    from transact.telephony.dtmf import DtmfDetector

    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    frames = [silence] * LEAD_FRAMES
    tone_starts = []
    for key in keys:
        tone = tones.keypad_tone(key, TONE_FRAMES * 20)
        tone_starts.append(len(frames))
        frames += [tone[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(TONE_FRAMES)]
        frames += [silence] * GAP_FRAMES
    frames += [silence] * LEAD_FRAMES
    # What the platform's mu-law does to the audio, the detector hears too.
    detector = DtmfDetector()
    detected_at = []
    for index, frame in enumerate(frames):
        for _ in detector.feed(ulaw_decode(ulaw_encode(frame))):
            detected_at.append(index)
    if len(detected_at) != len(keys):
        raise RuntimeError("the planned audio does not hold one detectable tone per key")
    return Plan(keys, frames, tone_starts, detected_at)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(stream_sid: str, call_sid: str, params: dict[str, str]) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "callSid": call_sid,
                "streamSid": stream_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
        }
    )


@contextlib.asynccontextmanager
async def _transact(data_dir: str) -> AsyncIterator[tuple[Any, int]]:
    """Every service of the embedded default under uvicorn; the kernel and its port."""
    from transact import runtime
    from transact.kernel.settings import load_settings

    settings = load_settings(
        data_dir=data_dir,
        master_key=base64.b64encode(os.urandom(32)).decode(),
        log_level="ERROR",
        rate_limit_scale=0,
        media_pair_timeout=60.0,
    )
    kernel, app = runtime.build(settings)
    await kernel.db.migrate()
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    try:
        yield kernel, port
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 15)


async def _people(kernel: Any) -> str:
    """The tenant, its agent; returns the tenant's media token."""
    from transact.auth import Accounts, SigningKeys

    accounts = Accounts(kernel, SigningKeys(kernel))
    tenant = await accounts.create_tenant(TENANT, mfa_required=False)
    await accounts.create_user(tenant.id, AGENT, "agent", PASSWORD)
    return str(await accounts.issue_media_token(tenant.id))


async def _sign_in(http: httpx.AsyncClient) -> dict[str, str]:
    login = await http.post(
        "/api/v1/auth/login", json={"tenant": TENANT, "username": AGENT, "password": PASSWORD}
    )
    login.raise_for_status()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


async def _until_event(ws: ClientConnection, topic: str, seconds: float = 15.0) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") == "event" and message["topic"] == topic:
                return dict(message)


async def _open_payment(http: httpx.AsyncClient, bearer: dict[str, str], call_id: str) -> None:
    """Capture learns of the call's agent from the bus: ask until it has."""
    for _ in range(200):
        opened = await http.post(
            f"/api/v1/calls/{call_id}/payments",
            json={"amount": 4200, "currency": "GBP", "reference": "BENCH"},
            headers=bearer,
        )
        if opened.status_code == 201:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"could not open a payment: {opened.status_code} {opened.text}")


async def _drain(ws: ClientConnection) -> None:
    """Read (and drop) what a leg hears, as a phone would play it."""
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def _watch(ws: ClientConnection, run: Run) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for raw in ws:
            arrived = time.perf_counter()
            message = json.loads(raw)
            if message.get("type") == "event" and message["topic"] == "capture.progress":
                run.progress.append((arrived, message["data"]))


async def _play(customer: ClientConnection, stream_sid: str, plan: Plan, run: Run) -> None:
    """Every frame at its real-time moment (a schedule, so sends do not drift)."""
    from transact.telephony.simulate import media_frame

    began = time.perf_counter()
    for index, pcm in enumerate(plan.frames):
        delay = began + index * FRAME_SECONDS - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        text = media_frame(stream_sid, index + 2, index + 1, pcm)
        run.sent_at[index] = time.perf_counter()
        await customer.send(text)


def _expected(key: str) -> tuple[str, int]:
    return ("cleared", 0) if key == "*" else ("key", 1)


def _matches(plan: Plan, run: Run) -> Iterator[tuple[int, float]]:
    """(key index, arrival) for each key whose event arrived, in order."""
    events = iter(run.progress)
    for index, key in enumerate(plan.keys):
        for arrived, data in events:
            if (data.get("event"), data.get("digits")) == _expected(key):
                yield index, arrived
                break


def _summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)

    return {
        "p50": pick(0.50),
        "p90": pick(0.90),
        "p99": pick(0.99),
        "max": round(ordered[-1], 1),
        "mean": round(statistics.fmean(ordered), 1),
    }


async def bench_push(keys: int) -> dict[str, Any]:
    plan = plan_audio(key_sequence(keys))
    run = Run()
    call_id = "CA" + secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="transact-bench-push-") as data_dir:
        async with _transact(data_dir) as (kernel, port):
            media_token = await _people(kernel)
            base = f"127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=f"http://{base}", timeout=10) as http:
                bearer = await _sign_in(http)
                async with (
                    connect(f"ws://{base}/ws/agent", additional_headers=bearer) as screen,
                    connect(f"ws://{base}/media/agent") as agent_leg,
                    connect(f"ws://{base}/media/customer") as customer,
                ):
                    params = {"tenant": TENANT, "token": media_token}
                    await agent_leg.send(
                        _start("MZagent", "CA" + secrets.token_hex(16), {**params, "call": call_id})
                    )
                    stream_sid = "MZcustomer"
                    await customer.send(_start(stream_sid, call_id, {**params, "agent": AGENT}))
                    listeners = [asyncio.create_task(_drain(agent_leg))]
                    listeners.append(asyncio.create_task(_drain(customer)))
                    await _until_event(screen, "call.assigned")
                    await _open_payment(http, bearer, call_id)
                    await _until_event(screen, "call.secure_mode")
                    watcher = asyncio.create_task(_watch(screen, run))
                    await _play(customer, stream_sid, plan, run)
                    await asyncio.sleep(1.0)  # the last keys' events
                    for task in (watcher, *listeners):
                        task.cancel()
                    await asyncio.gather(watcher, *listeners, return_exceptions=True)
    return _report(plan, run)


def _report(plan: Plan, run: Run) -> dict[str, Any]:
    from_tone, from_detection = [], []
    for index, arrived in _matches(plan, run):
        from_tone.append((arrived - run.sent_at[plan.tone_starts[index]]) * 1000)
        from_detection.append((arrived - run.sent_at[plan.detected_at[index]]) * 1000)
    key_to_screen = _summary(from_tone)
    return {
        "benchmark": "push",
        "setup": (
            "embedded default in one process: every service, in-process bus and cache, "
            "SQLite, uvicorn on 127.0.0.1; customer and agent legs and the agent's "
            "/ws/agent are real WebSocket clients in the same process"
        ),
        "cpus": os.cpu_count(),
        "keys": len(plan.keys),
        "events_matched": len(from_tone),
        "tone_ms": TONE_FRAMES * 20,
        "gap_ms": GAP_FRAMES * 20,
        "key_to_screen_ms": key_to_screen,
        "detect_to_screen_ms": _summary(from_detection),
        "target_p99_ms": TARGET_P99_MS,
        "target_met": bool(key_to_screen) and key_to_screen["p99"] <= TARGET_P99_MS,
    }


def run(keys: int) -> str:
    """The command's JSON; the services' logs go to stderr, so stdout holds only that."""
    from transact.kernel.logging import configure_logging

    configure_logging("WARNING", json=True)
    return json.dumps(asyncio.run(bench_push(keys)))
