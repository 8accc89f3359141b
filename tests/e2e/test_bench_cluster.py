"""`transact bench payments --cluster`: the PSP adapter as its own processes on Redis
Streams and PostgreSQL, fed by the benchmark playing card capture. Checks what it
reports and that it leaves nothing running; never how fast it was."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.redis, pytest.mark.postgres]


BENCH = [sys.executable, "-m", "transact", "bench", "payments", "--cluster"]


def test_the_cluster_benchmark_reports_throughput_overhead_and_cores() -> None:
    done = subprocess.run(
        [*BENCH, "--seconds", "1", "--concurrency", "4", "--instances", "2"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["benchmark"] == "payments"
    assert result["psp_instances"] == 2
    assert result["backends"] == {"database": "postgresql", "bus": "redis", "cache": "redis"}
    assert result["payments"] > 0
    assert result["outcomes"] == {"payment.authorized": result["payments"]}
    assert result["cores_used"] > 0
    assert result["payments_per_second_per_core"] > 0
    assert {"p50", "p99", "mean"} <= set(result["overhead_ms"])
    assert "stopping the cluster" in done.stderr


def test_the_cluster_benchmark_runs_only_the_sandbox() -> None:
    done = subprocess.run(
        [*BENCH, "--connector", "sim"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--cluster runs the sandbox connector" in done.stderr
    assert "Traceback" not in done.stderr
