"""The Grafana dashboard and the alert rules in deploy/ name only metrics the app exports."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import httpx
import pytest
import yaml

from transact import runtime
from transact.kernel.settings import load_settings

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
NAME = re.compile(r"\btransact_[a-z0-9_]+")
SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def family(sample: str) -> str:
    for suffix in SUFFIXES:
        if sample.endswith(suffix):
            return sample.removesuffix(suffix)
    return sample


def used_in_alerts() -> set[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs, "no alert rules"
    return {name for expr in exprs for name in NAME.findall(expr)}


def used_in_dashboard() -> set[str]:
    board = json.loads((DEPLOY / "grafana" / "transact.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    assert exprs, "no panels"
    return {name for expr in exprs for name in NAME.findall(expr)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """The metric families of a process running every service (as `transact run` does)."""
    import asyncio

    folder = tmp_path_factory.mktemp("ops")
    settings = load_settings(
        master_key=base64.b64encode(b"m" * 32).decode(),
        database_url=f"sqlite+aiosqlite:///{folder}/transact.db",
        data_dir=folder,
    )

    async def scrape() -> str:
        _, app = runtime.build(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
                return (await c.get("/metrics")).text

    text = asyncio.run(scrape())
    return {family(line.split()[2]) for line in text.splitlines() if line.startswith("# TYPE ")}


def test_the_alert_rules_use_only_exported_metrics(exported: set[str]) -> None:
    missing = {name for name in used_in_alerts() if family(name) not in exported}
    assert not missing, f"alerts.yml names metrics no service exports: {sorted(missing)}"


def test_the_dashboard_uses_only_exported_metrics(exported: set[str]) -> None:
    missing = {name for name in used_in_dashboard() if family(name) not in exported}
    assert not missing, f"transact.json names metrics no service exports: {sorted(missing)}"


def test_the_operations_metrics_are_there(exported: set[str]) -> None:
    wanted = {
        "transact_http_requests",
        "transact_bus_lag_seconds",
        "transact_bus_dead_letters",
        "transact_vault_entries",
        "transact_psp_call_seconds",
        "transact_psp_circuit_open",
        "transact_telephony_calls_active",
        "transact_telephony_legs_active",
        "transact_telephony_masking_delay_seconds",
    }
    assert wanted <= exported, sorted(wanted - exported)
