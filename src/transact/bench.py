"""Benchmarks behind `transact bench ...`: they print JSON, and tests never time anything.

`payments`: the PSP adapter in one process on the embedded backends (SQLite,
in-process bus and cache), fed `payment.requested` messages through the bus the
way card capture sends them, each with a card sealed in the vault. A payment's
platform overhead is the time from publishing the request to receiving its
outcome event, minus the time spent waiting for the PSP.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

from transact import psp
from transact.contracts import Message
from transact.contracts.payments import PaymentRequested
from transact.kernel import Kernel
from transact.kernel.http import create_app
from transact.kernel.settings import load_settings
from transact.psp import Psp
from transact.psp.simulator import create_simulator_app


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def bench_payments(connector: str, concurrency: int, seconds: float) -> dict[str, Any]:
    if connector not in ("sandbox", "sim"):
        raise ValueError("connector must be 'sandbox' or 'sim'")
    with tempfile.TemporaryDirectory(prefix="transact-bench-") as data_dir:
        settings = load_settings(
            demo=True,
            data_dir=data_dir,
            master_key=base64.b64encode(os.urandom(32)).decode(),
            log_level="ERROR",
            rate_limit_scale=0,
        )
        kernel = Kernel.from_settings(settings)
        service = Psp(kernel, sandbox_app=create_simulator_app())
        app = create_app(kernel, [psp.build(kernel, service)], manage_kernel=True)
        psp_seconds: dict[str, float] = {}
        waiting: dict[str, asyncio.Future[Message]] = {}

        async def outcome(message: Message) -> None:
            future = waiting.pop(getattr(message, "payment_id", ""), None)
            if future is not None and not future.done():
                future.set_result(message)

        for topic in ("payment.authorized", "payment.declined", "payment.failed"):
            kernel.bus.subscribe(topic, "bench", outcome)
        async with app.router.lifespan_context(app):
            server = await _route_to_simulator(kernel) if connector == "sim" else None

            def observe(call: Any, seconds: float) -> None:
                reference = call.path + json.dumps(call.json or call.form or {})
                for payment_id in list(waiting):
                    if payment_id in reference:
                        psp_seconds[payment_id] = psp_seconds.get(payment_id, 0.0) + seconds
                        break

            service.observe_call = observe
            overheads: list[float] = []
            totals: list[float] = []
            outcomes: dict[str, int] = {}
            deadline = time.perf_counter() + seconds

            async def worker() -> None:
                loop = asyncio.get_running_loop()
                while time.perf_counter() < deadline:
                    payment_id = "pay_" + uuid.uuid4().hex[:20]
                    card = json.dumps(
                        {"pan": "4242424242424242", "expiry": "1230", "cvv": "123"}
                    ).encode()
                    ref = await kernel.vault.put("bench-tenant", card)
                    future: asyncio.Future[Message] = loop.create_future()
                    waiting[payment_id] = future
                    started = time.perf_counter()
                    await kernel.bus.publish(
                        PaymentRequested(
                            tenant_id="bench-tenant",
                            payment_id=payment_id,
                            capture_id=payment_id,
                            amount=1000,
                            currency="GBP",
                            reference="bench",
                            channel="phone",
                            agent_id=None,
                            vault_ref=ref,
                            idempotency_key=f"{payment_id}:a",
                        )
                    )
                    result = await asyncio.wait_for(future, 30)
                    total = time.perf_counter() - started
                    totals.append(total)
                    overheads.append(total - psp_seconds.pop(payment_id, 0.0))
                    outcomes[result.topic] = outcomes.get(result.topic, 0) + 1

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - began
            if server is not None:
                server.should_exit = True
    return {
        "benchmark": "payments",
        "connector": connector,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "payments": len(totals),
        "payments_per_second": round(len(totals) / elapsed, 1) if elapsed else 0.0,
        "overhead_ms": {
            "p50": round(_percentile(overheads, 0.5) * 1000, 2),
            "p99": round(_percentile(overheads, 0.99) * 1000, 2),
            "mean": round(statistics.fmean(overheads) * 1000, 2) if overheads else 0.0,
        },
        "latency_ms": {
            "p50": round(_percentile(totals, 0.5) * 1000, 2),
            "p99": round(_percentile(totals, 0.99) * 1000, 2),
        },
        "outcomes": outcomes,
        "backends": {"database": "sqlite", "bus": "memory", "cache": "memory"},
    }


async def _route_to_simulator(kernel: Kernel) -> Any:
    """Serve the simulator over real HTTP on loopback and route the bench tenant to it."""
    import threading

    import uvicorn

    from transact.psp.store import set_routes

    server = uvicorn.Server(
        uvicorn.Config(
            create_simulator_app(), host="127.0.0.1", port=0, log_config=None, lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    config = {
        "mode": "sale",
        "options": {},
        "routes": [{"connector": "sandbox", "base_url": f"http://127.0.0.1:{port}"}],
    }
    async with kernel.db.transaction() as session:
        await set_routes(session, "bench-tenant", config, None)
    return server
