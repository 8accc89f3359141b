"""What the dashboard, the CSV export and the reconciliation report show, read from the
buckets and projections (never from another service's tables)."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from transact.contracts.statements import StatementRequested
from transact.kernel import Kernel
from transact.kernel.db import add_to_outbox
from transact.reporting import domain, store

OUTCOME_NAMES = ("authorized", "declined", "failed")
CSV_COLUMNS = (
    "payment_id",
    "created_at",
    "decided_at",
    "status",
    "channel",
    "agent_id",
    "amount",
    "currency",
    "refunded",
    "reference",
    "connector",
    "psp_reference",
    "decline_code",
    "attempts",
    "card_brand",
    "card_bin",
    "card_last4",
)
CSV_PAGE = 1000
# A reconciliation report lists this many payments at most (the adapter asks as many).
RECONCILE_MAX = 5000


def _tally(rows: Iterable[Any], key: str | None) -> dict[str, dict[str, Any]]:
    """Payment bucket rows folded into one summary per value of `key` (or one in all)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row.count:
            continue  # a bucket a payment moved out of (its channel became known later)
        name = str(getattr(row, key)) if key else "all"
        entry = out.setdefault(
            name,
            {
                **dict.fromkeys(OUTCOME_NAMES, 0),
                "refunds": 0,
                "amounts": defaultdict(lambda: {"authorized": 0, "refunded": 0}),
            },
        )
        if row.outcome in OUTCOME_NAMES:
            entry[row.outcome] += int(row.count)
            if row.outcome == "authorized":
                entry["amounts"][row.currency]["authorized"] += int(row.amount)
        elif row.outcome == "refunded":
            entry["refunds"] += int(row.count)
            entry["amounts"][row.currency]["refunded"] += int(row.amount)
    for entry in out.values():
        entry["payments"] = sum(entry[name] for name in OUTCOME_NAMES)
        entry["approval_rate"] = domain.rate(entry["authorized"], entry["payments"])
        entry["amounts"] = {c: dict(v) for c, v in sorted(entry["amounts"].items()) if c}
    return out


def _empty() -> dict[str, Any]:
    return {
        **dict.fromkeys(OUTCOME_NAMES, 0),
        "refunds": 0,
        "payments": 0,
        "approval_rate": None,
        "amounts": {},
    }


class Views:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    async def _agent_names(self, tenant_id: str, ids: Iterable[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        for agent_id in ids:
            user = await self.kernel.directory.user_by_id(tenant_id, agent_id) if agent_id else None
            names[agent_id] = user.username if user else (agent_id or "(none)")
        return names

    async def summary(self, tenant_id: str, query: domain.Query) -> dict[str, Any]:
        async with self.kernel.db.transaction() as session:
            by_hour = await store.payment_rows(session, tenant_id, query, "period")
            by_channel = await store.payment_rows(session, tenant_id, query, "channel")
            by_connector = await store.payment_rows(session, tenant_id, query, "connector")
            by_agent = await store.payment_rows(session, tenant_id, query, "agent_id")
            declines = await store.payment_rows_declines(session, tenant_id, query)
            attempts = await store.connector_rows(session, tenant_id, query)
            funnels = await store.funnel_rows(session, tenant_id, query)
            choices = await store.dimension_values(session, tenant_id, query)
        series = self._series(query, by_hour)
        connectors = self._connectors(by_connector, attempts)
        agents = _tally(by_agent, "agent_id")
        names = await self._agent_names(tenant_id, set(agents) | set(choices["agent_id"]))
        return {
            "from": query.start.isoformat(),
            "to": query.end.isoformat(),
            "granularity": query.granularity,
            "filters": {
                "channel": query.channel,
                "connector": query.connector,
                "agent": query.agent,
            },
            "totals": _tally(by_hour, None).get("all", _empty()),
            "series": series,
            "channels": [
                {"channel": name, **values}
                for name, values in sorted(_tally(by_channel, "channel").items())
            ],
            "connectors": connectors,
            "agents": sorted(
                (
                    {"agent_id": agent_id, "agent": names.get(agent_id, agent_id), **values}
                    for agent_id, values in agents.items()
                ),
                key=lambda a: (-a["payments"], a["agent"]),
            ),
            "declines": sorted(
                (
                    {
                        "code": row.decline_code or "unknown",
                        "outcome": row.outcome,
                        "count": int(row.count),
                    }
                    for row in declines
                ),
                key=lambda d: (-d["count"], d["code"]),
            ),
            **self._funnels(funnels),
            "choices": {
                "channels": list(domain.CHANNELS),
                "connectors": choices["connector"],
                "agents": [{"id": a, "name": names.get(a, a)} for a in choices["agent_id"]],
            },
        }

    @staticmethod
    def _series(query: domain.Query, by_hour: list[Any]) -> list[dict[str, Any]]:
        grouped: dict[datetime, list[Any]] = defaultdict(list)
        for row in by_hour:  # hours, or whole days: folded into the query's periods
            period = domain.period_of(domain.hour_of(row.period), query.granularity)
            grouped[period].append(row)
        series = []
        for period in domain.periods(query):
            values = _tally(grouped.get(period, []), None).get("all", _empty())
            series.append({"period": period.isoformat(), **values})
        return series

    @staticmethod
    def _connectors(by_connector: list[Any], attempts: list[Any]) -> list[dict[str, Any]]:
        tallied = _tally(by_connector, "connector")
        tried = {row.connector: row for row in attempts}
        out = []
        for name in sorted(set(tallied) | set(tried)):
            if not name:
                continue  # payments that reached no connector
            row = tried.get(name)
            timed = int(row.timed) if row is not None else 0
            out.append(
                {
                    "connector": name,
                    **tallied.get(name, _empty()),
                    "attempts": int(row.attempts) if row is not None else 0,
                    "attempts_approved": int(row.approved) if row is not None else 0,
                    "errors": int(row.errors) if row is not None else 0,
                    "failovers": int(row.failovers) if row is not None else 0,
                    "avg_latency_ms": round(int(row.latency_ms) / timed, 1)
                    if row is not None and timed
                    else None,
                }
            )
        return out

    @staticmethod
    def _funnels(rows: list[Any]) -> dict[str, Any]:
        capture: dict[str, int] = {}
        abandoned: dict[str, int] = {}
        link: dict[str, int] = {}
        for row in rows:
            count = int(row.count)
            if row.funnel == "capture" and row.stage.startswith(domain.ABANDONED):
                field = row.stage.removeprefix(domain.ABANDONED)
                abandoned[field] = abandoned.get(field, 0) + count
            elif row.funnel == "capture":
                capture[row.stage] = capture.get(row.stage, 0) + count
            elif row.funnel == "link":
                link[row.stage] = link.get(row.stage, 0) + count
        return {
            "capture_funnel": {
                "stages": [{"stage": s, "count": capture.get(s, 0)} for s in domain.CAPTURE_STAGES],
                "abandoned": [
                    {"field": f, "count": c}
                    for f, c in sorted(abandoned.items(), key=lambda i: (-i[1], i[0]))
                ],
                "declined": capture.get("declined", 0),
                "failed": capture.get("failed", 0),
                "moved_to_link": capture.get("moved_to_link", 0),
            },
            "link_funnel": {
                "stages": [{"stage": s, "count": link.get(s, 0)} for s in domain.LINK_STAGES],
            },
        }

    # --- CSV ----------------------------------------------------------------------------

    async def payments_csv(self, tenant_id: str, query: domain.Query) -> AsyncIterator[str]:
        """The period's payments as CSV, a page at a time (masked card only)."""
        yield domain.csv_line(CSV_COLUMNS)
        after: tuple[datetime, str] | None = None
        while True:
            async with self.kernel.db.transaction() as session:
                page = await store.payments_page(
                    session, tenant_id, query.start, query.end, after=after, limit=CSV_PAGE
                )
            lines = [domain.csv_line(self._csv_values(p)) for p in page]
            if lines:
                yield "".join(lines)
            if len(page) < CSV_PAGE:
                return
            after = (page[-1].created_at, page[-1].payment_id)
            await asyncio.sleep(0)  # let other requests in between pages

    @staticmethod
    def _csv_values(p: domain.Payment) -> list[object]:
        return [
            p.payment_id,
            p.created_at.isoformat(),
            p.decided_at.isoformat() if p.decided_at else "",
            p.status,
            p.reported_channel,
            p.agent_id,
            p.amount,
            p.currency,
            p.refunded,
            p.reference,
            p.connector,
            p.psp_reference,
            p.decline_code,
            p.attempts,
            p.brand,
            p.bin,
            p.last4,
        ]

    # --- reconciliation -----------------------------------------------------------------

    async def reconciliation(
        self, tenant_id: str, query: domain.Query, *, refresh: bool
    ) -> tuple[bool, dict[str, Any]]:
        """(ready, body): the report of the period's latest statement from the PSP side,
        or a statement asked for now (`refresh`, or none asked yet) and not ready."""
        async with self.kernel.db.transaction() as session:
            run = await store.latest_reconciliation(session, tenant_id, query.start, query.end)
            if run is None or refresh:
                run_id = "rec_" + secrets.token_hex(12)
                await store.start_reconciliation(session, run_id, tenant_id, query.start, query.end)
                await add_to_outbox(
                    session,
                    StatementRequested(
                        tenant_id=tenant_id,
                        correlation_id=run_id,
                        request_id=run_id,
                        period_from=query.start,
                        period_to=query.end,
                    ),
                )
                run = await store.reconciliation(session, run_id)
        assert run is not None
        described = {
            "id": run.id,
            "from": query.start.isoformat(),
            "to": query.end.isoformat(),
            "requested_at": store.utc(run.requested_at).isoformat(),
            "completed_at": store.utc(run.completed_at).isoformat() if run.completed_at else None,
        }
        if run.completed_at is None:
            self.kernel.relay.notify()
            return False, {"status": "pending", "run": described}
        rows = await self._reconciled(tenant_id, query, run.id)
        flagged = [r for r in rows if r["flags"]]
        counts: dict[str, int] = defaultdict(int)
        for row in flagged:
            for flag in row["flags"]:
                counts[flag] += 1
        return True, {
            "status": "ready",
            "run": described,
            "summary": {"payments": len(rows), "matched": len(rows) - len(flagged), **counts},
            "rows": rows,
        }

    async def _reconciled(
        self, tenant_id: str, query: domain.Query, run_id: str
    ) -> list[dict[str, Any]]:
        async with self.kernel.db.transaction() as session:
            ours = await store.payments_page(
                session, tenant_id, query.start, query.end, limit=RECONCILE_MAX
            )
            lines = await store.lines_of(session, run_id)
        rows = []
        known = {p.payment_id for p in ours}
        for payment in ours:
            line = lines.get(payment.payment_id)
            rows.append(self._reconciled_row(payment, line))
        for payment_id, line in sorted(lines.items()):
            if payment_id not in known:
                rows.append(self._reconciled_row(None, line, payment_id))
        return rows

    @staticmethod
    def _reconciled_row(
        ours: domain.Payment | None, line: dict[str, Any] | None, payment_id: str = ""
    ) -> dict[str, Any]:
        return {
            "payment_id": ours.payment_id if ours else payment_id,
            "ours": {
                "status": ours.status,
                "amount": ours.amount,
                "currency": ours.currency,
                "refunded": ours.refunded,
                "connector": ours.connector,
                "psp_reference": ours.psp_reference,
            }
            if ours
            else None,
            "psp": {
                "found": line["found"],
                "status": line["status"],
                "amount": line["amount"],
                "refunded": line["refunded"],
                "connector": line["connector"],
                "psp_reference": line["psp_reference"],
            }
            if line
            else None,
            "flags": domain.reconcile_flags(ours, line),
        }
