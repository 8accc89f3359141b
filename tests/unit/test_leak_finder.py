"""The leak finder the tests rely on: it must see a card number wherever one is written
and not cry wolf on identifiers or floats (which fail a test at random otherwise)."""

from __future__ import annotations

from tests.leaks import card_numbers_in

PAN = "4242424242424242"


def test_a_card_number_is_found_however_it_is_written() -> None:
    for text in (PAN, f"pan={PAN}", f"no.{PAN}", "4242 4242 4242 4242", f'{{"n": "{PAN}"}}'):
        assert card_numbers_in(text) == [PAN], text


def test_identifiers_and_the_fractions_of_decimals_are_not_card_numbers() -> None:
    # 092610316806368 is Luhn-valid: a heartbeat's float in a Redis dump once failed a test.
    assert card_numbers_in("at 1764254875.092610316806368 ok") == []
    assert card_numbers_in(f"pay_{PAN}") == []
    assert card_numbers_in(f"{PAN}abc") == []
