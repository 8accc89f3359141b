"""An agent's call handed to a flow: taken from the agent first, given back at the end
(whatever the outcome), never hung up while the agent waits."""

from __future__ import annotations

import pytest

from tests.unit.ivr.test_domain import go, heard, said
from transact.ivr import domain
from transact.ivr.domain import (
    Began,
    CaptureEnded,
    Flow,
    Handover,
    HangUp,
    HungUp,
    Key,
    OpenCapture,
    PaymentDone,
    Session,
    Stage,
    Step,
)
from transact.ivr.phrases import PAUSE

FIXED = Flow(name="bills", amount=1250, currency="GBP", reference="INV-1")
AGENT_LINE = Flow(name="line", amount_source="agent", currency="EUR")
HANDED = Began(agent_id="usr_alice", amount=4200, currency="GBP", reference="ORDER-42")


def to_outcome(flow: Flow, began: Began, status: domain.PaymentStatus) -> Step:
    """Greeted, card keyed, confirmed, and the PSP's answer."""
    step = domain.begin(flow, "ivs_1", began)
    step = go(flow, step.session, heard(step))
    capture_id = step.session.capture_id or ""
    step = go(
        flow,
        step.session,
        domain.CaptureOpened(capture_id),
        domain.CardReady(capture_id, "visa", "4242"),
        Key("1"),
    )
    return go(flow, step.session, PaymentDone(capture_id, status, "042917"))


class TestTakingTheCall:
    def test_the_call_is_taken_from_the_agent_before_the_greeting(self) -> None:
        step = domain.begin(FIXED, "ivs_1", HANDED)
        assert step.actions[0] == Handover(on=True)
        assert said(step) == ("greeting", PAUSE, "amount_due", "forty", "two", "pounds")
        assert step.session.agent_id == "usr_alice"

    def test_the_agents_amount_replaces_the_flows(self) -> None:
        step = domain.begin(FIXED, "ivs_1", HANDED)
        session = step.session
        assert (session.amount, session.currency, session.reference) == (4200, "GBP", "ORDER-42")
        opened = go(FIXED, session, heard(step))
        assert opened.actions == (OpenCapture(domain.capture_id_for("ivs_1", 1)),)

    def test_without_the_agents_amount_the_flow_finds_it(self) -> None:
        step = domain.begin(FIXED, "ivs_1", Began(agent_id="usr_alice"))
        assert (step.session.amount, step.session.reference) == (1250, "INV-1")

    def test_the_agents_currency_defaults_to_the_flows(self) -> None:
        began = Began(agent_id="usr_alice", amount=999, reference="R-1")
        assert domain.begin(AGENT_LINE, "ivs_1", began).session.currency == "EUR"

    def test_a_self_service_call_to_an_agent_only_line_cannot_pay(self) -> None:
        step = domain.begin(AGENT_LINE, "ivs_1", Began())
        assert said(step) == ("unavailable", PAUSE, "goodbye")
        assert Handover(on=True) not in step.actions

    def test_a_self_service_call_is_never_taken_from_anyone(self) -> None:
        step = domain.begin(FIXED, "ivs_1", Began())
        assert not any(isinstance(a, Handover) for a in step.actions)


class TestGivingItBack:
    @pytest.mark.parametrize(
        ("status", "outcome", "before"),
        [
            ("authorized", "paid", None),
            ("failed", "failed", ("payment_failed", PAUSE)),
        ],
    )
    def test_every_outcome_returns_the_call_to_the_agent(
        self, status: domain.PaymentStatus, outcome: str, before: tuple[str, ...] | None
    ) -> None:
        step = to_outcome(FIXED, HANDED, status)
        if before is None:  # the confirmation number is said first
            step = go(FIXED, step.session, heard(step))
            assert said(step) == ("returning",)
        else:
            assert said(step) == (*before, "returning")
        assert step.session.outcome == outcome
        back = go(FIXED, step.session, heard(step))
        assert back.actions == (Handover(on=False),)
        assert back.session.stage is Stage.ENDED

    def test_too_many_attempts_returns_the_call_too(self) -> None:
        step = domain.begin(FIXED, "ivs_1", HANDED)
        step = go(FIXED, step.session, heard(step))
        capture_id = step.session.capture_id or ""
        step = go(FIXED, step.session, CaptureEnded(capture_id, "failed"))
        assert said(step) == ("too_many_attempts", PAUSE, "returning")
        assert go(FIXED, step.session, heard(step)).actions == (Handover(on=False),)

    def test_a_declined_caller_who_gives_up_goes_back_to_the_agent(self) -> None:
        step = to_outcome(FIXED, HANDED, "declined")
        step = go(FIXED, step.session, Key("2"))
        assert (said(step), step.session.outcome) == (("returning",), "declined")
        assert go(FIXED, step.session, heard(step)).actions == (Handover(on=False),)

    def test_a_self_service_call_hangs_up_as_before(self) -> None:
        step = to_outcome(FIXED, Began(), "failed")
        assert said(step) == ("payment_failed", PAUSE, "goodbye")
        assert go(FIXED, step.session, heard(step)).actions == (HangUp(),)

    def test_a_flow_set_to_send_callers_to_an_agent_does_so(self) -> None:
        flow = Flow(name="bills", amount=1250, reference="INV-1", after="agent")
        step = to_outcome(flow, Began(), "failed")
        assert said(step) == ("payment_failed", PAUSE, "returning")
        assert go(flow, step.session, heard(step)).actions == (Handover(on=False),)

    def test_a_caller_hanging_up_mid_flow_abandons_with_nothing_to_give_back(self) -> None:
        step = domain.begin(FIXED, "ivs_1", HANDED)
        step = go(FIXED, step.session, heard(step), HungUp())
        assert (step.session.stage, step.session.outcome) == (Stage.ENDED, "abandoned")
        assert step.actions == ()

    def test_the_agent_survives_a_round_trip(self) -> None:
        session = domain.begin(FIXED, "ivs_1", HANDED).session
        assert Session.from_dict(session.to_dict()).agent_id == "usr_alice"
