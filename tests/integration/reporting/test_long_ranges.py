"""Ranges of several days: whole days read from the day buckets, the ragged hours at
either end from the hour buckets, the same answers as hour by hour."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.integration.reporting.conftest import Board
from tests.integration.reporting.test_reports_api import NOW, iso, settled

MIDNIGHT = NOW.replace(hour=0, minute=0)
START = MIDNIGHT - timedelta(days=2) + timedelta(hours=21)  # three hours before a midnight
END = NOW + timedelta(hours=1)


def day_of(moment: datetime) -> str:
    return moment.replace(hour=0, minute=0).isoformat()


def ranged(start: datetime = START, **extra: str) -> str:
    """The summary's query over [start, END), by day unless `extra` says otherwise."""
    asked = {"granularity": "day", **extra}
    return f"?from={iso(start)}&to={iso(END)}" + "".join(f"&{k}={v}" for k, v in asked.items())


async def test_a_ragged_multi_day_range_counts_each_payment_once_where_it_was_decided(
    board: Board,
) -> None:
    sue = await board.agent("sue", "supervisor")
    await board.agent("alice")
    await board.agent("bob")
    alice, bob = board.agents["alice"][0], board.agents["bob"][0]
    edge = MIDNIGHT - timedelta(days=2) + timedelta(hours=22, minutes=30)  # a ragged hour
    late = edge + timedelta(hours=1)
    inside = MIDNIGHT - timedelta(days=1) + timedelta(hours=10, minutes=30)  # a whole day
    today = NOW - timedelta(hours=1)
    await board.publish(
        board.requested("pa", edge),
        board.authorized("pa", edge),
        board.requested("pb", inside, agent_id=alice, amount=2000),
        board.authorized("pb", inside),
        # The same outcome, reported again for an earlier moment (another message id):
        # the payment moves back a day, from the day rows into the ragged hours.
        board.authorized("pb", late),
        board.requested("pc", inside + timedelta(hours=1), agent_id=bob, channel="link"),
        board.declined("pc", inside + timedelta(hours=1), "card_declined"),
        board.requested("pd", today),
        board.authorized("pd", today),
    )
    expected: dict[str, int] = {}
    for moment in (edge, late, inside + timedelta(hours=1), today):
        expected[day_of(moment)] = expected.get(day_of(moment), 0) + 1

    def by_day(body: dict[str, Any]) -> dict[str, int]:
        return {s["period"]: s["payments"] for s in body["series"] if s["payments"]}

    def channels(body: dict[str, Any]) -> dict[str, int]:
        return {c["channel"]: c["payments"] for c in body["channels"]}

    # Events apply in any order: wait for the repeat (it moves pb) and for every request
    # (it names the channel and agent; until then an outcome counts as "unknown").
    body = await board.until(
        sue,
        ranged(),
        lambda b: (
            settled(b, 4, 4000)
            and by_day(b) == expected
            and channels(b) == {"keypad": 3, "link": 1}
        ),
    )
    assert body["granularity"] == "day"
    assert by_day(body) == expected
    assert body["series"][0]["period"] == day_of(START)
    assert channels(body) == {"keypad": 3, "link": 1}
    assert {a["agent"]: a["payments"] for a in body["agents"]} == {
        "(none)": 2,
        "alice": 1,
        "bob": 1,
    }
    assert body["declines"] == [{"code": "card_declined", "outcome": "declined", "count": 1}]
    assert body["choices"]["agents"] == sorted(
        [{"id": alice, "name": "alice"}, {"id": bob, "name": "bob"}], key=lambda a: a["id"]
    )
    assert body["choices"]["connectors"] == ["sandbox"]
    [sandbox] = body["connectors"]
    assert (sandbox["payments"], sandbox["attempts"]) == (4, 3)  # a decline has no `tried`

    # Hour by hour, the same numbers.
    hourly = await board.summary(sue, ranged(granularity="hour"))
    assert hourly["totals"] == body["totals"]
    assert sum(s["payments"] for s in hourly["series"]) == 4
    assert {a["agent_id"]: a["payments"] for a in hourly["agents"]} == {
        a["agent_id"]: a["payments"] for a in body["agents"]
    }

    # A range starting inside the first day's ragged hours leaves out what came before.
    later = await board.summary(sue, ranged(edge + timedelta(minutes=30)))
    assert later["totals"]["payments"] == 3
    assert later["totals"]["amounts"]["GBP"]["authorized"] == 3000

    # Filters: one agent (its own rows), and agents under a channel filter.
    mine = await board.summary(sue, ranged(agent=alice))
    assert (mine["totals"]["payments"], mine["totals"]["amounts"]["GBP"]["authorized"]) == (
        1,
        2000,
    )
    assert [s["period"] for s in mine["series"] if s["payments"]] == [day_of(late)]
    keypad = await board.summary(sue, ranged(channel="keypad"))
    assert {a["agent"]: a["payments"] for a in keypad["agents"]} == {"(none)": 2, "alice": 1}
    linked = await board.summary(sue, ranged(channel="link", connector="sandbox"))
    assert {a["agent"]: a["declined"] for a in linked["agents"]} == {"bob": 1}
