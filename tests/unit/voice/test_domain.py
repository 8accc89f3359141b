"""Speech capture rules: utterances to keys, answers to the read-back, labels for the agent."""

from __future__ import annotations

import re
from datetime import date

import pytest

from transact.capture import domain as capture_domain
from transact.contracts.voice import pack_chunk, unpack_chunk, voice_audio_context
from transact.kernel.prompts import standard
from transact.kernel.sequence import InOrder
from transact.voice import domain


@pytest.mark.parametrize(
    ("said", "keys"),
    [
        ("four one one one", "4111"),
        ("Four, one, one, one.", "4111"),
        ("double one triple seven", "11777"),
        ("twelve twenty eight", "1228"),
        ("seven three seven", "737"),
        ("oh five", "05"),
        ("scratch that, four two four two", "*4242"),
        ("sorry, no, start again", "*"),
        ("one two three four five, that's it", "12345#"),
        ("one two three, done", "123#"),
        ("um, let me find it", ""),
        ("", ""),
    ],
)
def test_an_utterance_becomes_the_keys_a_keypad_would_send(said: str, keys: str) -> None:
    assert domain.keys_from_speech(said) == keys


@pytest.mark.parametrize(
    ("said", "answer"),
    [
        ("yes", "yes"),
        ("Yes.", "yes"),
        ("yeah that's right", "yes"),
        ("correct", "yes"),
        ("no", "no"),
        ("No, that's wrong.", "no"),
        ("nope", "no"),
        ("yes no", None),
        ("twelve twenty eight", None),
        ("", None),
    ],
)
def test_the_read_back_is_answered_yes_or_no(said: str, answer: str | None) -> None:
    assert domain.answer_of(said) == answer


def test_keys_answer_the_read_back_one_yes_two_no() -> None:
    assert (domain.key_answer("1"), domain.key_answer("2"), domain.key_answer("3")) == (
        "yes",
        "no",
        None,
    )


def test_what_follows_a_yes_is_the_next_field() -> None:
    assert domain.after_answer("yes, twelve twenty eight") == "1228"
    assert domain.after_answer("yes") == ""
    assert domain.after_answer("twelve twenty eight") == ""


@pytest.mark.parametrize(
    ("field", "keys", "label"),
    [
        ("pan", "4111", "[card number: 4 digits]"),
        ("pan", "4111111111111111", "[card number: 16 digits]"),
        ("expiry", "1228", "[expiry: 4 digits]"),
        ("cvv", "737", "[security code: 3 digits]"),
        ("cvv", "7", "[security code: 1 digit]"),
        ("pan", "*42", "[card number: started again] [card number: 2 digits]"),
        ("pan", "123#", "[card number: 3 digits] [card number: done]"),
        (None, "42", "[card details: 2 digits]"),
        ("pan", "", "[no card details heard]"),
    ],
)
def test_the_agent_reads_labels_never_digits(field: str | None, keys: str, label: str) -> None:
    text = domain.capture_transcript(field, keys)
    assert text == label
    assert not re.search(r"\d{3,}", text)


def test_a_free_transcript_keeps_words_and_loses_card_data() -> None:
    text = domain.free_transcript(
        "my card is four one one one one one one one one one one one one one one one thanks"
    )
    assert "thanks" in text
    assert "card number" in text
    assert "one one one" not in text


def test_the_read_back_says_the_last_four_then_asks() -> None:
    assert domain.readback_phrases("4242") == [
        "readback_card",
        "four",
        "two",
        "four",
        "two",
        domain.PAUSE,
        "speech_confirm",
    ]
    with pytest.raises(ValueError, match="4 digits"):
        domain.readback_phrases("42")


class TestCaptureView:
    def test_follows_the_field_being_asked(self) -> None:
        view = domain.CaptureView()
        assert view.current == "pan"
        view.progress("pan", "key", False, None)
        view.progress("pan", "completed", True, True)
        assert view.current == "expiry"
        view.progress("expiry", "completed", True, True)
        view.progress("cvv", "completed", True, True)
        assert view.current is None
        view.progress("pan", "recapture", False, None)
        assert view.current == "pan"
        assert view.complete == {"expiry", "cvv"}

    def test_a_rejected_card_number_is_asked_again(self) -> None:
        view = domain.CaptureView()
        view.progress("pan", "completed", False, False)
        view.progress("pan", "rejected", False, False)
        assert view.current == "pan"

    def test_only_a_valid_card_number_is_read_back(self) -> None:
        view = domain.CaptureView()
        assert view.pan_confirmable("pan", "completed", True, "4242")
        assert not view.pan_confirmable("pan", "completed", False, None)
        assert not view.pan_confirmable("expiry", "completed", True, "4242")
        assert not view.pan_confirmable("pan", "key", None, None)


class TestInOrder:
    def test_releases_in_order_and_once(self) -> None:
        order: InOrder[str] = InOrder()
        assert order.push(2, "b") == []
        assert order.push(1, "a") == ["a", "b"]
        assert order.push(1, "a") == []  # a redelivery
        assert order.push(2, "b") == []
        assert order.push(3, "c") == ["c"]
        assert order.repeats == 2

    def test_a_late_joiner_starts_where_it_joins(self) -> None:
        order: InOrder[int] = InOrder(next_seq=None)
        assert order.push(40, 40) == [40]
        assert order.push(39, 39) == []
        assert order.push(41, 41) == [41]

    def test_a_lost_item_stalls_the_stream_only_for_a_window(self) -> None:
        order: InOrder[int] = InOrder(window=3)
        assert order.push(2, 2) == []
        assert order.push(3, 3) == []
        assert order.push(4, 4) == []
        assert order.push(5, 5) == [2, 3, 4, 5]
        assert order.skipped == 1
        assert order.push(1, 1) == []


class TestChunks:
    def test_keys_and_audio_round_trip(self) -> None:
        assert unpack_chunk(pack_chunk("12#", b"\xff" * 10)) == ("12#", b"\xff" * 10)
        assert unpack_chunk(pack_chunk("", b"")) == ("", b"")

    def test_malformed_chunks_are_refused(self) -> None:
        with pytest.raises(ValueError, match="empty"):
            unpack_chunk(b"")
        with pytest.raises(ValueError, match="malformed"):
            unpack_chunk(b"\x05ab")
        with pytest.raises(ValueError, match="at most"):
            pack_chunk("1" * 65, b"")

    def test_a_chunk_is_sealed_to_its_call_and_place(self) -> None:
        assert voice_audio_context("CA1", 1) != voice_audio_context("CA1", 2)
        assert voice_audio_context("CA1", 1) != voice_audio_context("CA2", 1)


def test_a_group_is_read_from_the_first_reading_with_the_count_the_field_expects() -> None:
    # Whisper heard five ones in "one one one one"; its second reading has four.
    best, other = "one one one one one", "one one one one"
    assert domain.keys_from_speech(best, (other,), "pan") == "1111"
    assert domain.keys_from_speech("seven three seven", ("seven three",), "cvv") == "737"
    assert domain.keys_from_speech("one two", ("one two three",), "cvv") == "123"
    # No reading fits: the best one stands, and capture's rules judge it.
    assert domain.keys_from_speech(best, ("one one",), "pan") == "11111"
    # Without a field (or one with no usual count) only the best reading counts.
    assert domain.keys_from_speech(best, (other,)) == "11111"


def test_of_the_readings_with_that_count_the_first_plausible_one_is_taken() -> None:
    # "oh" heard as "four": month 49 is no month, and the next reading's 09 is.
    assert domain.keys_from_speech("four nine thirty", ("oh nine thirty",), "expiry") == "0930"
    # A whole card number heard with one word wrong fails Luhn; the reading that passes
    # is taken.
    wrong = "four one one one one one one one one one one one one one one two"
    right = "four one one one one one one one one one one one one one one one"
    assert domain.keys_from_speech(wrong, (right,), "pan") == "4111111111111111"
    # A group of a card number, or a code, is never judged: the first with the count wins.
    assert domain.keys_from_speech("four one one two", ("four one one one",), "pan") == "4112"
    # None plausible: the first with the count stands, and capture's rules refuse it.
    assert domain.keys_from_speech("four nine thirty", ("five nine thirty",), "expiry") == "4930"


@pytest.mark.parametrize(
    ("said", "keys"),
    [
        ("twelve twenty twenty eight", "1228"),
        ("oh five, twenty thirty", "0530"),
        ("zero one two zero two nine", "0129"),
        ("twelve twenty eight", "1228"),
    ],
)
def test_an_expiry_with_its_year_said_in_full_becomes_month_and_two_digit_year(
    said: str, keys: str
) -> None:
    assert domain.keys_from_speech(said, (), "expiry") == keys


def test_an_expiry_heard_as_three_digits_is_a_month_without_its_oh() -> None:
    assert domain.keys_from_speech("five twenty eight", (), "expiry") == "0528"
    assert domain.keys_from_speech("eight thirty one", (), "expiry") == "0831"
    # A reading with four digits comes first, even a worse one.
    assert domain.keys_from_speech("one twenty eight", ("twelve twenty eight",), "expiry") == (
        "1228"
    )
    # "029": the month itself was lost; nothing to add, capture's checks refuse it.
    assert domain.keys_from_speech("oh twenty nine", (), "expiry") == "029"
    # Only an expiry: a code of three digits stays as said.
    assert domain.keys_from_speech("five twenty eight", (), "cvv") == "528"


def test_only_an_expiry_and_only_a_month_before_a_full_year_is_shortened() -> None:
    # A card number's group or a code keeps every digit said.
    assert domain.keys_from_speech("twelve twenty twenty eight", (), "pan") == "122028"
    assert domain.keys_from_speech("twelve twenty twenty eight", (), "cvv") == "122028"
    # Month 13 is no month: nothing to shorten, and capture's checks refuse it.
    assert domain.expiry_digits("thirteen twenty twenty eight") == "132028"
    assert domain.expiry_digits("twelve nineteen twenty eight") == "121928"


def test_plausible_knows_whole_card_numbers_and_months() -> None:
    assert domain.plausible("pan", "4111111111111111")
    assert not domain.plausible("pan", "4111111111111112")
    assert domain.plausible("pan", "4112")  # a group: nothing to check yet
    assert domain.plausible("expiry", "1228")
    assert not domain.plausible("expiry", "0028")
    assert not domain.plausible("expiry", "1328")
    assert domain.plausible("cvv", "000")


def test_a_refused_field_is_explained_by_the_phrase_that_fits_capture_s_reason() -> None:
    """Capture's own reasons (its validators), so the two are held together."""
    accepted = frozenset({capture_domain.Brand.VISA})
    luhn = capture_domain.validate_pan("4111111111111112", accepted)
    amex = capture_domain.validate_pan("378282246310005", accepted)
    expired = capture_domain.validate_expiry("0120", date(2026, 11, 28))
    month = capture_domain.validate_expiry("1328", date(2026, 11, 28))
    assert domain.refusal_phrases("pan", luhn, 1) == ["invalid_pan"]
    assert domain.refusal_phrases("pan", luhn, 2) == ["invalid_pan", "speech_keypad"]
    assert domain.refusal_phrases("pan", amex, 2) == ["card_not_accepted"]
    assert domain.refusal_phrases("expiry", expired, 3) == ["card_expired"]
    assert domain.refusal_phrases("expiry", month, 1) == ["invalid_expiry"]
    assert domain.refusal_phrases("cvv", "security codes have 3 digits", 1) == ["invalid_cvv"]
    assert domain.refusal_phrases("amount", "nonsense", 2) == []
    names = (*domain.REFUSAL_PHRASES.values(), "card_expired", "card_not_accepted")
    for phrase in (*names, "speech_keypad"):
        assert standard("en", phrase) is not None, phrase


def test_refusals_are_counted_per_field() -> None:
    view = domain.CaptureView()
    for name, event in [
        ("pan", "rejected"),
        ("pan", "key"),
        ("pan", "rejected"),
        ("cvv", "rejected"),
    ]:
        view.progress(name, event, complete=False, valid=False)
    assert view.refusals == {"pan": 2, "cvv": 1}
