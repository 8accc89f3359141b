"""The cuboids: every kind of bucket kept at hours and days, with and without the agent,
all sums of the same deltas; a query's range read as whole days plus ragged hours."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import UTC, datetime, timedelta

from transact.reporting import domain
from transact.reporting.domain import Attempt, Capture, Payment

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)


def paid(payment_id: str, agent: str, at: datetime, channel: str = "phone") -> Payment:
    return Payment(
        payment_id,
        "t1",
        at,
        decided_at=at,
        channel=channel,
        agent_id=agent,
        status="authorized",
        connector="sandbox",
        amount=1000,
        currency="GBP",
        tried=(Attempt("sandbox", "approved", 40),),
    )


def counts(rows: dict[domain.RolledKey, Counter[str]], grain: str) -> dict[domain.RolledKey, int]:
    return {key[1:]: values["count"] for key, values in rows.items() if key[0] == grain}


def test_every_cuboid_sums_the_same_payments_at_both_grains() -> None:
    deltas = domain.Deltas()
    for number, (agent, hour) in enumerate([("a1", 9), ("a1", 9), ("a2", 14), ("", 23)]):
        payment = paid(f"p{number}", agent, DAY0 + timedelta(hours=hour, minutes=5))
        deltas.add(domain.payment_contribution(payment))
    rolled = domain.roll_up(deltas)
    for cuboid in domain.CUBOIDS:
        if cuboid.kind == "payments":
            for grain in domain.GRAINS:
                assert sum(counts(rolled[cuboid.name], grain).values()) == 4
    assert counts(rolled["payment_agents"], "day") == {
        (DAY0, "a1", "authorized", "GBP"): 2,
        (DAY0, "a2", "authorized", "GBP"): 1,
        (DAY0, "", "authorized", "GBP"): 1,
    }
    assert counts(rolled["payment_totals"], "hour") == {
        (DAY0 + timedelta(hours=9), "keypad", "sandbox", "authorized", "", "GBP"): 2,
        (DAY0 + timedelta(hours=14), "keypad", "sandbox", "authorized", "", "GBP"): 1,
        (DAY0 + timedelta(hours=23), "keypad", "sandbox", "authorized", "", "GBP"): 1,
    }
    # A rolled key: grain, period, then the cuboid's dimensions (its lead ones first).
    assert ("day", DAY0, "a2", "keypad", "sandbox", "authorized", "", "GBP") in rolled["payments"]
    attempts = rolled["connector_totals"][("day", DAY0, "keypad", "sandbox")]
    assert (attempts["attempts"], attempts["approved"], attempts["latency_ms"]) == (4, 4, 160)


def test_a_payment_moved_between_hours_of_one_day_moves_only_the_hour_rows() -> None:
    """A repeated outcome an hour earlier re-buckets the payment: the hours move, the
    day does not (and writes nothing)."""
    before = paid("p1", "a1", DAY0 + timedelta(hours=10))
    after = dataclasses.replace(before, decided_at=DAY0 + timedelta(hours=9))
    moved = domain.change(domain.payment_contribution(before), domain.payment_contribution(after))
    rolled = domain.roll_up(moved)
    for cuboid in domain.CUBOIDS:
        assert not [key for key in rolled[cuboid.name] if key[0] == "day"]
    assert counts(rolled["payment_totals"], "hour") == {
        (DAY0 + timedelta(hours=9), "keypad", "sandbox", "authorized", "", "GBP"): 1,
        (DAY0 + timedelta(hours=10), "keypad", "sandbox", "authorized", "", "GBP"): -1,
    }


def test_a_channel_learnt_late_moves_the_payment_in_every_cuboid_holding_the_channel() -> None:
    keyed = paid("p1", "a1", DAY0 + timedelta(hours=10))
    spoken = dataclasses.replace(keyed, speech=True)
    moved = domain.change(domain.payment_contribution(keyed), domain.payment_contribution(spoken))
    rolled = domain.roll_up(moved)
    assert rolled["payment_agents"] == {}  # the agent's count did not change
    day = counts(rolled["payment_totals"], "day")
    assert day == {
        (DAY0, "keypad", "sandbox", "authorized", "", "GBP"): -1,
        (DAY0, "speech", "sandbox", "authorized", "", "GBP"): 1,
    }


def test_funnel_stages_roll_up_without_the_agent() -> None:
    deltas = domain.Deltas()
    for number, agent in enumerate(("a1", "a2")):
        capture = Capture(
            f"c{number}",
            "t1",
            DAY0,
            started_at=DAY0 + timedelta(hours=3),
            channel="phone",
            agent_id=agent,
            fields=("pan",),
            field="pan",
            cancelled="agent",
        )
        deltas.add(domain.capture_contribution(capture))
    totals = counts(domain.roll_up(deltas)["funnel_totals"], "day")
    assert totals == {
        (DAY0, "keypad", "capture", "started"): 2,
        (DAY0, "keypad", "capture", "abandoned:pan"): 2,
    }


def test_the_smallest_cuboid_holding_the_needed_dimensions_is_read() -> None:
    assert domain.cuboid_for("payments", {"outcome", "currency"}).name == "payment_totals"
    assert domain.cuboid_for("payments", {"channel", "decline_code"}).name == "payment_totals"
    assert domain.cuboid_for("payments", {"agent_id", "outcome"}).name == "payment_agents"
    assert domain.cuboid_for("payments", {"agent_id", "channel"}).name == "payments"
    assert domain.cuboid_for("connectors", {"connector"}).name == "connector_totals"
    assert domain.cuboid_for("funnels", {"stage", "agent_id"}).name == "funnels"


def test_a_range_reads_whole_days_and_the_hours_at_its_ends() -> None:
    start, end = DAY0 + timedelta(hours=21), DAY0 + timedelta(days=3, hours=5)
    assert domain.spans(start, end) == [
        domain.Span("hour", start, DAY0 + timedelta(days=1)),
        domain.Span("day", DAY0 + timedelta(days=1), DAY0 + timedelta(days=3)),
        domain.Span("hour", DAY0 + timedelta(days=3), end),
    ]
    assert domain.spans(DAY0, DAY0 + timedelta(days=2)) == [
        domain.Span("day", DAY0, DAY0 + timedelta(days=2))
    ]
    # No whole day inside, or an hourly series: hours only.
    inside = (DAY0 + timedelta(hours=5), DAY0 + timedelta(days=1, hours=4))
    assert domain.spans(*inside) == [domain.Span("hour", *inside)]
    assert domain.spans(start, end, hourly=True) == [domain.Span("hour", start, end)]
