"""The front door in one process: headers, request ids, body limits and rate limits.

The gateway runs in front of a probe service on the real HTTP shell
(`create_app`), so the error envelopes it must keep are the kernel's own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import structlog.testing
from fastapi import APIRouter, FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.types import Message, Receive, Scope, Send

from transact import gateway
from transact.gateway.api import Gateway
from transact.gateway.domain import PAY_CSP, accept_request_id
from transact.gateway.store import RateLimitStore
from transact.kernel import Kernel, Service
from transact.kernel.cache import MemoryCache
from transact.kernel.errors import ApiError, BackendUnavailable
from transact.kernel.http import create_app
from transact.kernel.settings import Settings, load_settings

KEY = base64.b64encode(b"g" * 32).decode()
LIMIT = 1024  # the smallest body limit settings allow


class Payment(BaseModel):
    amount: int
    currency: str


def probe_service(calls: list[str]) -> Service:
    """Stand-ins for the routes the gateway treats specially; `calls` records what ran."""
    router = APIRouter()

    @router.post("/api/v1/probe/{item_id}")
    async def create(item_id: int, body: Payment) -> dict[str, int]:
        calls.append("create")
        if body.amount < 0:
            raise ApiError(422, "invalid_amount", "amount must be positive")
        return {"id": item_id}

    @router.post("/api/v1/probe-stream")
    async def stream(request: Request) -> dict[str, int]:
        calls.append("stream")
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
        return {"size": size}

    @router.get("/api/v1/probe-crash")
    async def crash() -> None:
        raise RuntimeError("boom 4111111111111111")

    @router.get("/api/v1/probe-context")
    async def context(request: Request) -> dict[str, Any]:
        return {
            "header": request.headers.getlist("x-request-id"),
            "logged": structlog.contextvars.get_contextvars().get("request_id"),
        }

    @router.get("/api/v1/probe-own-headers")
    async def own_headers() -> JSONResponse:
        return JSONResponse(
            {},
            headers={
                "X-Frame-Options": "SAMEORIGIN",
                "Content-Security-Policy": "default-src *",
                "Cache-Control": "public, max-age=3600",
                "X-Probe": "kept",
            },
        )

    @router.post("/api/v1/auth/login")
    async def login() -> dict[str, bool]:
        calls.append("login")
        return {"ok": True}

    @router.post("/api/v1/payment-links")
    async def payment_link() -> dict[str, bool]:
        calls.append("payment-link")
        return {"ok": True}

    @router.get("/api/v1/calls")
    async def list_calls() -> list[str]:
        return []

    @router.get("/pay/{token}")
    async def pay(token: str) -> HTMLResponse:
        return HTMLResponse("<!doctype html><title>Pay</title>")

    @router.websocket("/ws/probe")
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_json(
            {"text": await ws.receive_text(), "request_id": ws.headers.get("x-request-id")}
        )
        await ws.close()

    return Service(name="probe", routers=[router])


async def careless_reader(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI app that turns a failed body read into a bug (a 500 from the shell)."""
    try:
        while (await receive()).get("more_body"):
            pass
    except Exception as exc:
        raise RuntimeError("could not read the body") from exc
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"read it all"})


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(master_key=KEY, data_dir=tmp_path, max_body_bytes=LIMIT, **overrides)


def make_app(settings: Settings, calls: list[str] | None = None) -> FastAPI:
    kernel = Kernel.from_settings(settings)
    probe = probe_service([] if calls is None else calls)
    app = create_app(kernel, [gateway.build(kernel), probe], manage_kernel=True)
    app.mount("/raw", careless_reader)
    return app


@asynccontextmanager
async def running(settings: Settings, calls: list[str] | None = None) -> AsyncIterator[FastAPI]:
    app = make_app(settings, calls)
    async with app.router.lifespan_context(app):
        yield app


def client_for(app: FastAPI, ip: str = "10.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="https://test")


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture(autouse=True)
def still_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process rate-limit buckets refill by the second; on a loaded CI machine
    twenty requests once took longer than that and the twenty-first was let through.
    Here the memory cache's clock stands still: no test in this module waits for time
    to pass (Redis's buckets, in their own test, keep Redis's clock)."""
    monkeypatch.setattr(MemoryCache, "_now", staticmethod(lambda: 1000.0))


@pytest.fixture
async def app(tmp_path: Path, calls: list[str]) -> AsyncIterator[FastAPI]:
    async with running(make_settings(tmp_path), calls) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c


def assert_secured(response: httpx.Response, *, strict: bool = False) -> None:
    headers = response.headers
    assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["x-frame-options"] == "DENY"
    csp = headers.get_list("content-security-policy")
    assert len(csp) == 1
    assert "frame-ancestors 'none'" in csp[0]
    assert (csp[0] == PAY_CSP) is strict
    assert accept_request_id(headers["x-request-id"]) is not None


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert "Traceback" not in response.text
    assert_secured(response)


# --- security headers on every answer ------------------------------------------------


async def test_a_plain_answer_is_secured(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert_secured(response)
    assert "cache-control" not in response.headers


async def test_api_answers_are_not_cacheable(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/calls")
    assert response.status_code == 200
    assert_secured(response)
    assert response.headers["cache-control"] == "no-store"


async def test_the_payment_page_gets_the_strict_policy(client: httpx.AsyncClient) -> None:
    response = await client.get("/pay/x")
    assert response.status_code == 200
    assert_secured(response, strict=True)
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_the_gateway_policy_replaces_what_a_route_set(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/probe-own-headers")
    assert_secured(response)
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    assert response.headers.get_list("cache-control") == ["no-store"]
    assert response.headers["x-probe"] == "kept"


async def test_404_keeps_the_envelope_and_is_secured(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nothing"), 404, "not_found")
    missing_page = await client.get("/pay/x/nothing")
    assert missing_page.status_code == 404
    assert missing_page.json()["error"]["code"] == "not_found"
    assert_secured(missing_page, strict=True)


async def test_405_keeps_the_envelope_and_is_secured(client: httpx.AsyncClient) -> None:
    assert_error(await client.delete("/healthz"), 405, "method_not_allowed")


async def test_422_keeps_the_envelope_and_is_secured(client: httpx.AsyncClient) -> None:
    invalid = await client.post("/api/v1/probe/1", json={"amount": "x", "currency": "GBP"})
    assert_error(invalid, 422, "invalid_request")
    refused = await client.post("/api/v1/probe/1", json={"amount": -1, "currency": "GBP"})
    assert_error(refused, 422, "invalid_amount")
    assert refused.json()["error"]["message"] == "amount must be positive"


async def test_500_keeps_the_envelope_and_is_secured(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/probe-crash")
    assert_error(response, 500, "internal_error")
    assert "4111" not in response.text
    assert response.headers["cache-control"] == "no-store"


async def test_a_bug_is_logged_once_by_the_shell_with_the_request_id(
    client: httpx.AsyncClient,
) -> None:
    merge = structlog.contextvars.merge_contextvars
    with structlog.testing.capture_logs(processors=[merge]) as logs:
        response = await client.get("/api/v1/probe-crash", headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500
    errors = [entry for entry in logs if entry["log_level"] == "error"]
    # The shell's own handler ran (the gateway is outside it and did not pre-empt it).
    assert [entry["event"] for entry in errors] == ["http.unhandled"]
    assert errors[0]["request_id"] == "crash-1"


# --- request ids ------------------------------------------------------------------------


async def test_a_well_formed_request_id_is_echoed_and_seen_downstream(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/v1/probe-context", headers={"X-Request-ID": "abc.123_X-y"})
    assert response.headers["x-request-id"] == "abc.123_X-y"
    assert response.json() == {"header": ["abc.123_X-y"], "logged": "abc.123_X-y"}


@pytest.mark.parametrize("sent", ["has space", "x" * 65, "semi;colon", "<script>"])
async def test_a_malformed_request_id_is_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/api/v1/probe-context", headers={"X-Request-ID": sent})
    issued = response.headers["x-request-id"]
    assert issued != sent
    assert accept_request_id(issued) == issued
    # The app, its logs and the client all see the one id the gateway issued.
    assert response.json() == {"header": [issued], "logged": issued}


async def test_a_missing_request_id_is_generated_fresh_each_time(
    client: httpx.AsyncClient,
) -> None:
    first = await client.get("/api/v1/probe-context")
    second = await client.get("/api/v1/probe-context")
    assert first.json()["header"] == [first.headers["x-request-id"]]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_the_request_id_is_unbound_after_the_request(client: httpx.AsyncClient) -> None:
    await client.get("/api/v1/probe-context", headers={"X-Request-ID": "leaky"})
    assert "request_id" not in structlog.contextvars.get_contextvars()


# --- body limit --------------------------------------------------------------------------


def _json_of_size(size: int) -> bytes:
    body = b'{"amount": 1, "currency": "GBP"}'
    return body + b" " * (size - len(body))


async def _chunks(total: int, size: int = 300) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        chunk = b"x" * min(size, total - sent)
        sent += len(chunk)
        yield chunk


JSON = {"content-type": "application/json"}


async def test_a_body_at_the_limit_passes(client: httpx.AsyncClient, calls: list[str]) -> None:
    response = await client.post("/api/v1/probe/1", content=_json_of_size(LIMIT), headers=JSON)
    assert response.status_code == 200
    assert calls == ["create"]


async def test_a_declared_length_over_the_limit_is_refused_up_front(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    response = await client.post("/api/v1/probe/1", content=_json_of_size(LIMIT + 1), headers=JSON)
    assert_error(response, 413, "payload_too_large")
    assert calls == []  # the route never ran


async def test_a_chunked_body_over_the_limit_is_refused(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    response = await client.post("/api/v1/probe/1", content=_chunks(LIMIT + 200), headers=JSON)
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "payload_too_large")
    assert calls == []


async def test_a_chunked_body_under_the_limit_passes(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/probe-stream", content=_chunks(LIMIT))
    assert response.status_code == 200
    assert response.json() == {"size": LIMIT}


async def test_a_route_streaming_the_body_itself_is_cut_off(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/probe-stream", content=_chunks(LIMIT * 4))
    assert_error(response, 413, "payload_too_large")


async def test_a_reader_that_turns_the_cut_off_into_a_bug_still_answers_413(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.post("/raw/x", content=_chunks(100))).text == "read it all"
    response = await client.post("/raw/x", content=_chunks(LIMIT * 2))
    assert_error(response, 413, "payload_too_large")


# --- rate limits ---------------------------------------------------------------------------


async def _post_many(client: httpx.AsyncClient, path: str, n: int, **kw: Any) -> list[int]:
    return [(await client.post(path, **kw)).status_code for _ in range(n)]


async def test_logins_past_the_burst_get_429_with_retry_after(
    client: httpx.AsyncClient, calls: list[str]
) -> None:
    assert await _post_many(client, "/api/v1/auth/login", 10) == [200] * 10
    refused = await client.post("/api/v1/auth/login")
    assert_error(refused, 429, "too_many_requests")
    # About one login every six seconds refills.
    assert 1 <= int(refused.headers["retry-after"]) <= 6
    assert calls == ["login"] * 10
    # Other routes are not held back by the login limit.
    assert (await client.get("/api/v1/calls")).status_code == 200


async def test_the_login_limit_is_per_address_not_per_credential(app: FastAPI) -> None:
    async with client_for(app, "10.0.0.1") as one, client_for(app, "10.0.0.2") as two:
        for i in range(10):
            auth = {"Authorization": f"Bearer token-{i}"}
            assert (await one.post("/api/v1/auth/login", headers=auth)).status_code == 200
        fresh = {"Authorization": "Bearer another"}
        assert (await one.post("/api/v1/auth/login", headers=fresh)).status_code == 429
        assert (await two.post("/api/v1/auth/login")).status_code == 200


async def test_payment_limits_are_per_principal(app: FastAPI) -> None:
    alice = {"Authorization": "Bearer alice-token"}
    bob = {"Authorization": "Bearer bob-token"}
    async with client_for(app, "10.0.0.1") as here, client_for(app, "10.0.0.2") as there:
        assert await _post_many(here, "/api/v1/payment-links", 20, headers=alice) == [200] * 20
        refused = await here.post("/api/v1/payment-links", headers=alice)
        assert_error(refused, 429, "too_many_requests")
        assert int(refused.headers["retry-after"]) >= 1
        # Alice is limited from any address; Bob, from hers, is not.
        assert (await there.post("/api/v1/payment-links", headers=alice)).status_code == 429
        assert (await here.post("/api/v1/payment-links", headers=bob)).status_code == 200
        # A session cookie is a principal of its own.
        here.cookies.set("transact_session", "carol-session")
        assert (await here.post("/api/v1/payment-links")).status_code == 200


async def test_the_strict_policy_holds_on_a_429(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_scale=0.001)  # every burst is one
    async with running(settings) as app, client_for(app) as client:
        assert (await client.get("/pay/x")).status_code == 200
        refused = await client.get("/pay/x")
        assert refused.status_code == 429
        assert_secured(refused, strict=True)


async def test_scale_zero_turns_rate_limits_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_scale=0)
    async with running(settings) as app, client_for(app) as client:
        assert await _post_many(client, "/api/v1/auth/login", 30) == [200] * 30


async def test_a_larger_scale_allows_more(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_scale=2)
    async with running(settings) as app, client_for(app) as client:
        assert await _post_many(client, "/api/v1/auth/login", 20) == [200] * 20
        assert (await client.post("/api/v1/auth/login")).status_code == 429


async def test_limits_hold_across_instances_on_one_redis(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    def settings(name: str) -> Settings:
        (tmp_path / name).mkdir()
        return make_settings(tmp_path / name, cache_url=redis_url, namespace=namespace)

    async with (
        running(settings("a")) as a,
        running(settings("b")) as b,
        client_for(a) as via_a,
        client_for(b) as via_b,
    ):
        for _ in range(5):
            assert (await via_a.post("/api/v1/auth/login")).status_code == 200
            assert (await via_b.post("/api/v1/auth/login")).status_code == 200
        assert (await via_a.post("/api/v1/auth/login")).status_code == 429
        assert (await via_b.post("/api/v1/auth/login")).status_code == 429


# --- the gateway on its own: what passes untouched, what fails how --------------------------


class _Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[Scope, Receive, Send]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen.append((scope, receive, send))
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


class _DownCache(MemoryCache):
    async def take_token(self, key: str, rate: float, burst: float, cost: float = 1.0) -> float:
        raise BackendUnavailable("cache is down")


def _gateway(inner: Any, cache: MemoryCache | None = None) -> Gateway:
    store = RateLimitStore(cache or MemoryCache())
    return Gateway(inner, limits=store, max_body_bytes=LIMIT, rate_limit_scale=1.0)


async def _call(
    app: Callable[[Scope, Receive, Send], Awaitable[None]], scope: Scope
) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _http_scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/thing",
        "headers": headers,
        "client": ("10.0.0.9", 1),
    }


@pytest.mark.parametrize("kind", ["websocket", "lifespan"])
async def test_websocket_and_lifespan_pass_through_untouched(kind: str) -> None:
    inner = _Recorder()
    scope: Scope = {"type": kind, "path": "/ws/agent", "headers": [(b"x-request-id", b"bad id")]}

    async def receive() -> Message:
        return {}

    async def send(message: Message) -> None:
        return None

    await _gateway(inner)(scope, receive, send)
    assert inner.seen == [(scope, receive, send)]
    assert scope["headers"] == [(b"x-request-id", b"bad id")]


@pytest.mark.parametrize("length", [b"abc", b"-1", b"1, 2"])
async def test_a_malformed_content_length_is_a_400(length: bytes) -> None:
    inner = _Recorder()
    sent = await _call(_gateway(inner), _http_scope([(b"content-length", length)]))
    assert inner.seen == []
    assert sent[0]["status"] == 400
    assert b'"bad_request"' in sent[1]["body"]


async def test_a_repeated_but_agreeing_content_length_is_accepted() -> None:
    inner = _Recorder()
    sent = await _call(_gateway(inner), _http_scope([(b"content-length", b"0, 0")]))
    assert sent[0]["status"] == 204


async def test_an_unreachable_limiter_lets_requests_through() -> None:
    inner = _Recorder()
    sent = await _call(_gateway(inner, _DownCache()), _http_scope([]))
    assert sent[0]["status"] == 204
    assert len(inner.seen) == 1


async def test_a_failure_outside_the_app_shell_still_answers_the_envelope() -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a middleware between the gateway and the app failed")

    messages: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        messages.append(message)

    with pytest.raises(RuntimeError):
        await _gateway(broken)(_http_scope([]), receive, send)
    assert messages[0]["status"] == 500
    names = {k for k, _ in messages[0]["headers"]}
    assert {b"x-request-id", b"strict-transport-security", b"content-security-policy"} <= names
    assert b'"internal_error"' in messages[1]["body"]


async def test_a_websocket_works_end_to_end_through_the_gateway(app: FastAPI) -> None:
    incoming: list[Message] = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hello"},
        {"type": "websocket.disconnect", "code": 1000},
    ]
    sent: list[Message] = []

    async def receive() -> Message:
        return incoming.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "wss",
        "path": "/ws/probe",
        "raw_path": b"/ws/probe",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"test"), (b"x-request-id", b"bad id")],
        "client": ("10.0.0.1", 40000),
        "server": ("test", 443),
        "subprotocols": [],
    }
    await app(scope, receive, send)
    assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
    # Untouched: a WebSocket's headers are not rewritten.
    assert json.loads(sent[1]["text"]) == {"text": "hello", "request_id": "bad id"}
