"""The aggregation rules: each payment counted once, in the hour its facts say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from transact.reporting import domain
from transact.reporting.domain import Attempt, Deltas, Payment, Refund

T0 = datetime(2026, 3, 2, 9, 15, tzinfo=UTC)


def decided(payment: Payment, status: str = "authorized", at: datetime = T0) -> Payment:
    return domain.decide(
        payment,
        status,
        at,
        connector="sandbox",
        decline_code="card_declined" if status == "declined" else None,
        psp_reference="ref",
        attempts=2,
        tried=[Attempt("stripe", "error", 30), Attempt("sandbox", "approved", 20)],
    )


def requested() -> Payment:
    return domain.fill(
        Payment("p1", "t1", T0), channel="phone", agent_id="a1", amount=1250, currency="GBP"
    )


def total(deltas: Deltas) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, values in deltas.payments.items():
        name = f"{key[0]:%H}/{key[1]}/{key[4]}"
        out[name] = out.get(name, 0) + values["count"]
    return out


def test_an_outcome_counts_in_the_hour_it_happened_with_its_attempts() -> None:
    after = decided(requested(), at=T0 + timedelta(hours=2))
    moved = domain.change(domain.payment_contribution(None), domain.payment_contribution(after))
    assert total(moved) == {"11/keypad/authorized": 1}
    [(key, values)] = moved.payments.items()
    assert values["amount"] == 1250
    assert key[6] == "GBP"
    stripe = moved.connectors[(domain.hour_of(T0 + timedelta(hours=2)), "keypad", "a1", "stripe")]
    assert (stripe["attempts"], stripe["errors"], stripe["failovers"]) == (1, 1, 1)
    sandbox = moved.connectors[(domain.hour_of(T0 + timedelta(hours=2)), "keypad", "a1", "sandbox")]
    assert (sandbox["approved"], sandbox["failovers"], sandbox["latency_ms"]) == (1, 0, 20)


def test_a_repeated_outcome_moves_nothing_and_a_later_one_cannot_overturn_it() -> None:
    first = decided(requested())
    again = decided(first, at=T0 + timedelta(hours=5))
    overturned = decided(first, "declined", T0 + timedelta(hours=6))
    assert again == first
    assert overturned == first
    before = domain.payment_contribution(first)
    assert not domain.change(before, domain.payment_contribution(again))
    # Handled in the other order, the repeat's earlier time wins: the same hour either way.
    later_first = decided(requested(), at=T0 + timedelta(hours=5))
    assert decided(later_first, at=T0).decided_at == first.decided_at


def test_an_outcome_before_its_request_is_counted_once_the_amount_arrives() -> None:
    # The outcome came first: no amount known yet, counted with amount 0.
    early = decided(Payment("p1", "t1", T0))
    late_request = domain.fill(early, channel="phone", agent_id="a1", amount=900, currency="EUR")
    moved = domain.change(
        domain.payment_contribution(early), domain.payment_contribution(late_request)
    )
    # The payment moves to its proper bucket (channel, agent, currency): -1 there, +1 here.
    assert sum(v["count"] for v in moved.payments.values()) == 0
    gained = [k for k, v in moved.payments.items() if v["count"] == 1]
    assert gained == [(domain.hour_of(T0), "keypad", "a1", "sandbox", "authorized", "", "EUR")]
    assert moved.payments[gained[0]]["amount"] == 900


def test_spoken_digits_move_a_counted_payment_from_keypad_to_speech() -> None:
    keyed = decided(requested())
    spoken = Payment(**{**keyed.__dict__, "speech": True})
    moved = domain.change(domain.payment_contribution(keyed), domain.payment_contribution(spoken))
    assert total(moved) == {"09/keypad/authorized": -1, "09/speech/authorized": 1}


def test_refunds_count_in_their_own_hour_once_each() -> None:
    paid = decided(requested())
    refunds = [Refund("p1", 500, 500, T0 + timedelta(days=1))]
    moved = domain.change(
        domain.payment_contribution(paid), domain.payment_contribution(paid, refunds)
    )
    [(key, values)] = moved.payments.items()
    assert key[4] == "refunded"
    assert key[0] == domain.hour_of(T0 + timedelta(days=1))
    assert (values["count"], values["amount"]) == (1, 500)


def test_a_capture_counts_in_its_start_hour_and_where_it_was_abandoned() -> None:
    capture = domain.Capture(
        "c1", "t1", T0, started_at=T0, channel="phone", agent_id="a1", fields=("pan", "expiry")
    )
    capture = domain.capture_progress(capture, "pan", True)
    capture = domain.capture_progress(capture, "expiry", False)
    capture = domain.Capture(**{**capture.__dict__, "cancelled": "agent"})
    stages = {k[4] for k in domain.capture_contribution(capture).funnels}
    assert stages == {"started", "abandoned:expiry"}
    valid = domain.capture_progress(capture, "expiry", True)
    submitted = domain.Capture(**{**valid.__dict__, "cancelled": "", "submitted": True})
    done = domain.Capture(**{**submitted.__dict__, "outcome": "authorized"})
    stages = {k[4] for k in domain.capture_contribution(done).funnels}
    assert stages == {"started", "valid", "submitted", "approved"}


def test_a_capture_whose_start_event_arrives_late_is_counted_in_the_start_hour() -> None:
    progressed = domain.capture_progress(domain.Capture("c1", "t1", T0), "pan", True)
    assert not domain.capture_contribution(progressed)  # no start yet: no cohort
    started = domain.Capture(
        **{**progressed.__dict__, "started_at": T0 - timedelta(hours=3), "channel": "link"}
    )
    keys = list(domain.capture_contribution(started).funnels)
    assert {k[0] for k in keys} == {domain.hour_of(T0 - timedelta(hours=3))}


def test_cells_that_look_like_formulas_are_defused() -> None:
    line = domain.csv_line(['=HYPERLINK("x")', "+1", "-2", "@a", "plain", None, 12])
    assert line.endswith("\r\n")
    cells = line.rstrip("\r\n").split(",")
    assert cells == ['"\'=HYPERLINK(""x"")"', "'+1", "'-2", "'@a", "plain", "", "12"]


@pytest.mark.parametrize(
    ("start", "end", "granularity", "message"),
    [
        ("yesterday", None, None, "ISO 8601"),
        ("2026-01-02", "2026-01-01", None, "after"),
        ("2020-01-01", "2026-01-01", None, "400 days"),
        ("2026-01-01", "2026-01-02", "week", "granularity"),
    ],
)
def test_bad_queries_say_what_is_wrong(
    start: str, end: str | None, granularity: str | None, message: str
) -> None:
    with pytest.raises(domain.ReportError, match=message):
        domain.query_of(start, end, now=T0, granularity=granularity)


def test_a_query_covers_whole_hours_in_utc() -> None:
    query = domain.query_of("2026-03-02T10:30+02:00", "2026-03-02T12:10Z", now=T0)
    assert query.start == datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert query.end == datetime(2026, 3, 2, 13, tzinfo=UTC)
    assert query.granularity == "hour"
    assert len(domain.periods(query)) == 5


def test_reconciliation_flags() -> None:
    paid = Payment("p1", "t1", T0, status="authorized", amount=1000, refunded=0)
    found = {"found": True, "status": "approved", "amount": 1000, "refunded": 0}
    assert domain.reconcile_flags(paid, found) == []
    assert domain.reconcile_flags(paid, {**found, "amount": 900}) == ["amount_differs"]
    assert domain.reconcile_flags(paid, {**found, "refunded": 200}) == ["refunded_at_psp_only"]
    assert domain.reconcile_flags(paid, {"found": False}) == ["missing_at_psp"]
    declined = Payment("p2", "t1", T0, status="declined", amount=1000)
    assert domain.reconcile_flags(declined, {"found": False}) == []
    assert domain.reconcile_flags(declined, found) == ["status_differs"]
    assert domain.reconcile_flags(None, found) == ["unknown_to_reports", "status_differs"]
