"""`transact bench reports`: dashboard queries over a million payments' worth of aggregates.

The fill does not publish a million bus messages (that measures the bus, for hours).
It builds each payment's projection row, capture and link as the event handlers
would end up with them, and passes every one through the same aggregation code
(`domain.payment_contribution`, `capture_contribution`, `link_contribution`); the
summed deltas are written with `store.apply` and the projection rows with
`store.insert_payments`. So the tables hold exactly what those payments' events
would have produced. The dashboard's reads (`Views.summary`) are then timed.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from transact.contracts import new_id
from transact.kernel import Kernel
from transact.kernel.settings import load_settings
from transact.reporting import domain, store
from transact.reporting.views import Views

CHANNELS = (("phone", False, 50), ("phone", True, 10), ("link", False, 30), ("ivr", False, 10))
CONNECTORS = (("stripe", 70), ("adyen", 25), ("checkout", 5))
DECLINES = (
    ("insufficient_funds", 40),
    ("card_declined", 30),
    ("incorrect_cvc", 15),
    ("expired_card", 10),
    ("do_not_honor", 5),
)
AGENTS = 25
CHUNK = 20_000


def _pick(rng: random.Random, weighted: tuple[tuple[Any, ...], ...]) -> tuple[Any, ...]:
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


@dataclasses.dataclass
class Made:
    payments: list[domain.Payment]
    deltas: domain.Deltas


def _one(
    rng: random.Random, tenant_id: str, start: datetime, seconds: int
) -> tuple[domain.Payment, list[domain.Refund], domain.Capture | None, domain.Link | None]:
    # Decided within minutes of being created: both inside the period.
    created = start + timedelta(seconds=rng.randrange(seconds - 600))
    raw, speech, _ = _pick(rng, CHANNELS)
    agent = "" if raw == "ivr" else f"agent-{rng.randrange(AGENTS):02d}"
    connector = _pick(rng, CONNECTORS)[0]
    roll = rng.random()
    status = "authorized" if roll < 0.88 else "declined" if roll < 0.98 else "failed"
    code = _pick(rng, DECLINES)[0] if status == "declined" else ""
    code = "processing_error" if status == "failed" else code
    latency = rng.randint(80, 900)
    tried: tuple[domain.Attempt, ...] = (
        domain.Attempt(connector, "approved" if status == "authorized" else "declined", latency),
    )
    if rng.random() < 0.03:  # the first PSP refused the connection: failed over
        tried = (domain.Attempt("stripe", "error", rng.randint(5, 50)), *tried)
    decided = created + timedelta(seconds=rng.randint(20, 240))
    payment_id = new_id()
    amount = rng.randint(500, 50_000)
    payment = domain.Payment(
        payment_id=payment_id,
        tenant_id=tenant_id,
        created_at=created,
        decided_at=decided,
        channel=raw,
        agent_id=agent,
        status=status,
        connector=connector,
        decline_code=code,
        amount=amount,
        currency="EUR" if rng.random() < 0.1 else "GBP",
        reference=f"INV-{rng.randrange(10**6):06d}",
        psp_reference=f"psp_{payment_id[:16]}",
        brand="visa",
        bin="424242",
        last4=f"{rng.randrange(10**4):04d}",
        attempts=len(tried),
        speech=speech,
        tried=tried,
    )
    refunds = []
    if status == "authorized" and rng.random() < 0.03:
        refunds.append(domain.Refund(payment_id, amount, amount, decided + timedelta(days=1)))
        payment = dataclasses.replace(payment, refunded=amount)
    capture = domain.Capture(
        capture_id=payment_id,
        tenant_id=tenant_id,
        first_seen=created,
        started_at=created - timedelta(seconds=90),
        channel=raw,
        agent_id=agent,
        fields=("pan", "expiry", "cvv"),
        valid=frozenset({"pan", "expiry", "cvv"}),
        field="cvv",
        speech=speech,
        completed=True,
        submitted=True,
        outcome=status,
    )
    link = None
    if raw == "link":
        stages = {"sent", "opened"} | ({"paid"} if status == "authorized" else set())
        link = domain.Link(new_id(), tenant_id, created, created, "sms", agent, frozenset(stages))
    return payment, refunds, capture, link


def _abandoned(rng: random.Random, tenant_id: str, start: datetime, seconds: int) -> domain.Capture:
    """A capture the customer gave up on, on the field they were keying."""
    started = start + timedelta(seconds=rng.randrange(seconds))
    on = rng.choice(("pan", "pan", "expiry", "cvv"))
    valid = {"pan": set(), "expiry": {"pan"}, "cvv": {"pan", "expiry"}}[on]
    return domain.Capture(
        capture_id=new_id(),
        tenant_id=tenant_id,
        first_seen=started,
        started_at=started,
        channel="phone",
        agent_id=f"agent-{rng.randrange(AGENTS):02d}",
        fields=("pan", "expiry", "cvv"),
        valid=frozenset(valid),
        field=on,
        cancelled="agent",
    )


def generate(
    count: int, tenant_id: str, start: datetime, days: int, seed: int = 7
) -> Iterator[Made]:
    """Chunks of payments with what they add to the buckets, deterministic per seed."""
    rng = random.Random(seed)
    seconds = days * 86_400
    made = 0
    while made < count:
        size = min(CHUNK, count - made)
        chunk = Made([], domain.Deltas())
        for _ in range(size):
            payment, refunds, capture, link = _one(rng, tenant_id, start, seconds)
            chunk.payments.append(payment)
            chunk.deltas.add(domain.payment_contribution(payment, refunds))
            chunk.deltas.add(domain.capture_contribution(capture))
            chunk.deltas.add(domain.link_contribution(link))
            if rng.random() < 0.15:
                chunk.deltas.add(
                    domain.capture_contribution(_abandoned(rng, tenant_id, start, seconds))
                )
        made += size
        yield chunk


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


async def _fill(
    kernel: Kernel, tenant_id: str, count: int, start: datetime, days: int, projection: bool
) -> float:
    began = time.perf_counter()
    total = domain.Deltas()
    for chunk in generate(count, tenant_id, start, days):
        total.add(chunk.deltas)
        if projection:
            async with kernel.db.transaction() as session:
                await store.insert_payments(session, chunk.payments)
    async with kernel.db.transaction() as session:
        await store.apply(session, tenant_id, total.pruned())
    return time.perf_counter() - began


async def _rows(kernel: Kernel, tenant_id: str) -> dict[str, int]:
    out = {}
    async with kernel.db.transaction() as session:
        for table in (*store.BUCKETS.values(), store.payments):
            counted = await session.scalar(
                select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id)
            )
            out[table.name] = int(counted or 0)
    return out


async def run(
    payments: int, database_url: str | None, days: int, repeat: int, projection: bool = True
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="transact-bench-reports-") as folder:
        url = database_url or f"sqlite+aiosqlite:///{Path(folder) / 'reports.db'}"
        settings = load_settings(
            master_key=base64.b64encode(os.urandom(32)).decode(),
            database_url=url,
            data_dir=Path(folder),
        )
        kernel = Kernel.from_settings(settings)
        await kernel.db.migrate()
        tenant_id = "bench-" + new_id()[:12]
        end = domain.hour_of(datetime.now(UTC)) + domain.HOUR
        start = end - timedelta(days=days)
        try:
            fill_seconds = await _fill(kernel, tenant_id, payments, start, days, projection)
            rows = await _rows(kernel, tenant_id)
            views = Views(kernel)
            loads = {
                "last_7_days_by_hour": domain.Query(end - timedelta(days=7), end, "hour"),
                "last_30_days_by_day": domain.Query(end - timedelta(days=30), end, "day"),
                "last_30_days_one_agent": domain.Query(
                    end - timedelta(days=30), end, "day", agent="agent-03"
                ),
                f"all_{days}_days_by_day": domain.Query(start, end, "day"),
            }
            timings: dict[str, dict[str, float]] = {}
            checked: dict[str, int] = {}
            for name, query in loads.items():
                samples = []
                for _ in range(repeat):
                    began = time.perf_counter()
                    summary = await views.summary(tenant_id, query)
                    samples.append(time.perf_counter() - began)
                timings[name] = _stats(samples)
                checked[name] = int(summary["totals"]["payments"])
        finally:
            if database_url:
                await _forget(kernel, tenant_id)
            await kernel.db.close()
    worst = max(t["p95_ms"] for t in timings.values())
    return {
        "benchmark": "reports",
        "database": kernel.db.dialect,
        "payments": payments,
        "days": days,
        "projection_rows": projection,
        "fill_seconds": round(fill_seconds, 1),
        "rows": rows,
        "repeat": repeat,
        "dashboard_load": timings,
        "payments_in_view": checked,
        "target_ms": 1000,
        "meets_target": worst < 1000,
    }


async def _forget(kernel: Kernel, tenant_id: str) -> None:
    """A shared database is left as it was found."""
    from sqlalchemy import delete

    async with kernel.db.transaction() as session:
        for table in (*store.BUCKETS.values(), store.payments):
            await session.execute(delete(table).where(table.c.tenant_id == tenant_id))


def run_sync(
    payments: int, database_url: str | None, days: int, repeat: int, projection: bool
) -> dict[str, Any]:
    return asyncio.run(run(payments, database_url, days, repeat, projection))
