"""Spoken numbers to digits, and card data out of transcripts."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transact.voice.numbers import likely_digits, redact, spoken_digits

UNIT_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TEENS = ["ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen"]
TEENS += ["sixteen", "seventeen", "eighteen", "nineteen"]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("four one one one", "4111"),
        ("Four, one, one, one.", "4111"),
        ("four-one-one-one", "4111"),
        ("double one", "11"),
        ("triple seven", "777"),
        ("treble two", "222"),
        ("four double one", "411"),
        ("double 1 triple 2", "11222"),
        ("oh", "0"),
        ("o", "0"),
        ("zero", "0"),
        ("nought", "0"),
        ("oh five", "05"),
        ("twelve twenty eight", "1228"),
        ("one two two eight", "1228"),
        ("twelve twenty-eight", "1228"),
        ("oh five thirty", "0530"),
        ("seven three seven", "737"),
        ("twenty", "20"),
        ("nineteen", "19"),
        ("ten", "10"),
        ("twenty oh five", "2005"),
        ("one hundred", "100"),
        ("a hundred", "100"),
        ("one hundred and five", "105"),
        ("seven hundred twenty one", "721"),
        ("twelve hundred", "1200"),
        ("two thousand twenty eight", "2028"),
        ("three thousand four hundred and one", "3401"),
        ("4111 1111", "41111111"),
        ("4111-1111-1111-1111", "4111111111111111"),
        ("12/28", "1228"),
        ("$4,111.", "4111"),
        ("um four one uh one one", "4111"),
        ("it's four one one one", "4111"),
        ("my card number is four one one one and then five five five five", "41115555"),
        ("FOUR ONE ONE ONE", "4111"),
        ("", ""),
        ("hello, how can I help?", ""),
        ("and and um", ""),
        ("one, two. three - four", "1234"),
        ("forty two", "42"),
        ("ninety", "90"),
        ("5 five", "55"),
        ("double", ""),
        ("double, um, one", "11"),
    ],
)
def test_spoken_digits(text: str, digits: str) -> None:
    assert spoken_digits(text) == digits


def speak_one_by_one(digits: str, zero: str) -> str:
    return " ".join(zero if d == "0" else UNIT_WORDS[int(d)] for d in digits)


def speak_pair(pair: str) -> str:
    """A pair the way people say expiries: oh five, twelve, twenty, twenty eight."""
    tens, units = int(pair[0]), int(pair[1])
    if tens == 0:
        return f"oh {UNIT_WORDS[units]}"
    if tens == 1:
        return TEENS[units]
    return TENS[tens] + ("" if units == 0 else f" {UNIT_WORDS[units]}")


def speak_with_repeats(digits: str) -> str:
    """Runs of two or three said as "double"/"triple"."""
    words: list[str] = []
    for run in re.finditer(r"(\d)\1{0,2}", digits):
        word = "oh" if run.group(1) == "0" else UNIT_WORDS[int(run.group(1))]
        prefix = {1: "", 2: "double ", 3: "triple "}[len(run.group())]
        words.append(prefix + word)
    return " ".join(words)


digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=19)


@given(digit_strings, st.sampled_from(["zero", "oh", "o", "nought", "0"]))
def test_one_by_one_round_trips(digits: str, zero: str) -> None:
    assert spoken_digits(speak_one_by_one(digits, zero)) == digits


@given(st.text(alphabet="0123456789", min_size=1, max_size=8).map(lambda s: s * 2))
def test_pairs_round_trip(digits: str) -> None:
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    assert spoken_digits(", ".join(speak_pair(pair) for pair in pairs)) == digits


@given(digit_strings)
def test_double_and_triple_round_trip(digits: str) -> None:
    assert spoken_digits(speak_with_repeats(digits)) == digits


@given(digit_strings, st.sampled_from([" ", "-", ", ", ". ", " um ", " uh, "]))
def test_numerals_and_filler_round_trip(digits: str, separator: str) -> None:
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    assert spoken_digits("it's " + separator.join(groups) + ".") == digits


@given(st.integers(min_value=0, max_value=99))
def test_pair_words_are_the_two_digits(value: int) -> None:
    pair = f"{value:02d}"
    assert spoken_digits(speak_pair(pair)) == pair


def test_likely_digits_takes_the_first_reading_with_an_expected_count() -> None:
    readings = ["four one one one one", "four one one one", "for one one"]
    assert likely_digits(readings, {4}) == "4111"
    assert likely_digits(readings, {5}) == "41111"
    assert likely_digits(readings, {4, 5}) == "41111"  # the best reading wins when it fits


def test_likely_digits_takes_no_reading_far_off_the_best_count() -> None:
    # A card heard one digit short: the 16-digit alternative is a miscount away, the
    # 12-digit one is another reading altogether.
    fifteen = "five one one one four two four eight three three three three nine two two"
    twelve = "five one one one four two four eight nine two two six"
    sixteen = "five one one one four two four eight three three three three three nine two two"
    assert likely_digits([fifteen, twelve, sixteen], {4, 8, 12, 16}) == "5111424833333922"
    assert likely_digits([fifteen, twelve], {4, 8, 12, 16}) == "511142483333922"


def test_likely_digits_takes_the_first_plausible_reading_with_the_count() -> None:
    readings = ["four one", "four nine three zero", "oh nine three zero", "oh nine"]

    def month(digits: str) -> bool:
        return 1 <= int(digits[:2]) <= 12

    assert likely_digits(readings, {4}, month) == "0930"
    assert likely_digits(readings, {4}, lambda _digits: False) == "4930"
    assert likely_digits(readings, {2}, month) == "09"


def test_likely_digits_falls_back_to_the_best_reading() -> None:
    assert likely_digits(["four one one", "four one"], {4}) == "411"
    assert likely_digits([], {4}) == ""


# --- redaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "my card number is 4111 1111 1111 1111 thanks",
            "my card number is [card number: 16 digits] thanks",
        ),
        (
            "it's four one one one, um, one one one one, one one one one, one one one one.",
            "it's [card number: 16 digits].",
        ),
        ("4111-1111-1111-1111", "[card number: 16 digits]"),
        ("378282246310005", "[card number: 15 digits]"),
        ("it expires twelve twenty eight", "it expires [expiry]"),
        ("expiry date one two two eight ok", "expiry date [expiry] ok"),
        ("exp 12/28", "exp [expiry]"),
        ("valid until 03/2027", "valid until [expiry]"),
        ("the code on the back is seven three seven", "the code on the back is [security code]"),
        ("security code 1234", "security code [security code]"),
        ("double one triple seven", "[number: 5 digits]"),
        ("I have two cats and twenty dogs", "I have two cats and twenty dogs"),
        ("call me at ten", "call me at ten"),
        ("no numbers here", "no numbers here"),
        ("", ""),
    ],
)
def test_redact(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_redact_keeps_the_words_around_each_number() -> None:
    text = "card 4111111111111111, expires 12/28, code 737. Thank you!"
    assert (
        redact(text)
        == "card [card number: 16 digits], expires [expiry], code [security code]. Thank you!"
    )


LABEL = re.compile(r"\[[a-z ]+(: \d+ digits)?\]")

fillers = st.sampled_from(["", "my card is ", "um ", "it's ", "OK so "])
styles = st.sampled_from(["numerals", "grouped", "words", "repeats", "words_grouped"])


def spoken_card(digits: str, style: str) -> str:
    groups = [digits[i : i + 4] for i in range(0, len(digits), 4)]
    if style == "numerals":
        return digits
    if style == "grouped":
        return " ".join(groups)
    if style == "words":
        return speak_one_by_one(digits, "oh")
    if style == "repeats":
        return speak_with_repeats(digits)
    return ", ".join(speak_one_by_one(group, "zero") for group in groups)


@given(st.text(alphabet="0123456789", min_size=13, max_size=19), styles, fillers)
def test_no_card_number_survives_redaction(digits: str, style: str, before: str) -> None:
    text = f"{before}{spoken_card(digits, style)} thanks"
    redacted = redact(text)
    assert f"[card number: {len(digits)} digits]" in redacted
    assert spoken_digits(LABEL.sub("", redacted)) == ""


@given(st.text(alphabet="0123456789", min_size=3, max_size=4), styles, fillers)
def test_no_security_code_survives_redaction(digits: str, style: str, before: str) -> None:
    redacted = redact(f"{before}{spoken_card(digits, style)}.")
    assert spoken_digits(LABEL.sub("", redacted)) == ""
