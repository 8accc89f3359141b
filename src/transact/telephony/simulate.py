"""A call from the telephony platform's side: a customer leg that keys digits at human pace
and an agent ear that records what the agent would hear. Used by `transact simulate call`,
by the end-to-end tests and by people trying the demo.

A self-service call (`simulate_ivr_call`) has no agent ear: the caller hears the prompts,
echoes each one's mark as a platform does once it has played it, and keys its script
one group at a time, each after the prompts it waits for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from transact.telephony import tones
from transact.telephony.audio import FRAME_SAMPLES, SAMPLE_RATE, ulaw_decode, ulaw_encode, write_wav
from transact.telephony.dtmf import detect_keys

PROMPT_WAIT = 30.0  # seconds a self-service caller waits for the next prompt to end
KEY_MS = 100  # a person presses a key for about 100 ms ...
GAP_MS = 250  # ... and takes a quarter of a second to find the next one
SPEECH_LEVEL = 0.5


@dataclass
class CallPlan:
    url: str
    tenant: str
    token: str
    keys: str = ""
    call_id: str = field(default_factory=lambda: "CA" + secrets.token_hex(16))
    agent: str | None = None
    reference: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    lead_in_ms: int = 500
    tail_ms: int = 600
    speech: np.ndarray | None = None  # played under the keys, looped
    agent_leg: bool = True
    realtime: bool = True
    extra_params: dict[str, str] = field(default_factory=dict)


@dataclass
class CallReport:
    call_id: str
    keys_sent: str
    frames_sent: int
    agent_heard: np.ndarray
    customer_heard: np.ndarray
    closed_reason: str | None

    def summary(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "keys_sent": self.keys_sent,
            "frames_sent": self.frames_sent,
            "agent_heard_seconds": round(len(self.agent_heard) / SAMPLE_RATE, 2),
            # What an eavesdropper on the agent side could decode: must be empty.
            "keys_agent_could_decode": detect_keys(self.agent_heard)
            if len(self.agent_heard)
            else "",
            "customer_heard_seconds": round(len(self.customer_heard) / SAMPLE_RATE, 2),
            "closed_reason": self.closed_reason,
        }


def customer_audio(
    keys: str, lead_in_ms: int, tail_ms: int, speech: np.ndarray | None
) -> np.ndarray:
    parts = [tones.gap(lead_in_ms)]
    for key in keys:
        parts += [tones.keypad_tone(key, KEY_MS), tones.gap(GAP_MS)]
    parts.append(tones.gap(tail_ms))
    audio = np.concatenate(parts).astype(np.int32)
    if speech is not None and len(speech):
        under = np.resize(speech, len(audio)).astype(np.int32)
        audio = audio + (under * SPEECH_LEVEL).astype(np.int32)
    return np.clip(audio, -32768, 32767).astype(np.int16)


def _start(plan: CallPlan, leg: str, stream_sid: str) -> str:
    params = {"tenant": plan.tenant, "token": plan.token, **plan.extra_params}
    if leg == "customer":
        optional = {
            "agent": plan.agent,
            "reference": plan.reference,
            "from": plan.from_number,
            "to": plan.to_number,
        }
        params.update({k: v for k, v in optional.items() if v})
    else:
        params["call"] = plan.call_id
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "callSid": plan.call_id if leg == "customer" else "CA" + secrets.token_hex(16),
                "streamSid": stream_sid,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
        }
    )


def media_frame(stream_sid: str, seq: int, chunk: int, pcm: np.ndarray) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(seq),
            "streamSid": stream_sid,
            "media": {
                "track": "inbound",
                "chunk": str(chunk),
                "timestamp": str((chunk - 1) * 20),
                "payload": base64.b64encode(ulaw_encode(pcm)).decode(),
            },
        }
    )


class Leg:
    def __init__(self, ws: ClientConnection, stream_sid: str) -> None:
        self.ws = ws
        self.stream_sid = stream_sid
        self.seq = 1
        self.chunk = 0
        self.heard: list[np.ndarray] = []
        self.closed_reason: str | None = None

    async def open(self, start: str) -> None:
        await self.ws.send(
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        )
        await self.ws.send(start)

    async def send_frame(self, pcm: np.ndarray) -> None:
        self.seq += 1
        self.chunk += 1
        await self.ws.send(media_frame(self.stream_sid, self.seq, self.chunk, pcm))

    async def stop(self) -> None:
        self.seq += 1
        stop = {"event": "stop", "sequenceNumber": str(self.seq), "streamSid": self.stream_sid}
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(json.dumps(stop))

    async def listen(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("event") == "media":
                    audio = base64.b64decode(message["media"]["payload"])
                    self.heard.append(ulaw_decode(audio))
        except ConnectionClosed:
            pass
        self.closed_reason = self.ws.close_reason

    def audio(self) -> np.ndarray:
        return np.concatenate(self.heard) if self.heard else np.zeros(0, dtype=np.int16)


async def simulate_call(plan: CallPlan) -> CallReport:
    base = plan.url.rstrip("/")
    audio = customer_audio(plan.keys, plan.lead_in_ms, plan.tail_ms, plan.speech)
    frames = [audio[i : i + FRAME_SAMPLES] for i in range(0, len(audio), FRAME_SAMPLES)]
    frames[-1] = np.pad(frames[-1], (0, FRAME_SAMPLES - len(frames[-1])))
    # The agent leg first, as a platform dials the agent before bridging the customer:
    # no customer audio is then played to nobody.
    # The call id in the query too: a proxy in front of several telephony instances
    # (nginx's `hash $arg_call`) sends both legs of the call to the one that bridges them.
    query = f"?call={plan.call_id}"
    agent_ws = await connect(base + "/media/agent" + query) if plan.agent_leg else None
    agent: Leg | None = None
    try:
        if agent_ws is not None:
            agent = Leg(agent_ws, "MZ" + secrets.token_hex(16))
            await agent.open(_start(plan, "agent", agent.stream_sid))
            await asyncio.sleep(0.1)
        async with connect(base + "/media/customer" + query) as customer_ws:
            customer = Leg(customer_ws, "MZ" + secrets.token_hex(16))
            await customer.open(_start(plan, "customer", customer.stream_sid))
            listeners = [asyncio.create_task(customer.listen())]
            if agent is not None:
                listeners.append(asyncio.create_task(agent.listen()))
            silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
            try:
                for frame in frames:
                    await customer.send_frame(frame)
                    if agent is not None:
                        await agent.send_frame(silence)
                    if plan.realtime:
                        await asyncio.sleep(FRAME_SAMPLES / SAMPLE_RATE)
            except ConnectionClosed:
                pass  # Transact closed the call (its reason is in the report)
            await customer.stop()
            await asyncio.wait_for(asyncio.gather(*listeners), timeout=10)
    finally:
        if agent_ws is not None:
            await agent_ws.close()
    return CallReport(
        call_id=plan.call_id,
        keys_sent=plan.keys,
        frames_sent=len(frames),
        agent_heard=agent.audio() if agent else np.zeros(0, dtype=np.int16),
        customer_heard=customer.audio(),
        closed_reason=customer.closed_reason,
    )


def save_agent_audio(report: CallReport, path: Path) -> None:
    write_wav(path, report.agent_heard)


# --- self-service calls ----------------------------------------------------------------


@dataclass
class IvrReport:
    call_id: str
    script: str
    prompts_heard: int
    seconds_heard: float
    cleared: int
    closed_reason: str | None
    finished_script: bool

    def summary(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "script": self.script,
            "prompts_heard": self.prompts_heard,
            "seconds_heard": round(self.seconds_heard, 2),
            "prompts_cut_short": self.cleared,
            "finished_script": self.finished_script,
            "closed_reason": self.closed_reason,
        }


class IvrCaller:
    """The platform's side of a self-service call: plays prompts (echoing their marks after
    their length in real time, at once otherwise) and keys in-band."""

    def __init__(self, leg: Leg, realtime: bool) -> None:
        self.leg = leg
        self.realtime = realtime
        self.pending = 0  # bytes of prompt audio received since the last mark
        self.heard_bytes = 0
        self.marks: asyncio.Queue[str] = asyncio.Queue()
        self.prompts = 0
        self.cleared = 0

    async def listen(self) -> None:
        try:
            async for raw in self.leg.ws:
                await self._on(json.loads(raw))
        except ConnectionClosed:
            pass
        self.leg.closed_reason = self.leg.ws.close_reason
        await self.marks.put("")  # wakes a waiting script: the call is over

    async def _on(self, message: dict[str, Any]) -> None:
        event = message.get("event")
        if event == "media":
            size = len(base64.b64decode(message["media"]["payload"]))
            self.pending += size
            self.heard_bytes += size
        elif event == "clear":
            self.cleared += 1
            self.pending = 0
        elif event == "mark":
            name = str(message["mark"]["name"])
            if self.realtime:
                await asyncio.sleep(self.pending / SAMPLE_RATE)  # "playing" it
            self.pending = 0
            self.prompts += 1
            self.leg.seq += 1
            with contextlib.suppress(ConnectionClosed):
                await self.leg.ws.send(
                    json.dumps(
                        {
                            "event": "mark",
                            "sequenceNumber": str(self.leg.seq),
                            "streamSid": self.leg.stream_sid,
                            "mark": {"name": name},
                        }
                    )
                )
            await self.marks.put(name)

    async def wait_for_prompt(self, seconds: float) -> bool:
        """True once the next prompt has played; False when the call ended or time ran out."""
        try:
            async with asyncio.timeout(seconds):
                return bool(await self.marks.get())
        except TimeoutError:
            return False

    async def key(self, keys: str) -> None:
        audio = customer_audio(keys, 60, 300, None)
        for i in range(0, len(audio), FRAME_SAMPLES):
            frame = np.pad(
                audio[i : i + FRAME_SAMPLES], (0, max(0, i + FRAME_SAMPLES - len(audio)))
            )
            await self.leg.send_frame(frame)
            if self.realtime:
                await asyncio.sleep(FRAME_SAMPLES / SAMPLE_RATE)


async def simulate_ivr_call(
    plan: CallPlan, flow: str, script: str, *, hang_up: bool = False
) -> IvrReport:
    """A caller on the flow `flow` follows `script`: keys separated by `|`, where each `|`
    waits for one more prompt to finish (e.g. `||4242424242424242|1228|737|1`: hear the
    greeting and the card prompt, key the card number, then each field after its prompt,
    then 1 to confirm). After the script the caller listens until Transact hangs up, or,
    with `hang_up`, hangs up at once."""
    base = plan.url.rstrip("/")
    plan.extra_params = {**plan.extra_params, "ivr": flow}
    finished = False
    async with connect(base + "/media/customer") as ws:
        leg = Leg(ws, "MZ" + secrets.token_hex(16))
        await leg.open(_start(plan, "customer", leg.stream_sid))
        caller = IvrCaller(leg, plan.realtime)
        listening = asyncio.create_task(caller.listen())
        groups = script.split("|")
        try:
            for index, keys in enumerate(groups):
                if index and not await caller.wait_for_prompt(PROMPT_WAIT):
                    break
                if keys:
                    await caller.key(keys)
            else:
                finished = True
            while not hang_up and await caller.wait_for_prompt(PROMPT_WAIT):
                pass  # the outcome, the goodbye: until the call ends
        except ConnectionClosed:
            pass
        await leg.stop()
        await asyncio.wait_for(listening, timeout=10)
    return IvrReport(
        call_id=plan.call_id,
        script=script,
        prompts_heard=caller.prompts,
        seconds_heard=caller.heard_bytes / SAMPLE_RATE,
        cleared=caller.cleared,
        closed_reason=leg.closed_reason,
        finished_script=finished,
    )
