"""Test helpers for capture: the spec's brand table, Luhn-valid card numbers, keying."""

from __future__ import annotations

from datetime import UTC, date, datetime

from hypothesis import strategies as st

from transact.capture.domain import Brand, Policy, Progress, Session, Step, press, start

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
TODAY = NOW.date()

# The brief's table, written out again so the tests do not trust the code's own.
SPEC_RANGES: dict[Brand, list[tuple[str, str]]] = {
    Brand.VISA: [("4", "4")],
    Brand.MASTERCARD: [("51", "55"), ("2221", "2720")],
    Brand.AMEX: [("34", "34"), ("37", "37")],
    # Discover's co-brand range comes before UnionPay's 62 (see spec_brand).
    Brand.DISCOVER: [("6011", "6011"), ("644", "649"), ("65", "65"), ("622126", "622925")],
    Brand.DINERS: [("300", "305"), ("3095", "3095"), ("36", "36"), ("38", "39")],
    Brand.JCB: [("3528", "3589")],
    Brand.UNIONPAY: [("62", "62"), ("81", "81")],
    Brand.MAESTRO: [
        ("5018", "5018"),
        ("5020", "5020"),
        ("5038", "5038"),
        ("5893", "5893"),
        ("6304", "6304"),
        ("6759", "6759"),
        ("6761", "6763"),
    ],
}
SPEC_LENGTHS: dict[Brand, tuple[int, ...]] = {
    Brand.VISA: (13, 16, 19),
    Brand.MASTERCARD: (16,),
    Brand.AMEX: (15,),
    Brand.DISCOVER: (16, 17, 18, 19),
    Brand.DINERS: (14, 15, 16, 17, 18, 19),
    Brand.JCB: (16, 17, 18, 19),
    Brand.UNIONPAY: (16, 17, 18, 19),
    Brand.MAESTRO: (13, 14, 15, 16, 17, 18, 19),
}
SPEC_TYPICAL: dict[Brand, int | None] = {
    Brand.VISA: 16,
    Brand.MASTERCARD: 16,
    Brand.AMEX: 15,
    Brand.DISCOVER: 16,
    Brand.DINERS: 14,
    Brand.JCB: 16,
    Brand.UNIONPAY: 16,
    Brand.MAESTRO: None,
}

# Well-known test cards and their brands.
TEST_CARDS: dict[str, Brand] = {
    "4111111111111111": Brand.VISA,
    "4242424242424242": Brand.VISA,
    "5555555555554444": Brand.MASTERCARD,
    "2223003122003222": Brand.MASTERCARD,
    "378282246310005": Brand.AMEX,
    "6011111111111117": Brand.DISCOVER,
    "3056930009020004": Brand.DINERS,
    "36227206271667": Brand.DINERS,
    "3566002020360505": Brand.JCB,
    "6200000000000005": Brand.UNIONPAY,
    "6759649826438453": Brand.MAESTRO,
}
VISA = "4111111111111111"
AMEX = "378282246310005"
MAESTRO = "6759649826438453"


def spec_brand(number: str) -> Brand | None:
    """The brand of a complete number (at least 6 digits), straight from the table."""
    for brand in (Brand.DISCOVER, *(b for b in Brand if b is not Brand.DISCOVER)):
        for lo, hi in SPEC_RANGES[brand]:
            if lo <= number[: len(lo)] <= hi:
                return brand
    return None


def check_digit(payload: str) -> str:
    """The Luhn check digit, computed the textbook way."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = sum(divmod(d * 2, 10))
        total += d
    return str((10 - total % 10) % 10)


def with_check_digit(payload: str) -> str:
    return payload + check_digit(payload)


@st.composite
def card_numbers(draw: st.DrawFn, brand: Brand, length: int) -> str:
    """A Luhn-valid number of `brand` with `length` digits."""
    lo, hi = draw(st.sampled_from(SPEC_RANGES[brand]))
    prefix = str(draw(st.integers(int(lo), int(hi)))).zfill(len(lo))
    rest = draw(
        st.text("0123456789", min_size=length - 1 - len(prefix), max_size=length - 1 - len(prefix))
    )
    number = with_check_digit(prefix + rest)
    # UnionPay's 62 minus Discover's co-brand range: redraw the few that land in it.
    return number if spec_brand(number) is brand else draw(card_numbers(brand, length))


@st.composite
def branded_numbers(draw: st.DrawFn) -> tuple[Brand, str]:
    """Any brand, any of its lengths."""
    brand = draw(st.sampled_from(list(Brand)))
    length = draw(st.sampled_from(SPEC_LENGTHS[brand]))
    return brand, draw(card_numbers(brand, length))


def key_in(step: Step, keys: str, today: date = TODAY) -> Step:
    """Press every key in turn; the result carries every Progress along the way."""
    session, card = step.session, step.card
    progress: list[Progress] = []
    for key in keys:
        step = press(session, card, key, today)
        session, card = step.session, step.card
        progress += step.progress
    return Step(session, card, tuple(progress))


def begin(policy: Policy | None = None) -> Step:
    return start(policy or Policy(), NOW)


def keyed(keys: str, policy: Policy | None = None, today: date = TODAY) -> Step:
    return key_in(begin(policy), keys, today)


def events(step: Step) -> list[str]:
    return [p.event for p in step.progress]


def statuses(session: Session) -> dict[str, str]:
    return {f.name: f.status.value for f in session.fields}
