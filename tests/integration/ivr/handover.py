"""An agent's desk and a call with both legs, for handing calls over to a payment line:
Transact under uvicorn with correlation (the call is the agent's) and ivr, the sandbox PSP
routed, the customer leg played by a `Caller`, the agent leg by an `Ear` that records
everything the agent hears."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.integration.ivr.conftest import WATCHED, Caller, _recorder
from tests.integration.telephony.conftest import TOPICS, Line, frame_message, serving
from transact.auth import Accounts, SigningKeys
from transact.kernel.audio import FRAME_SAMPLES, ulaw_decode

PASSWORD = "correct-horse-42"
SERVICES = ["gateway", "auth", "correlation", "capture", "psp", "telephony", "ivr"]
BILL = {"name": "bills", "amount": 1250, "currency": "GBP", "reference": "INV-1250"}


@dataclass
class Ear:
    """The platform's side of an agent leg: every frame the agent hears, in order."""

    ws: ClientConnection
    frames: list[bytes] = field(default_factory=list)
    seq: int = 2
    task: asyncio.Task[None] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> None:
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if message.get("event") == "media":
                    self.frames.append(base64.b64decode(message["media"]["payload"]))
        except ConnectionClosed:
            pass
        self.closed.set()

    async def until(self, count: int, seconds: float = 10.0) -> None:
        """Wait until the agent has heard `count` frames in all."""
        async with asyncio.timeout(seconds):
            while len(self.frames) < count:
                await asyncio.sleep(0.01)

    def heard(self, first: int, last: int) -> np.ndarray:
        """Frames [first, last) as 16-bit samples."""
        return ulaw_decode(b"".join(self.frames[first:last]))

    async def say(self, audio: np.ndarray) -> None:
        """The agent speaks: 20 ms frames on the agent leg."""
        for i in range(0, len(audio), FRAME_SAMPLES):
            frame = np.pad(
                audio[i : i + FRAME_SAMPLES], (0, max(0, i + FRAME_SAMPLES - len(audio)))
            )
            await self.ws.send(frame_message("MZ-agent", self.seq, frame))
            self.seq += 1


@dataclass
class Desk:
    line: Line
    client: httpx.AsyncClient
    alice: dict[str, str]
    bob: dict[str, str]
    admin: dict[str, str]

    async def flow(self, **settings: Any) -> dict[str, Any]:
        created = await self.client.post("/api/v1/ivr/flows", json=settings, headers=self.admin)
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        return body

    async def call(self, call_id: str, agent: str = "alice") -> tuple[Caller, Ear]:
        """A call with both legs, correlated to `agent` (the stream names them)."""
        customer, agent_ws = await self.line.open_call(call_id, agent=agent)
        assert agent_ws is not None
        caller, ear = Caller(customer), Ear(agent_ws)
        caller.start()
        ear.start()
        return caller, ear

    async def hand_over(
        self, call_id: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST the handover, waiting out the moment before ivr has heard of the call
        (a 404 while `call.assigned` is on its way)."""
        answer: httpx.Response | None = None
        for _ in range(100):
            answer = await self.client.post(
                f"/api/v1/calls/{call_id}/ivr", json=body, headers=headers or self.alice
            )
            if answer.status_code != 404 or answer.json()["error"]["code"] != "call_not_found":
                return answer
            await asyncio.sleep(0.05)
        assert answer is not None
        return answer

    def steps(self, call_id: str) -> list[Any]:
        return [m for m in self.line.events("ivr.step") if m.call_id == call_id]  # type: ignore[attr-defined]

    async def ended(self, call_id: str, seconds: float = 15.0) -> Any:
        async with asyncio.timeout(seconds):
            while True:
                for m in self.steps(call_id):
                    if m.stage == "ended":
                        return m
                await asyncio.sleep(0.02)


async def bearer(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    login = await client.post(
        "/api/v1/auth/login", json={"tenant": "shop", "username": username, "password": PASSWORD}
    )
    assert login.status_code == 200, login.text
    client.cookies.clear()
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


@pytest.fixture(name="desk")
async def desk_fixture(tmp_path: Path) -> AsyncIterator[Desk]:
    async with serving(tmp_path, SERVICES, media_pair_timeout=30.0) as line:
        for topic in sorted({*WATCHED, "call.handover"} - set(TOPICS)):
            line.kernel.bus.subscribe(topic, "test-observer", _recorder(line))
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        for name, role in (("alice", "agent"), ("bob", "agent"), ("root", "admin")):
            await accounts.create_user(line.tenant_id, name, role, PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            heads = [await bearer(client, n) for n in ("alice", "bob", "root")]
            routes = await client.put(
                "/api/v1/psp/routes", json={"routes": [{"connector": "sandbox"}]}, headers=heads[2]
            )
            assert routes.status_code == 200, routes.text
            yield Desk(line, client, *heads)
