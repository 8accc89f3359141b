"""The two gateways agree: nginx (rendered from the gateway's rules) in front of the
services, and the in-process gateway in front of the same services, give the same
security headers per path, the same body limit and the same rate limit, and nginx
passes WebSocket upgrades through."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.integration.distributed.processes import nginx, serving
from transact import runtime
from transact.cluster import trusting
from transact.gateway.domain import PLACEHOLDER, ROUTES, security_headers

pytestmark = pytest.mark.distributed

SECURITY_HEADERS = (
    "strict-transport-security",
    "x-content-type-options",
    "referrer-policy",
    "x-frame-options",
    "content-security-policy",
    "cache-control",
)
# Paths the two gateways answer differently on purpose (docs/operations.md): nginx
# answers /healthz itself and keeps the processes' probes and metrics off the edge.
EDGE_ONLY = ("/readyz", "/metrics")


@dataclass(frozen=True)
class Gateways:
    direct: str  # the services with the in-process gateway
    nginx: str  # the services without it, behind nginx
    tls: ssl.SSLContext
    nginx_http: str


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateways]:
    root = tmp_path_factory.mktemp("gateways")
    every = list(runtime.service_factories())
    behind = [name for name in every if name != "gateway"]
    settings = {"TRANSACT_PUSH_AUTH_TIMEOUT": "1", "TRANSACT_MEDIA_START_TIMEOUT": "2"}
    with (
        serving(root / "direct", every, settings) as direct,
        serving(root / "behind", behind, settings) as app,
    ):
        upstream = app.removeprefix("http://")
        with nginx(root, {name: [upstream] for name in behind}, max_body_bytes=65536) as front:
            yield Gateways(direct, front.url, trusting(front.certificate), front.http_url)


def client(gateways: Gateways, base: str) -> httpx.Client:
    return httpx.Client(base_url=base, verify=gateways.tls, timeout=30)


def sample_paths() -> list[str]:
    """Every route prefix, something under it, and paths no service claims."""
    paths = {"/", "/healthz", "/nothing/here", "/api/unknown", "/pay/tok_123", "/payments"}
    for route in ROUTES:
        path = route.prefix.replace(PLACEHOLDER, "x")
        paths.update({path, path + "/x", path + "/"})
    return sorted(paths)


def security(response: httpx.Response) -> dict[str, str | None]:
    return {name: response.headers.get(name) for name in SECURITY_HEADERS}


def test_both_gateways_send_the_same_security_headers_on_every_path(gateways: Gateways) -> None:
    with client(gateways, gateways.direct) as direct, client(gateways, gateways.nginx) as edge:
        for path in sample_paths():
            one, two = direct.get(path), edge.get(path)
            assert two.status_code == one.status_code, (path, one.text, two.text)
            assert security(two) == security(one), path
            # And both are the rules' own headers for the path.
            assert {k.lower(): v for k, v in security_headers(path)}.items() <= {
                k: v for k, v in security(two).items() if v is not None
            }.items(), path
            assert two.headers.get("x-request-id"), path
            if two.status_code >= 400:  # the same error page, whoever answered
                assert two.text == one.text, path


def test_the_strict_payment_page_policy_reaches_the_payment_page(gateways: Gateways) -> None:
    with client(gateways, gateways.nginx) as edge:
        csp = edge.get("/pay/tok_123").headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "script-src 'self'" in csp


def test_request_ids_are_kept_when_safe_and_replaced_when_not(gateways: Gateways) -> None:
    for base in (gateways.direct, gateways.nginx):
        with client(gateways, base) as http:
            kept = http.get("/healthz", headers={"X-Request-ID": "req-42.a_b"})
            replaced = http.get("/healthz", headers={"X-Request-ID": "bad id; drop table"})
        assert kept.headers["x-request-id"] == "req-42.a_b", base
        assert replaced.headers["x-request-id"] not in ("", "bad id; drop table"), base


def test_a_body_over_the_limit_is_refused_the_same_way(gateways: Gateways) -> None:
    big = b"{" + b" " * 65536 + b"}"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    answers = {}
    for name, base in (("direct", gateways.direct), ("nginx", gateways.nginx)):
        with client(gateways, base) as http:
            declared = http.post(
                "/api/v1/payment-links", content=big, headers={"Content-Type": "application/json"}
            )
            chunked = http.post(
                "/api/v1/payment-links",
                content=chunks(),
                headers={"Content-Type": "application/json"},
            )
            fits = http.post("/api/v1/payment-links", json={"amount": 1})
        assert declared.status_code == chunked.status_code == 413, name
        assert fits.status_code != 413, name
        assert security(declared) == security(fits), name
        answers[name] = (declared.json(), chunked.json())
    assert answers["nginx"] == answers["direct"]
    assert answers["nginx"][0]["error"]["code"] == "payload_too_large"


def test_the_login_rate_limit_refuses_the_same_attempt(gateways: Gateways) -> None:
    refused_at = {}
    for name, base in (("direct", gateways.direct), ("nginx", gateways.nginx)):
        with client(gateways, base) as http:
            statuses = []
            for _ in range(12):
                answer = http.post(
                    "/api/v1/auth/login",
                    json={"tenant": "nobody", "username": "x", "password": "wrong-password"},
                )
                statuses.append(answer.status_code)
                if answer.status_code == 429:
                    assert int(answer.headers["retry-after"]) >= 1
                    assert answer.json()["error"]["code"] == "too_many_requests"
                    assert answer.headers["content-security-policy"]
                    break
        refused_at[name] = statuses.index(429) if 429 in statuses else None
    # Ten a minute with a burst of ten, on both: the eleventh attempt is refused.
    assert refused_at == {"direct": 10, "nginx": 10}


def test_plain_http_is_sent_to_https(gateways: Gateways) -> None:
    answer = httpx.get(f"{gateways.nginx_http}/api/v1/calls", timeout=5)
    assert answer.status_code == 308
    assert answer.headers["location"] == gateways.nginx + "/api/v1/calls"


async def close_of(url: str, tls: ssl.SSLContext | None, first: str) -> tuple[int, str]:
    """Open a WebSocket, send one message, return how the server closed it."""
    async with connect(url, ssl=tls, open_timeout=10) as ws:
        await ws.send(first)
        with pytest.raises(ConnectionClosed):
            while True:
                await ws.recv()
    assert ws.close_code is not None, "closed without a close frame"
    return ws.close_code, ws.close_reason or ""


async def test_websocket_upgrades_pass_through_nginx(gateways: Gateways) -> None:
    wrong_token = json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": "MZ1",
            "start": {
                "callSid": "CA1",
                "streamSid": "MZ1",
                "customParameters": {"tenant": "nobody", "token": "wrong"},
            },
        }
    )
    bad_auth = json.dumps({"type": "auth", "token": "not-a-token"})
    direct = gateways.direct.replace("http://", "ws://")
    edge = gateways.nginx.replace("https://", "wss://")
    for path, first in (("/media/customer?call=CA1", wrong_token), ("/ws/agent", bad_auth)):
        through_nginx = await close_of(edge + path, gateways.tls, first)
        in_process = await close_of(direct + path, None, first)
        # The service itself answered through the upgraded connection, with its reason.
        assert through_nginx == in_process, path
        assert through_nginx[0] not in (1006, 1011), path
