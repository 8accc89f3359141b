"""Who is pushed what: an agent gets the events of their own calls, captures and payments,
never another agent's or another tenant's; supervisors may watch their whole tenant."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.integration.notifications.conftest import Desk, Feed
from transact.contracts import Message
from transact.contracts.calls import (
    CallAssigned,
    CallEnded,
    CallKeysOutsideCapture,
    CallSecureMode,
    CallStarted,
)
from transact.contracts.capture import (
    CaptureCancelled,
    CaptureCompleted,
    CaptureProgress,
    CaptureStarted,
)
from transact.contracts.payments import PaymentAuthorized, PaymentDeclined, PaymentRequested


def payment_flow(tenant_id: str, agent_id: str, call: str, pay: str) -> list[list[Message]]:
    """A phone payment's events in the stages they happen in (each stage after the last
    has been seen, as in life: nobody keys a card before the capture opened)."""
    common: dict[str, Any] = {"tenant_id": tenant_id}
    return [
        [
            CallStarted(**common, call_id=call, reference="K7-3Q9"),
            CallAssigned(**common, call_id=call, agent_id=agent_id),
        ],
        [
            CaptureStarted(
                **common,
                capture_id=pay,
                call_id=call,
                channel="phone",
                agent_id=agent_id,
                fields=["pan", "expiry", "cvv"],
            ),
            CallSecureMode(**common, call_id=call, on=True, capture_id=pay),
            CallKeysOutsideCapture(**common, call_id=call),
        ],
        [
            CaptureProgress(
                **common,
                capture_id=pay,
                call_id=call,
                agent_id=agent_id,
                field="pan",
                event="key",
                digits=1,
                complete=False,
                valid=None,
            ),
        ],
        [
            CaptureCompleted(
                **common,
                capture_id=pay,
                call_id=call,
                agent_id=agent_id,
                brand="visa",
                bin="424242",
                last4="4242",
            ),
            PaymentRequested(
                **common,
                payment_id=pay,
                capture_id=pay,
                amount=4200,
                currency="GBP",
                reference="INV-42",
                channel="phone",
                agent_id=agent_id,
                vault_ref="cap_secret_ref",
                idempotency_key=f"{pay}:authorize",
            ),
        ],
        [PaymentAuthorized(**common, payment_id=pay, connector="sandbox", attempts=1)],
        [CallEnded(**common, call_id=call, reason="hangup")],
    ]


AGENT_TOPICS = [
    ["call.assigned"],
    ["capture.started", "call.secure_mode", "call.keys_outside_capture"],
    ["capture.progress"],
    ["capture.completed", "payment.requested"],
    ["payment.authorized"],
    ["call.ended"],
]


async def play(
    desk: Desk, stages: list[list[Message]], feed: Feed, topics: list[list[str]]
) -> list[dict[str, Any]]:
    """Publish stage by stage, each once `feed` has seen the one before."""
    seen: list[dict[str, Any]] = []
    for stage, expected in zip(stages, topics, strict=True):
        await desk.publish(*stage)
        got = await feed.events(len(expected))
        assert sorted(e["topic"] for e in got) == sorted(expected)
        seen += got
    return seen


async def test_an_agent_gets_their_own_call_capture_and_payment_events(desk: Desk) -> None:
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    seen = await play(
        desk, payment_flow(desk.tenant_id, alice.id, "CA1", "pay_1"), feed, AGENT_TOPICS
    )
    # Numbered from 1 in the agent's stream, without gaps, in the order pushed.
    assert [e["id"] for e in seen] == list(range(1, len(seen) + 1))
    by_topic = {e["topic"]: e for e in seen}
    assert by_topic["call.assigned"]["data"] == {
        "call_id": "CA1",
        "agent_id": alice.id,
        "previous_agent_id": None,
    }
    assert by_topic["capture.progress"]["data"]["digits"] == 1
    assert by_topic["payment.requested"]["data"] == {
        "payment_id": "pay_1",
        "capture_id": "pay_1",
        "amount": 4200,
        "currency": "GBP",
        "reference": "INV-42",
        "channel": "phone",
        "brand": None,
    }
    assert by_topic["payment.authorized"]["data"]["connector"] == "sandbox"
    assert "cap_secret_ref" not in json.dumps(seen)
    assert all(e["occurred_at"].endswith("+00:00") for e in seen)
    assert await feed.quiet() == []  # call.started has no holder: not alice's to see


async def test_agents_never_see_each_others_or_another_tenants_events(desk: Desk) -> None:
    alice, bob = await desk.person("alice"), await desk.person("bob")
    carol = await desk.person("carol", tenant="other")
    feeds = {p.username: (await desk.feed(p))[0] for p in (alice, bob, carol)}
    # Carol's tenant has a call whose events even name alice's id: still not alice's.
    stolen = payment_flow(desk.other_tenant_id, alice.id, "CA1", "pay_1")
    await desk.publish(*stolen[0])
    await play(
        desk, payment_flow(desk.tenant_id, bob.id, "CA2", "pay_2"), feeds["bob"], AGENT_TOPICS
    )
    assert await feeds["alice"].quiet() == []
    assert await feeds["carol"].quiet() == []


async def test_a_transfer_tells_both_agents_and_later_events_go_to_the_new_holder(
    desk: Desk,
) -> None:
    alice, bob = await desk.person("alice"), await desk.person("bob")
    a, _ = await desk.feed(alice)
    b, _ = await desk.feed(bob)
    await desk.publish(CallAssigned(tenant_id=desk.tenant_id, call_id="CA1", agent_id=alice.id))
    await a.events(1)
    await desk.publish(
        CallAssigned(
            tenant_id=desk.tenant_id, call_id="CA1", agent_id=bob.id, previous_agent_id=alice.id
        )
    )
    moved_a, moved_b = (await a.events(1))[0], (await b.events(1))[0]
    assert moved_a["data"] == moved_b["data"]
    assert moved_b["data"]["previous_agent_id"] == alice.id
    await desk.publish(CallEnded(tenant_id=desk.tenant_id, call_id="CA1", reason="hangup"))
    assert (await b.events(1))[0]["topic"] == "call.ended"
    assert await a.quiet() == []


async def test_a_supervisor_may_watch_the_whole_tenant_and_an_agent_may_not(desk: Desk) -> None:
    alice, bob = await desk.person("alice"), await desk.person("bob")
    boss = await desk.person("boss", role="supervisor")
    watch, _ = await desk.feed(boss, "?scope=tenant")
    other = await desk.person("olga", role="supervisor", tenant="other")
    elsewhere, _ = await desk.feed(other, "?scope=tenant")
    agent, _ = await desk.feed(alice)
    await agent.ws.send(json.dumps({"type": "subscribe", "scope": "tenant"}))
    assert (await agent.expect("error"))["code"] == "forbidden"

    await desk.publish(
        CallStarted(tenant_id=desk.tenant_id, call_id="CA1", reference="K7-3Q9"),
        CallAssigned(tenant_id=desk.tenant_id, call_id="CA2", agent_id=bob.id),
    )
    seen = await watch.events(2)
    assert sorted(e["topic"] for e in seen) == ["call.assigned", "call.started"]
    assert await elsewhere.quiet() == []
    assert await agent.quiet() == []

    # Back to their own events, and the tenant again, by message.
    await watch.ws.send(json.dumps({"type": "subscribe", "scope": "agent"}))
    assert (await watch.expect("subscribed"))["scope"] == "agent"
    await desk.publish(CallAssigned(tenant_id=desk.tenant_id, call_id="CA3", agent_id=bob.id))
    assert await watch.quiet() == []
    await watch.ws.send(json.dumps({"type": "subscribe", "scope": "tenant", "after": 2}))
    subscribed = await watch.expect("subscribed")
    assert subscribed == {"type": "subscribed", "scope": "tenant", "last_id": 3}
    assert [e["id"] for e in await watch.events(1)] == [3]


async def test_an_agent_asking_for_the_tenant_at_connect_gets_their_own(desk: Desk) -> None:
    alice = await desk.person("alice")
    ws = await desk.raw("?scope=tenant", additional_headers=alice.bearer)
    feed = Feed(ws)
    await feed.expect("ready")
    assert (await feed.expect("error"))["code"] == "forbidden"
    assert (await feed.expect("subscribed"))["scope"] == "agent"
    await feed.close()


async def test_an_outcome_that_overtakes_its_request_still_reaches_the_agent(desk: Desk) -> None:
    """Outcomes name only the payment; its agent is known from `payment.requested`, which
    this consumer may hear after the outcome."""
    alice = await desk.person("alice")
    feed, _ = await desk.feed(alice)
    common: dict[str, Any] = {"tenant_id": desk.tenant_id}
    await desk.publish(PaymentDeclined(**common, payment_id="pay_9", decline_code="do_not_honor"))
    await asyncio.sleep(0.2)
    await desk.publish(
        PaymentRequested(
            **common,
            payment_id="pay_9",
            capture_id="cap_9",
            amount=100,
            currency="EUR",
            reference="R",
            channel="phone",
            agent_id=alice.id,
            vault_ref="v",
            idempotency_key="k",
        )
    )
    got = await feed.events(2)
    assert sorted(e["topic"] for e in got) == ["payment.declined", "payment.requested"]


async def test_an_outcome_of_a_payment_without_an_agent_goes_to_supervisors_only(
    desk: Desk,
) -> None:
    alice = await desk.person("alice")
    boss = await desk.person("boss", role="admin")
    feed, _ = await desk.feed(alice)
    watch, _ = await desk.feed(boss, "?scope=tenant")
    common: dict[str, Any] = {"tenant_id": desk.tenant_id}
    await desk.publish(
        CaptureStarted(
            **common, capture_id="cap_7", call_id=None, channel="link", agent_id=None, fields=[]
        ),
        CaptureCancelled(**common, capture_id="cap_7", call_id=None, reason="expired"),
    )
    assert len(await watch.events(2)) == 2
    assert await feed.quiet() == []
