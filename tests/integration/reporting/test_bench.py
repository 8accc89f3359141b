"""`transact bench reports --quick` prints the JSON the docs describe."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from transact.cli import app


def test_the_quick_benchmark_prints_its_figures() -> None:
    result = CliRunner().invoke(
        app, ["bench", "reports", "--quick", "--payments", "300", "--days", "7"]
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["benchmark"] == "reports"
    assert figures["database"] == "sqlite"
    assert figures["payments"] == 300
    assert figures["rows"]["reporting_payments"] == 300
    assert figures["rows"]["reporting_payment_buckets"] > 0
    loads = figures["dashboard_load"]
    assert set(loads) == {
        "last_7_days_by_hour",
        "last_30_days_by_day",
        "last_30_days_one_agent",
        "all_7_days_by_day",
    }
    for timing in loads.values():
        assert set(timing) == {"p50_ms", "p95_ms", "max_ms"}
    # Every payment of the period is in the whole-period view: the fill counted each once.
    assert figures["payments_in_view"]["all_7_days_by_day"] == 300
    assert isinstance(figures["meets_target"], bool)
