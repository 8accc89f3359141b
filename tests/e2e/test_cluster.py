"""The phone and link journeys in the distributed mode: every service its own `transact
serve` process on PostgreSQL and Redis, nginx in front with TLS, started by `transact
cluster`.

Phone: the platform streams a call naming its agent (media through nginx, both legs
hashed to one telephony instance); correlation links it; the agent opens a payment over
REST; the customer keys the card; the sandbox PSP approves; the agent's push socket
hears it. Link: the agent sends a link by e-mail through a real SMTP server; the
customer follows it from the e-mail through nginx and pays. Then both again with two
instances of card capture, the PSP adapter, notifications and telephony, and the phone
journey with one instance of capture and the PSP adapter killed (SIGKILL) mid-journey:
nothing is lost.

The cluster starts once for the module (it is the slow part); tenant, users and media
token come from the admin CLI against the cluster's database, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from websockets.asyncio.client import connect

from tests.integration.capture.test_capture import CVV, future_expiry
from tests.integration.remote.conftest import Mailbox, link_in, open_page, page_state, post_card
from tests.leaks import card_numbers_in, database_dump, redis_raw_dump
from tests.servers import unavailable
from tests.waiting import eventually
from transact import cluster
from transact.contracts import Message
from transact.kernel.bus import BusOptions
from transact.kernel.bus.redis import RedisBus
from transact.telephony.audio import FRAME_SAMPLES
from transact.telephony.dtmf import detect_keys
from transact.telephony.simulate import Leg, customer_audio

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.redis,
    pytest.mark.postgres,
    # The first test also starts the cluster (a dozen processes on two cores).
    pytest.mark.timeout(600),
]

PAN = "4242424242424242"
PASSWORD = "correct-horse-42"
TENANT = "shop"
SERVICES = [
    *("auth", "correlation", "capture", "psp", "telephony", "notifications"),
    *("remote", "communications"),
]
SETTINGS = {
    # A killed consumer's messages come back after 3 s rather than 30.
    "TRANSACT_BUS_VISIBILITY_TIMEOUT": "3",
    "TRANSACT_OUTBOX_POLL_INTERVAL": "0.05",
    # The test polls the REST API from one address; the limits themselves are checked
    # in tests/integration/distributed/test_nginx_gateway.py.
    "TRANSACT_RATE_LIMIT_SCALE": "20",
    "TRANSACT_LOG_LEVEL": "INFO",
}
TOPICS = (
    *("call.started", "call.assigned", "call.secure_mode", "call.keypad", "capture.progress"),
    *("payment.requested", "payment.authorized", "payment.declined", "payment.failed"),
    *("link.completed", "message.sent"),
)


def _require(binary: str) -> None:
    import shutil

    if shutil.which(binary) is None:
        unavailable(f"{binary} is not installed")


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster.Cluster]:
    for binary in ("nginx", "redis-server", "initdb"):
        _require(binary)
    directory = tmp_path_factory.mktemp("cluster") / "run"
    started = cluster.up(directory, services=SERVICES, env=SETTINGS)
    try:
        yield started
    finally:
        cluster.down(directory)
        assert not directory.exists()


def admin(running: cluster.Cluster, *args: str, stdin: str | None = None) -> str:
    """`transact admin ...` against the cluster, as an operator runs it."""
    return admins(running, [(list(args), stdin)])[0]


def admins(running: cluster.Cluster, commands: list[tuple[list[str], str | None]]) -> list[str]:
    """Several `transact admin` commands at once (each is a Python start-up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "transact", "admin", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, **running.admin_env()},
        )
        for args, _ in commands
    ]
    outputs = []
    for proc, (args, stdin) in zip(procs, commands, strict=True):
        out, err = proc.communicate(stdin, timeout=300)
        assert proc.returncode == 0, (args, err)
        outputs.append(out)
    return outputs


@dataclass
class Floor:
    """The contact centre on the cluster: where to reach it and who works there."""

    cluster: cluster.Cluster
    tls: ssl.SSLContext
    media_token: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.cluster.gateway_url

    @property
    def ws_url(self) -> str:
        return self.cluster.gateway_url.replace("https://", "wss://")

    def bearer(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, verify=self.tls, timeout=15)


@pytest.fixture(scope="module")
def floor(running: cluster.Cluster) -> Floor:
    admin(running, "create-tenant", TENANT, "--no-mfa")
    user = ["create-user", "--tenant", TENANT, "--password-stdin", "--username"]
    *_, issued = admins(
        running,
        [
            ([*user, "alice", "--role", "agent"], PASSWORD + "\n"),
            ([*user, "root", "--role", "admin"], PASSWORD + "\n"),
            (["media-token", "--tenant", TENANT], None),
        ],
    )
    token = issued.split("media_token:", 1)[1].strip()
    return Floor(running, cluster.trusting(running.certificate), token)


@pytest.fixture
async def signed_in(floor: Floor) -> Floor:
    async with floor.client() as http:
        for username in ("alice", "root"):
            login = await http.post(
                "/api/v1/auth/login",
                json={"tenant": TENANT, "username": username, "password": PASSWORD},
            )
            assert login.status_code == 200, login.text
            floor.tokens[username] = login.json()["access_token"]
        routes = await http.put(
            "/api/v1/psp/routes",
            json={"routes": [{"connector": "sandbox"}]},
            headers=floor.bearer("root"),
        )
        assert routes.status_code == 200, routes.text
    return floor


@dataclass
class Observer:
    """Every message on the topics above, as a consumer group of its own sees them."""

    published: list[Message] = field(default_factory=list)

    def of(self, topic: str, **match: object) -> list[Message]:
        return [
            m
            for m in self.published
            if m.topic == topic and all(getattr(m, k, None) == v for k, v in match.items())
        ]

    async def wait_for(self, topic: str, within: float = 30.0, **match: object) -> Message:
        await eventually(lambda: bool(self.of(topic, **match)), within=within)
        return self.of(topic, **match)[0]


@pytest.fixture
async def observer(running: cluster.Cluster) -> AsyncIterator[Observer]:
    seen = Observer()
    bus = RedisBus(running.redis_url, cluster.NAMESPACE, BusOptions())

    async def record(message: Message) -> None:
        seen.published.append(message)

    for topic in TOPICS:
        bus.subscribe(topic, f"test-observer-{uuid.uuid4().hex[:8]}", record)
    await bus.start()
    try:
        yield seen
    finally:
        await bus.close()


# --- the journey -------------------------------------------------------------------


def start_message(floor: Floor, call_id: str, leg: str, stream: str) -> str:
    params = {"tenant": TENANT, "token": floor.media_token}
    params.update({"agent": "alice"} if leg == "customer" else {"call": call_id})
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream,
            "start": {
                "callSid": call_id if leg == "customer" else f"{call_id}-agent",
                "streamSid": stream,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                "customParameters": params,
            },
        }
    )


async def open_leg(floor: Floor, call_id: str, leg: str) -> Leg:
    # The call id in the query: nginx hashes both legs of a call to one telephony.
    ws = await connect(f"{floor.ws_url}/media/{leg}?call={call_id}", ssl=floor.tls)
    opened = Leg(ws, f"MZ-{leg}-{call_id}")
    await opened.open(start_message(floor, call_id, leg, opened.stream_sid))
    return opened


async def push_events(floor: Floor, username: str, into: list[dict[str, Any]]) -> None:
    async with connect(
        f"{floor.ws_url}/ws/agent", ssl=floor.tls, additional_headers=floor.bearer(username)
    ) as ws:
        async for raw in ws:
            into.append(json.loads(raw))


async def until(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], want: Callable[[Any], bool]
) -> Any:
    body: Any = None
    for _ in range(300):
        answer = await http.get(path, headers=headers)
        body = answer.json()
        if answer.status_code == 200 and want(body):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never got there: {body}")


@dataclass
class Outcome:
    payment: dict[str, Any]
    agent_heard: np.ndarray
    pushed: list[dict[str, Any]]


async def phone_journey(
    floor: Floor,
    observer: Observer,
    *,
    after_card_number: Callable[[], None] = lambda: None,
    before_submit: Callable[[], None] = lambda: None,
) -> Outcome:
    call_id = "CA" + uuid.uuid4().hex
    alice = floor.bearer("alice")
    pushed: list[dict[str, Any]] = []
    push = asyncio.create_task(push_events(floor, "alice", pushed))
    await eventually(lambda: any(m.get("type") == "subscribed" for m in pushed), within=15)

    agent = await open_leg(floor, call_id, "agent")
    await asyncio.sleep(0.1)
    customer = await open_leg(floor, call_id, "customer")
    listening = [asyncio.create_task(leg.listen()) for leg in (agent, customer)]
    try:
        await observer.wait_for("call.assigned", call_id=call_id)
        async with floor.client() as http:
            for _ in range(100):  # capture learns of the assignment from the bus
                opened = await http.post(
                    f"/api/v1/calls/{call_id}/payments",
                    json={"amount": 4200, "currency": "GBP", "reference": "INV-42"},
                    headers=alice,
                )
                if opened.status_code != 404:
                    break
                await asyncio.sleep(0.1)
            assert opened.status_code == 201, opened.text
            payment_id = opened.json()["id"]
            await observer.wait_for("call.secure_mode", call_id=call_id)

            audio = customer_audio(PAN + future_expiry() + CVV, 100, 400, None)
            split = len(customer_audio(PAN, 100, 0, None))
            await play(customer, audio[:split])
            after_card_number()
            await play(customer, audio[split:])

            ready = await until(
                http, f"/api/v1/payments/{payment_id}", alice, lambda b: b["status"] == "ready"
            )
            assert ready["card"]["last4"] == PAN[-4:]
            before_submit()
            submitted = await http.post(f"/api/v1/payments/{payment_id}/submit", headers=alice)
            assert submitted.status_code == 202, submitted.text
            done = await until(
                http,
                f"/api/v1/payments/{payment_id}",
                alice,
                lambda b: b["status"] not in ("ready", "submitted"),
            )
        await eventually(
            lambda: any(
                m.get("topic") == "payment.authorized" and m["data"]["payment_id"] == payment_id
                for m in pushed
            ),
            within=15,
        )
    finally:
        await customer.stop()
        await agent.ws.close()
        await asyncio.wait_for(asyncio.gather(*listening, return_exceptions=True), 15)
        push.cancel()
        await asyncio.gather(push, return_exceptions=True)
    return Outcome(done, agent.audio(), pushed)


async def play(leg: Leg, audio: np.ndarray) -> None:
    """Audio as 20 ms frames, as fast as the socket takes them (keys are in the audio)."""
    for start in range(0, len(audio), FRAME_SAMPLES):
        frame = audio[start : start + FRAME_SAMPLES]
        await leg.send_frame(np.pad(frame, (0, FRAME_SAMPLES - len(frame))))


async def nothing_leaked(floor: Floor, observer: Observer) -> None:
    published = " ".join(m.model_dump_json() for m in observer.published)
    assert PAN not in published
    assert card_numbers_in(published) == []
    engine = create_async_engine(floor.cluster.database_url)
    try:
        assert card_numbers_in(await database_dump(engine)) == []
    finally:
        await engine.dispose()
    for url in (floor.cluster.redis_url, floor.cluster.vault_url):
        assert card_numbers_in(await redis_raw_dump(url)) == []


def assert_paid(outcome: Outcome) -> None:
    assert outcome.payment["status"] == "authorized", outcome.payment
    assert outcome.payment["outcome"]["connector"] == "sandbox"
    assert len(outcome.agent_heard) > 0
    assert detect_keys(outcome.agent_heard) == "", "the agent heard a key"
    assert not any(PAN in json.dumps(m) for m in outcome.pushed)


# --- the tests (in file order: each scales the one cluster further) ----------------


async def test_the_phone_journey_with_every_service_in_its_own_process(
    signed_in: Floor, observer: Observer
) -> None:
    health = cluster.status(Path(signed_in.cluster.directory))
    assert all(h.healthy for h in health), health
    assert {h.name for h in health} >= {f"{s}-1" for s in SERVICES} | {"nginx", "postgres"}

    outcome = await phone_journey(signed_in, observer)

    assert_paid(outcome)
    await nothing_leaked(signed_in, observer)


async def consumers_of(floor: Floor, topic: str, group: str) -> set[int]:
    """The pids of the processes that have taken a message in `group` on `topic` (Redis
    lists a consumer once it has been handed an entry)."""
    bus = RedisBus(floor.cluster.redis_url, cluster.NAMESPACE)
    try:
        stream = f"{cluster.NAMESPACE}:bus:{topic}"
        found = await bus._redis.xinfo_consumers(stream, group)
    finally:
        await bus.close()
    # Consumer names are host-pid-random-n (kernel.bus.base.consumer_name).
    return {int(bytes(c["name"]).decode().rsplit("-", 3)[-3]) for c in found}


async def link_journey(floor: Floor, observer: Observer) -> None:
    """A link by e-mail through a real SMTP server, followed and paid through nginx."""
    box = Mailbox()
    box.controller.start()
    try:
        async with floor.client() as http:
            configured = await http.put(
                "/api/v1/communications/settings",
                json={
                    "sender": {"name": "Example Shop", "email": "pay@shop.example"},
                    "email": {"host": "127.0.0.1", "port": box.port, "security": "none"},
                },
                headers=floor.bearer("root"),
            )
            assert configured.status_code == 200, configured.text
            reference = "ORDER-" + uuid.uuid4().hex[:8]
            created = await http.post(
                "/api/v1/payment-links",
                json={
                    "amount": 4999,
                    "currency": "GBP",
                    "reference": reference,
                    "channel": "email",
                    "to": "customer@example.com",
                },
                headers={**floor.bearer("alice"), "Idempotency-Key": reference},
            )
            assert created.status_code == 201, created.text
            link = created.json()
        [mail] = await box.wait(seconds=60)
        body = mail.get_body(preferencelist=("plain",))
        assert body is not None
        url = link_in(body.get_content())
        assert url == link["url"]
        assert url.startswith(floor.url + "/pay/")
        async with floor.client() as customer:
            page, csrf = await open_page(customer, url)
            assert "£49.99" in page.text
            posted = await post_card(customer, csrf, PAN, None, CVV)
            assert posted.status_code == 303, posted.text
            await page_state(customer, "paid", seconds=60)
        done = await observer.wait_for("link.completed", within=60, link_id=link["id"])
        paid = await observer.wait_for("payment.authorized", payment_id=done.payment_id)  # type: ignore[attr-defined]
        assert paid.amount == 4999  # type: ignore[attr-defined]
    finally:
        box.controller.stop()


async def test_the_link_journey_with_every_service_in_its_own_process(
    signed_in: Floor, observer: Observer
) -> None:
    await link_journey(signed_in, observer)
    await nothing_leaked(signed_in, observer)


async def test_both_journeys_with_two_instances_of_capture_psp_push_and_telephony(
    signed_in: Floor, observer: Observer
) -> None:
    directory = Path(signed_in.cluster.directory)
    for service in ("capture", "psp", "notifications", "telephony"):
        scaled = await asyncio.to_thread(cluster.scale, directory, service, 2)
    signed_in.cluster = scaled

    # The agent's push socket is on one notifications instance (each hears every event
    # in a group of its own); both legs of the call hash to one telephony instance.
    outcome = await phone_journey(signed_in, observer)
    await link_journey(signed_in, observer)

    assert_paid(outcome)
    health = {h.name: h for h in cluster.status(directory)}
    for service in ("capture", "psp", "notifications", "telephony"):
        for n in (1, 2):
            assert health[f"{service}-{n}"].healthy, health[f"{service}-{n}"]
    await nothing_leaked(signed_in, observer)


async def held_by(bus: RedisBus, topic: str, group: str, pid: int) -> list[Any]:
    """The entries of `topic` that the consumer of `group` in process `pid` holds."""
    pending = await bus._redis.xpending_range(
        f"{cluster.NAMESPACE}:bus:{topic}", group, min="-", max="+", count=100
    )
    return [p for p in pending if f"-{pid}-" in str(p["consumer"])]


async def test_killing_an_instance_mid_journey_loses_nothing(
    signed_in: Floor, observer: Observer
) -> None:
    capture, psp = (signed_in.cluster.process(f"{s}-1") for s in ("capture", "psp"))

    def kill(pid: int) -> Callable[[], None]:
        def now() -> None:
            os.kill(pid, signal.SIGKILL)

        return now

    # Card capture dies while the customer is keying (it may hold keypad messages it
    # took and never acked); the PSP adapter's first instance dies before the payment
    # is asked for, so the request can only be served by the one left.
    outcome = await phone_journey(
        signed_in, observer, after_card_number=kill(capture.pid), before_submit=kill(psp.pid)
    )

    assert_paid(outcome)
    assert not cluster.is_alive(capture.pid)
    # The instances left did the rest: each has taken messages in its group.
    for service, topic in (("capture", "call.keypad"), ("psp", "payment.requested")):
        survivor = signed_in.cluster.process(f"{service}-2")
        assert survivor.pid in await consumers_of(signed_in, topic, service), service
    # Whatever the dead instance held is claimed by the other once the visibility
    # timeout (3 s) has passed: soon nothing is left pending on it. (The journey may end
    # sooner: an entry the dead one had handled but not acknowledged is not waited for.)
    bus = RedisBus(signed_in.cluster.redis_url, cluster.NAMESPACE)
    try:
        for topic, group, dead in (
            ("call.keypad", "capture", capture.pid),
            ("payment.requested", "psp", psp.pid),
        ):
            for _ in range(150):
                held = await held_by(bus, topic, group, dead)
                if not held:
                    break
                await asyncio.sleep(0.1)
            assert held == [], (topic, held)
            assert await bus.dead_letters(topic, group) == []
    finally:
        await bus.close()
    health = {h.name: h for h in cluster.status(Path(signed_in.cluster.directory))}
    assert not health["capture-1"].alive
    assert health["capture-2"].healthy
    await nothing_leaked(signed_in, observer)
