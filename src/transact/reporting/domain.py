"""Reporting's pure rules: what one payment, capture or link adds to the hourly buckets.

Every aggregate is derived from a projection (one row per payment, capture, link):
an event changes the projection, and the buckets move by `contribution(after) -
contribution(before)`. So a duplicate event (same facts again) moves nothing, a late
event lands where its facts say (the hour of the event that decided the payment, the
hour its capture started), and a fact that arrives after a payment was counted (the
customer spoke the card, so the channel is `speech`) moves the payment from one
bucket to another instead of counting it twice.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
FINAL = frozenset({"authorized", "declined", "failed"})
CHANNELS = ("keypad", "speech", "link", "ivr", "stored_card")
GRANULARITIES = {"hour": HOUR, "day": DAY}
MAX_RANGE = timedelta(days=400)
CAPTURE_STAGES = ("started", "valid", "submitted", "approved")
LINK_STAGES = ("created", "sent", "opened", "paid", "expired", "failed", "cancelled")
ABANDONED = "abandoned:"


class ReportError(ValueError):
    """A query the reports cannot answer as asked (the message says why)."""


def hour_of(moment: datetime) -> datetime:
    utc = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return utc.replace(minute=0, second=0, microsecond=0)


def period_of(hour: datetime, granularity: str) -> datetime:
    return hour if granularity == "hour" else hour.replace(hour=0)


def channel_of(raw: str | None, speech: bool) -> str:
    """The reporting channel of a capture or payment channel (`phone`, `link`, `ivr`,
    `stored_card`): a phone capture is `speech` once any of its keys was spoken."""
    if raw == "phone":
        return "speech" if speech else "keypad"
    return raw or "unknown"


# --- payments -------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    connector: str
    outcome: str
    latency_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"connector": self.connector, "outcome": self.outcome, "latency_ms": self.latency_ms}


@dataclass(frozen=True)
class Payment:
    """The projection of one payment: what the events said of it, masked card only."""

    payment_id: str
    tenant_id: str
    created_at: datetime
    decided_at: datetime | None = None
    channel: str = ""  # as capture named it: phone, link, ivr, stored_card
    agent_id: str = ""
    status: str = "requested"  # requested, pending, authorized, declined, failed
    connector: str = ""
    decline_code: str = ""
    amount: int | None = None
    currency: str | None = None
    refunded: int = 0
    reference: str | None = None
    psp_reference: str | None = None
    brand: str | None = None
    bin: str | None = None
    last4: str | None = None
    attempts: int = 0
    speech: bool = False
    tried: tuple[Attempt, ...] = ()

    @property
    def reported_channel(self) -> str:
        return channel_of(self.channel, self.speech)


@dataclass(frozen=True)
class Refund:
    payment_id: str
    refunded_total: int  # the natural key: each refund raises the running total
    amount: int
    occurred_at: datetime


def fill(payment: Payment, **facts: Any) -> Payment:
    """Facts from any event, each taken only where the projection has none yet: events
    of one payment come in any order and any number of times."""
    updates = {
        name: value
        for name, value in facts.items()
        if value not in (None, "", ()) and getattr(payment, name) in (None, "", (), 0)
    }
    return replace(payment, **updates) if updates else payment


def decide(
    payment: Payment,
    status: str,
    occurred_at: datetime,
    *,
    connector: str | None,
    decline_code: str | None,
    psp_reference: str | None,
    attempts: int,
    tried: Iterable[Attempt],
) -> Payment:
    """Apply an outcome. The first final outcome stands: another outcome, or a late
    `pending`, after the decision changes nothing. A repeat of the same outcome (under
    another message id) only moves the decision to the earlier of the two times, so the
    order the repeats are handled in does not matter."""
    if payment.status in FINAL:
        if status == payment.status and payment.decided_at and occurred_at < payment.decided_at:
            return replace(payment, decided_at=occurred_at)
        return payment
    if status == "pending":
        return replace(payment, status="pending", connector=connector or payment.connector)
    return replace(
        payment,
        status=status,
        decided_at=occurred_at,
        connector=connector or payment.connector,
        decline_code=(decline_code or "") if status != "authorized" else "",
        psp_reference=psp_reference or payment.psp_reference,
        attempts=attempts or payment.attempts,
        tried=tuple(tried) or payment.tried,
    )


# A bucket's key (its dimensions) and values (what it sums), per table.
PaymentKey = tuple[
    datetime, str, str, str, str, str, str
]  # hour, channel, agent, connector, outcome, code, currency
ConnectorKey = tuple[datetime, str, str, str]  # hour, channel, agent, connector
FunnelKey = tuple[datetime, str, str, str, str]  # hour, channel, agent, funnel, stage


@dataclass
class Deltas:
    """How much each bucket moves; what the store adds in one statement per table."""

    payments: dict[PaymentKey, Counter[str]] = field(default_factory=dict)
    connectors: dict[ConnectorKey, Counter[str]] = field(default_factory=dict)
    funnels: dict[FunnelKey, int] = field(default_factory=dict)

    def add(self, other: Deltas, sign: int = 1) -> None:
        for key, values in other.payments.items():
            into = self.payments.setdefault(key, Counter())
            for name, value in values.items():
                into[name] += sign * value
        for ckey, cvalues in other.connectors.items():
            cinto = self.connectors.setdefault(ckey, Counter())
            for name, value in cvalues.items():
                cinto[name] += sign * value
        for fkey, count in other.funnels.items():
            self.funnels[fkey] = self.funnels.get(fkey, 0) + sign * count

    def pruned(self) -> Deltas:
        """Without the buckets that do not move (before and after were the same)."""
        return Deltas(
            {k: v for k, v in self.payments.items() if any(v.values())},
            {k: v for k, v in self.connectors.items() if any(v.values())},
            {k: v for k, v in self.funnels.items() if v},
        )

    def __bool__(self) -> bool:
        return bool(self.payments or self.connectors or self.funnels)


def payment_contribution(payment: Payment | None, refunds: Iterable[Refund] = ()) -> Deltas:
    """What a payment adds to the buckets: its outcome in the hour it was decided, each
    PSP attempt beside it, and each refund in the hour it happened."""
    out = Deltas()
    if payment is None:
        return out
    channel, agent = payment.reported_channel, payment.agent_id
    currency = payment.currency or ""
    if payment.status in FINAL and payment.decided_at is not None:
        hour = hour_of(payment.decided_at)
        key: PaymentKey = (
            hour,
            channel,
            agent,
            payment.connector,
            payment.status,
            payment.decline_code,
            currency,
        )
        out.payments[key] = Counter(count=1, amount=payment.amount or 0)
        for position, attempt in enumerate(payment.tried):
            ckey: ConnectorKey = (hour, channel, agent, attempt.connector)
            values = out.connectors.setdefault(ckey, Counter())
            values["attempts"] += 1
            values["approved"] += attempt.outcome == "approved"
            values["errors"] += attempt.outcome in ("error", "sending")
            values["failovers"] += position < len(payment.tried) - 1
            if attempt.latency_ms is not None:
                values["latency_ms"] += attempt.latency_ms
                values["timed"] += 1
    for refund in refunds:
        rkey: PaymentKey = (
            hour_of(refund.occurred_at),
            channel,
            agent,
            payment.connector,
            "refunded",
            "",
            currency,
        )
        values = out.payments.setdefault(rkey, Counter())
        values["count"] += 1
        values["amount"] += refund.amount
    return out


# --- rollups: what the dashboards read ------------------------------------------------
#
# The hourly buckets keyed by every dimension hold about two payments each (25 agents by
# channels, connectors, outcomes and currencies), so a month's dashboard would group
# hundreds of thousands of them. Each kind of bucket is therefore kept several times,
# as *cuboids*: with every dimension, and without the agent (or with the agent only),
# each at two grains, hours and days. All are sums of the same deltas, so they agree
# by construction; a query reads the smallest cuboid that holds the dimensions it
# groups and filters by, days for whole days and hours only at a range's ragged ends.

GRAINS = ("hour", "day")
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "payments": ("channel", "agent_id", "connector", "outcome", "decline_code", "currency"),
    "connectors": ("channel", "agent_id", "connector"),
    "funnels": ("channel", "agent_id", "funnel", "stage"),
}


@dataclass(frozen=True)
class Cuboid:
    """One kind of bucket summed over some of its dimensions, at both grains."""

    name: str
    kind: str  # payments, connectors, funnels: which Deltas it sums
    lead: tuple[str, ...]  # keyed before the period: read by equality (the agent)
    rest: tuple[str, ...]  # keyed after the period

    @property
    def dimensions(self) -> tuple[str, ...]:
        return (*self.lead, *self.rest)


_PAYMENT_REST = ("channel", "connector", "outcome", "decline_code", "currency")
# Smallest first, per kind: `cuboid_for` takes the first that holds what a query needs.
CUBOIDS = (
    Cuboid("payment_totals", "payments", (), _PAYMENT_REST),
    Cuboid("payment_agents", "payments", (), ("agent_id", "outcome", "currency")),
    # Agent first in the key: a one-agent dashboard reads that agent's rows only.
    Cuboid("payments", "payments", ("agent_id",), _PAYMENT_REST),
    Cuboid("connector_totals", "connectors", (), ("channel", "connector")),
    Cuboid("connectors", "connectors", ("agent_id",), ("channel", "connector")),
    Cuboid("funnel_totals", "funnels", (), ("channel", "funnel", "stage")),
    Cuboid("funnels", "funnels", ("agent_id",), ("channel", "funnel", "stage")),
)

# A cuboid's row key: grain, period (its first hour), then its dimensions in order.
RolledKey = tuple[Any, ...]


def cuboid_for(kind: str, needs: Iterable[str]) -> Cuboid:
    """The smallest cuboid of `kind` with every dimension in `needs`."""
    wanted = set(needs)
    return next(c for c in CUBOIDS if c.kind == kind and wanted <= set(c.dimensions))


def roll_up(deltas: Deltas) -> dict[str, dict[RolledKey, Counter[str]]]:
    """The deltas as each cuboid's rows move, at both grains; rows that do not move (a
    payment moved between agents of one channel, within one day) are left out."""
    sources: dict[str, list[tuple[tuple[Any, ...], Counter[str]]]] = {
        "payments": list(deltas.payments.items()),
        "connectors": list(deltas.connectors.items()),
        "funnels": [(key, Counter(count=count)) for key, count in deltas.funnels.items()],
    }
    out: dict[str, dict[RolledKey, Counter[str]]] = {}
    for cuboid in CUBOIDS:
        names = DIMENSIONS[cuboid.kind]
        positions = [1 + names.index(name) for name in cuboid.dimensions]
        rows: dict[RolledKey, Counter[str]] = {}
        for key, values in sources[cuboid.kind]:
            picked = tuple(key[p] for p in positions)
            for grain in GRAINS:
                into = rows.setdefault((grain, period_of(key[0], grain), *picked), Counter())
                into.update(values)  # adds, negative values included
        out[cuboid.name] = {k: v for k, v in rows.items() if any(v.values())}
    return out


@dataclass(frozen=True)
class Span:
    """A piece of a query's range, read at one grain."""

    grain: str
    start: datetime
    end: datetime


def spans(start: datetime, end: datetime, *, hourly: bool = False) -> list[Span]:
    """[start, end) as whole days read from the day rows, and the hours before the first
    midnight and after the last read from the hour rows (all hours when `hourly`)."""
    first_day = start if start.hour == 0 else start.replace(hour=0) + DAY
    last_day = end.replace(hour=0)
    if hourly or first_day >= last_day:
        return [Span("hour", start, end)]
    out = [Span("day", first_day, last_day)]
    if start < first_day:
        out.insert(0, Span("hour", start, first_day))
    if last_day < end:
        out.append(Span("hour", last_day, end))
    return out


def change(before: Deltas, after: Deltas) -> Deltas:
    moved = Deltas()
    moved.add(after)
    moved.add(before, -1)
    return moved.pruned()


# --- captures and links (the funnels) ---------------------------------------------------


@dataclass(frozen=True)
class Capture:
    """The projection of one capture session: how far the customer got."""

    capture_id: str
    tenant_id: str
    first_seen: datetime
    call_id: str | None = None
    started_at: datetime | None = None
    channel: str = ""  # phone, link, ivr
    agent_id: str = ""
    fields: tuple[str, ...] = ()
    valid: frozenset[str] = frozenset()
    field: str = ""  # the field the customer was last on
    speech: bool = False
    completed: bool = False
    submitted: bool = False
    outcome: str = ""
    cancelled: str = ""  # the reason, once cancelled
    brand: str | None = None  # the masked card, once complete
    bin: str | None = None
    last4: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "brand": self.brand,
            "bin": self.bin,
            "last4": self.last4,
            "first_seen": self.first_seen.isoformat(),
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "channel": self.channel,
            "agent_id": self.agent_id,
            "fields": list(self.fields),
            "valid": sorted(self.valid),
            "field": self.field,
            "speech": self.speech,
            "completed": self.completed,
            "submitted": self.submitted,
            "outcome": self.outcome,
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_dict(
        cls, capture_id: str, tenant_id: str, call_id: str | None, data: Mapping[str, Any]
    ) -> Capture:
        started = data.get("started_at")
        return cls(
            capture_id=capture_id,
            tenant_id=tenant_id,
            call_id=call_id,
            first_seen=datetime.fromisoformat(data["first_seen"]),
            started_at=datetime.fromisoformat(started) if started else None,
            channel=data.get("channel", ""),
            agent_id=data.get("agent_id", ""),
            fields=tuple(data.get("fields", ())),
            valid=frozenset(data.get("valid", ())),
            field=data.get("field", ""),
            speech=bool(data.get("speech")),
            completed=bool(data.get("completed")),
            submitted=bool(data.get("submitted")),
            outcome=data.get("outcome", ""),
            cancelled=data.get("cancelled", ""),
            brand=data.get("brand"),
            bin=data.get("bin"),
            last4=data.get("last4"),
        )

    @property
    def all_valid(self) -> bool:
        return self.completed or (bool(self.fields) and set(self.fields) <= self.valid)

    @property
    def open(self) -> bool:
        return not (self.submitted or self.cancelled)


def capture_progress(capture: Capture, field_name: str, valid: bool | None) -> Capture:
    valid_fields = set(capture.valid)
    if valid:
        valid_fields.add(field_name)
    else:
        valid_fields.discard(field_name)  # re-asked, cleared, or invalid: not valid now
    return replace(capture, field=field_name, valid=frozenset(valid_fields))


def capture_contribution(capture: Capture | None) -> Deltas:
    """A capture counts in the hour it started (a cohort): how far it got, or the field
    the customer was on when it was abandoned."""
    out = Deltas()
    if capture is None or capture.started_at is None:
        return out
    hour = hour_of(capture.started_at)
    channel = channel_of(capture.channel, capture.speech)

    def stage(name: str) -> None:
        out.funnels[(hour, channel, capture.agent_id, "capture", name)] = 1

    stage("started")
    if capture.all_valid:
        stage("valid")
    if capture.submitted:
        stage("submitted")
    if capture.outcome:
        stage("approved" if capture.outcome == "authorized" else capture.outcome)
    if capture.cancelled and not capture.submitted:
        if capture.cancelled == "replaced_by_link":
            stage("moved_to_link")
        else:
            stage(ABANDONED + (capture.field or "none"))
    return out


@dataclass(frozen=True)
class Link:
    link_id: str
    tenant_id: str
    first_seen: datetime
    created_at: datetime | None = None
    channel: str = ""  # sms, email, chat
    agent_id: str = ""
    stages: frozenset[str] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_seen": self.first_seen.isoformat(),
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "channel": self.channel,
            "agent_id": self.agent_id,
            "stages": sorted(self.stages),
        }

    @classmethod
    def from_dict(cls, link_id: str, tenant_id: str, data: Mapping[str, Any]) -> Link:
        created = data.get("created_at")
        return cls(
            link_id=link_id,
            tenant_id=tenant_id,
            first_seen=datetime.fromisoformat(data["first_seen"]),
            created_at=datetime.fromisoformat(created) if created else None,
            channel=data.get("channel", ""),
            agent_id=data.get("agent_id", ""),
            stages=frozenset(data.get("stages", ())),
        )


def link_contribution(link: Link | None) -> Deltas:
    out = Deltas()
    if link is None or link.created_at is None:
        return out
    hour = hour_of(link.created_at)
    for name in link.stages | {"created"}:
        out.funnels[(hour, link.channel, link.agent_id, "link", name)] = 1
    return out


# --- queries --------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    start: datetime
    end: datetime
    granularity: str = "hour"
    channel: str | None = None
    connector: str | None = None
    agent: str | None = None


def parse_moment(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"'{what}' must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T09:00Z"
        ) from None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def query_of(
    start: str | None,
    end: str | None,
    *,
    now: datetime,
    granularity: str | None = None,
    channel: str | None = None,
    connector: str | None = None,
    agent: str | None = None,
    default_days: int = 7,
) -> Query:
    """The query a request asks for, checked: a bounded range on whole hours."""
    until = parse_moment(end, "to") if end else hour_of(now) + HOUR
    since = parse_moment(start, "from") if start else hour_of(until - timedelta(days=default_days))
    if until <= since:
        raise ReportError("'to' must be after 'from'")
    if until - since > MAX_RANGE:
        raise ReportError(f"a report covers {MAX_RANGE.days} days at most")
    chosen = granularity or ("hour" if until - since <= timedelta(days=2) else "day")
    if chosen not in GRANULARITIES:
        raise ReportError("'granularity' is 'hour' or 'day'")
    if channel is not None and channel not in CHANNELS:
        raise ReportError(f"'channel' is one of {', '.join(CHANNELS)}")
    for name, value in (("connector", connector), ("agent", agent)):
        if value is not None and not (0 < len(value) <= 64):
            raise ReportError(f"'{name}' must be 1 to 64 characters")
    # Buckets are hours: a range is widened to whole hours, never cut.
    rounded_end = hour_of(until) + (HOUR if until != hour_of(until) else timedelta(0))
    return Query(hour_of(since), rounded_end, chosen, channel, connector, agent)


def periods(query: Query) -> list[datetime]:
    step = GRANULARITIES[query.granularity]
    current = period_of(query.start, query.granularity)
    out = []
    while current < query.end:
        out.append(current)
        current += step
    return out


def rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# --- CSV ------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: one starting like a formula gets a leading
    apostrophe (OWASP's advice against CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_line(values: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([csv_safe(v) for v in values])
    return buffer.getvalue()


# --- reconciliation -------------------------------------------------------------------


def reconcile_flags(ours: Payment | None, psp: Mapping[str, Any] | None) -> list[str]:
    """What disagrees between our record of a payment and the provider's.

    `missing_at_psp`: we hold it authorized, the provider knows nothing of it;
    `amount_differs`: both hold it approved, for different sums; `refunded_at_psp_only`:
    the provider refunded more than we know of; `status_differs`: one approved, the
    other not; `unknown_to_reports`: the adapter had it but reports never heard of it;
    `psp_not_asked`: the provider could not be asked (no status query, or no answer).
    """
    flags: list[str] = []
    if psp is None:
        return ["psp_not_asked"] if ours is not None and ours.status == "authorized" else []
    if ours is None:
        flags.append("unknown_to_reports")
    status = ours.status if ours is not None else (psp.get("ours_status") or "")
    amount = ours.amount if ours is not None else psp.get("ours_amount")
    refunded = ours.refunded if ours is not None else 0
    if not psp.get("found"):
        if status == "authorized":
            flags.append("missing_at_psp")
        return flags
    provider = psp.get("status")
    if provider is None:
        return [*flags, "psp_not_asked"] if status == "authorized" else flags
    if (provider == "approved") != (status == "authorized"):
        flags.append("status_differs")
    if (
        provider == "approved"
        and status == "authorized"
        and psp.get("amount") is not None
        and amount is not None
        and psp.get("amount") != amount
    ):
        flags.append("amount_differs")
    if (psp.get("refunded") or 0) > refunded:
        flags.append("refunded_at_psp_only")
    return flags
