"""A real crash: `transact serve psp` is SIGKILLed after the PSP charged and before the
outcome was committed; restarted, it reconciles the payment as authorized, charged once.

Three processes: the PSP simulator (`transact psp-sim`), the PSP adapter (`transact
serve psp` on Redis and a SQLite file) and this test, which plays card capture: it
seals the card in the vault and publishes `payment.requested` on the shared bus.

The moment of the kill needs no hook inside transact: the simulator is told to
record the charge and then hold its answer (`after_charge=timeout`). Once
`/_sim/charges` shows the charge, the PSP has approved and transact is still
waiting for the answer, so nothing about the outcome can have been committed (the
test checks that too), and that is when the process is killed. (On a machine so
loaded that transact's own 10 s read timeout runs out before the kill, nothing is
proven by that round, and the test tries again with a new payment.)
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from tests.leaks import card_numbers_in
from tests.servers import free_port, wait_for
from transact.contracts.payments import PaymentRequested
from transact.kernel import Kernel
from transact.kernel.security import Principal, Role
from transact.kernel.settings import Settings, load_settings
from transact.psp import Psp

PAN = "4242424242424242"
TENANT = "t-crash"
STARTUP = 90.0  # seconds a process may take to start on a loaded machine (imports alone: 5 s)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "transact", *args], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


async def route_to_simulator(settings: Settings, sim: str) -> None:
    """Migrate, and route the test tenant to the simulator's Stripe."""
    kernel = Kernel.from_settings(settings)
    await kernel.db.migrate()
    psp = Psp(kernel)
    admin = Principal(kind="user", id="root", tenant_id=TENANT, name="root", role=Role.ADMIN)
    await psp.set_setup(
        admin,
        {
            "routes": [{"connector": "stripe", "base_url": sim}],
            "credentials": {"stripe": {"secret_key": "sk_test_simulator"}},
        },
    )
    await psp.close()
    await kernel.stop()


async def request_payment(settings: Settings, payment_id: str, reference: str) -> None:
    """As card capture does: the card into the vault, `payment.requested` on the bus."""
    kernel = Kernel.from_settings(settings)
    card = json.dumps({"pan": PAN, "expiry": "1239", "cvv": "123"}).encode()
    ref = await kernel.vault.put(TENANT, card)
    await kernel.bus.publish(
        PaymentRequested(
            tenant_id=TENANT,
            payment_id=payment_id,
            capture_id=payment_id,
            amount=4200,
            currency="GBP",
            reference=reference,
            channel="phone",
            agent_id=None,
            vault_ref=ref,
            idempotency_key=f"{payment_id}:authorize",
        )
    )
    await kernel.stop()


def query(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return list(conn.execute(sql, args).fetchall())


def status_of(db: Path, payment_id: str) -> str | None:
    rows = query(db, "SELECT status FROM psp_payments WHERE id = ?", payment_id)
    return str(rows[0][0]) if rows else None


def test_a_process_killed_after_the_charge_and_before_the_commit_is_reconciled(
    tmp_path: Path, redis_url: str
) -> None:
    sim_port, app_port = free_port(), free_port()
    sim = f"http://127.0.0.1:{sim_port}"
    app = f"http://127.0.0.1:{app_port}"
    db = tmp_path / "transact.db"
    namespace = f"crash{uuid.uuid4().hex[:8]}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TRANSACT_")}
    overrides = {
        "master_key": base64.b64encode(os.urandom(32)).decode(),
        "database_url": f"sqlite+aiosqlite:///{db}",
        "bus_url": redis_url,
        "cache_url": redis_url,
        "namespace": namespace,
        # Reconcile at start whatever was left `submitted` a second ago (default 30 s).
        "psp_reconcile_after": "1",
        "log_json": "false",
    }
    env = clean | {f"TRANSACT_{k.upper()}": v for k, v in overrides.items()}
    settings = load_settings(**overrides)
    log = tmp_path / "transact.log"

    async def published(topic: str) -> list[dict[str, Any]]:
        client: Any = aioredis.Redis.from_url(redis_url)
        try:
            entries = await client.xrange(f"{namespace}:bus:{topic}")
        finally:
            await client.aclose()
        found = []
        for _, fields in entries:
            for value in fields.values():
                if value.startswith(b"{"):
                    found.append(json.loads(value))
        return found

    def charges() -> dict[str, Any]:
        return dict(httpx.get(f"{sim}/_sim/charges").json())

    def crash_after_the_charge() -> str | None:
        """Start transact, have the PSP charge and hold its answer, SIGKILL transact.

        The id of a payment the PSP charged and transact had not recorded when it died,
        or None when transact's own 10 s read timeout ran out first (a very slow
        machine): then nothing was proven and the caller tries again."""
        payment_id = f"pay_{uuid.uuid4().hex[:20]}"
        # The PSP will charge, then not answer until the caller goes away.
        queued = httpx.post(
            f"{sim}/_sim/faults",
            json={"provider": "stripe", "fault": "after_charge=timeout", "count": 1},
        )
        assert queued.status_code == 201
        with process(["serve", "psp", "--port", str(app_port)], env, log) as first:
            wait_for(lambda: _healthy(f"{app}/readyz"), "transact serve psp", timeout=STARTUP)
            asyncio.run(request_payment(settings, payment_id, "INV-CRASH"))
            wait_for(
                lambda: charges()["charges"]["stripe"].get(payment_id) == 1,
                "the PSP's charge",
                timeout=STARTUP,
            )
            os.kill(first.pid, signal.SIGKILL)
            assert first.wait(10) == -signal.SIGKILL
        if status_of(db, payment_id) != "submitted":
            return None
        # Approved at the PSP, and transact died still waiting for the answer.
        attempts = query(db, "SELECT outcome FROM psp_attempts WHERE payment_id = ?", payment_id)
        assert attempts == [("sending",)]
        return payment_id

    with process(["psp-sim", "--port", str(sim_port)], clean, tmp_path / "sim.log"):
        wait_for(lambda: _healthy(f"{sim}/_sim/health"), "transact psp-sim", timeout=STARTUP)
        asyncio.run(route_to_simulator(settings, sim))
        for _ in range(3):
            crashed = crash_after_the_charge()
            if crashed is not None:
                break
        else:
            raise AssertionError("transact was never killed between the charge and the commit")
        payment_id = crashed
        assert status_of(db, payment_id) == "submitted", "nothing committed after the charge"
        with process(["serve", "psp", "--port", str(app_port)], env, log) as restarted:
            wait_for(lambda: _healthy(f"{app}/readyz"), "transact serve psp again", STARTUP)
            try:
                wait_for(
                    lambda: status_of(db, payment_id) == "authorized",
                    "reconciliation after the restart",
                    # At start, or by the periodic round (every second here); the
                    # margin is for a loaded machine.
                    timeout=45.0,
                )
            except RuntimeError as exc:
                # What the restarted process said, to tell a slow machine from a fault.
                tail = log.read_text(errors="replace")[-3000:]
                alive = restarted.poll() is None
                told = f"{exc}; process alive: {alive}; its log ends:\n{tail}"
                raise AssertionError(told) from exc
            wait_for(
                lambda: any(
                    m["payment_id"] == payment_id
                    for m in asyncio.run(published("payment.authorized"))
                ),
                "payment.authorized on the bus",
                timeout=15,
            )

        counts = charges()
        assert counts["charges"]["stripe"][payment_id] == 1, "charged exactly once"
        assert counts["attempts"]["stripe"][payment_id] == 1, "never sent again"
        tried = query(db, "SELECT operation FROM psp_attempts WHERE payment_id = ?", payment_id)
        assert tried == [("authorize",)], "reconciled by asking, not by resending"
        row = query(
            db,
            "SELECT connector, psp_reference, authorized_amount FROM psp_payments WHERE id = ?",
            payment_id,
        )
        assert row[0][0] == "stripe"
        assert row[0][1]
        assert row[0][2] == 4200
        outcomes = [
            m
            for topic in ("payment.authorized", "payment.declined", "payment.failed")
            for m in asyncio.run(published(topic))
            if m["payment_id"] == payment_id
        ]
        assert [m["type"] for m in outcomes] == ["payment.authorized"]
        assert outcomes[0]["psp_reference"] == row[0][1]

    logs = log.read_text(errors="replace")
    assert "Application startup complete" in logs
    assert PAN not in logs
    assert card_numbers_in(logs) == []
    with sqlite3.connect(db) as conn:
        dump = "\n".join(
            str(value)
            for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            for row_ in conn.execute(f'SELECT * FROM "{table}"')  # noqa: S608
            for value in row_
        )
    assert PAN not in dump
    assert card_numbers_in(dump) == []
