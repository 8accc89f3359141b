"""Properties of card capture that must hold for every card, policy and sequence of keys."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from transact.capture.domain import (
    EVENTS,
    FIELD_NAMES,
    Brand,
    Card,
    FieldStatus,
    Policy,
    Progress,
    Session,
    SessionStatus,
    Step,
    brand_of,
    press,
    recapture,
    start,
    validate_cvv,
    validate_expiry,
    validate_pan,
    validate_postcode,
)
from transact.kernel.sensitive import luhn_valid

from .cards import (
    NOW,
    SPEC_LENGTHS,
    SPEC_TYPICAL,
    TODAY,
    branded_numbers,
    card_numbers,
    key_in,
    keyed,
    spec_brand,
)

ALL = frozenset(Brand)
DIGITS = "0123456789"
REASONS = {
    "digits only",
    "too short",
    "too long",
    "unknown card brand",
    "length does not match the brand",
    "fails the Luhn check",
    "use 4 digits, MMYY",
    "month must be 01-12",
    "card has expired",
    "expiry is more than 20 years ahead",
    "amex security codes have 4 digits",
    "security codes have 3 digits",
    "postcode has 3-10 digits",
} | {f"{brand.value} is not accepted" for brand in Brand}
LONG_DIGIT_RUN = re.compile(r"[0-9]{7,}")  # longer than a BIN: part of a card number

brands = st.sampled_from(list(Brand))
digit_strings = st.text(DIGITS, min_size=1, max_size=22)


# --- brands and numbers ----------------------------------------------------------------


@given(data=st.data(), brand=brands)
def test_generated_numbers_are_accepted_at_every_length_of_their_brand(
    data: st.DataObject, brand: Brand
) -> None:
    length = data.draw(st.sampled_from(SPEC_LENGTHS[brand]))
    number = data.draw(card_numbers(brand, length))
    assert brand_of(number) is brand
    assert validate_pan(number, ALL) is None
    assert validate_pan(number, frozenset({brand})) is None
    others = ALL - {brand}
    assert validate_pan(number, others) == f"{brand.value} is not accepted"


@given(data=st.data(), brand=brands)
def test_a_length_the_brand_does_not_have_is_refused(data: st.DataObject, brand: Brand) -> None:
    wrong = [n for n in range(13, 20) if n not in SPEC_LENGTHS[brand]]
    if not wrong:
        return  # Maestro takes every length we accept
    number = data.draw(card_numbers(brand, data.draw(st.sampled_from(wrong))))
    assert validate_pan(number, ALL) == "length does not match the brand"


@given(data=st.data(), brand=brands)
def test_generated_numbers_key_in_and_end_at_the_typical_length(
    data: st.DataObject, brand: Brand
) -> None:
    typical = SPEC_TYPICAL[brand]
    number = data.draw(card_numbers(brand, typical or 16))
    step = keyed(number[:-1])
    assert step.session.current == "pan"  # nothing ends it early
    assert all(p.event == "key" for p in step.progress)
    step = key_in(step, number[-1])
    if typical is None:  # Maestro waits for #
        assert [p.event for p in step.progress] == ["key"]
        step = key_in(step, "#")
    assert step.progress[-1].event == "completed"
    session = step.session
    assert session.field("pan").status is FieldStatus.VALID
    assert (session.brand, session.bin, session.last4) == (brand, number[:6], number[-4:])
    assert session.current == "expiry"
    assert step.card.value("pan") == number


@given(pair=branded_numbers(), data=st.data())
def test_any_single_digit_change_is_rejected(pair: tuple[Brand, str], data: st.DataObject) -> None:
    _, number = pair
    at = data.draw(st.integers(0, len(number) - 1))
    digit = data.draw(st.sampled_from([d for d in DIGITS if d != number[at]]))
    changed = number[:at] + digit + number[at + 1 :]
    assert not luhn_valid(changed)
    assert validate_pan(changed, ALL) is not None
    # Keyed in, it is never taken (a Luhn-valid start of it may be: the card may be
    # shorter than what the customer goes on to key).
    step = keyed(changed + "#")
    if step.session.field("pan").status is FieldStatus.VALID:
        assert step.card.value("pan") != changed
        assert len(step.card.value("pan")) < len(changed)
    else:
        assert step.session.field("pan").attempts >= 1


@given(prefix=digit_strings, more=st.text(DIGITS, max_size=20))
def test_a_brand_once_known_never_changes(prefix: str, more: str) -> None:
    brand = brand_of(prefix)
    if brand is not None:
        assert brand_of(prefix + more) is brand


@given(number=st.text(DIGITS, min_size=6, max_size=19))
def test_brand_of_a_whole_iin_is_the_tables(number: str) -> None:
    assert brand_of(number) is spec_brand(number)


@given(pair=branded_numbers(), cut=st.integers(1, 6))
def test_a_prefix_gets_no_brand_but_the_numbers_own(pair: tuple[Brand, str], cut: int) -> None:
    brand, number = pair
    assert brand_of(number[:cut]) in (None, brand)


# --- validators ---------------------------------------------------------------------------


@given(
    today=st.dates(date(2001, 1, 1), date(2190, 12, 31)),
    offset=st.integers(-40 * 12, 40 * 12),
)
def test_expiry_is_valid_from_this_month_to_twenty_years_ahead(today: date, offset: int) -> None:
    months = today.year * 12 + today.month - 1 + offset
    year, month = divmod(months, 12)
    mmyy = f"{month + 1:02d}{year % 100:02d}"
    reason = validate_expiry(mmyy, today)
    if 0 <= offset <= 240:
        assert reason is None
    elif offset < 0:
        assert reason == "card has expired"
    else:
        assert reason == "expiry is more than 20 years ahead"


@given(mmyy=st.text(DIGITS, min_size=4, max_size=4), today=st.dates())
def test_expiry_never_raises_and_checks_the_month(mmyy: str, today: date) -> None:
    reason = validate_expiry(mmyy, today)
    if not 1 <= int(mmyy[:2]) <= 12:
        assert reason == "month must be 01-12"
    else:
        assert reason in (None, "card has expired", "expiry is more than 20 years ahead")


@given(digits=st.text(DIGITS, min_size=1, max_size=6), brand=st.none() | brands)
def test_cvv_length_follows_the_brand(digits: str, brand: Brand | None) -> None:
    expected = 4 if brand is Brand.AMEX else 3
    assert (validate_cvv(digits, brand) is None) == (len(digits) == expected)


@given(text=st.text(max_size=12))
def test_postcode_is_three_to_ten_keypad_digits(text: str) -> None:
    ok = text.isascii() and text.isdigit() and 3 <= len(text) <= 10
    assert (validate_postcode(text) is None) == ok


@given(text=st.text(max_size=25), accepted=st.frozensets(brands))
def test_validators_never_raise_and_speak_our_words(text: str, accepted: frozenset[Brand]) -> None:
    for reason in (
        validate_pan(text, accepted),
        validate_expiry(text, TODAY),
        validate_cvv(text, None),
        validate_postcode(text),
    ):
        assert reason is None or reason in REASONS
    brand_of(text)


# --- round trips ------------------------------------------------------------------------


@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "pan": st.text(DIGITS, min_size=1, max_size=19),
            "expiry": st.text(DIGITS, min_size=1, max_size=4),
            "cvv": st.text(DIGITS, min_size=1, max_size=4),
            "postcode": st.text(DIGITS, min_size=1, max_size=10),
        },
    )
)
def test_card_round_trips_through_bytes(values: dict[str, str]) -> None:
    card = Card(values)
    assert Card.from_bytes(card.to_bytes()) == card
    for value in values.values():
        if len(value) >= 3:
            assert value not in repr(card)


# --- random sessions ----------------------------------------------------------------------


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    others = draw(st.permutations(["expiry", "cvv", "postcode"]))
    count = draw(st.integers(0, 3))
    accepted = draw(st.frozensets(brands, min_size=1))
    return Policy(
        fields=("pan", *others[:count]),
        accepted_brands=accepted if draw(st.booleans()) else ALL,
        max_attempts=draw(st.integers(1, 4)),
        ttl=timedelta(seconds=draw(st.integers(1, 3600))),
    )


@dataclass(frozen=True)
class Keys:
    keys: str


@dataclass(frozen=True)
class Recapture:
    field: str


def expiries(today: date) -> st.SearchStrategy[str]:
    def mmyy(offset: int) -> str:
        year, month = divmod(today.year * 12 + today.month - 1 + offset, 12)
        return f"{month + 1:02d}{year % 100:02d}"

    return st.integers(-3, 250).map(mmyy)


def actions(today: date) -> st.SearchStrategy[Keys | Recapture]:
    single = st.sampled_from("0123456789*#")
    chunks = st.one_of(
        branded_numbers().map(lambda pair: pair[1]),
        branded_numbers().map(lambda pair: pair[1] + "#"),
        expiries(today),
        st.text(DIGITS, min_size=3, max_size=4),
        st.text(DIGITS, min_size=1, max_size=11).map(lambda s: s + "#"),
        st.text("0123456789*#", min_size=1, max_size=25),
    )
    return st.one_of(
        single.map(Keys),
        chunks.map(Keys),
        st.sampled_from([*FIELD_NAMES, "bogus"]).map(Recapture),
    )


def check(before: Session, step: Step, today: date, keyed_values: set[str]) -> None:
    session, card = step.session, step.card
    policy = session.policy
    fields = {f.name: f for f in session.fields}
    assert tuple(fields) == policy.fields

    # Never digits where they do not belong.
    dumped = json.dumps(session.to_dict())
    shown = [dumped, repr(session), *(repr(p) for p in step.progress)]
    for text in shown:
        assert not LONG_DIGIT_RUN.search(text), text
        for value in keyed_values:
            assert value not in text
    assert not re.search(r"[0-9]{3}", repr(card))
    assert not re.search(r"[0-9]{3}", str(card))
    assert Session.from_dict(json.loads(dumped)) == session

    # Progress speaks only of this capture's fields, in the published words.
    for progress in step.progress:
        assert isinstance(progress, Progress)
        assert progress.event in EVENTS
        assert progress.field in policy.fields
        assert progress.reason is None or progress.reason in REASONS
        assert progress.last4 in (None, session.last4)

    # One field is being keyed while capturing; none once ready or failed.
    keying = [f.name for f in session.fields if f.status is FieldStatus.KEYING]
    failed = [f.name for f in session.fields if f.status is FieldStatus.FAILED]
    if session.status is SessionStatus.CAPTURING:
        assert keying == [session.current]
        assert not failed
    elif session.status is SessionStatus.READY:
        assert session.current is None
        assert all(f.status is FieldStatus.VALID for f in session.fields)
    else:
        assert session.current is None
        assert not keying
        assert len(failed) == 1
    if before.status is SessionStatus.FAILED:
        assert session == before

    # Counts are the card's; attempts stay within the policy and only grow.
    assert set(card.values) <= set(policy.fields)
    for name, state in fields.items():
        assert state.digits == len(card.value(name))
        assert 0 <= state.attempts <= policy.max_attempts
        assert state.attempts >= before.field(name).attempts
        assert state.reason is None or state.reason in REASONS
        if state.status is FieldStatus.PENDING:
            assert state.digits == 0
        if state.status is FieldStatus.FAILED:
            assert state.attempts == policy.max_attempts
        if state.attempts == policy.max_attempts:
            assert state.status is FieldStatus.FAILED

    # What is valid is valid, and the card's summary is the valid pan's.
    pan = fields["pan"]
    if pan.status is FieldStatus.VALID:
        number = card.value("pan")
        assert validate_pan(number, policy.accepted_brands) is None
        assert (session.brand, session.bin, session.last4) == (
            brand_of(number),
            number[:6],
            number[-4:],
        )
        if "cvv" in fields and fields["cvv"].status is FieldStatus.VALID:
            assert validate_cvv(card.value("cvv"), session.brand) is None
    else:
        assert (session.brand, session.bin, session.last4) == (None, None, None)
    if "expiry" in fields and fields["expiry"].status is FieldStatus.VALID:
        assert validate_expiry(card.value("expiry"), today) is None
    if "postcode" in fields and fields["postcode"].status is FieldStatus.VALID:
        assert validate_postcode(card.value("postcode")) is None


@settings(max_examples=150)
@given(data=st.data(), policy=policies(), today=st.dates(date(2020, 1, 1), date(2090, 12, 31)))
def test_random_sessions_keep_every_rule(data: st.DataObject, policy: Policy, today: date) -> None:
    step = start(policy, NOW)
    keyed_values: set[str] = set()
    for action in data.draw(st.lists(actions(today), max_size=30)):
        session, card = step.session, step.card
        if isinstance(action, Recapture):
            refused = action.field not in policy.fields or session.status is SessionStatus.FAILED
            try:
                after = recapture(session, card, action.field)
            except ValueError:
                assert refused
                continue
            assert not refused
            check(session, after, today, keyed_values)
            step = after
            continue
        for key in action.keys:
            session, card = step.session, step.card
            step = press(session, card, key, today)
            value = card.value(session.current) if session.current else ""
            if session.current and key.isdigit():
                value += key
            if len(value) >= 7:
                keyed_values.add(value)
            check(session, step, today, keyed_values)
