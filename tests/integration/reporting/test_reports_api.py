"""The reports API: numbers from events, counted once; supervisors of the tenant only."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.integration.capture.conftest import PASSWORD
from tests.integration.capture.test_payments_list import client_headers
from tests.integration.reporting.conftest import Board
from transact.auth import Accounts, SigningKeys
from transact.contracts.capture import CaptureCompleted
from transact.contracts.payments import PaymentRefunded

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


TODAY = f"?from={iso(NOW - timedelta(hours=6))}&to={iso(NOW + timedelta(hours=1))}"


def settled(body: dict[str, Any], payments: int, approved: int) -> bool:
    totals = body["totals"]
    amount = totals["amounts"].get("GBP", {}).get("authorized")
    return bool(totals["payments"] == payments and amount == approved)


def query(**extra: str) -> str:
    return TODAY + "".join(f"&{k}={v}" for k, v in extra.items())


async def test_payments_are_counted_once_in_the_hour_they_were_decided(board: Board) -> None:
    sue = await board.agent("sue", "supervisor")
    alice = await board.agent("alice")
    alice_id = board.agents["alice"][0]
    early = NOW - timedelta(hours=3)
    paid = board.authorized("p1", early)
    await board.publish(
        board.requested("p1", early, agent_id=alice_id),
        paid,
        paid,  # redelivered: the inbox admits it once
        board.authorized("p1", NOW),  # the same fact under another id: changes nothing
        board.requested("p2", NOW, amount=500, channel="link"),
        board.declined("p2", NOW, "insufficient_funds"),
        # Late: the outcome of an hour ago arrives after this hour's events.
        board.requested("p3", NOW - timedelta(hours=1), amount=700),
        board.authorized("p3", NOW - timedelta(hours=1)),
    )
    expected_hours = {
        (early.replace(minute=0)).isoformat(): 1,
        (NOW - timedelta(hours=1)).replace(minute=0).isoformat(): 1,
        NOW.replace(minute=0).isoformat(): 0,
    }

    def by_hour(body: dict[str, Any]) -> dict[str, int]:
        return {s["period"]: s["authorized"] for s in body["series"] if s["payments"]}

    def channels_of(body: dict[str, Any]) -> dict[str, int]:
        return {c["channel"]: c["payments"] for c in body["channels"]}

    # Events are applied in any order (an outcome may overtake its request, a handler that
    # lost a race is retried a second later): wait until all of them are in, the repeat
    # under another id included, which moves p1 to the earlier of its two hours, and every
    # request, which names the channel (until then an outcome counts as "unknown").
    body = await board.until(
        sue,
        query(granularity="hour"),
        lambda b: (
            settled(b, 3, 1700)
            and by_hour(b) == expected_hours
            and channels_of(b) == {"keypad": 2, "link": 1}
        ),
    )
    totals = body["totals"]
    assert (totals["authorized"], totals["declined"], totals["failed"]) == (2, 1, 0)
    assert totals["amounts"] == {"GBP": {"authorized": 1700, "refunded": 0}}
    assert totals["approval_rate"] == round(2 / 3, 4)
    assert by_hour(body) == expected_hours
    assert channels_of(body) == {"keypad": 2, "link": 1}
    assert body["declines"] == [{"code": "insufficient_funds", "outcome": "declined", "count": 1}]
    agents = {a["agent"]: a["payments"] for a in body["agents"]}
    assert agents == {"alice": 1, "(none)": 2}
    [sandbox] = body["connectors"]
    assert (sandbox["attempts"], sandbox["avg_latency_ms"]) == (2, 40.0)

    # Filters narrow every figure.
    keypad = await board.summary(sue, query(channel="keypad"))
    assert keypad["totals"]["payments"] == 2
    mine = await board.summary(sue, query(agent=alice_id))
    assert mine["totals"]["payments"] == 1
    assert (await board.summary(sue, query(connector="stripe")))["totals"]["payments"] == 0

    # Agents see no reports at all.
    refused = await board.client.get("/api/v1/reports/summary", headers=alice)
    assert refused.status_code == 403


async def test_other_tenants_never_show(board: Board) -> None:
    sue = await board.agent("sue", "supervisor")
    accounts = Accounts(board.kernel, SigningKeys(board.kernel))
    other = await accounts.create_tenant("other", mfa_required=False)
    await accounts.create_user(other.id, "olga", "supervisor", PASSWORD)
    login = await board.client.post(
        "/api/v1/auth/login", json={"tenant": "other", "username": "olga", "password": PASSWORD}
    )
    board.client.cookies.clear()
    olga = {"Authorization": f"Bearer {login.json()['access_token']}"}
    await board.publish(board.requested("p1", NOW), board.authorized("p1", NOW))
    await board.until(sue, TODAY, lambda b: settled(b, 1, 1000))
    theirs = await board.summary(olga, TODAY)
    assert theirs["totals"]["payments"] == 0
    assert theirs["choices"]["connectors"] == []
    exported = await board.client.get(f"/api/v1/reports/payments.csv{TODAY}", headers=olga)
    assert exported.text.count("\r\n") == 1  # the header only
    # An event naming another tenant's payment id cannot touch this tenant's payment.
    forged = board.declined("p1", NOW, "card_declined").model_copy(update={"tenant_id": other.id})
    await board.publish(forged)
    mine = await board.summary(sue, TODAY)
    assert (mine["totals"]["authorized"], mine["totals"]["declined"]) == (1, 0)


async def test_api_clients_need_the_reports_scope(board: Board) -> None:
    reader = await client_headers(board, ["reports:read"])
    assert (await board.client.get("/api/v1/reports/summary", headers=reader)).status_code == 200
    other = await client_headers(board, ["payments:read"])
    assert (await board.client.get("/api/v1/reports/summary", headers=other)).status_code == 403
    assert (await board.client.get("/api/v1/reports/summary")).status_code == 401


async def test_bad_parameters_are_refused_with_a_reason(board: Board) -> None:
    sue = await board.agent("sue", "supervisor")
    for bad, words in [
        ("?from=tuesday", "ISO 8601"),
        ("?from=2026-02-01&to=2026-01-01", "after"),
        ("?granularity=minute", "granularity"),
        ("?channel=fax", "channel"),
        ("?from=2020-01-01&to=2026-01-01", "400 days"),
    ]:
        answer = await board.client.get(f"/api/v1/reports/summary{bad}", headers=sue)
        assert answer.status_code == 422, (bad, answer.text)
        assert words in answer.json()["error"]["message"]
    long = "x" * 65
    answer = await board.client.get(f"/api/v1/reports/summary?agent={long}", headers=sue)
    assert answer.status_code == 422
    answer = await board.client.get("/api/v1/reports/payments.csv?to=never", headers=sue)
    assert answer.status_code == 422


async def test_the_csv_lists_payments_with_the_masked_card_only(board: Board) -> None:
    sue = await board.agent("sue", "supervisor")
    await board.publish(
        CaptureCompleted(
            tenant_id=board.tenant_id,
            capture_id="p1",
            call_id="CA1",
            brand="visa",
            bin="424242",
            last4="4242",
            occurred_at=NOW,
        ),
        board.requested("p1", NOW, reference="=cmd|' /C calc'!A0"),
        board.authorized("p1", NOW),
        PaymentRefunded(
            tenant_id=board.tenant_id,
            payment_id="p1",
            amount=300,
            refunded_total=300,
            fully=False,
            connector="sandbox",
            occurred_at=NOW,
        ),
    )
    body = await board.until(
        sue, TODAY, lambda b: settled(b, 1, 1000) and b["totals"]["refunds"] == 1
    )
    assert body["totals"]["amounts"]["GBP"] == {"authorized": 1000, "refunded": 300}
    async with asyncio.timeout(10):  # the capture's masked card may come last
        while True:
            exported = await board.client.get(f"/api/v1/reports/payments.csv{TODAY}", headers=sue)
            assert exported.status_code == 200
            if ",4242" in exported.text:
                break
            await asyncio.sleep(0.05)
    assert exported.headers["content-type"].startswith("text/csv")
    [row] = list(csv.DictReader(io.StringIO(exported.text)))
    assert (row["card_brand"], row["card_bin"], row["card_last4"]) == ("visa", "424242", "4242")
    assert row["reference"].startswith("'=")  # a formula is shown as text, not run
    assert (row["status"], row["amount"], row["refunded"]) == ("authorized", "1000", "300")
    assert "4242424242424242" not in exported.text
