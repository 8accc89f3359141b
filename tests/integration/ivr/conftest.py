"""Self-service calls over real WebSockets: Transact under uvicorn with the services a
phone payment needs, the sandbox PSP routed, and a caller that plays the telephony
platform (hears prompts, echoes their marks, keys in-band)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request, Response
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from tests.integration.telephony.conftest import Line, frame_message, serving
from tests.integration.test_card_data_never_leaks import log_stream  # noqa: F401  (a fixture)
from tests.servers import app_server, free_port
from transact.auth import Accounts, SigningKeys
from transact.contracts import Message
from transact.ivr import prompts
from transact.ivr.domain import Flow
from transact.ivr.lookup import SIGNATURE_HEADER, signature
from transact.kernel.audio import FRAME_SAMPLES
from transact.telephony.simulate import customer_audio

PASSWORD = "correct-horse-42"
SERVICES = ["gateway", "auth", "capture", "psp", "telephony", "ivr"]
WATCHED = (
    "call.play",
    "call.prompt_done",
    "call.ivr_key",
    "call.hangup",
    "ivr.step",
    "capture.requested",
    "capture.completed",
    "capture.cancelled",
    "capture.submit_requested",
    "payment.requested",
    "payment.declined",
    "payment.failed",
)


@dataclass
class Line2:
    """The running Transact, an admin's bearer header and an HTTP client."""

    line: Line
    client: httpx.AsyncClient
    admin: dict[str, str]

    async def flow(self, **settings: Any) -> dict[str, Any]:
        created = await self.client.post("/api/v1/ivr/flows", json=settings, headers=self.admin)
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        return body

    async def call(self, call_id: str, flow: str, *, echo: bool = True) -> Caller:
        customer, _ = await self.line.open_call(call_id, agent_leg=False, ivr=flow)
        caller = Caller(customer, echo=echo)
        caller.start()
        return caller

    def steps(self, call_id: str) -> list[str]:
        return [m.stage for m in self.line.events("ivr.step") if m.call_id == call_id]  # type: ignore[attr-defined]

    async def outcome(self, call_id: str, seconds: float = 10.0) -> Message:
        async with asyncio.timeout(seconds):
            while True:
                for m in self.line.events("ivr.step"):
                    if m.call_id == call_id and m.stage == "ended":  # type: ignore[attr-defined]
                        return m
                await asyncio.sleep(0.02)


@dataclass
class Heard:
    mark: str
    audio: bytes  # mu-law, as sent


@dataclass
class Caller:
    """The platform's side of a customer leg: collects what is sent, prompt by prompt."""

    ws: ClientConnection
    echo: bool = True  # echo each mark at once (the prompt "played" instantly)
    seq: int = 2
    pending: bytearray = field(default_factory=bytearray)
    prompts: asyncio.Queue[Heard] = field(default_factory=asyncio.Queue)
    cleared: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                event = message.get("event")
                if event == "media":
                    self.pending += base64.b64decode(message["media"]["payload"])
                elif event == "mark":
                    name = message["mark"]["name"]
                    await self.prompts.put(Heard(name, bytes(self.pending)))
                    self.pending.clear()
                    if self.echo:
                        await self.echo_mark(name)
                elif event == "clear":
                    self.cleared += 1
                    self.pending.clear()
        except ConnectionClosed:
            pass
        self.closed.set()

    async def echo_mark(self, name: str) -> None:
        mark = {"event": "mark", "sequenceNumber": str(self.seq), "mark": {"name": name}}
        self.seq += 1
        await self.ws.send(json.dumps(mark))

    async def hear(self, seconds: float = 10.0) -> Heard:
        async with asyncio.timeout(seconds):
            return await self.prompts.get()

    async def press(self, keys: str) -> None:
        """Keys as in-band DTMF at human pace (100 ms tones, 250 ms gaps)."""
        await self.play(customer_audio(keys, 60, 300, None))

    async def play(self, audio: np.ndarray) -> None:
        for i in range(0, len(audio), FRAME_SAMPLES):
            frame = audio[i : i + FRAME_SAMPLES]
            frame = np.pad(frame, (0, FRAME_SAMPLES - len(frame)))
            await self.ws.send(frame_message("MZ", self.seq, frame))
            self.seq += 1

    async def hang_up(self) -> None:
        await self.ws.send(json.dumps({"event": "stop", "sequenceNumber": str(self.seq)}))
        await self.ws.close()


def spoken(flow: dict[str, Any], *phrases: str) -> bytes:
    """The audio a prompt of these phrases sends, with the standard recordings."""
    settings = {k: v for k, v in flow.items() if k not in ("id", "created_at", "updated_at")}
    settings.pop("lookup_secret", None)
    return b"".join(prompts.compose(Flow.from_dict(settings), phrases).clips)


@pytest.fixture
async def ivr_line(tmp_path: Path) -> AsyncIterator[Line2]:
    async with serving(
        tmp_path, SERVICES, media_pair_timeout=1.0, webhook_allow_private=True
    ) as line:
        for topic in WATCHED:
            line.kernel.bus.subscribe(topic, "test-observer", _recorder(line))
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        await accounts.create_user(line.tenant_id, "root", "admin", PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"tenant": "shop", "username": "root", "password": PASSWORD},
            )
            assert login.status_code == 200, login.text
            client.cookies.clear()
            admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
            routes = await client.put(
                "/api/v1/psp/routes", json={"routes": [{"connector": "sandbox"}]}, headers=admin
            )
            assert routes.status_code == 200, routes.text
            yield Line2(line, client, admin)


def _recorder(line: Line) -> Any:
    async def record(message: Message) -> None:
        line.published.append(message)

    return record


@dataclass
class Merchant:
    """A merchant's account lookup on a real local HTTP server."""

    url: str
    accounts: dict[str, tuple[int, str, str]]
    secret: str = ""
    asked: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, body: bytes, header: str) -> Response:
        timestamp = int(dict(p.split("=", 1) for p in header.split(","))["t"])
        signed = hmac.compare_digest(header, signature(self.secret, timestamp, body))
        request = json.loads(body)
        self.asked.append({**request, "signed": signed})
        found = self.accounts.get(request["account"])
        if not signed or found is None:
            return Response(status_code=404 if signed else 401)
        amount, currency, reference = found
        content = {"amount": amount, "currency": currency, "reference": reference}
        return Response(json.dumps(content), media_type="application/json")


@contextlib.asynccontextmanager
async def merchant(accounts: dict[str, tuple[int, str, str]]) -> AsyncIterator[Merchant]:
    port = free_port()
    shop = Merchant(f"http://127.0.0.1:{port}/lookup", accounts)
    app = FastAPI()

    @app.post("/lookup")
    async def lookup(request: Request) -> Response:
        return shop.answer(await request.body(), request.headers.get(SIGNATURE_HEADER, ""))

    server = app_server(app, port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        yield shop
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
