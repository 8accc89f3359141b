"""Every journey, then the assessor's scan (PCI DSS 3.3, 3.3.1, 3.4).

One Transact on the distributed backends (PostgreSQL, Redis bus, Redis cache) runs
every way a card passes through it: phone payments approved, declined, cancelled by
the agent and abandoned by the caller; links paid and expired; a refund. Afterwards
`transact audit scan` reads the database, Redis and the logs: no card number and none
of the security codes used may be anywhere, and no vault entry may survive its capture,
not even sealed (3.3.1: no security code after authorization, even encrypted).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from sqlalchemy import update

from tests import servers
from tests.conftest import create_database, drop_database
from tests.e2e.test_phone_payment import PASSWORD, bearer, until
from tests.integration.capture.test_capture import future_expiry
from tests.integration.remote.conftest import open_page, page_state, post_card
from tests.integration.telephony.conftest import Line, serving
from tests.integration.telephony.test_secure_mode import play
from transact.auth import Accounts, SigningKeys
from transact.contracts import utcnow
from transact.kernel.logging import configure_logging
from transact.remote import store as link_store
from transact.telephony.simulate import customer_audio

pytestmark = [pytest.mark.redis, pytest.mark.postgres]

SERVICES = [
    "gateway",
    "auth",
    "correlation",
    "capture",
    "psp",
    "telephony",
    "remote",
    "communications",
]
APPROVED = "4242424242424242"
DECLINED = "4000000000000002"
CANCELLED = "5555555555554444"
ABANDONED = "4111111111111111"
LINK_PAID = "4000056655665556"
# One code per journey, none of which an amount, id or timestamp of this run contains
# as a whole run of digits: each must be found nowhere afterwards.
CODES = {"approved": "731", "declined": "864", "cancelled": "592", "abandoned": "418"}
LINK_CODE = "926"


@pytest.fixture
def own_redis() -> Iterator[str]:
    """A Redis of its own: the scan reads every key, so no other test's may be there."""
    with servers.redis_server() as url:
        yield url


@pytest.fixture
async def pg_url(postgres_admin_url: str) -> AsyncIterator[str]:
    url = await create_database(postgres_admin_url)
    yield url
    await drop_database(postgres_admin_url, url)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging("DEBUG", json=True, stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
    structlog.reset_defaults()


class Centre:
    """The running Transact, driven as the telephony platform, agents and customers."""

    def __init__(self, line: Line, http: httpx.AsyncClient) -> None:
        self.line = line
        self.http = http
        self.alice: dict[str, str] = {}
        self.calls = 0

    async def phone_capture(self, reference: str) -> tuple[Any, str, int]:
        """A call correlated to alice with a capture open in secure mode."""
        self.calls += 1
        call_id = f"CA-journey-{self.calls}"
        customer, _agent = await self.line.open_call(call_id, agent="alice")
        await until(
            self.http, "/api/v1/calls", self.alice, lambda b: any(c["id"] == call_id for c in b)
        )
        opened = None
        for _ in range(100):  # capture learns of the assignment from the bus
            opened = await self.http.post(
                f"/api/v1/calls/{call_id}/payments",
                json={"amount": 4200 + self.calls, "currency": "GBP", "reference": reference},
                headers=self.alice,
            )
            if opened.status_code != 404:
                break
            await asyncio.sleep(0.05)
        assert opened is not None
        assert opened.status_code == 201, opened.text
        for _ in range(250):
            if any(
                m.call_id == call_id and m.on  # type: ignore[attr-defined]
                for m in self.line.events("call.secure_mode")
            ):
                break
            await asyncio.sleep(0.02)
        return customer, opened.json()["id"], 2

    async def key(self, customer: Any, keys: str, seq: int) -> int:
        return await play(customer, customer_audio(keys, 100, 300, None), seq)

    async def payment(self, payment_id: str, want: Any) -> dict[str, Any]:
        return dict(await until(self.http, f"/api/v1/payments/{payment_id}", self.alice, want))

    async def submit(self, payment_id: str) -> dict[str, Any]:
        await self.payment(payment_id, lambda b: b["status"] == "ready")
        submitted = await self.http.post(
            f"/api/v1/payments/{payment_id}/submit", headers=self.alice
        )
        assert submitted.status_code == 202, submitted.text
        return await self.payment(payment_id, lambda b: b["status"] not in ("ready", "submitted"))

    async def hang_up(self, customer: Any, seq: int) -> None:
        await customer.send(json.dumps({"event": "stop", "sequenceNumber": str(seq)}))

    async def link(self, reference: str) -> dict[str, Any]:
        created = await self.http.post(
            "/api/v1/payment-links",
            json={"amount": 1999, "currency": "GBP", "reference": reference, "channel": "chat"},
            headers={**self.alice, "Idempotency-Key": reference},
        )
        assert created.status_code == 201, created.text
        return dict(created.json())

    async def link_status(self, link_id: str, want: str) -> None:
        await until(
            self.http, f"/api/v1/payment-links/{link_id}", self.alice, lambda b: b["status"] == want
        )


@pytest.fixture
async def centre(
    tmp_path: Path, own_redis: str, pg_url: str, log_stream: io.StringIO
) -> AsyncIterator[Centre]:
    # log_stream first: the services' loggers must write where the test can read them.
    async with serving(
        tmp_path,
        SERVICES,
        database_url=pg_url,
        bus_url=own_redis,
        cache_url=own_redis,
        media_pair_timeout=30.0,
        psp_reconcile_after=1.0,
    ) as line:
        accounts = Accounts(line.kernel, SigningKeys(line.kernel))
        await accounts.create_user(line.tenant_id, "alice", "agent", PASSWORD)
        await accounts.create_user(line.tenant_id, "root", "admin", PASSWORD)
        base = line.url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            the_centre = Centre(line, http)
            root = await bearer(http, "root")
            routes = await http.put(
                "/api/v1/psp/routes",
                json={"mode": "sale", "routes": [{"connector": "sandbox"}]},
                headers=root,
            )
            assert routes.status_code == 200, routes.text
            the_centre.alice = await bearer(http, "alice")
            yield the_centre


async def phone_journeys(centre: Centre) -> None:
    expiry = future_expiry()

    customer, approved, seq = await centre.phone_capture("INV-APPROVED")
    seq = await centre.key(customer, APPROVED + expiry + CODES["approved"], seq)
    done = await centre.submit(approved)
    assert done["status"] == "authorized", done
    refunded = await centre.http.post(
        f"/api/v1/payments/{approved}/refund",
        json={"amount": 1000},
        headers={**centre.alice, "Idempotency-Key": "refund-approved"},
    )
    assert refunded.status_code == 200, refunded.text
    await centre.hang_up(customer, seq)

    customer, declined, seq = await centre.phone_capture("INV-DECLINED")
    seq = await centre.key(customer, DECLINED + expiry + CODES["declined"], seq)
    done = await centre.submit(declined)
    assert done["status"] == "declined", done
    await centre.hang_up(customer, seq)

    # The agent cancels with the whole card keyed, code included, and nothing sent.
    customer, cancelled, seq = await centre.phone_capture("INV-CANCELLED")
    seq = await centre.key(customer, CANCELLED + expiry + CODES["cancelled"], seq)
    await centre.payment(cancelled, lambda b: b["status"] == "ready")
    response = await centre.http.post(f"/api/v1/payments/{cancelled}/cancel", headers=centre.alice)
    assert response.status_code == 200, response.text
    await centre.hang_up(customer, seq)

    # The caller hangs up after keying everything, before the agent submits.
    customer, abandoned, seq = await centre.phone_capture("INV-ABANDONED")
    seq = await centre.key(customer, ABANDONED + expiry + CODES["abandoned"], seq)
    await centre.payment(abandoned, lambda b: b["status"] == "ready")
    await centre.hang_up(customer, seq)
    gone = await centre.payment(abandoned, lambda b: b["status"] == "cancelled")
    assert gone["status"] == "cancelled"


async def link_journeys(centre: Centre) -> None:
    paid = await centre.link("LINK-PAID")
    async with httpx.AsyncClient(base_url=centre.http.base_url, timeout=20) as customer:
        _page, csrf = await open_page(customer, paid["url"])
        posted = await post_card(customer, csrf, LINK_PAID, None, LINK_CODE)
        assert posted.status_code == 303, posted.text
        await page_state(customer, "paid")
    await centre.link_status(paid["id"], "completed")

    expired = await centre.link("LINK-EXPIRED")
    async with httpx.AsyncClient(base_url=centre.http.base_url, timeout=20) as customer:
        await open_page(customer, expired["url"])
        async with centre.line.kernel.db.transaction() as session:
            await session.execute(
                update(link_store.links)
                .where(link_store.links.c.id == expired["id"])
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        late = await customer.get(expired["url"])
        assert late.status_code == 410
    await centre.link_status(expired["id"], "expired")


async def vault_entries(redis_url: str) -> list[bytes]:
    client: Any = aioredis.Redis.from_url(redis_url)
    try:
        return [key async for key in client.scan_iter(match="*vault:*")]
    finally:
        await client.aclose()


def audit_scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "transact", "audit", "scan", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_after_every_journey_no_card_data_is_anywhere(
    centre: Centre, own_redis: str, pg_url: str, log_stream: io.StringIO, tmp_path: Path
) -> None:
    await phone_journeys(centre)
    await link_journeys(centre)
    for topic in ("payment.authorized", "call.ended", "capture.progress"):
        assert centre.line.events(topic), topic

    # 3.3.1: once authorized (or given up), no security code is kept, not even sealed:
    # the vault entries of every capture are gone.
    async def vault_emptied() -> bool:
        return await vault_entries(own_redis) == []

    for _ in range(250):
        if await vault_emptied():
            break
        await asyncio.sleep(0.02)
    assert await vault_entries(own_redis) == []

    messages = tmp_path / "messages.jsonl"
    messages.write_text("\n".join(m.model_dump_json() for m in centre.line.published))
    logs = tmp_path / "transact.log"
    logs.write_text(log_stream.getvalue())
    assert "remote.link_created" in logs.read_text()  # the logs were captured
    codes = [*CODES.values(), LINK_CODE]
    scan_args = ["--pg", pg_url, "--redis", own_redis, "--logs", str(messages), "--logs", str(logs)]
    for code in codes:
        scan_args += ["--security-code", code]

    clean = audit_scan(*scan_args)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # The scan can fail: the same stores with one card number planted are caught.
    client: Any = aioredis.Redis.from_url(own_redis)
    try:
        await client.set("planted", f"left over {APPROVED}")
    finally:
        await client.aclose()
    caught = audit_scan(*scan_args)
    assert caught.returncode == 1
    assert "424242******4242" in caught.stdout
