"""Reconciliation against the PSP simulator over real HTTP, its books made to disagree."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.integration.psp.conftest import Shop
from tests.integration.psp.test_payments import pay

NOW = datetime.now(UTC)
PERIOD = (
    f"?from={(NOW - timedelta(hours=1)).strftime('%Y-%m-%dT%H:00Z')}"
    f"&to={(NOW + timedelta(hours=2)).strftime('%Y-%m-%dT%H:00Z')}"
)


async def sim(shop: Shop, path: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=shop.sim) as http:
        answer = await http.post(path, json=body)
        assert answer.status_code < 300, answer.text


async def reconciled(shop: Shop, headers: dict[str, str], query: str) -> dict[str, Any]:
    """Ask until the statement is in (202 meanwhile)."""
    async with asyncio.timeout(15):
        while True:
            answer = await shop.client.get(
                f"/api/v1/reports/reconciliation{query}", headers=headers
            )
            assert answer.status_code in (200, 202), answer.text
            if answer.status_code == 200:
                return dict(answer.json())
            query = query.replace("&refresh=true", "")
            await asyncio.sleep(0.1)


async def test_mismatches_with_the_psp_are_flagged(books: Shop) -> None:
    await books.routes({"connector": "sandbox", "base_url": books.sim})
    sue = await books.agent("sue", "supervisor")
    views = {name: await pay(books, amount=1000) for name in ("ok", "amount", "lost", "refund")}
    declined = await pay(books, "4000000000000002")
    assert {v["status"] for v in views.values()} == {"authorized"}
    assert declined["status"] == "declined"
    reference = {name: v["outcome"]["psp_reference"] for name, v in views.items()}
    await sim(books, f"/_sim/payments/{reference['amount']}", {"amount": 990})
    await sim(books, f"/_sim/payments/{reference['lost']}", {"forget": True})
    await sim(books, f"/sandbox/payments/{reference['refund']}/refunds", {"amount": 400})

    # Reporting must have heard every outcome before the report is read.
    async def outcomes_counted() -> None:
        while True:
            body = (await books.client.get(f"/api/v1/reports/summary{PERIOD}", headers=sue)).json()
            if body["totals"]["payments"] == 5:
                return
            await asyncio.sleep(0.05)

    async with asyncio.timeout(10):
        await outcomes_counted()
    report = await reconciled(books, sue, PERIOD)
    flags = {row["payment_id"]: row["flags"] for row in report["rows"]}
    assert flags == {
        views["ok"]["id"]: [],
        views["amount"]["id"]: ["amount_differs"],
        views["lost"]["id"]: ["missing_at_psp"],
        views["refund"]["id"]: ["refunded_at_psp_only"],
        declined["id"]: [],
    }
    assert report["summary"] == {
        "payments": 5,
        "matched": 2,
        "amount_differs": 1,
        "missing_at_psp": 1,
        "refunded_at_psp_only": 1,
    }
    row = next(r for r in report["rows"] if r["payment_id"] == views["amount"]["id"])
    assert (row["ours"]["amount"], row["psp"]["amount"]) == (1000, 990)

    # A fresh statement reads the PSP's books as they are now: a corrected amount matches.
    await sim(books, f"/_sim/payments/{reference['amount']}", {"amount": 1000})
    again = await reconciled(books, sue, PERIOD + "&refresh=true")
    assert again["run"]["id"] != report["run"]["id"]
    assert "amount_differs" not in again["summary"]
    assert again["summary"]["matched"] == 3


async def test_agents_cannot_reconcile(books: Shop) -> None:
    alice = await books.agent("alice")
    answer = await books.client.get("/api/v1/reports/reconciliation", headers=alice)
    assert answer.status_code == 403
