"""The self-service flow's state machine: every stage, every way out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from transact.ivr import domain
from transact.ivr.domain import (
    AccountFound,
    AccountNotFound,
    CaptureEnded,
    CaptureOpened,
    CardProgress,
    CardReady,
    Flow,
    HangUp,
    HungUp,
    Key,
    LookUp,
    LookupFailed,
    OpenCapture,
    PaymentDone,
    PromptDone,
    Say,
    Session,
    Stage,
    Step,
    Submit,
    Timeout,
)
from transact.ivr.phrases import PAUSE

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
FIXED = Flow(name="bills", amount=1250, currency="GBP", reference="INV-1")
ACCOUNT = Flow(name="accounts", amount_source="account", lookup_url="https://shop.example/l")


def said(step: Step) -> tuple[str, ...]:
    assert step.said is not None, step.actions
    return step.said.phrases


def go(flow: Flow, session: Session, *events: domain.Input) -> Step:
    step = Step(session)
    for event in events:
        step = domain.advance(flow, step.session, event, NOW)
    return step


def heard(step: Step) -> PromptDone:
    """The platform echoing the mark of the step's prompt."""
    return PromptDone(step.session.mark)


def greeted(flow: Flow = FIXED) -> Step:
    return domain.begin(flow, "ivs_1", domain.Began())


def keying(flow: Flow = FIXED) -> Step:
    """At the card number prompt, capture open."""
    step = greeted(flow)
    step = go(flow, step.session, heard(step))
    return go(flow, step.session, CaptureOpened(step.session.capture_id or ""))


def confirming(flow: Flow = FIXED, last4: str = "4242") -> Step:
    step = keying(flow)
    return go(flow, step.session, CardReady(step.session.capture_id or "", "visa", last4))


def paying(flow: Flow = FIXED) -> Step:
    return go(flow, confirming(flow).session, Key("1"))


class TestFlowSettings:
    def test_a_fixed_flow_needs_an_amount_and_a_reference(self) -> None:
        with pytest.raises(ValueError, match="amount and reference"):
            Flow(name="x")

    @pytest.mark.parametrize(
        ("changes", "problem"),
        [
            ({"name": "no spaces"}, "name"),
            ({"amount": 0}, "greater than zero"),
            ({"currency": "XXX"}, "ISO 4217"),
            ({"fields": ["expiry", "pan"]}, "start with pan"),
            ({"fields": ["pan", "pin"]}, "each once"),
            ({"max_attempts": 0}, "max_attempts"),
            ({"input_timeout": 0.5}, "input_timeout"),
            ({"language": "xx"}, "language"),
            ({"prompts": {"greeting": "Bad Name"}}, "prompts"),
            ({"account_min_digits": 9, "account_max_digits": 4}, "account digits"),
            ({"amount_source": "caller"}, "fixed, account or agent"),
            ({"after": "queue"}, "after must be hangup or agent"),
        ],
    )
    def test_bad_settings_say_what_is_wrong(self, changes: dict[str, object], problem: str) -> None:
        with pytest.raises(ValueError, match=problem):
            Flow.from_dict({**FIXED.to_dict(), **changes})

    def test_an_account_flow_needs_the_merchants_lookup(self) -> None:
        with pytest.raises(ValueError, match="lookup_url"):
            Flow(name="a", amount_source="account")

    def test_unknown_settings_are_refused(self) -> None:
        with pytest.raises(ValueError, match="unknown flow settings: colour"):
            Flow.from_dict({**FIXED.to_dict(), "colour": "blue"})

    def test_settings_survive_a_round_trip(self) -> None:
        flow = Flow.from_dict({**ACCOUNT.to_dict(), "prompts": {"greeting": "acme_hello"}})
        assert Flow.from_dict(flow.to_dict()) == flow
        assert flow.say("greeting") == "acme_hello"
        assert flow.say("goodbye") == "goodbye"


class TestGreeting:
    def test_a_fixed_amount_is_said_with_the_greeting(self) -> None:
        step = greeted()
        assert said(step) == ("greeting", PAUSE, "amount_due", "twelve", "pounds", "fifty")
        assert step.session.stage is Stage.GREETING
        assert step.said is not None
        assert step.said.barge_in

    def test_once_heard_the_capture_opens(self) -> None:
        step = greeted()
        step = go(FIXED, step.session, heard(step))
        assert step.session.stage is Stage.OPENING
        assert step.actions == (OpenCapture(domain.capture_id_for("ivs_1", 1)),)

    def test_a_lost_mark_does_not_hold_the_call(self) -> None:
        step = go(FIXED, greeted().session, Timeout())
        assert step.session.stage is Stage.OPENING

    def test_the_mark_of_an_older_prompt_changes_nothing(self) -> None:
        step = greeted()
        assert go(FIXED, step.session, PromptDone("ivr-0")).session == step.session

    def test_keys_during_the_greeting_are_not_answers(self) -> None:
        step = greeted()
        assert go(FIXED, step.session, Key("1")).session == step.session

    def test_an_account_flow_asks_for_the_account(self) -> None:
        step = greeted(ACCOUNT)
        assert said(step) == ("greeting",)
        step = go(ACCOUNT, step.session, heard(step))
        assert step.session.stage is Stage.ACCOUNT
        assert said(step) == ("enter_account",)

    def test_a_flow_that_cannot_run_says_so_and_ends(self) -> None:
        step = domain.begin(FIXED, "ivs_1", domain.Began(unavailable=True))
        assert said(step) == ("unavailable", PAUSE, "goodbye")
        assert step.session.outcome == "unavailable"
        assert go(FIXED, step.session, heard(step)).actions == (HangUp(),)


class TestAccount:
    def at_account(self) -> Step:
        step = greeted(ACCOUNT)
        return go(ACCOUNT, step.session, heard(step))

    def test_digits_then_hash_are_looked_up(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "1234567#"))
        assert step.session.stage is Stage.LOOKUP
        assert step.actions == (LookUp("1234567"),)
        assert step.session.typed == ""

    def test_star_starts_the_number_again(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "99*12345#"))
        assert step.actions == (LookUp("12345"),)

    def test_the_longest_number_ends_on_its_own(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "123456789012"))
        assert step.actions == (LookUp("123456789012"),)

    def test_a_pause_after_digits_counts_as_hash(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "12345"), Timeout())
        assert step.actions == (LookUp("12345"),)

    def test_keying_waits_for_the_next_digit(self) -> None:
        step = go(ACCOUNT, self.at_account().session, Key("1"))
        assert step.session.deadline == NOW + timedelta(seconds=ACCOUNT.input_timeout)

    def test_too_short_is_refused_without_asking_the_merchant(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "12#"))
        assert said(step) == ("account_not_found", PAUSE, "enter_account")
        assert step.session.attempts == 1

    def test_a_found_account_gives_the_amount_and_opens_the_capture(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "12345#"))
        step = go(ACCOUNT, step.session, AccountFound(1250, "GBP", "ACC-1"))
        assert step.session.stage is Stage.OPENING
        assert (step.session.amount, step.session.reference) == (1250, "ACC-1")
        assert isinstance(step.actions[0], OpenCapture)
        assert said(step) == ("amount_due", "twelve", "pounds", "fifty")

    def test_unknown_accounts_are_asked_again_then_goodbye(self) -> None:
        step = self.at_account()
        for attempt in range(1, ACCOUNT.max_attempts):
            step = go(ACCOUNT, step.session, *(Key(k) for k in "12345#"), AccountNotFound())
            assert said(step) == ("account_not_found", PAUSE, "enter_account")
            assert step.session.attempts == attempt
        step = go(ACCOUNT, step.session, *(Key(k) for k in "12345#"), AccountNotFound())
        assert said(step) == ("account_not_found", PAUSE, "goodbye")
        assert step.session.outcome == "account_not_found"

    def test_a_failed_lookup_ends_the_call_politely(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "12345#"))
        step = go(ACCOUNT, step.session, LookupFailed())
        assert said(step) == ("lookup_failed", PAUSE, "goodbye")
        assert step.session.outcome == "lookup_failed"

    def test_a_lookup_that_never_answers_times_out(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "12345#"), Timeout())
        assert step.session.outcome == "lookup_failed"

    def test_a_late_answer_is_ignored(self) -> None:
        step = go(ACCOUNT, self.at_account().session, *(Key(k) for k in "12345#"), Timeout())
        assert go(ACCOUNT, step.session, AccountFound(1, "GBP", "R")).session == step.session

    def test_silence_is_asked_about_then_goodbye(self) -> None:
        step = go(ACCOUNT, self.at_account().session, Timeout())
        assert said(step) == ("no_input", PAUSE, "enter_account")
        step = go(ACCOUNT, step.session, Timeout(), Timeout())
        assert said(step) == ("no_input", "too_many_attempts", PAUSE, "goodbye")


class TestCard:
    def test_capture_opening_asks_for_the_first_field(self) -> None:
        step = keying()
        assert step.session.stage is Stage.CARD
        assert said(step) == ("enter_pan",)

    def test_each_accepted_field_asks_for_the_next(self) -> None:
        step = keying()
        capture = step.session.capture_id or ""
        step = go(FIXED, step.session, CardProgress(capture, "pan", "completed", True))
        assert said(step) == ("enter_expiry",)
        step = go(FIXED, step.session, CardProgress(capture, "expiry", "completed", True))
        assert said(step) == ("enter_cvv",)
        step = go(FIXED, step.session, CardProgress(capture, "cvv", "completed", True))
        assert step.actions == ()  # capture.completed brings the read-back

    @pytest.mark.parametrize(
        ("field", "reason", "phrase"),
        [
            ("pan", "fails the Luhn check", "invalid_pan"),
            ("pan", "amex is not accepted", "card_not_accepted"),
            ("expiry", "card has expired", "card_expired"),
            ("expiry", "month must be 01-12", "invalid_expiry"),
            ("cvv", "security codes have 3 digits", "invalid_cvv"),
        ],
    )
    def test_a_rejected_field_is_explained(self, field: str, reason: str, phrase: str) -> None:
        step = keying()
        event = CardProgress(step.session.capture_id or "", field, "rejected", False, reason)
        assert said(go(FIXED, step.session, event)) == (phrase,)

    def test_a_field_asked_again_by_capture_is_prompted(self) -> None:
        step = keying()
        event = CardProgress(step.session.capture_id or "", "cvv", "recapture", None)
        assert said(go(FIXED, step.session, event)) == ("enter_cvv",)

    def test_keys_keep_the_caller_from_timing_out(self) -> None:
        step = keying()
        event = CardProgress(step.session.capture_id or "", "pan", "key", None)
        assert go(FIXED, step.session, event).session.deadline is not None

    def test_facts_of_another_capture_are_ignored(self) -> None:
        step = keying()
        event = CardProgress("pay_other", "pan", "completed", True)
        assert go(FIXED, step.session, event).session == step.session

    def test_silence_while_keying_is_asked_about_then_goodbye(self) -> None:
        step = go(FIXED, keying().session, Timeout())
        assert said(step) == ("no_input", PAUSE, "enter_pan")
        step = go(FIXED, step.session, Timeout(), Timeout())
        assert step.session.outcome == "too_many_attempts"

    def test_capture_failing_the_card_ends_the_call(self) -> None:
        step = keying()
        step = go(FIXED, step.session, CaptureEnded(step.session.capture_id or "", "failed"))
        assert said(step) == ("too_many_attempts", PAUSE, "goodbye")
        assert step.session.outcome == "too_many_attempts"

    def test_an_expired_capture_ends_the_call(self) -> None:
        step = keying()
        step = go(FIXED, step.session, CaptureEnded(step.session.capture_id or "", "expired"))
        assert step.session.outcome == "abandoned"

    def test_a_capture_that_could_not_open_ends_the_call(self) -> None:
        step = greeted()
        step = go(FIXED, step.session, heard(step))
        step = go(FIXED, step.session, CaptureEnded(step.session.capture_id or "", "call_busy"))
        assert said(step) == ("payment_failed", PAUSE, "goodbye")

    def test_capture_never_opening_times_out(self) -> None:
        step = greeted()
        step = go(FIXED, step.session, heard(step), Timeout())
        assert step.session.outcome == "failed"

    def test_the_call_ending_is_left_to_the_hang_up(self) -> None:
        step = keying()
        event = CaptureEnded(step.session.capture_id or "", "call_ended")
        assert go(FIXED, step.session, event).session == step.session


class TestConfirm:
    def test_the_read_back_says_the_last_four_and_the_amount(self) -> None:
        step = confirming(last4="1881")
        assert said(step) == (
            "readback_card", "one", "eight", "eight", "one", PAUSE,
            "readback_amount", "twelve", "pounds", "fifty", PAUSE, "confirm_menu",
        )  # fmt: skip
        assert step.session.stage is Stage.CONFIRM

    def test_one_pays(self) -> None:
        step = paying()
        assert step.actions[0] == Submit(step.session.capture_id or "")
        assert said(step) == ("processing",)
        assert step.said is not None
        assert not step.said.barge_in
        assert step.session.payments == 1

    def test_two_keys_the_card_again_in_a_new_capture(self) -> None:
        first = confirming()
        step = go(FIXED, first.session, Key("2"))
        assert step.actions == (
            OpenCapture(domain.capture_id_for("ivs_1", 2), replaces=first.session.capture_id),
        )
        assert step.session.cards == 2

    def test_keying_again_is_limited(self) -> None:
        step = confirming()
        for _ in range(FIXED.max_attempts - 1):
            step = go(FIXED, step.session, Key("2"))
            step = go(FIXED, step.session, CaptureOpened(step.session.capture_id or ""))
            step = go(FIXED, step.session, CardReady(step.session.capture_id or "", "visa", "4242"))
        step = go(FIXED, step.session, Key("2"))
        assert step.session.outcome == "too_many_attempts"

    def test_another_key_is_not_a_choice(self) -> None:
        step = go(FIXED, confirming().session, Key("7"))
        assert said(step)[0:2] == ("invalid_choice", PAUSE)
        assert said(step)[-1] == "confirm_menu"

    def test_no_choice_repeats_the_read_back_then_goodbye(self) -> None:
        step = go(FIXED, confirming().session, Timeout())
        assert said(step)[0] == "no_input"
        step = go(FIXED, step.session, Timeout(), Timeout())
        assert step.session.outcome == "too_many_attempts"


class TestOutcome:
    def test_approved_says_the_confirmation_number_twice(self) -> None:
        step = paying()
        step = go(
            FIXED, step.session, PaymentDone(step.session.capture_id or "", "authorized", "042917")
        )
        number = ("zero", "four", "two", "nine", "one", "seven")
        assert said(step) == (
            "approved", PAUSE, "confirmation_is", *number, PAUSE, "again", "confirmation_is",
            *number,
        )  # fmt: skip
        assert (step.session.outcome, step.session.confirmation) == ("paid", "042917")
        step = go(FIXED, step.session, heard(step))
        assert said(step) == ("goodbye",)
        assert go(FIXED, step.session, heard(step)).actions == (HangUp(),)

    def test_declined_offers_another_card(self) -> None:
        step = paying()
        step = go(FIXED, step.session, PaymentDone(step.session.capture_id or "", "declined", "1"))
        assert said(step) == ("declined", PAUSE, "retry_menu")
        assert step.session.stage is Stage.RETRY
        again = go(FIXED, step.session, Key("1"))
        assert again.actions == (OpenCapture(domain.capture_id_for("ivs_1", 2)),)

    def test_declined_then_two_ends_the_call(self) -> None:
        step = paying()
        step = go(FIXED, step.session, PaymentDone(step.session.capture_id or "", "declined", "1"))
        step = go(FIXED, step.session, Key("2"))
        assert said(step) == ("goodbye",)
        assert step.session.outcome == "declined"

    def test_declined_too_often_ends_the_call(self) -> None:
        flow = Flow(name="once", amount=100, reference="R", max_attempts=1)
        step = paying(flow)
        step = go(flow, step.session, PaymentDone(step.session.capture_id or "", "declined", "1"))
        assert said(step) == ("declined", PAUSE, "goodbye")

    def test_no_answer_at_the_retry_menu_ends_as_declined(self) -> None:
        step = paying()
        step = go(FIXED, step.session, PaymentDone(step.session.capture_id or "", "declined", "1"))
        step = go(FIXED, step.session, Timeout(), Timeout(), Timeout())
        assert step.session.outcome == "declined"

    def test_a_failed_payment_says_no_money_was_taken(self) -> None:
        step = paying()
        step = go(FIXED, step.session, PaymentDone(step.session.capture_id or "", "failed", "1"))
        assert said(step) == ("payment_failed", PAUSE, "goodbye")
        assert step.session.outcome == "failed"

    def test_the_outcome_of_another_payment_is_ignored(self) -> None:
        step = paying()
        assert go(FIXED, step.session, PaymentDone("pay_x", "authorized", "1")).session == (
            step.session
        )

    def test_the_psp_is_waited_for_without_a_deadline(self) -> None:
        step = paying()
        assert domain.expect_by(FIXED, step.session, 3.0, NOW).deadline is None


class TestHangingUp:
    def test_a_caller_leaving_abandons_the_session(self) -> None:
        step = go(FIXED, keying().session, HungUp())
        assert (step.session.stage, step.session.outcome) == (Stage.ENDED, "abandoned")
        assert step.actions == ()

    def test_leaving_during_goodbye_keeps_the_outcome(self) -> None:
        step = paying()
        step = go(
            FIXED, step.session, PaymentDone(step.session.capture_id or "", "authorized", "1")
        )
        assert go(FIXED, step.session, HungUp()).session.outcome == "paid"

    def test_the_outcome_of_a_payment_left_behind_is_still_recorded(self) -> None:
        step = go(FIXED, paying().session, HungUp())
        assert step.session.outcome == "abandoned"
        step = go(
            FIXED, step.session, PaymentDone(step.session.capture_id or "", "authorized", "1")
        )
        assert step.session.outcome == "paid"

    def test_nothing_happens_after_the_end(self) -> None:
        step = go(FIXED, keying().session, HungUp())
        assert go(FIXED, step.session, Key("1"), Timeout(), HungUp()).session == step.session


class TestClock:
    def test_a_prompt_sets_a_deadline_after_its_length(self) -> None:
        step = greeted()
        session = domain.expect_by(FIXED, step.session, 3.0, NOW)
        assert session.deadline == NOW + timedelta(seconds=3.0 + FIXED.input_timeout + 2)

    def test_the_mark_restarts_the_clock_for_an_answer(self) -> None:
        step = confirming()
        step = go(FIXED, step.session, heard(step))
        assert step.session.deadline == NOW + timedelta(seconds=FIXED.input_timeout)

    def test_waiting_for_a_service_is_bounded(self) -> None:
        step = greeted()
        step = go(FIXED, step.session, heard(step))
        session = domain.expect_by(FIXED, step.session, None, NOW)
        assert session.deadline == NOW + timedelta(seconds=domain.SERVICE_WAIT)

    def test_a_session_survives_a_round_trip(self) -> None:
        session = domain.expect_by(FIXED, confirming().session, 2.0, NOW)
        assert Session.from_dict(session.to_dict()) == session


def test_says_are_only_standard_phrase_names() -> None:
    flow = Flow.from_dict({**FIXED.to_dict(), "prompts": {"greeting": "acme_hello"}})
    step = greeted(flow)
    assert isinstance(step.actions[0], Say)
    assert said(step)[0] == "greeting"  # the prompt library plays the tenant's choice
