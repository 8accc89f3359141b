"""Luhn, masking, free-text redaction and the types that refuse to show card data."""

from __future__ import annotations

import copy
import json
import pickle
import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import BaseModel

from transact.kernel.sensitive import (
    MASK,
    Pan,
    SensitiveStr,
    find_card_numbers,
    luhn_valid,
    mask_pan,
    redact_card_numbers,
)

digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=30)


def check_digit(payload: str) -> str:
    """The Luhn check digit, computed the textbook way (independently of the code under test)."""
    total = 0
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:  # doubled once the check digit is appended
            d = sum(divmod(d * 2, 10))
        total += d
    return str((10 - total % 10) % 10)


def card(payload: str) -> str:
    return payload + check_digit(payload)


@st.composite
def card_numbers(draw: st.DrawFn, min_len: int = 13, max_len: int = 19) -> str:
    length = draw(st.integers(min_len, max_len))
    payload = draw(st.text(alphabet="0123456789", min_size=length - 1, max_size=length - 1))
    return card(payload)


# --- luhn_valid ------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "79927398713",
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4222222222222",
        "0",
        "00",
    ],
)
def test_known_valid_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize(
    "number",
    [
        "79927398710",
        "4111111111111112",
        "5555555555554440",
        "1",
        "",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "-4111111111111111",
        "411111111111111a",
        " 4111111111111111",
    ],
)
def test_known_invalid_numbers(number: str) -> None:
    assert not luhn_valid(number)


@given(digit_strings)
def test_appending_the_check_digit_makes_any_digit_string_valid(payload: str) -> None:
    assert luhn_valid(payload + check_digit(payload))


@given(digit_strings, st.integers(0, 9))
def test_any_other_final_digit_is_invalid(payload: str, digit: int) -> None:
    assume(str(digit) != check_digit(payload))
    assert not luhn_valid(payload + str(digit))


@given(card_numbers(2, 19), st.data())
def test_a_single_wrong_digit_is_always_caught(number: str, data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(number) - 1))
    replacement = data.draw(st.sampled_from([d for d in "0123456789" if d != number[position]]))
    assert not luhn_valid(number[:position] + replacement + number[position + 1 :])


@given(digit_strings, st.integers(0, 30))
def test_leading_zeros_do_not_change_validity(number: str, zeros: int) -> None:
    assert luhn_valid("0" * zeros + number) == luhn_valid(number)


@given(st.text(min_size=1).filter(lambda s: not s.isdigit()))
def test_anything_but_digits_is_invalid(text: str) -> None:
    assert not luhn_valid(text)


# --- mask_pan --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pan", "masked"),
    [
        ("4111111111111111", "411111******1111"),
        ("378282246310005", "378282*****0005"),
        ("4222222222222", "422222***2222"),
        ("6304000000000000018", "630400*********0018"),
    ],
)
def test_mask_pan_keeps_bin_and_last_four(pan: str, masked: str) -> None:
    assert mask_pan(pan) == masked


@given(card_numbers())
def test_mask_pan_shows_only_bin_and_last_four(pan: str) -> None:
    masked = mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked[:6] == pan[:6]
    assert masked[-4:] == pan[-4:]
    assert set(masked[6:-4]) == {"*"}


@pytest.mark.parametrize("short", ["", "1234", "123456789012"])
def test_mask_pan_hides_short_values_entirely(short: str) -> None:
    assert mask_pan(short) == MASK


# --- redact_card_numbers -----------------------------------------------------------

VISA = "4111111111111111"
VISA_MASKED = "411111******1111"


@pytest.mark.parametrize(
    "pan",
    [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4222222222222",
        "6304000000000000018",
    ],
)
def test_redacts_known_card_numbers(pan: str) -> None:
    out = redact_card_numbers(f"card {pan} declined")
    assert pan not in out
    assert out == f"card {mask_pan(pan)} declined"


@pytest.mark.parametrize(
    "written",
    [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111-1111 1111-1111",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",
        "41111111 11111111",
        "3782 822463 10005",
    ],
)
def test_redacts_numbers_written_with_separators(written: str) -> None:
    out = redact_card_numbers(f"the number is {written}.")
    digits = written.replace(" ", "").replace("-", "")
    assert out == f"the number is {mask_pan(digits)}."
    assert written not in out


def test_redacts_every_number_in_the_text() -> None:
    text = f"a={VISA}, b=5555 5555 5555 4444; c:378282246310005"
    assert redact_card_numbers(text) == (f"a={VISA_MASKED}, b=555555******4444; c:378282*****0005")


def test_redacts_numbers_next_to_letters() -> None:
    assert redact_card_numbers(f"pan={VISA}x") == f"pan={VISA_MASKED}x"
    assert redact_card_numbers(f"x{VISA}") == f"x{VISA_MASKED}"


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",
        "4111 1111 1111 1112",
        "call 0800 123 4567 now",
        "id 1234567890123",
        "order 1234-5678-9012-3456",
    ],
)
def test_leaves_non_luhn_runs_alone(text: str) -> None:
    assert not luhn_valid(re.sub(r"[^0-9]", "", text))
    assert redact_card_numbers(text) == text


def test_leaves_luhn_valid_runs_that_are_too_short_or_too_long_alone() -> None:
    twelve = card("41111111111")
    twenty = card("4111111111111111111")
    assert (len(twelve), len(twenty)) == (12, 20)
    assert luhn_valid(twelve)
    assert luhn_valid(twenty)
    assert redact_card_numbers(f"n={twelve}") == f"n={twelve}"
    assert redact_card_numbers(f"n={twenty}") == f"n={twenty}"


def test_leaves_a_run_glued_to_other_digits_alone() -> None:
    # The PAN is Luhn-valid, but glued to more digits it is part of another number.
    for glued in (f"9{VISA}", f"{VISA}2", f"12{VISA}34"):
        assert not luhn_valid(glued)
        assert redact_card_numbers(f"ref {glued}") == f"ref {glued}"


def test_redacts_a_number_followed_by_more_spoken_digits() -> None:
    """A transcript: card number, then expiry and security code as separate groups."""
    spoken = "4111 1111 1111 1111 12 30 737"
    out = redact_card_numbers(spoken)
    assert out.startswith("411111*")
    assert VISA not in out.replace(" ", "")
    assert "1111 1111 1111" not in out


@pytest.mark.parametrize(
    "text",
    [
        f"{VISA} 2",
        f"2 {VISA}",
        f"12 {VISA} 34",
        f"{VISA}-12",
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 2 3 0",
    ],
)
def test_redacts_a_number_beside_short_digit_groups(text: str) -> None:
    out = redact_card_numbers(text)
    assert VISA not in out.replace(" ", "").replace("-", "")


@given(
    card_numbers(),
    st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=20),
    st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=20),
)
def test_no_card_number_survives_in_free_text(pan: str, before: str, after: str) -> None:
    out = redact_card_numbers(before + pan + after)
    assert pan not in out
    assert mask_pan(pan) in out


@given(st.text(alphabet=st.characters(blacklist_categories=["Nd"])))
def test_text_without_digits_is_unchanged(text: str) -> None:
    assert redact_card_numbers(text) == text


@given(
    card_numbers(),
    st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), max_size=6),
    st.lists(st.text(alphabet="0123456789", min_size=1, max_size=4), max_size=6),
)
def test_no_card_number_survives_among_other_digit_groups(
    pan: str, before: list[str], after: list[str]
) -> None:
    """Spoken or typed digits around a card number do not shield it from redaction."""
    out = redact_card_numbers(" ".join([*before, pan, *after]))
    assert pan not in out.split(" ")
    assert "*" * (len(pan) - 10) in out


# Not a timing: a pattern that backtracks over digit groups takes minutes on this line
# (it is quadratic or worse), a linear one milliseconds; the timeout tells them apart
# on any machine, loaded or not.
@pytest.mark.timeout(60)
def test_a_long_line_of_digit_groups_is_redacted_without_backtracking() -> None:
    line = "1 " * 20_000 + VISA
    out = redact_card_numbers(line)
    assert VISA not in out


# --- SensitiveStr and Pan ------------------------------------------------------------


def test_sensitive_str_masks_everywhere() -> None:
    secret = SensitiveStr("hunter2")
    assert str(secret) == MASK
    assert repr(secret) == "SensitiveStr('***')"
    assert f"{secret}" == MASK
    assert f"{secret!s}" == MASK
    assert f"{secret!r}" == "SensitiveStr('***')"
    assert f"{secret:>5}" == "  ***"
    assert "{}".format(secret) == MASK  # noqa: UP032 - str.format is a separate path
    assert "%s" % secret == MASK  # noqa: UP031 - %-formatting is a separate path
    assert "hunter2" not in repr([secret, {"k": secret}, (secret,)])


def test_sensitive_str_reveals_on_request() -> None:
    assert SensitiveStr("hunter2").reveal() == "hunter2"
    assert len(SensitiveStr("hunter2")) == 7


def test_sensitive_str_does_not_become_a_str() -> None:
    secret = SensitiveStr("hunter2")
    assert not isinstance(secret, str)
    with pytest.raises(TypeError):
        _ = "pw: " + secret  # type: ignore[operator]


def test_wrapping_twice_keeps_the_clear_value() -> None:
    assert SensitiveStr(SensitiveStr("hunter2")).reveal() == "hunter2"  # type: ignore[arg-type]
    assert Pan(Pan(VISA)).reveal() == VISA  # type: ignore[arg-type]


def test_sensitive_str_equality_and_hashing() -> None:
    assert SensitiveStr("a") == SensitiveStr("a")
    assert SensitiveStr("a") != SensitiveStr("b")
    assert SensitiveStr("a") != "a"  # never equal to the clear string
    assert hash(SensitiveStr("a")) == hash(SensitiveStr("a"))
    assert len({SensitiveStr("a"), SensitiveStr("a"), SensitiveStr("b")}) == 2


@pytest.mark.parametrize("value", [SensitiveStr("hunter2"), Pan(VISA)])
def test_pickling_is_refused(value: SensitiveStr) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        with pytest.raises(TypeError, match="cannot be pickled"):
            pickle.dumps(value, protocol=protocol)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [value]})
    with pytest.raises(TypeError):
        copy.deepcopy(value)


def test_pan_shows_bin_and_last_four_only() -> None:
    pan = Pan(VISA)
    assert str(pan) == VISA_MASKED
    assert repr(pan) == f"Pan({VISA_MASKED!r})"
    assert f"{pan}" == VISA_MASKED
    assert pan.reveal() == VISA
    assert (pan.bin, pan.last4) == ("411111", "1111")


def test_pan_drops_separators() -> None:
    assert Pan("4111 1111 1111 1111").reveal() == VISA
    assert Pan("4111-1111-1111-1111") == Pan(VISA)


@pytest.mark.parametrize("junk", ["not a pan", "4111", "4111x1111111111111"])
def test_pan_that_is_not_a_card_number_is_fully_masked(junk: str) -> None:
    assert str(Pan(junk)) == MASK
    assert junk not in repr(Pan(junk))


# --- pydantic --------------------------------------------------------------------------


class CardForm(BaseModel):
    holder: str
    pan: Pan
    cvv: SensitiveStr


def test_pydantic_validates_from_str() -> None:
    form = CardForm(holder="A N Other", pan="4111 1111 1111 1111", cvv="737")
    assert isinstance(form.pan, Pan)
    assert isinstance(form.cvv, SensitiveStr)
    assert form.pan.reveal() == VISA
    assert form.cvv.reveal() == "737"


def test_pydantic_validates_from_json() -> None:
    form = CardForm.model_validate_json('{"holder": "x", "pan": "4111111111111111", "cvv": "737"}')
    assert form.pan.reveal() == VISA
    assert form.cvv.reveal() == "737"


def test_pydantic_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="pan"):
        CardForm(holder="x", pan=4111111111111111, cvv="737")


def test_pydantic_serializes_masked() -> None:
    form = CardForm(holder="x", pan=VISA, cvv="737")
    assert form.model_dump() == {"holder": "x", "pan": VISA_MASKED, "cvv": MASK}
    assert form.model_dump(mode="json") == {"holder": "x", "pan": VISA_MASKED, "cvv": MASK}
    dumped = form.model_dump_json()
    assert json.loads(dumped) == {"holder": "x", "pan": VISA_MASKED, "cvv": MASK}
    for text in (dumped, repr(form), str(form)):
        assert VISA not in text
        assert "737" not in text


def test_pydantic_masked_dump_does_not_round_trip_to_the_clear_value() -> None:
    form = CardForm(holder="x", pan=VISA, cvv="737")
    again = CardForm.model_validate_json(form.model_dump_json())
    assert again.pan.reveal() == VISA_MASKED
    assert again.cvv.reveal() == MASK


def test_a_wrapped_value_is_accepted_by_a_model_field() -> None:
    class Card(BaseModel):
        pan: Pan

    card = Card(pan=Pan("4111111111111111"))
    assert card.pan.reveal() == "4111111111111111"


def test_values_of_different_sensitive_types_are_not_equal() -> None:
    assert Pan("4111111111111111") != SensitiveStr("4111111111111111")


def test_non_ascii_digits_are_not_luhn_digits() -> None:
    assert not luhn_valid("\uff14" + "\uff11" * 15)  # full-width digits


def test_find_card_numbers_sees_what_redaction_masks() -> None:
    text = "card 4111 1111 1111 1111 12 30 737 and 5555-5555-5555-4444 ref 12345"
    found = find_card_numbers(text)
    assert len(found) == 2
    assert found[0].startswith("4111111111111111")  # with the digits spoken after it
    assert found[1] == "5555555555554444"
    assert "4111" not in redact_card_numbers(text).replace("411111******", "")
