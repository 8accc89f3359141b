"""A whole card typed on the payment page obeys the keypad's rules (`domain.fill`)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from transact.capture import domain

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)
POLICY = domain.Policy()


def test_a_valid_card_is_ready_with_brand_bin_and_last4() -> None:
    step = domain.fill(
        POLICY, {"pan": "4242424242424242", "expiry": "1230", "cvv": "123"}, NOW, TODAY
    )
    assert step.session.status is domain.SessionStatus.READY
    assert (step.session.brand, step.session.bin, step.session.last4) == (
        domain.Brand.VISA,
        "424242",
        "4242",
    )
    assert [p.event for p in step.progress] == ["completed"] * 3
    assert step.card.value("cvv") == "123"


def test_the_first_field_the_rules_refuse_stops_the_fill() -> None:
    step = domain.fill(
        POLICY, {"pan": "4242424242424241", "expiry": "1230", "cvv": "1"}, NOW, TODAY
    )
    assert step.session.status is domain.SessionStatus.CAPTURING
    [refused] = step.progress
    assert (refused.field, refused.event, refused.reason) == (
        "pan",
        "rejected",
        "fails the Luhn check",
    )
    assert step.card.value("pan") == ""


def test_what_is_not_digits_is_judged_as_empty_and_never_echoed() -> None:
    step = domain.fill(POLICY, {"pan": "4242-4242", "expiry": "12/30"}, NOW, TODAY)
    [refused] = step.progress
    assert refused.reason == "digits only"
    expired = domain.fill(POLICY, {"pan": "4242424242424242", "expiry": "0120"}, NOW, TODAY)
    assert expired.progress[-1].reason == "card has expired"
    amex_cvv = domain.fill(
        POLICY, {"pan": "378282246310005", "expiry": "1230", "cvv": "123"}, NOW, TODAY
    )
    assert amex_cvv.progress[-1].reason == "amex security codes have 4 digits"
