"""Telephony over real WebSockets: the app under uvicorn on a free port, one tenant with a
media token, every published message recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.integration.capture.conftest import KEY
from tests.servers import app_server, free_port
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.kernel import Kernel
from transact.kernel.settings import load_settings
from transact.telephony.simulate import media_frame

TOPICS = (
    "call.started",
    "call.ended",
    "call.keypad",
    "call.secure_mode",
    "call.agent_code",
    "call.keys_outside_capture",
    "capture.started",
    "capture.progress",
    "call.assigned",
    "payment.authorized",
    "voice.audio",
    "voice.transcript",
    "call.play",
)


@dataclass
class Line:
    """A running Transact with telephony, seen from the telephony platform's side."""

    kernel: Kernel
    url: str
    tenant_id: str = ""
    token: str = ""
    published: list[Message] = field(default_factory=list)

    def events(self, topic: str) -> list[Message]:
        return [m for m in self.published if m.topic == topic]

    async def wait_for(self, topic: str, count: int = 1, seconds: float = 5.0) -> list[Message]:
        deadline = asyncio.get_running_loop().time() + seconds
        while len(self.events(topic)) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{topic}: saw {len(self.events(topic))}, wanted {count}")
            await asyncio.sleep(0.02)
        return self.events(topic)

    async def leg(self, kind: str) -> ClientConnection:
        return await connect(f"{self.url}/media/{kind}")

    def start(self, call_id: str, kind: str = "customer", **params: str) -> str:
        base = {"tenant": "shop", "token": self.token}
        if kind == "agent":
            base["call"] = call_id
        return json.dumps(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": f"MZ-{kind}-{call_id}",
                "start": {
                    "callSid": call_id if kind == "customer" else f"{call_id}-agent",
                    "streamSid": f"MZ-{kind}-{call_id}",
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
                    "customParameters": {**base, **params},
                },
            }
        )

    async def open_call(
        self, call_id: str, *, agent_leg: bool = True, **params: str
    ) -> tuple[ClientConnection, ClientConnection | None]:
        """Both legs bridged. The agent leg goes first: once `call.started` is seen (on the
        customer's start), the agent, whose start was processed before, is attached."""
        agent_ws = None
        if agent_leg:
            agent_ws = await self.leg("agent")
            await agent_ws.send(self.start(call_id, "agent"))
            await asyncio.sleep(0.05)
        customer = await self.leg("customer")
        await customer.send(json.dumps({"event": "connected", "protocol": "Call"}))
        await customer.send(self.start(call_id, **params))
        await self.wait_for_call(call_id)
        return customer, agent_ws

    async def wait_for_call(self, call_id: str) -> None:
        for _ in range(250):
            if any(m.call_id == call_id for m in self.events("call.started")):  # type: ignore[attr-defined]
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"call {call_id} never started")


def frame_message(stream_sid: str, seq: int, pcm: Any) -> str:
    return media_frame(stream_sid, seq, seq - 1, pcm)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, services: list[str], **settings: Any) -> AsyncIterator[Line]:
    """`services` under uvicorn on a free port, with tenant `shop` and its media token."""
    defaults: dict[str, Any] = {
        "master_key": KEY,
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/transact.db",
        "data_dir": tmp_path,
        "rate_limit_scale": 0,
        "outbox_poll_interval": 0.02,
        "media_pair_timeout": 1.0,
        "media_start_timeout": 1.0,
    }
    config = load_settings(**{**defaults, **settings})
    kernel, app = runtime.build(config, services)
    await kernel.db.migrate()
    port = free_port()
    the_line = Line(kernel, f"ws://127.0.0.1:{port}")

    async def record(message: Message) -> None:
        the_line.published.append(message)

    for topic in TOPICS:
        kernel.bus.subscribe(topic, "test-observer", record)
    server = app_server(app, port)
    serving = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.01)
    try:
        accounts = Accounts(kernel, SigningKeys(kernel))
        tenant = await accounts.create_tenant("shop", mfa_required=False)
        the_line.tenant_id = tenant.id
        the_line.token = await accounts.issue_media_token(tenant.id)
        yield the_line
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


@pytest.fixture
async def line(tmp_path: Path) -> AsyncIterator[Line]:
    async with serving(tmp_path, ["gateway", "auth", "capture", "telephony"]) as the_line:
        yield the_line
