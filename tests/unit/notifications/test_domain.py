"""The push rules: routing, what a browser may see, the client's messages, origins, and
the arithmetic of resuming a stream."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.leaks import card_numbers_in
from tests.unit.notifications.planted import PAN, SECRET, contract_types, marked, planted
from transact.contracts.calls import CallAssigned, CallEnded, CallKeypad
from transact.contracts.capture import CaptureProgress, CaptureStarted
from transact.contracts.payments import PaymentAuthorized, PaymentRequested
from transact.notifications import domain
from transact.notifications.domain import Backfill, Kind, Position, Reset, Scope

T = "ten_1"


# --- what a browser sees ----------------------------------------------------------------


@pytest.mark.parametrize("cls", contract_types(), ids=lambda c: c.topic)
def test_no_contract_message_shows_card_data_or_anything_unlisted(cls: type) -> None:
    message = marked(planted(cls, T, "usr_alice"))
    event = domain.view(message)
    rule = domain.rule_for(message.topic)
    if rule is None:
        assert event is None
        return
    assert event is not None
    text = json.dumps(event)
    assert card_numbers_in(text) == []
    assert PAN not in text
    assert SECRET not in text
    assert set(event["data"]) == set(rule.fields)
    assert set(event) == {"topic", "occurred_at", "data"}


def test_sealed_keys_and_one_time_codes_are_never_pushed() -> None:
    for topic in ("call.keypad", "call.agent_code"):
        assert domain.rule_for(topic) is None
    keypad = CallKeypad(tenant_id=T, call_id="CA1", seq=1, sealed="c2VhbGVk")
    assert domain.view(keypad) is None


def test_every_pushed_field_exists_on_its_message() -> None:
    by_topic = {cls.topic: cls for cls in contract_types()}
    for topic, rule in domain.RULES.items():
        fields = by_topic[topic].model_fields
        for name in (*rule.fields, *rule.agents, *(r.field for r in rule.owner)):
            assert name in fields, (topic, name)


def test_ids_keep_their_digits_and_free_text_loses_card_numbers() -> None:
    hexy = "pay_4111111111111111ab"  # a hex id can hold a Luhn-valid run
    message = PaymentAuthorized(
        tenant_id=T, payment_id=hexy, psp_reference=f"ref {PAN}", decline_code=PAN
    )
    event = domain.view(message)
    assert event is not None
    assert event["data"]["payment_id"] == hexy
    assert event["data"]["psp_reference"] == "ref 411111******1111"
    assert event["data"]["decline_code"] == "411111******1111"


def test_long_text_is_masked_before_it_is_cut() -> None:
    reason = "x" * 120 + PAN
    message = CaptureProgress(
        tenant_id=T,
        capture_id="c",
        call_id=None,
        field="pan",
        event="key",
        digits=1,
        complete=False,
        valid=None,
        reason=reason,
    )
    event = domain.view(message)
    assert event is not None
    shown = event["data"]["reason"]
    assert len(shown) == domain.MAX_TEXT
    assert shown.endswith("x411111**")


def test_a_card_like_amount_is_dropped() -> None:
    message = PaymentRequested(
        tenant_id=T,
        payment_id="p",
        capture_id="c",
        amount=int(PAN),
        currency="GBP",
        reference="r",
        channel="phone",
        agent_id=None,
        vault_ref="v",
        idempotency_key="k",
    )
    event = domain.view(message)
    assert event is not None
    assert event["data"]["amount"] is None
    assert "vault_ref" not in event["data"]


def test_event_text_is_the_body_numbered() -> None:
    body = domain.body_text({"topic": "call.ended", "occurred_at": "t", "data": {"a": 1}})
    assert json.loads(domain.event_text(7, body)) == {
        "type": "event",
        "id": 7,
        "topic": "call.ended",
        "occurred_at": "t",
        "data": {"a": 1},
    }


def test_occurred_at_is_pushed_in_utc() -> None:
    moment = datetime(2026, 1, 2, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    event = domain.view(CallEnded(tenant_id=T, call_id="c", reason="hangup", occurred_at=moment))
    assert event is not None
    assert event["occurred_at"] == "2026-01-02T10:00:00+00:00"


# --- routing ----------------------------------------------------------------------------


def test_an_assignment_concerns_the_new_and_the_previous_holder_and_claims_the_call() -> None:
    message = CallAssigned(tenant_id=T, call_id="CA1", agent_id="bob", previous_agent_id="al")
    rule = domain.RULES[message.topic]
    audience = domain.named_agents(rule, message)
    assert audience == ("bob", "al")
    claim = domain.claim(rule, message, audience)
    assert claim is not None
    assert (claim.kind, claim.ref, claim.agent_id) == (Kind.CALL, "CA1", "bob")
    assert domain.streams_for(T, audience) == [
        "agent:ten_1:al",
        "agent:ten_1:bob",
        "tenant:ten_1",
    ]


def test_events_naming_no_agent_look_for_the_holder() -> None:
    ended = CallEnded(tenant_id=T, call_id="CA1", reason="hangup")
    rule = domain.RULES[ended.topic]
    assert domain.named_agents(rule, ended) == ()
    assert domain.owner_refs(rule, ended) == [(Kind.CALL, "CA1")]
    outcome = PaymentAuthorized(tenant_id=T, payment_id="pay_1")
    assert domain.owner_refs(domain.RULES[outcome.topic], outcome) == [(Kind.PAYMENT, "pay_1")]


def test_a_capture_without_an_agent_falls_back_to_the_calls_holder() -> None:
    started = CaptureStarted(
        tenant_id=T, capture_id="cap", call_id="CA1", channel="phone", agent_id=None, fields=[]
    )
    rule = domain.RULES[started.topic]
    assert domain.named_agents(rule, started) == ()
    assert domain.owner_refs(rule, started) == [(Kind.CALL, "CA1")]
    claim = domain.claim(rule, started, ())
    assert claim is not None
    assert claim.agent_id is None


def test_a_payment_request_makes_its_agent_the_payments_holder() -> None:
    request = PaymentRequested(
        tenant_id=T,
        payment_id="pay_1",
        capture_id="c",
        amount=1,
        currency="GBP",
        reference="r",
        channel="phone",
        agent_id="alice",
        vault_ref="v",
        idempotency_key="k",
    )
    rule = domain.RULES[request.topic]
    claim = domain.claim(rule, request, domain.named_agents(rule, request))
    assert claim is not None
    assert (claim.kind, claim.ref, claim.agent_id) == (Kind.PAYMENT, "pay_1", "alice")


def test_only_fresh_outcomes_wait_a_moment_for_their_holder() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    outcome = domain.RULES["payment.authorized"]
    assert domain.should_wait_for_owner(outcome, now, now, waited=0.0)
    assert not domain.should_wait_for_owner(outcome, now, now, waited=1.0)
    assert not domain.should_wait_for_owner(outcome, now - timedelta(minutes=5), now, 0.0)
    assert not domain.should_wait_for_owner(domain.RULES["call.ended"], now, now, 0.0)


def test_oversized_ids_are_not_routed_or_claimed() -> None:
    message = CallAssigned(tenant_id=T, call_id="C" * 200, agent_id="a" * 65)
    rule = domain.RULES[message.topic]
    assert domain.named_agents(rule, message) == ()
    assert domain.claim(rule, message, ()) is None
    assert not domain.acceptable(CallEnded(tenant_id="t" * 65, call_id="c", reason="hangup"))


def test_only_supervisors_watch_the_tenant() -> None:
    assert domain.may_watch(Scope.AGENT, supervises=False)
    assert not domain.may_watch(Scope.TENANT, supervises=False)
    assert domain.may_watch(Scope.TENANT, supervises=True)
    assert domain.stream_for(Scope.TENANT, T, "u") == "tenant:ten_1"
    assert domain.stream_for(Scope.AGENT, T, "u") == "agent:ten_1:u"


# --- what a client sends ------------------------------------------------------------------


def test_client_messages_parse() -> None:
    parse = domain.parse_client_message
    assert parse('{"type":"auth","token":" t ","after":4}') == domain.Auth("t", 4)
    assert parse('{"type":"resume","after":"12"}') == domain.Resume(12)
    assert parse('{"type":"subscribe","scope":"tenant"}') == domain.Subscribe(Scope.TENANT)
    assert parse('{"type":"subscribe"}') == domain.Subscribe(Scope.AGENT)
    assert parse('{"type":"ping"}') == domain.Ping()
    assert parse('{"type":"pong"}') == domain.Pong()


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('{"type":"auth"}', "invalid_token"),
        ('{"type":"resume"}', "invalid_id"),
        ('{"type":"resume","after":-1}', "invalid_id"),
        ('{"type":"resume","after":true}', "invalid_id"),
        ('{"type":"resume","after":1.5}', "invalid_id"),
        ('{"type":"subscribe","scope":"everything"}', "invalid_scope"),
        ('{"type":"hello"}', "unknown_type"),
    ],
)
def test_bad_client_messages_are_rejected_with_a_code(text: str, code: str) -> None:
    with pytest.raises(domain.Rejected) as problem:
        domain.parse_client_message(text)
    assert problem.value.code == code


@pytest.mark.parametrize("text", ["{", "[1]", '"auth"', "null"])
def test_non_objects_are_malformed(text: str) -> None:
    with pytest.raises(domain.Malformed):
        domain.parse_client_message(text)


def test_credentials_in_the_query_are_spotted() -> None:
    assert domain.token_in_query(["after", "Access_Token"])
    assert domain.token_in_query(["token"])
    assert not domain.token_in_query(["after", "scope"])


# --- origins ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "public", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", "", True),
        ("https://pay.example", "pay.example", "", True),
        ("https://pay.example", "pay.example:443", "", True),
        ("https://PAY.example", "pay.example", "", True),
        ("https://pay.example:8443", "pay.example", "", False),
        ("https://evil.example", "pay.example", "", False),
        ("http://127.0.0.1:8001", "127.0.0.1:8000", "", False),
        ("null", "pay.example", "", False),
        (None, "pay.example", "", False),
        ("https://pay.example/path", "pay.example", "", False),
        ("https://user@pay.example", "pay.example", "", False),
        ("ftp://pay.example", "pay.example", "", False),
        # Behind a proxy that rewrites Host: the public URL's origin is ours too.
        ("https://pay.example", "internal:8000", "https://pay.example", True),
        ("http://pay.example", "internal:8000", "https://pay.example", False),
    ],
)
def test_origins(origin: str | None, host: str, public: str, allowed: bool) -> None:
    assert domain.origin_allowed(origin, host, public) is allowed


# --- positions ----------------------------------------------------------------------------


def test_a_new_position_expects_what_follows_the_head() -> None:
    position = Position.at(5)
    assert position.classify(6) == "next"
    assert position.classify(8) == "gap"
    assert position.classify(5) == "seen"
    assert position.classify(1) == "seen"


def test_resume_fills_only_what_this_connection_did_not_deliver() -> None:
    position = Position(low=11, last=14)  # delivered 11..14 live
    assert domain.plan_resume(position, after=4, head=14) == Backfill(5, 10)
    assert domain.plan_resume(position, after=10, head=14) is None
    assert domain.plan_resume(position, after=12, head=14) is None


def test_resume_beyond_the_head_or_too_far_back_is_a_reset() -> None:
    position = Position.at(10)
    assert isinstance(domain.plan_resume(position, after=11, head=10), Reset)
    far = domain.plan_resume(Position.at(5000), after=1, head=5000, max_backlog=100)
    assert isinstance(far, Reset)


def test_consecutive() -> None:
    assert domain.consecutive(3, [3, 4, 5])
    assert domain.consecutive(3, [])
    assert not domain.consecutive(3, [4, 5])
    assert not domain.consecutive(3, [3, 5])
