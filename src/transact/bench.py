"""Benchmarks behind `transact bench ...`: they print JSON, and tests never time anything.

`payments`: the PSP adapter in one process on the embedded backends (SQLite,
in-process bus and cache), fed `payment.requested` messages through the bus the
way card capture sends them, each with a card sealed in the vault. A payment's
platform overhead is the time from publishing the request to receiving its
outcome event, minus the time spent waiting for the PSP. `payments --cluster`: the
same load against PSP adapter processes on Redis Streams and PostgreSQL.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transact import psp
from transact.contracts import Message
from transact.contracts.payments import PaymentRequested
from transact.kernel import Kernel
from transact.kernel.core import settle_heap
from transact.kernel.http import create_app
from transact.kernel.settings import load_settings
from transact.psp import Psp
from transact.psp.simulator import create_simulator_app

BENCH_TENANT = "bench-tenant"


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


@dataclass
class Load:
    """Payments fed through the bus as card capture feeds them, and their outcomes timed."""

    kernel: Kernel
    concurrency: int
    seconds: float
    psp_seconds: dict[str, float] = field(default_factory=dict)
    waiting: dict[str, asyncio.Future[Message]] = field(default_factory=dict)
    overheads: list[float] = field(default_factory=list)
    totals: list[float] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    cpu: float = 0.0  # CPU seconds this process spent in the run, all its threads

    def listen(self, group: str = "bench") -> None:
        async def outcome(message: Message) -> None:
            future = self.waiting.pop(getattr(message, "payment_id", ""), None)
            if future is not None and not future.done():
                future.set_result(message)

        for topic in ("payment.authorized", "payment.declined", "payment.failed"):
            self.kernel.bus.subscribe(topic, group, outcome)

    def observe(self, call: Any, seconds: float) -> None:
        """Time spent waiting for the PSP, which is not the platform's overhead."""
        reference = call.path + json.dumps(call.json or call.form or {})
        for payment_id in list(self.waiting):
            if payment_id in reference:
                self.psp_seconds[payment_id] = self.psp_seconds.get(payment_id, 0.0) + seconds
                break

    async def run(self) -> None:
        deadline = time.perf_counter() + self.seconds
        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(self._worker(deadline) for _ in range(self.concurrency)))
        self.elapsed = time.perf_counter() - began
        self.cpu = time.process_time() - cpu

    async def _worker(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        card = json.dumps({"pan": "4242424242424242", "expiry": "1230", "cvv": "123"}).encode()
        while time.perf_counter() < deadline:
            payment_id = "pay_" + uuid.uuid4().hex[:20]
            ref = await self.kernel.vault.put(BENCH_TENANT, card)
            future: asyncio.Future[Message] = loop.create_future()
            self.waiting[payment_id] = future
            started = time.perf_counter()
            await self.kernel.bus.publish(
                PaymentRequested(
                    tenant_id=BENCH_TENANT,
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
            self.totals.append(total)
            self.overheads.append(total - self.psp_seconds.pop(payment_id, 0.0))
            self.outcomes[result.topic] = self.outcomes.get(result.topic, 0) + 1

    def report(self, **extra: Any) -> dict[str, Any]:
        elapsed, overheads, totals = self.elapsed, self.overheads, self.totals
        return {
            "benchmark": "payments",
            **extra,
            "concurrency": self.concurrency,
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
            "outcomes": self.outcomes,
        }


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
        load = Load(kernel, concurrency, seconds)
        load.listen()
        async with app.router.lifespan_context(app):
            server = await _route_to_simulator(kernel) if connector == "sim" else None
            service.observe_call = load.observe
            settle_heap()  # as a serving process does before it serves
            await load.run()
            if server is not None:
                server.should_exit = True
    return load.report(
        connector=connector,
        backends={"database": "sqlite", "bus": "memory", "cache": "memory"},
        # On a shared machine the wall-clock rate moves with everyone else's load; the
        # CPU this process spent (the load generator's share included) does not.
        cpu_seconds=round(load.cpu, 3),
        payments_per_cpu_second=round(len(load.totals) / load.cpu, 1) if load.cpu else 0.0,
    )


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
        await set_routes(session, BENCH_TENANT, config, None)
    return server


# --- the same load against the distributed mode ----------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process, from /proc (0 when it is gone)."""
    from transact.cluster import proc_stat

    fields = proc_stat(pid)
    if len(fields) <= 12:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _with_children(pids: list[int]) -> list[int]:
    """The processes and their children (PostgreSQL serves each connection in a child)."""
    from transact.cluster import proc_stat

    found = list(pids)
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else []
        if len(fields) > 1 and fields[1].isdigit() and int(fields[1]) in pids:
            found.append(int(entry.name))
    return found


def _cluster_cpu(pids: list[int]) -> dict[int, float]:
    return {pid: _cpu_seconds(pid) for pid in _with_children(pids)}


async def _cluster_load(
    settings_env: dict[str, str], concurrency: int, seconds: float, cpu_pids: list[int]
) -> tuple[Load, float]:
    from transact.kernel.db import Database
    from transact.psp.store import set_routes

    settings = load_settings(
        database_url=settings_env["TRANSACT_DATABASE_URL"],
        bus_url=settings_env["TRANSACT_BUS_URL"],
        cache_url=settings_env["TRANSACT_CACHE_URL"],
        vault_url=settings_env["TRANSACT_VAULT_URL"],
        master_key=settings_env["TRANSACT_MASTER_KEY"],
        namespace=settings_env["TRANSACT_NAMESPACE"],
        log_level="ERROR",
    )
    database = Database(settings.database_url)
    config = {"mode": "sale", "options": {}, "routes": [{"connector": "sandbox"}]}
    async with database.transaction() as session:
        await set_routes(session, BENCH_TENANT, config, None)
    await database.close()
    kernel = Kernel.from_settings(settings)
    load = Load(kernel, concurrency, seconds)
    load.listen(group=f"bench-{uuid.uuid4().hex[:8]}")
    await kernel.start(migrate=False)
    try:
        before = _cluster_cpu(cpu_pids)
        await load.run()
        after = _cluster_cpu(cpu_pids)
    finally:
        await kernel.stop()
    # Processes (PostgreSQL backends) that came or went during the run count what we saw.
    used = sum(after.get(pid, 0.0) - before.get(pid, 0.0) for pid in after)
    return load, max(used, 0.0)


def bench_payments_cluster(
    instances: int,
    concurrency: int,
    seconds: float,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The PSP adapter as `instances` processes on Redis Streams, PostgreSQL and Redis (a
    throwaway `transact cluster` of just the PSP adapter); this process plays card
    capture. Cores used: the CPU time the cluster's processes (PSP adapters, Redis,
    PostgreSQL with its backends) spent during the run, over its wall time."""
    from transact import cluster

    with tempfile.TemporaryDirectory(prefix="transact-bench-cluster-") as tmp:
        directory = Path(tmp) / "cluster"
        started = cluster.up(directory, {"psp": instances}, services=["psp"], progress=progress)
        try:
            pids = [p.pid for p in started.processes if p.kind != "nginx"]
            progress(f"running {seconds:g} s of payments at concurrency {concurrency}")
            client_cpu = time.process_time()
            load, used = asyncio.run(
                _cluster_load(started.service_env("psp"), concurrency, seconds, pids)
            )
            client_cpu = time.process_time() - client_cpu
        finally:
            progress("stopping the cluster")
            cluster.down(directory)
    cores = used / load.elapsed if load.elapsed else 0.0
    per_core = len(load.totals) / used if used else 0.0
    return load.report(
        connector="sandbox",
        backends={"database": "postgresql", "bus": "redis", "cache": "redis"},
        psp_instances=instances,
        cores_used=round(cores, 2),
        payments_per_second_per_core=round(per_core, 1),
        load_generator_cpu_seconds=round(client_cpu, 2),
    )
