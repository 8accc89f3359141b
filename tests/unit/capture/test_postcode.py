"""The billing postcode: a payment page types letters ("SW1A 1AA"), a phone keypad keys
digits (a US ZIP); one field, a rule per channel."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.capture import domain
from transact.capture.domain import Card, Policy, SessionStatus, validate_typed_postcode
from transact.contracts.capture import billing_postcode

from .cards import VISA, key_in, keyed

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TODAY = date(2026, 11, 27)
POLICY = Policy(fields=("pan", "expiry", "cvv", "postcode"))
CARD = {"pan": "4242424242424242", "expiry": "1230", "cvv": "123"}


@pytest.mark.parametrize(
    ("typed", "normalized"),
    [
        ("SW1A 1AA", "SW1A 1AA"),
        ("  sw1a   1aa ", "SW1A 1AA"),
        ("ec1a\t1bb", "EC1A 1BB"),
        ("90210", "90210"),
        ("90210-1234", "90210-1234"),
        ("K1A 0B1", "K1A 0B1"),
        ("123", "123"),
        ("1234567890", "1234567890"),
        ("12", None),
        ("12345678901", None),
        ("SW1A 1AA 12", None),
        ("<script>", None),
        ("SW1A_1AA", None),
        ("-SW1A", None),
        ("SW1A-", None),
        ("ÅB1 2CD", None),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_billing_postcode_normalizes_or_refuses(typed: str | None, normalized: str | None) -> None:
    assert billing_postcode(typed) == normalized


@given(st.text(max_size=14))
def test_a_billing_postcode_is_always_in_its_own_form(text: str) -> None:
    postcode = billing_postcode(text)
    if postcode is not None:
        assert 3 <= len(postcode) <= 10
        assert postcode == postcode.upper().strip()
        assert "  " not in postcode
        assert set(postcode) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -")
        assert billing_postcode(postcode) == postcode
        assert validate_typed_postcode(postcode) is None


def test_the_page_fills_a_uk_postcode() -> None:
    step = domain.fill(POLICY, {**CARD, "postcode": " sw1a  1aa "}, NOW, TODAY)
    assert step.session.status is SessionStatus.READY
    assert step.card.value("postcode") == "SW1A 1AA"
    assert step.session.field("postcode").digits == len("SW1A 1AA")  # a count, no more
    assert Card.from_bytes(step.card.to_bytes()) == step.card


@pytest.mark.parametrize("bad", ["<script>", "12", "12345678901", "", "SW1A_1AA"])
def test_the_page_is_refused_what_is_no_postcode_without_an_echo(bad: str) -> None:
    step = domain.fill(POLICY, {**CARD, "postcode": bad}, NOW, TODAY)
    assert step.session.status is SessionStatus.CAPTURING
    refused = step.progress[-1]
    assert (refused.field, refused.event) == ("postcode", "rejected")
    assert refused.reason == domain.TYPED_POSTCODE_REASON
    assert step.card.value("postcode") == ""


def test_the_keypad_keeps_digits_only() -> None:
    step = keyed(VISA + "1230" + "737" + "90210#", POLICY)
    assert step.session.status is SessionStatus.READY
    assert step.card.value("postcode") == "90210"
    with pytest.raises(ValueError, match="a key is one of"):
        key_in(keyed(VISA + "1230" + "737", POLICY), "S")
    assert domain.validate_postcode("SW1A 1AA") == "digits only"


def test_a_card_holds_a_typed_postcode_but_nothing_else_that_is_not_digits() -> None:
    assert Card({"postcode": "SW1A 1AA"}).value("postcode") == "SW1A 1AA"
    assert "SW1A" not in repr(Card({"postcode": "SW1A 1AA"}))
    for bad in ({"postcode": "<script>"}, {"postcode": "sw1a 1aa"}, {"cvv": "SW1"}):
        with pytest.raises(ValueError, match=r"must be 1-\d+ digits"):
            Card(bad)
