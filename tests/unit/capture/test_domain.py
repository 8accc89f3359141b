"""Card capture's pure rules: brands, validators, policy, session, card and the keypad."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import pickle
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from transact.capture import domain
from transact.capture.domain import (
    EVENTS,
    FIELD_NAMES,
    Brand,
    Card,
    FieldState,
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
    AMEX,
    MAESTRO,
    NOW,
    SPEC_LENGTHS,
    SPEC_TYPICAL,
    TEST_CARDS,
    TODAY,
    VISA,
    begin,
    events,
    key_in,
    keyed,
    statuses,
    with_check_digit,
)

ALL = frozenset(Brand)
EXPIRY = "1230"  # December 2030: valid on TODAY (November 2026)
CVV = "737"
READY_KEYS = VISA + EXPIRY + CVV


def ready() -> Step:
    step = keyed(READY_KEYS)
    assert step.session.status is SessionStatus.READY
    return step


# --- brands ------------------------------------------------------------------------


@pytest.mark.parametrize(("number", "brand"), TEST_CARDS.items())
def test_well_known_test_cards(number: str, brand: Brand) -> None:
    assert brand_of(number) is brand
    assert validate_pan(number, ALL) is None
    assert len(number) in SPEC_LENGTHS[brand]


@pytest.mark.parametrize(
    ("prefix", "brand"),
    [
        ("4", Brand.VISA),
        ("49", Brand.VISA),
        ("51", Brand.MASTERCARD),
        ("55", Brand.MASTERCARD),
        ("56", None),
        ("50", None),
        ("2220", None),
        ("2221", Brand.MASTERCARD),
        ("2720", Brand.MASTERCARD),
        ("2721", None),
        ("23", Brand.MASTERCARD),
        ("26", Brand.MASTERCARD),
        ("34", Brand.AMEX),
        ("37", Brand.AMEX),
        ("33", None),
        ("35", None),  # JCB's 3528-3589 does not fill 35 yet
        ("352", None),
        ("3527", None),
        ("3528", Brand.JCB),
        ("353", Brand.JCB),
        ("3589", Brand.JCB),
        ("3590", None),
        ("300", Brand.DINERS),
        ("305", Brand.DINERS),
        ("306", None),
        ("3094", None),
        ("3095", Brand.DINERS),
        ("3096", None),
        ("36", Brand.DINERS),
        ("38", Brand.DINERS),
        ("39", Brand.DINERS),
        ("6011", Brand.DISCOVER),
        ("6010", None),
        ("6012", None),
        ("643", None),
        ("644", Brand.DISCOVER),
        ("649", Brand.DISCOVER),
        ("65", Brand.DISCOVER),
        ("62", None),  # UnionPay or Discover's co-brand range
        ("621", Brand.UNIONPAY),
        ("622", None),
        ("6221", None),
        ("622125", Brand.UNIONPAY),
        ("622126", Brand.DISCOVER),
        ("6222", Brand.DISCOVER),
        ("6229", None),
        ("622925", Brand.DISCOVER),
        ("622926", Brand.UNIONPAY),
        ("623", Brand.UNIONPAY),
        ("81", Brand.UNIONPAY),
        ("80", None),
        ("82", None),
        ("5018", Brand.MAESTRO),
        ("5017", None),
        ("5020", Brand.MAESTRO),
        ("5038", Brand.MAESTRO),
        ("5893", Brand.MAESTRO),
        ("6304", Brand.MAESTRO),
        ("6759", Brand.MAESTRO),
        ("6760", None),
        ("6761", Brand.MAESTRO),
        ("6763", Brand.MAESTRO),
        ("6764", None),
    ],
)
def test_brand_of_a_prefix(prefix: str, brand: Brand | None) -> None:
    assert brand_of(prefix) is brand
    # A longer number keeps the brand its prefix already had.
    if brand is not None:
        assert brand_of(prefix + "0" * (19 - len(prefix))) is brand
        assert brand_of(prefix + "9" * (19 - len(prefix))) is brand


@pytest.mark.parametrize("text", ["", "1", "2", "3", "5", "6", "7", "8", "9", "0", "00000"])
def test_brand_is_unknown_until_the_prefix_decides(text: str) -> None:
    assert brand_of(text) is None


@pytest.mark.parametrize("text", ["4x", " 4", "4-111", "\u0664", "\uff14"])
def test_brand_of_non_digits_is_none(text: str) -> None:
    assert brand_of(text) is None


def test_brand_ranges_never_overlap() -> None:
    intervals = sorted((lo, hi, brand) for brand, lo, hi in domain._INTERVALS)
    for (_, hi, first), (lo, _, second) in itertools.pairwise(intervals):
        assert hi < lo, (first, second)


def test_brand_tables_cover_every_brand() -> None:
    assert set(domain.LENGTHS) == set(Brand) == set(domain.TYPICAL_LENGTH)
    assert dict(domain.LENGTHS) == SPEC_LENGTHS
    assert dict(domain.TYPICAL_LENGTH) == SPEC_TYPICAL


# --- validate_pan ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "reason"),
    [
        ("4111 1111 1111 1111", "digits only"),
        ("4111-1111-1111-1111", "digits only"),
        ("", "digits only"),
        ("411111111111", "too short"),
        ("4" * 12, "too short"),
        (with_check_digit("4" * 19), "too long"),
        (with_check_digit("1" * 15), "unknown card brand"),
        (with_check_digit("9" * 15), "unknown card brand"),
        (with_check_digit("4" * 13), "length does not match the brand"),  # Visa of 14
        (with_check_digit("5" * 16), "length does not match the brand"),  # Mastercard of 17
        (with_check_digit("37" + "0" * 13), "length does not match the brand"),  # Amex of 16
        (with_check_digit("36" + "0" * 10), "length does not match the brand"),  # Diners of 13
        ("4111111111111112", "fails the Luhn check"),
        ("378282246310006", "fails the Luhn check"),
    ],
)
def test_pan_reasons(digits: str, reason: str) -> None:
    assert validate_pan(digits, ALL) == reason


def test_pan_of_a_brand_not_accepted() -> None:
    assert validate_pan(VISA, frozenset({Brand.MASTERCARD})) == "visa is not accepted"
    assert validate_pan(AMEX, frozenset({Brand.VISA})) == "amex is not accepted"
    assert validate_pan(VISA, frozenset({Brand.VISA})) is None
    # A number that is wrong anyway says what is wrong with it first.
    assert validate_pan("4111111111111112", frozenset({Brand.AMEX})) == "fails the Luhn check"


@pytest.mark.parametrize(
    "number",
    [
        "4222222222222",  # Visa, 13 digits
        "4111111111111111110",  # Visa, 19 digits
        "6011000990139424",
        "30569309025904",
        "3530111333300000",
        "5019717010103742",  # Dankort-like 5019: not in the table
    ],
)
def test_more_numbers(number: str) -> None:
    brand = brand_of(number)
    if brand is None:
        assert validate_pan(number, ALL) == "unknown card brand"
    else:
        assert validate_pan(number, ALL) is None


# --- validate_expiry -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("mmyy", "reason"),
    [
        ("1126", None),  # this month
        ("1026", "card has expired"),  # last month
        ("1226", None),
        ("0127", None),
        ("1225", "card has expired"),
        ("0100", "card has expired"),
        ("1146", None),  # 20 years ahead, same month
        ("1246", "expiry is more than 20 years ahead"),
        ("1147", "expiry is more than 20 years ahead"),  # 21 years ahead
        ("0199", "card has expired"),  # 1999, not 2099
        ("1326", "month must be 01-12"),
        ("0026", "month must be 01-12"),
        ("9926", "month must be 01-12"),
        ("126", "use 4 digits, MMYY"),
        ("12026", "use 4 digits, MMYY"),
        ("", "use 4 digits, MMYY"),
        ("12/6", "use 4 digits, MMYY"),
        ("1a26", "use 4 digits, MMYY"),
    ],
)
def test_expiry(mmyy: str, reason: str | None) -> None:
    assert validate_expiry(mmyy, TODAY) == reason


def test_expiry_is_judged_against_the_date_given() -> None:
    assert validate_expiry("1126", date(2026, 11, 30)) is None
    assert validate_expiry("1126", date(2026, 12, 1)) == "card has expired"
    assert validate_expiry("0130", date(2029, 12, 31)) is None
    assert validate_expiry("1249", date(2029, 12, 31)) is None
    assert validate_expiry("0150", date(2029, 12, 31)) == "expiry is more than 20 years ahead"


def test_expiry_across_a_century() -> None:
    today = date(2095, 6, 15)
    assert validate_expiry("0110", today) is None  # 2110
    assert validate_expiry("0615", today) is None  # 2115: 20 years ahead
    assert validate_expiry("0715", today) == "expiry is more than 20 years ahead"
    assert validate_expiry("0595", today) == "card has expired"
    assert validate_expiry("0695", today) is None


# --- validate_cvv and validate_postcode ---------------------------------------------


@pytest.mark.parametrize(
    ("digits", "brand", "reason"),
    [
        ("123", Brand.VISA, None),
        ("1234", Brand.VISA, "security codes have 3 digits"),
        ("12", Brand.MASTERCARD, "security codes have 3 digits"),
        ("1234", Brand.AMEX, None),
        ("123", Brand.AMEX, "amex security codes have 4 digits"),
        ("12345", Brand.AMEX, "amex security codes have 4 digits"),
        ("000", Brand.DISCOVER, None),
        ("123", Brand.DINERS, None),
        ("123", Brand.JCB, None),
        ("123", Brand.UNIONPAY, None),
        ("123", Brand.MAESTRO, None),
        ("123", None, None),
        ("1234", None, "security codes have 3 digits"),
        ("12a", Brand.VISA, "digits only"),
        ("", Brand.VISA, "digits only"),
    ],
)
def test_cvv(digits: str, brand: Brand | None, reason: str | None) -> None:
    assert validate_cvv(digits, brand) == reason


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("123", None),
        ("90210", None),
        ("1234567890", None),
        ("12", "postcode has 3-10 digits"),
        ("12345678901", "postcode has 3-10 digits"),
        ("SW1A1AA", "digits only"),
        ("902 10", "digits only"),
        ("", "digits only"),
    ],
)
def test_postcode(text: str, reason: str | None) -> None:
    assert validate_postcode(text) == reason


# --- policy -------------------------------------------------------------------------


def test_policy_defaults() -> None:
    policy = Policy()
    assert policy.fields == ("pan", "expiry", "cvv")
    assert policy.accepted_brands == frozenset(Brand)
    assert policy.max_attempts == 3
    assert policy.ttl == timedelta(minutes=10)


def test_policy_normalizes_its_inputs() -> None:
    policy = Policy(
        fields=["pan", "expiry", "cvv", "postcode"],  # type: ignore[arg-type]
        accepted_brands=frozenset({"visa", "amex"}),  # type: ignore[arg-type]
    )
    assert policy.fields == ("pan", "expiry", "cvv", "postcode")
    assert policy.accepted_brands == frozenset({Brand.VISA, Brand.AMEX})
    assert all(isinstance(b, Brand) for b in policy.accepted_brands)
    assert Policy(fields=("pan",)).fields == ("pan",)
    assert Policy(fields=("pan", "cvv", "expiry")).fields == ("pan", "cvv", "expiry")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fields": ()}, "at least one field"),
        ({"fields": ("pan", "name")}, "unknown capture fields"),
        ({"fields": ("pan", "cvv", "cvv")}, "must not repeat"),
        ({"fields": ("expiry", "pan")}, "first capture field must be 'pan'"),
        ({"fields": ("cvv",)}, "first capture field must be 'pan'"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": -1}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"max_attempts": 2.5}, "max_attempts"),
        ({"ttl": timedelta(0)}, "ttl must be a positive"),
        ({"ttl": timedelta(seconds=-1)}, "ttl must be a positive"),
        ({"ttl": 600}, "ttl must be a positive"),
        ({"accepted_brands": frozenset()}, "at least one brand"),
        ({"accepted_brands": frozenset({"visa", "amexx"})}, "accepted brands must be among"),
    ],
)
def test_policy_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Policy(**kwargs)  # type: ignore[arg-type]


# --- start and the session ---------------------------------------------------------


def test_start() -> None:
    step = start(Policy(), NOW)
    session = step.session
    assert statuses(session) == {"pan": "keying", "expiry": "pending", "cvv": "pending"}
    assert session.current == "pan"
    assert session.status is SessionStatus.CAPTURING
    assert session.started_at == NOW
    assert (session.brand, session.bin, session.last4) == (None, None, None)
    assert all(f.digits == 0 and f.attempts == 0 and f.reason is None for f in session.fields)
    assert step.card == Card({})
    assert step.progress == ()


def test_field_lookup() -> None:
    session = begin().session
    assert session.field("expiry") == FieldState("expiry", FieldStatus.PENDING, 0, 0, None)
    with pytest.raises(KeyError):
        session.field("postcode")
    with pytest.raises(KeyError):
        session.field("nope")


def test_expiry_of_a_session() -> None:
    session = start(Policy(ttl=timedelta(minutes=5)), NOW).session
    assert session.expires_at() == NOW + timedelta(minutes=5)
    assert not session.expired(NOW)
    assert not session.expired(NOW + timedelta(minutes=5) - timedelta(microseconds=1))
    assert session.expired(NOW + timedelta(minutes=5))
    assert session.expired(NOW + timedelta(days=1))


def test_session_round_trips_through_json() -> None:
    policy = Policy(
        fields=("pan", "expiry", "cvv", "postcode"),
        accepted_brands=frozenset({Brand.VISA, Brand.JCB}),
        max_attempts=5,
        ttl=timedelta(minutes=7, microseconds=250),
    )
    for keys in ["", "4", VISA, VISA + "12", VISA + "12#", VISA + EXPIRY + CVV + "90210#"]:
        session = keyed(keys, policy).session
        data = json.loads(json.dumps(session.to_dict()))
        assert Session.from_dict(data) == session
    assert data["status"] == "ready"
    assert data["brand"] == "visa"
    assert data["bin"] == "411111"
    assert data["last4"] == "1111"
    assert data["policy"]["accepted_brands"] == ["jcb", "visa"]
    assert data["started_at"] == NOW.isoformat()
    assert VISA not in json.dumps(data)


def test_a_naive_start_time_round_trips_too() -> None:
    session = start(Policy(), datetime(2026, 1, 2, 3, 4, 5)).session
    assert Session.from_dict(json.loads(json.dumps(session.to_dict()))) == session


def _session_data() -> dict[str, object]:
    return ready().session.to_dict()


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.pop("status"),
        lambda d: d.update(status="done"),
        lambda d: d.update(brand="amexx"),
        lambda d: d.update(bin=VISA),  # a whole card number where the BIN goes
        lambda d: d.update(bin="4111"),
        lambda d: d.update(last4=VISA),
        lambda d: d.update(last4="11a1"),
        lambda d: d.update(started_at="yesterday"),
        lambda d: d.update(started_at=12),
        lambda d: d.update(fields="pan"),
        lambda d: d.update(fields=[1, 2, 3]),
        lambda d: d["fields"].pop(),
        lambda d: d["fields"].reverse(),
        lambda d: d["fields"][0].update(status="unheard-of"),
        lambda d: d["fields"][0].update(digits=-1),
        lambda d: d["fields"][0].update(digits=20),
        lambda d: d["fields"][0].update(attempts="2"),
        lambda d: d["fields"][0].pop("reason"),
        lambda d: d["fields"][0].update(name="email"),
        lambda d: d["policy"].update(fields=["cvv", "pan"]),
        lambda d: d["policy"].update(max_attempts=0),
        lambda d: d["policy"].update(ttl_seconds="600"),
        lambda d: d["policy"].update(accepted_brands="visa"),
        lambda d: d["policy"].pop("ttl_seconds"),
        lambda d: d.update(policy=None),
        lambda d: d.update(current="pan"),  # ready, yet keying a field
    ],
)
def test_session_from_bad_data_is_a_value_error(spoil: object) -> None:
    data = _session_data()
    spoil(data)  # type: ignore[operator]
    with pytest.raises(ValueError, match=r"."):
        Session.from_dict(data)


def test_session_from_something_not_a_mapping() -> None:
    with pytest.raises(ValueError, match="malformed"):
        Session.from_dict([])  # type: ignore[arg-type]


def test_session_refuses_inconsistent_states() -> None:
    session = begin().session
    pan, expiry, cvv = session.fields
    keying = FieldStatus.KEYING
    with pytest.raises(ValueError, match="exactly its current field"):
        dataclasses.replace(session, current="expiry")
    with pytest.raises(ValueError, match="exactly its current field"):
        dataclasses.replace(session, fields=(pan, dataclasses.replace(expiry, status=keying), cvv))
    with pytest.raises(ValueError, match="no current field"):
        dataclasses.replace(session, status=SessionStatus.READY)
    with pytest.raises(ValueError, match="one field has failed"):
        dataclasses.replace(
            session,
            fields=(pan, expiry, dataclasses.replace(cvv, status=FieldStatus.FAILED)),
        )
    with pytest.raises(ValueError, match="policy's fields"):
        dataclasses.replace(session, fields=(pan, expiry))


# --- card ---------------------------------------------------------------------------


def test_card_never_shows_its_digits() -> None:
    card = Card({"pan": VISA, "expiry": EXPIRY, "cvv": CVV})
    for shown in (repr(card), str(card), f"{card}", f"{card!r}", repr([card]), repr(ready())):
        assert VISA not in shown
        assert not re.search(r"[0-9]{3}", shown.split("Card(")[-1].split(")")[0])
    assert repr(card) == "Card(pan=<16 digits>, expiry=<4 digits>, cvv=<3 digits>)"
    assert repr(Card()) == "Card()"


def test_card_values() -> None:
    card = Card({"pan": VISA, "cvv": CVV})
    assert card.value("pan") == VISA
    assert card.value("cvv") == CVV
    assert card.value("expiry") == ""
    with pytest.raises(KeyError):
        card.value("name")


def test_card_is_immutable_and_owns_its_values() -> None:
    given = {"pan": VISA}
    card = Card(given)
    given["pan"] = "4"
    assert card.value("pan") == VISA
    with pytest.raises(TypeError):
        card.values["pan"] = "5"  # type: ignore[index]
    with pytest.raises(AttributeError):
        card.values = {}  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(card)
    assert card == Card({"pan": VISA})
    assert card != Card({"pan": AMEX})


def test_card_refuses_pickling() -> None:
    card = Card({"pan": VISA})
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(card, protocol=protocol)
    with pytest.raises(TypeError):
        copy.deepcopy(card)


@pytest.mark.parametrize(
    "values",
    [
        {"name": "123"},
        {VISA: "1"},
        {"pan": "4111 1111"},
        {"pan": ""},
        {"pan": 4111111111111111},
        {"pan": "4" * 20},
        {"expiry": "12300"},
        {"cvv": "73737"},
        {"postcode": "1" * 11},
    ],
)
def test_card_refuses_what_is_not_keypad_digits(values: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"unknown capture field|must be 1-\d+ digits") as raised:
        Card(values)  # type: ignore[arg-type]
    for value in (*values, *values.values()):
        if isinstance(value, str) and value.isdigit() and len(value) > 2:
            assert value not in str(raised.value)


def test_card_round_trips_through_bytes() -> None:
    card = Card({"pan": VISA, "expiry": EXPIRY, "cvv": CVV, "postcode": "90210"})
    raw = card.to_bytes()
    assert json.loads(raw) == dict(card.values)
    assert Card.from_bytes(raw) == card
    assert Card.from_bytes(Card().to_bytes()) == Card()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json " + VISA.encode(),
        b'["' + VISA.encode() + b'"]',
        b'{"pan": ' + VISA.encode() + b"}",
        b'{"pan": "' + VISA.encode() + b'", "name": "x"}',
        b'{"' + VISA.encode() + b'": "1"}',
        b'{"pan": "' + VISA.encode() + b'x"}',
        b"\xff\xfe" + VISA.encode(),
        b"null",
    ],
)
def test_card_from_bad_bytes_is_a_value_error_that_shows_nothing(raw: bytes) -> None:
    with pytest.raises(
        ValueError, match=r"not a JSON object|unknown capture field|digits"
    ) as raised:
        Card.from_bytes(raw)
    error = raised.value
    assert VISA not in str(error)
    assert error.__context__ is None
    assert error.__cause__ is None


# --- progress -------------------------------------------------------------------------


def test_progress_refuses_unknown_events_and_digits_for_last4() -> None:
    fields = {"digits": 1, "complete": False, "valid": None, "reason": None, "brand": None}
    Progress(field="pan", last4=None, event="key", **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown progress event"):
        Progress(field="pan", last4=None, event="typed", **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown capture field"):
        Progress(field="name", last4=None, event="key", **fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="last4"):
        Progress(field="pan", last4=VISA, event="key", **fields)  # type: ignore[arg-type]


def test_progress_events_are_the_published_vocabulary() -> None:
    assert {
        "key",
        "cleared",
        "rejected",
        "completed",
        "failed",
        "recapture",
        "ignored",
    } == EVENTS
    assert FIELD_NAMES == ("pan", "expiry", "cvv", "postcode")


# --- press: the happy path -------------------------------------------------------------


def test_a_whole_capture() -> None:
    step = begin()
    for i, digit in enumerate(VISA[:-1], start=1):
        step = press(step.session, step.card, digit, TODAY)
        (progress,) = step.progress
        assert progress == Progress(
            field="pan",
            digits=i,
            complete=False,
            valid=None,
            reason=None,
            brand=Brand.VISA,
            last4=None,
            event="key",
        )
        assert step.session.field("pan").digits == i
        assert step.card.value("pan") == VISA[:i]

    step = press(step.session, step.card, VISA[-1], TODAY)
    assert events(step) == ["key", "completed"]
    assert step.progress[1] == Progress(
        field="pan",
        digits=16,
        complete=True,
        valid=True,
        reason=None,
        brand=Brand.VISA,
        last4="1111",
        event="completed",
    )
    session = step.session
    assert (session.brand, session.bin, session.last4) == (Brand.VISA, "411111", "1111")
    assert statuses(session) == {"pan": "valid", "expiry": "keying", "cvv": "pending"}
    assert session.current == "expiry"

    step = key_in(step, EXPIRY)
    assert events(step) == ["key"] * 4 + ["completed"]
    assert [p.digits for p in step.progress] == [1, 2, 3, 4, 4]
    assert all(p.field == "expiry" and p.brand is Brand.VISA for p in step.progress)
    assert all(p.last4 == "1111" for p in step.progress)
    assert step.session.current == "cvv"

    step = key_in(step, CVV)
    assert events(step) == ["key"] * 3 + ["completed"]
    session = step.session
    assert session.status is SessionStatus.READY
    assert session.current is None
    assert statuses(session) == {"pan": "valid", "expiry": "valid", "cvv": "valid"}
    assert [f.digits for f in session.fields] == [16, 4, 3]
    assert step.card == Card({"pan": VISA, "expiry": EXPIRY, "cvv": CVV})


def test_the_brand_shows_once_the_prefix_decides_it() -> None:
    step = keyed("3")
    assert step.progress[0].brand is None
    step = key_in(step, "7")
    assert step.progress[0].brand is Brand.AMEX
    assert step.session.brand is None  # the session's brand waits for a valid pan


@pytest.mark.parametrize(("number", "brand"), TEST_CARDS.items())
def test_each_test_card_keys_to_a_valid_pan(number: str, brand: Brand) -> None:
    step = keyed(number)
    typical = SPEC_TYPICAL[brand]
    if typical != len(number):  # Maestro, and a Diners card longer than 14
        assert step.session.current == "pan"
        assert events(step)[-1] == "key"
        step = key_in(step, "#")
    assert events(step)[-1] == "completed"
    assert step.session.field("pan").status is FieldStatus.VALID
    assert step.session.brand is brand
    assert step.session.last4 == number[-4:]
    assert step.session.bin == number[:6]


def test_amex_takes_a_four_digit_code() -> None:
    step = keyed(AMEX + EXPIRY + "123")
    assert step.session.current == "cvv"
    assert step.session.field("cvv").digits == 3
    step = key_in(step, "4")
    assert step.session.status is SessionStatus.READY
    assert step.card.value("cvv") == "1234"


def test_amex_with_three_digits_and_hash_is_rejected() -> None:
    step = keyed(AMEX + EXPIRY + "123#")
    assert events(step)[-1] == "rejected"
    assert step.progress[-1].reason == "amex security codes have 4 digits"
    assert step.session.field("cvv").attempts == 1


def test_a_pan_with_hash_before_its_typical_length() -> None:
    step = keyed("4222222222222#")  # a 13-digit Visa
    assert events(step)[-1] == "completed"
    assert step.session.last4 == "2222"


def test_hash_completes_fields_that_do_not_end_on_their_own() -> None:
    policy = Policy(fields=("pan", "expiry", "cvv", "postcode"))
    step = keyed(READY_KEYS + "90210", policy)
    assert step.session.current == "postcode"
    step = key_in(step, "#")
    assert step.session.status is SessionStatus.READY
    assert step.progress[-1].event == "completed"


def test_a_postcode_ends_on_its_own_at_ten_digits() -> None:
    policy = Policy(fields=("pan", "expiry", "cvv", "postcode"))
    step = keyed(READY_KEYS + "123456789", policy)
    assert step.session.current == "postcode"
    step = key_in(step, "0")
    assert step.session.status is SessionStatus.READY
    assert step.card.value("postcode") == "1234567890"


def test_a_short_postcode_is_rejected() -> None:
    policy = Policy(fields=("pan", "postcode"))
    step = keyed(VISA + "12#", policy)
    assert step.progress[-1].reason == "postcode has 3-10 digits"


def test_a_policy_of_pan_alone() -> None:
    step = keyed(VISA, Policy(fields=("pan",)))
    assert step.session.status is SessionStatus.READY


def test_a_policy_that_asks_the_code_before_the_expiry() -> None:
    step = keyed(AMEX + "1234" + EXPIRY, Policy(fields=("pan", "cvv", "expiry")))
    assert step.session.status is SessionStatus.READY
    assert step.card.value("cvv") == "1234"
    assert step.card.value("expiry") == EXPIRY


# --- press: auto-completion of the pan ------------------------------------------------


def test_a_visa_failing_luhn_at_16_keeps_keying() -> None:
    wrong = "4111111111111112"
    step = keyed(wrong)
    assert step.session.current == "pan"
    assert events(step)[-1] == "key"
    step = key_in(step, "0")
    assert step.session.field("pan").digits == 17
    step = key_in(step, "#")
    assert step.progress[-1].event == "rejected"


def test_a_19_digit_visa_completes_on_its_own() -> None:
    number = with_check_digit("412345678901234567")
    assert len(number) == 19
    assert not luhn_valid(number[:16])
    step = keyed(number)
    assert events(step)[-1] == "completed"
    assert step.session.last4 == number[-4:]


def test_nineteen_digits_always_end_the_pan() -> None:
    step = keyed("1" * 19)  # unknown brand: nothing ends it before 19
    assert events(step)[-2:] == ["key", "rejected"]
    assert step.progress[-1].reason == "unknown card brand"
    step = keyed(MAESTRO + "123")  # Maestro of 19, Luhn-invalid
    assert events(step)[-1] == "rejected"
    number = with_check_digit(MAESTRO + "12")
    step = keyed(number)
    assert events(step)[-1] == "completed"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("5555555555554445", "fails the Luhn check"),  # Mastercard: 16 is also its longest
        ("378282246310006", "fails the Luhn check"),  # Amex: 15 is also its longest
    ],
)
def test_an_invalid_pan_at_its_brands_longest_is_rejected_at_once(number: str, reason: str) -> None:
    step = keyed(number)
    assert events(step)[-2:] == ["key", "rejected"]
    assert step.progress[-1].reason == reason
    assert step.session.field("pan").digits == 0
    assert step.card.value("pan") == ""


def test_a_brand_not_accepted_is_rejected_at_its_typical_length() -> None:
    step = keyed(VISA, Policy(accepted_brands=frozenset({Brand.MASTERCARD})))
    assert events(step)[-1] == "rejected"
    assert step.progress[-1].reason == "visa is not accepted"


def test_maestro_never_ends_on_its_own_before_19() -> None:
    step = keyed(MAESTRO)
    assert step.session.current == "pan"
    step = key_in(step, "#")
    assert step.session.brand is Brand.MAESTRO


def test_a_16_digit_diners_waits_for_hash() -> None:
    step = keyed("3056930009020004")
    assert step.session.current == "pan"
    assert key_in(step, "#").session.brand is Brand.DINERS


def test_an_unknown_brand_waits_for_hash() -> None:
    number = with_check_digit("1" * 15)
    step = keyed(number)
    assert step.session.current == "pan"
    step = key_in(step, "#")
    assert step.progress[-1].reason == "unknown card brand"


def test_last4_appears_only_with_a_valid_pan() -> None:
    step = keyed(VISA[:-1])
    assert all(p.last4 is None for p in step.progress)
    step = key_in(step, VISA[-1])
    assert [p.last4 for p in step.progress] == [None, "1111"]


# --- press: expiry and cvv --------------------------------------------------------------


def test_an_expired_card_is_rejected_on_the_fourth_digit() -> None:
    step = keyed(VISA + "102")
    assert step.session.current == "expiry"
    step = key_in(step, "6")
    assert events(step) == ["key", "rejected"]
    assert step.progress[-1].reason == "card has expired"
    assert step.session.field("expiry").attempts == 1


def test_expiry_uses_the_date_given() -> None:
    assert keyed(VISA + "1126", today=date(2026, 11, 1)).session.current == "cvv"
    step = keyed(VISA + "1126", today=date(2026, 12, 1))
    assert step.progress[-1].reason == "card has expired"


def test_a_short_expiry_with_hash() -> None:
    step = keyed(VISA + "123#")
    assert step.progress[-1].reason == "use 4 digits, MMYY"


# --- press: *, # and rejection ------------------------------------------------------------


def test_star_clears_the_current_field() -> None:
    step = keyed("41111")
    step = key_in(step, "*")
    assert events(step) == ["cleared"]
    assert step.progress[0].digits == 0
    assert step.session.field("pan") == FieldState("pan", FieldStatus.KEYING, 0, 0, None)
    assert step.card == Card()
    step = key_in(step, VISA)
    assert step.session.current == "expiry"


def test_star_on_an_empty_field_is_a_harmless_clear() -> None:
    step = keyed("*")
    assert events(step) == ["cleared"]
    assert step.session == begin().session


def test_star_keeps_attempts_and_forgets_the_reason() -> None:
    step = keyed("4111#")
    assert step.session.field("pan").reason == "too short"
    step = key_in(step, "*")
    assert step.session.field("pan") == FieldState("pan", FieldStatus.KEYING, 0, 1, None)


def test_hash_on_an_empty_field_is_ignored() -> None:
    start_step = begin()
    step = key_in(start_step, "#")
    assert events(step) == ["ignored"]
    assert step.session == start_step.session
    assert step.card == start_step.card
    assert step.progress[0].field == "pan"


def test_a_rejection_clears_counts_and_keeps_the_field() -> None:
    step = keyed("4111#")
    assert events(step) == ["key"] * 4 + ["rejected"]
    rejected = step.progress[-1]
    assert rejected == Progress(
        field="pan",
        digits=0,
        complete=False,
        valid=False,
        reason="too short",
        brand=None,
        last4=None,
        event="rejected",
    )
    assert step.session.field("pan") == FieldState("pan", FieldStatus.KEYING, 0, 1, "too short")
    assert step.session.current == "pan"
    assert step.card == Card()


def test_the_reason_stays_until_the_next_key() -> None:
    step = keyed("4111#")
    ignored = key_in(step, "#")  # not a key that changes anything
    assert ignored.session.field("pan").reason == "too short"
    assert ignored.progress[0].reason == "too short"
    step = key_in(step, "4")
    assert step.session.field("pan") == FieldState("pan", FieldStatus.KEYING, 1, 1, None)
    assert step.progress[0].reason is None
    assert step.progress[0].valid is None


def test_max_attempts_rejections_fail_the_session() -> None:
    step = keyed("4111#4111#")
    assert step.session.field("pan").attempts == 2
    assert step.session.status is SessionStatus.CAPTURING
    step = key_in(step, "4111#")
    assert events(step)[-1] == "failed"
    failed = step.progress[-1]
    assert (failed.field, failed.valid, failed.reason) == ("pan", False, "too short")
    session = step.session
    assert session.status is SessionStatus.FAILED
    assert session.current is None
    assert session.field("pan") == FieldState("pan", FieldStatus.FAILED, 0, 3, "too short")
    assert session.field("expiry").status is FieldStatus.PENDING
    assert step.card == Card()


def test_a_single_attempt_policy_fails_at_the_first_rejection() -> None:
    step = keyed(VISA + "0126", Policy(max_attempts=1))
    assert events(step)[-1] == "failed"
    assert step.session.field("expiry").status is FieldStatus.FAILED
    # What was already captured stays in the card; the caller wipes it.
    assert step.card == Card({"pan": VISA})


def test_attempts_are_per_field() -> None:
    step = keyed("4111#4111#" + VISA + "0126" + "0126" + EXPIRY + "12#")
    session = step.session
    assert [f.attempts for f in session.fields] == [2, 2, 1]
    assert session.status is SessionStatus.CAPTURING


@pytest.mark.parametrize("key", ["a", "", "12", "##", " ", "+", "0 ", "\u0661", "A", "D"])
def test_keys_outside_the_keypad_raise(key: str) -> None:
    step = begin()
    with pytest.raises(ValueError, match="a key is one of") as raised:
        press(step.session, step.card, key, TODAY)
    if len(key) > 1:  # never echoed: "12" could be two digits of a card
        assert key not in str(raised.value)


def test_a_key_that_is_not_a_string_raises() -> None:
    step = begin()
    with pytest.raises(ValueError, match="a key is one of"):
        press(step.session, step.card, 1, TODAY)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", list("0123456789*#"))
def test_every_key_is_ignored_once_ready(key: str) -> None:
    step = ready()
    after = press(step.session, step.card, key, TODAY)
    assert after.session == step.session
    assert after.card == step.card
    (progress,) = after.progress
    assert progress.event == "ignored"
    assert (progress.field, progress.complete, progress.valid) == ("cvv", True, True)
    assert progress.last4 == "1111"


@pytest.mark.parametrize("key", list("0123456789*#"))
def test_every_key_is_ignored_once_failed(key: str) -> None:
    step = keyed("4111#" * 3)
    after = press(step.session, step.card, key, TODAY)
    assert after.session == step.session
    assert after.card == step.card
    (progress,) = after.progress
    assert (progress.event, progress.field, progress.valid) == ("ignored", "pan", False)


# --- recapture --------------------------------------------------------------------------


def test_recapture_an_expiry_when_ready() -> None:
    step = keyed(VISA + "0126" + EXPIRY + CVV)
    assert step.session.status is SessionStatus.READY
    assert step.session.field("expiry").attempts == 1
    step = recapture(step.session, step.card, "expiry")
    session = step.session
    assert session.status is SessionStatus.CAPTURING
    assert session.current == "expiry"
    assert session.field("expiry") == FieldState("expiry", FieldStatus.KEYING, 0, 1, None)
    assert statuses(session) == {"pan": "valid", "expiry": "keying", "cvv": "valid"}
    assert (session.brand, session.last4) == (Brand.VISA, "1111")
    assert step.card == Card({"pan": VISA, "cvv": CVV})
    assert step.progress == (
        Progress(
            field="expiry",
            digits=0,
            complete=False,
            valid=None,
            reason=None,
            brand=Brand.VISA,
            last4="1111",
            event="recapture",
        ),
    )
    step = key_in(step, "0130")
    assert step.session.status is SessionStatus.READY
    assert step.card == Card({"pan": VISA, "expiry": "0130", "cvv": CVV})


def test_recapture_the_pan_forgets_brand_bin_and_last4() -> None:
    step = recapture(ready().session, ready().card, "pan")
    session = step.session
    assert (session.brand, session.bin, session.last4) == (None, None, None)
    assert statuses(session) == {"pan": "keying", "expiry": "valid", "cvv": "valid"}
    assert step.progress[0].last4 is None
    assert step.progress[0].brand is None
    assert step.card == Card({"expiry": EXPIRY, "cvv": CVV})
    step = key_in(step, "5555555555554444")
    assert step.session.status is SessionStatus.READY
    assert (step.session.brand, step.session.last4) == (Brand.MASTERCARD, "4444")


def test_a_new_pan_of_another_brand_asks_for_the_code_again() -> None:
    step = recapture(ready().session, ready().card, "pan")
    step = key_in(step, AMEX)
    assert events(step)[-2:] == ["completed", "recapture"]
    asked = step.progress[-1]
    assert (asked.field, asked.reason, asked.valid) == (
        "cvv",
        "amex security codes have 4 digits",
        False,
    )
    session = step.session
    assert session.current == "cvv"
    assert statuses(session) == {"pan": "valid", "expiry": "valid", "cvv": "keying"}
    assert session.field("cvv").digits == 0
    assert step.card.value("cvv") == ""
    step = key_in(step, "1234")
    assert step.session.status is SessionStatus.READY


def test_recapture_while_keying_another_field() -> None:
    step = keyed(VISA + EXPIRY + "7")
    assert step.session.current == "cvv"
    step = recapture(step.session, step.card, "pan")
    assert events(step) == ["cleared", "recapture"]
    assert step.progress[0].field == "cvv"
    assert step.progress[0].digits == 0
    assert statuses(step.session) == {"pan": "keying", "expiry": "valid", "cvv": "pending"}
    assert step.card == Card({"expiry": EXPIRY})
    step = key_in(step, VISA)
    assert step.session.current == "cvv"  # the first field still to key
    step = key_in(step, CVV)
    assert step.session.status is SessionStatus.READY


def test_recapture_an_earlier_field_then_carry_on() -> None:
    policy = Policy(fields=("pan", "expiry", "cvv", "postcode"))
    step = keyed(VISA + EXPIRY + CVV + "902", policy)
    step = recapture(step.session, step.card, "expiry")
    assert statuses(step.session) == {
        "pan": "valid",
        "expiry": "keying",
        "cvv": "valid",
        "postcode": "pending",
    }
    step = key_in(step, "0131")
    assert step.session.current == "postcode"
    assert step.session.field("postcode").digits == 0
    step = key_in(step, "90210#")
    assert step.session.status is SessionStatus.READY


def test_recapture_the_current_field_clears_it() -> None:
    step = keyed("4111#41")
    step = recapture(step.session, step.card, "pan")
    assert events(step) == ["recapture"]
    assert step.session.field("pan") == FieldState("pan", FieldStatus.KEYING, 0, 1, None)
    assert step.card == Card()


def test_recapture_keeps_attempts() -> None:
    step = keyed("4111#4111#" + VISA)
    step = recapture(step.session, step.card, "pan")
    step = key_in(step, "4111#")
    assert step.session.status is SessionStatus.FAILED


def test_recapture_a_field_not_reached_yet_is_ignored() -> None:
    step = keyed("41")
    after = recapture(step.session, step.card, "cvv")
    assert after.session == step.session
    assert after.card == step.card
    assert events(after) == ["ignored"]
    assert after.progress[0].field == "cvv"


@pytest.mark.parametrize("field", ["postcode", "name", "", "PAN"])
def test_recapture_a_field_outside_the_policy(field: str) -> None:
    step = ready()
    with pytest.raises(ValueError, match="is not a field of this capture"):
        recapture(step.session, step.card, field)


def test_recapture_after_failure_is_refused() -> None:
    step = keyed("4111#" * 3)
    for field in ("pan", "expiry"):
        with pytest.raises(ValueError, match="failed"):
            recapture(step.session, step.card, field)


# --- purity --------------------------------------------------------------------------------


def test_transitions_do_not_change_their_inputs() -> None:
    step = keyed(VISA + "12")
    before_session, before_card = step.session.to_dict(), dict(step.card.values)
    press(step.session, step.card, "3", TODAY)
    press(step.session, step.card, "*", TODAY)
    recapture(step.session, step.card, "pan")
    assert step.session.to_dict() == before_session
    assert dict(step.card.values) == before_card


def test_the_same_inputs_give_the_same_step() -> None:
    assert keyed(READY_KEYS) == keyed(READY_KEYS)
    assert start(Policy(), datetime(2026, 1, 1, tzinfo=UTC)) == start(
        Policy(), datetime(2026, 1, 1, tzinfo=UTC)
    )


def test_a_cardholder_name_travels_with_the_card_and_is_never_shown() -> None:
    from transact.capture.domain import Card
    from transact.contracts.capture import holder_name

    assert holder_name("  Jane   O'Neil ") == "Jane O'Neil"
    assert holder_name("José Ñúñez-García") == "José Ñúñez-García"
    for bad in ("", "J", "4111 1111", "Jane <script>", "x" * 65, None, "- ."):
        assert holder_name(bad) is None, bad
    card = Card({"pan": "4242424242424242"}, "Jane O'Neil").with_value("cvv", "123")
    assert card.holder == "Jane O'Neil"
    assert "Jane" not in repr(card)
    again = Card.from_bytes(card.to_bytes())
    assert (again.holder, again.value("pan"), again.value("cvv")) == (
        "Jane O'Neil",
        "4242424242424242",
        "123",
    )
    assert Card({"pan": "4242"}, "4111111111111111").holder is None  # not a name: dropped
