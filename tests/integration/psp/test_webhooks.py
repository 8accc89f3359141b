"""Merchant webhooks end to end: a real payment, a real HTTP receiver, signed, retried, once."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.integration.capture.conftest import PASSWORD, running
from tests.integration.psp.conftest import Shop
from tests.integration.psp.test_payments import REFUSED, pay
from tests.leaks import card_numbers_in, database_dump
from tests.servers import free_port
from transact import runtime
from transact.auth import Accounts, SigningKeys
from transact.contracts.payments import PaymentAuthorized
from transact.kernel import Kernel, Service
from transact.psp.webhooks import TargetPolicy, Webhooks, build_webhooks, verify_signature

PAN = "4242424242424242"
MAX_ATTEMPTS = 4


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A merchant's webhook endpoint that records every request; it can be told to fail."""

    url: str = ""
    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self, fail_first: int = 0) -> None:
        with self.lock:
            self.fail_first = fail_first
            self.requests.clear()

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            status = 500 if len(self.requests) < self.fail_first else 200
            self.requests.append(Received(dict(request.headers), body, status))
        return Response(status_code=status)

    def acknowledged(self) -> list[Received]:
        return [r for r in self.requests if 200 <= r.status < 300]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/hook", rec.endpoint, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    rec.url = f"http://127.0.0.1:{port}/hook"
    yield rec
    server.should_exit = True
    thread.join(5)


class Hooked(Shop):
    hooks: Webhooks
    receiver: Receiver
    dns: dict[str, str]


# The receiver runs on loopback: these tests open the private switch, as
# TRANSACT_WEBHOOK_ALLOW_PRIVATE would; the SSRF tests close it again.
OPEN = TargetPolicy(allow_private=True)
PUBLIC = "93.184.216.34"


@pytest.fixture(params=["sqlite", "postgres"])
async def shop(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    simulator: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Hooked]:
    """The PSP shop with the webhook service added, its retries shortened to milliseconds."""
    built: list[Webhooks] = []
    factories = runtime.service_factories
    dns: dict[str, str] = {"merchant.example": PUBLIC}

    async def resolve(host: str, port: int) -> list[str]:
        # No DNS in tests: names resolve from this table, or not at all.
        if host not in dns:
            raise OSError(f"unknown host {host}")
        return [dns[host]]

    def webhooks(kernel: Kernel) -> Service:
        hooks = Webhooks(
            kernel,
            delays=(0.05, 0.1),
            max_attempts=MAX_ATTEMPTS,
            poll_interval=0.02,
            timeout=2.0,
            jitter=0,
            targets=OPEN,
            resolve=resolve,
        )
        built.append(hooks)
        return build_webhooks(kernel, hooks)

    # Whether or not the composition root lists the service yet, this one runs here.
    monkeypatch.setattr(
        runtime, "service_factories", lambda: {**factories(), "psp-webhooks": webhooks}
    )
    topics = ("payment.authorized", "payment.declined", "payment.failed", "payment.refunded")
    services = ["gateway", "auth", "capture", "psp", "psp-webhooks"]
    receiver.reset()
    async with running(request, tmp_path, Hooked, services, topics) as s:
        s.sim, s.hooks, s.receiver, s.dns = simulator, built[0], receiver, dns
        yield s


SQLITE_ONLY = pytest.mark.parametrize("shop", ["sqlite"], indirect=True)


async def admin(shop: Hooked) -> dict[str, str]:
    if "root" not in shop.agents:
        await shop.agent("root", "admin")
    return shop.agents["root"][1]


async def set_hook(shop: Hooked, url: str, **body: Any) -> str:
    response = await shop.client.put(
        "/api/v1/psp/webhook", json={"url": url, **body}, headers=await admin(shop)
    )
    assert response.status_code == 200, response.text
    assert response.json()["url"] == url
    return str(response.json()["secret"])


async def deliveries(shop: Hooked) -> list[dict[str, Any]]:
    response = await shop.client.get("/api/v1/psp/webhook/deliveries", headers=await admin(shop))
    assert response.status_code == 200, response.text
    return list(response.json())


async def settled(shop: Hooked, count: int = 1, within: float = 20.0) -> list[dict[str, Any]]:
    """The deliveries, once `count` of them are no longer pending."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        seen = await deliveries(shop)
        if sum(d["status"] != "pending" for d in seen) >= count:
            return seen
        await asyncio.sleep(0.02)
    raise AssertionError(f"deliveries still pending: {seen}")


def event_of(received: Received) -> dict[str, Any]:
    return dict(json.loads(received.body))


async def test_an_outcome_is_delivered_once_signed_and_without_card_data(shop: Hooked) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    secret = await set_hook(shop, shop.receiver.url)
    view = await pay(shop, PAN)
    assert view["status"] == "authorized"
    [row] = await settled(shop)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 1, 200)
    assert row["payment_id"] == view["id"]
    assert row["type"] == "payment.authorized"
    [received] = shop.receiver.requests
    assert received.headers["content-type"] == "application/json"
    assert verify_signature(secret, received.headers["transact-signature"], received.body)
    event = event_of(received)
    assert event["id"] == received.headers["transact-event-id"] == row["id"]
    assert event["type"] == "payment.authorized"
    assert event["data"]["payment_id"] == view["id"]
    assert event["data"]["psp_reference"] == view["outcome"]["psp_reference"]
    assert (event["data"]["amount"], event["data"]["currency"]) == (1250, "GBP")
    assert card_numbers_in(received.body) == []
    assert PAN.encode() not in received.body
    assert "payload" not in row


async def test_a_failing_receiver_gets_the_same_event_until_it_acknowledges(
    shop: Hooked,
) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim})
    secret = await set_hook(shop, shop.receiver.url)
    shop.receiver.reset(fail_first=2)
    view = await pay(shop, "4000000000009995")
    assert view["status"] == "declined"
    [row] = await settled(shop)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("delivered", 3, 200)
    assert row["last_error"] is None
    sent = shop.receiver.requests
    assert [r.status for r in sent] == [500, 500, 200]
    assert len(shop.receiver.acknowledged()) == 1
    assert len({r.body for r in sent}) == 1, "every retry sends the same body"
    assert {r.headers["transact-event-id"] for r in sent} == {row["id"]}
    assert all(verify_signature(secret, r.headers["transact-signature"], r.body) for r in sent)
    event = event_of(sent[-1])
    assert event["type"] == "payment.declined"
    assert event["data"]["decline_code"] == "insufficient_funds"


async def test_a_redelivered_bus_message_makes_one_delivery(shop: Hooked) -> None:
    await set_hook(shop, shop.receiver.url)
    message = PaymentAuthorized(
        tenant_id=shop.tenant_id, payment_id="pay_direct", connector="stripe", attempts=1
    )
    # The bus drops a re-published id, so redeliveries are played on the handler itself.
    await shop.hooks.on_event(message)
    await shop.hooks.on_event(message)
    await asyncio.gather(shop.hooks.on_event(message), shop.hooks.on_event(message))
    [row] = await settled(shop)
    assert (row["id"], row["status"]) == (message.id, "delivered")
    await asyncio.sleep(0.1)  # a second delivery, if any, would have started by now
    assert len(shop.receiver.requests) == 1


@SQLITE_ONLY
async def test_a_receiver_that_never_acknowledges_ends_failed(shop: Hooked) -> None:
    await set_hook(shop, shop.receiver.url)
    shop.receiver.reset(fail_first=1000)
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p1"))
    [row] = await settled(shop)
    assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert (row["last_status_code"], row["last_error"]) == (500, "http_500")
    assert len(shop.receiver.requests) == MAX_ATTEMPTS


@SQLITE_ONLY
async def test_an_unreachable_receiver_records_the_error_class(shop: Hooked) -> None:
    await set_hook(shop, REFUSED + "/hook")
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p1"))
    [row] = await settled(shop)
    assert (row["status"], row["attempts"]) == ("failed", MAX_ATTEMPTS)
    assert (row["last_status_code"], row["last_error"]) == (None, "ConnectError")


@SQLITE_ONLY
async def test_bad_urls_are_clear_422s(shop: Hooked) -> None:
    headers = await admin(shop)
    for url, needle in [
        ("http://merchant.example/hook", "https"),
        ("ftp://merchant.example/hook", "https"),
        ("https://user:pw@merchant.example/hook", "credentials"),
        ("not a url", "spaces"),
    ]:
        response = await shop.client.put("/api/v1/psp/webhook", json={"url": url}, headers=headers)
        assert response.status_code == 422, url
        error = response.json()["error"]
        assert error["code"] == "invalid_url", error
        assert needle in error["message"], error
    for body in ({}, {"url": 7}, {"url": "https://merchant.example", "extra": 1}):
        response = await shop.client.put("/api/v1/psp/webhook", json=body, headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (
            422,
            "invalid_request",
        )
    too_many = await shop.client.get(
        "/api/v1/psp/webhook/deliveries", params={"limit": 101}, headers=headers
    )
    assert too_many.status_code == 422


@SQLITE_ONLY
async def test_internal_destinations_are_refused_when_set(shop: Hooked) -> None:
    headers = await admin(shop)
    shop.hooks.targets = TargetPolicy()  # production: neither demo nor the private switch
    port = shop.receiver.url.split(":")[2].split("/")[0]
    shop.dns |= {
        "localhost": "127.0.0.1",
        "metadata.example": "169.254.169.254",
        "intranet.example": "10.1.2.3",
    }
    for url, needle in [
        (shop.receiver.url, "https"),
        (f"https://127.0.0.1:{port}/hook", "loopback"),
        (f"https://localhost:{port}/hook", "loopback"),
        ("https://[::1]/hook", "loopback"),
        ("https://metadata.example/latest/meta-data", "link-local"),
        ("https://intranet.example/hook", "private"),
        ("https://[::ffff:10.1.2.3]/hook", "private"),
        ("https://nowhere.example/hook", "does not resolve"),
    ]:
        response = await shop.client.put("/api/v1/psp/webhook", json={"url": url}, headers=headers)
        assert response.status_code == 422, url
        error = response.json()["error"]
        assert error["code"] == "invalid_url", error
        assert needle in error["message"], (url, error)
    assert (await shop.client.get("/api/v1/psp/webhook", headers=headers)).status_code == 404
    await set_hook(shop, "https://merchant.example/hook")


@SQLITE_ONLY
async def test_a_delivery_to_a_refused_target_fails_at_once_and_sends_nothing(
    shop: Hooked,
) -> None:
    shop.dns["hooks.example"] = PUBLIC
    await set_hook(shop, "https://hooks.example/hook")
    # The name now points inward (DNS rebinding): checked again at delivery, refused.
    shop.dns["hooks.example"] = "127.0.0.1"
    shop.hooks.targets = TargetPolicy()
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p1"))
    [row] = await settled(shop)
    assert (row["status"], row["attempts"], row["last_error"]) == ("failed", 1, "target_refused")
    assert shop.receiver.requests == []
    # The switch that once allowed the receiver is turned off: refused as well, once.
    shop.hooks.targets = OPEN
    await set_hook(shop, shop.receiver.url)
    shop.hooks.targets = TargetPolicy()
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p2"))
    rows = await settled(shop, count=2)
    assert [(r["status"], r["attempts"], r["last_error"]) for r in rows] == [
        ("failed", 1, "target_refused"),
        ("failed", 1, "target_refused"),
    ]
    assert shop.receiver.requests == []


@SQLITE_ONLY
async def test_a_name_that_stops_resolving_is_retried_not_refused(shop: Hooked) -> None:
    shop.dns["flaky.example"] = PUBLIC
    await set_hook(shop, "https://flaky.example/hook")
    del shop.dns["flaky.example"]
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p1"))
    [row] = await settled(shop)
    assert (row["status"], row["attempts"], row["last_error"]) == (
        "failed",
        MAX_ATTEMPTS,
        "dns_error",
    )


@SQLITE_ONLY
async def test_only_admins_manage_the_webhook(shop: Hooked) -> None:
    agent = await shop.agent("alice")
    calls = [
        ("PUT", "/api/v1/psp/webhook", {"url": shop.receiver.url}),
        ("GET", "/api/v1/psp/webhook", None),
        ("DELETE", "/api/v1/psp/webhook", None),
        ("GET", "/api/v1/psp/webhook/deliveries", None),
    ]
    for method, path, body in calls:
        response = await shop.client.request(method, path, json=body, headers=agent)
        assert response.status_code == 403, (method, path)
        anonymous = await shop.client.request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)


@SQLITE_ONLY
async def test_the_secret_is_shown_once_and_stored_sealed(shop: Hooked) -> None:
    headers = await admin(shop)
    assert (await shop.client.get("/api/v1/psp/webhook", headers=headers)).status_code == 404
    first = await set_hook(shop, shop.receiver.url)
    second = await set_hook(shop, shop.receiver.url + "?v=2")
    assert first != second, "each PUT issues a new secret"
    shown = await shop.client.get("/api/v1/psp/webhook", headers=headers)
    assert shown.status_code == 200
    assert shown.json()["url"] == shop.receiver.url + "?v=2"
    assert shown.json()["enabled"] is True
    assert "secret" not in shown.json()
    dump = await database_dump(shop.kernel.db.engine)
    assert first not in dump
    assert second not in dump
    assert "psp.webhook_set" in dump, "the change is audited"


@SQLITE_ONLY
async def test_removing_or_disabling_the_endpoint_stops_deliveries(shop: Hooked) -> None:
    headers = await admin(shop)
    await set_hook(shop, shop.receiver.url)
    await shop.hooks.stop()  # hold the worker, so a delivery stays pending
    owed = PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p1")
    await shop.hooks.on_event(owed)
    assert [d["status"] for d in await deliveries(shop)] == ["pending"]
    removed = await shop.client.delete("/api/v1/psp/webhook", headers=headers)
    assert removed.status_code == 204
    [row] = await deliveries(shop)
    assert (row["status"], row["last_error"]) == ("cancelled", "endpoint_removed")
    assert (await shop.client.get("/api/v1/psp/webhook", headers=headers)).status_code == 404
    assert (await shop.client.delete("/api/v1/psp/webhook", headers=headers)).status_code == 404
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p2"))
    await set_hook(shop, shop.receiver.url, enabled=False)
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p3"))
    assert len(await deliveries(shop)) == 1, "no endpoint, or a disabled one: nothing recorded"
    await shop.hooks.start()
    await asyncio.sleep(0.1)
    assert shop.receiver.requests == []


@SQLITE_ONLY
async def test_another_tenants_admin_sees_neither_our_endpoint_nor_our_deliveries(
    shop: Hooked,
) -> None:
    await set_hook(shop, shop.receiver.url)
    await shop.hooks.on_event(PaymentAuthorized(tenant_id=shop.tenant_id, payment_id="p1"))
    await settled(shop)
    accounts = Accounts(shop.kernel, SigningKeys(shop.kernel))
    other = await accounts.create_tenant("other", mfa_required=False)
    await accounts.create_user(other.id, "boss", "admin", PASSWORD)
    login = await shop.client.post(
        "/api/v1/auth/login",
        json={"tenant": "other", "username": "boss", "password": PASSWORD},
    )
    shop.client.cookies.clear()
    theirs = {"Authorization": f"Bearer {login.json()['access_token']}"}
    listed = await shop.client.get("/api/v1/psp/webhook/deliveries", headers=theirs)
    assert (listed.status_code, listed.json()) == (200, [])
    assert (await shop.client.get("/api/v1/psp/webhook", headers=theirs)).status_code == 404


@SQLITE_ONLY
async def test_captures_and_refunds_are_delivered_too(shop: Hooked) -> None:
    await shop.routes({"connector": "stripe", "base_url": shop.sim}, mode="auth")
    await set_hook(shop, shop.receiver.url)
    view = await pay(shop, amount=1000)
    headers = shop.agents["alice"][1]
    for action, body in (("capture", {"amount": 600}), ("refund", {"amount": 200})):
        response = await shop.client.post(
            f"/api/v1/payments/{view['id']}/{action}", json=body, headers=headers
        )
        assert response.status_code == 200, response.text
    rows = await settled(shop, count=3)
    assert {(r["type"], r["status"]) for r in rows} == {
        ("payment.authorized", "delivered"),
        ("payment.captured", "delivered"),
        ("payment.refunded", "delivered"),
    }
    events = {e["type"]: e["data"] for e in map(event_of, shop.receiver.requests)}
    assert (events["payment.captured"]["amount"], events["payment.captured"]["captured_total"]) == (
        600,
        600,
    )
    assert events["payment.refunded"]["amount"] == 200
    assert {d["payment_id"] for d in events.values()} == {view["id"]}
