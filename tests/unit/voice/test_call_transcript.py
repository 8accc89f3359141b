"""A tenant's call transcription, the pure parts: every utterance is redacted before it is
kept (card numbers, expiries, codes; a number split over utterances too), the setting's
body, and who may read a call's transcript."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.unit.voice.test_numbers import speak_one_by_one
from transact.kernel.security import Principal, Role
from transact.voice import domain
from transact.voice.api import SettingsIn
from transact.voice.numbers import redact_continuing, spoken_digits
from transact.voice.store import CallRow
from transact.voice.transcription import CallTranscription

PAN = "4111111111111111"
LABEL = re.compile(r"\[[a-z ]+(: \d+ (more )?digits?)?\]")


def said(digits: str) -> str:
    return speak_one_by_one(digits, "zero")


@pytest.mark.parametrize(
    ("utterance", "kept"),
    [
        (
            "my card is four one one one one one one one one one one one one one one one",
            "my card is [card number: 16 digits]",
        ),
        ("twelve twenty eight", "[expiry]"),
        ("it runs out oh five thirty", "it runs out [expiry]"),
        ("twelve 28", "[expiry]"),
        ("the expiry is one two two eight", "the expiry is [expiry]"),
        ("the code on the back is seven three seven", "the code on the back is [security code]"),
        ("three seven nine two", "[security code]"),
        ("  I'd like to pay my bill.  ", "I'd like to pay my bill."),
        ("I have two kids and one dog", "I have two kids and one dog"),
        ("", ""),
    ],
)
def test_an_utterance_is_kept_with_card_data_labelled(utterance: str, kept: str) -> None:
    assert domain.call_transcript(utterance)[0] == kept


def test_a_month_and_year_said_as_digits_is_not_an_expiry_unless_a_cue_says_so() -> None:
    assert domain.call_transcript("four one one one")[0] == "[security code]"
    assert domain.call_transcript("ten ninety")[0] == "[security code]"  # no such year


def test_a_number_said_over_several_utterances_is_redacted_as_one() -> None:
    carried = 0
    kept = []
    for utterance in ("my card is forty one", "eleven", "um", "eleven eleven, sorry", "ok"):
        text, carried = domain.call_transcript(utterance, carried)
        kept.append(text)
    # The first two digits (part of the BIN, which may be shown) stay; what continues
    # them does not, and the run ends with the words after it.
    assert kept == [
        "my card is forty one",
        "[number: 2 more digits]",
        "um",
        "[security code], sorry",
        "ok",
    ]
    assert carried == 0


def test_words_between_numbers_end_the_run() -> None:
    text, carried = redact_continuing("I have two", 0)
    assert (text, carried) == ("I have two", 1)
    assert redact_continuing("kids, and one dog", carried) == ("kids, and one dog", 0)
    assert redact_continuing("um,", 1) == ("um,", 1)  # filler alone keeps the run open
    assert redact_continuing("thanks", 1) == ("thanks", 0)


def test_a_long_utterance_is_cut_only_after_redaction() -> None:
    long = "blah " * 500 + said(PAN)
    text, _ = domain.call_transcript(long)
    assert len(text) <= domain.MAX_TRANSCRIPT_CHARS
    assert spoken_digits(LABEL.sub("", text)) == ""


@given(
    st.text(alphabet="0123456789", min_size=13, max_size=19),
    st.integers(min_value=1, max_value=8),
    st.sampled_from(["", "my card is ", "um ", "OK so "]),
)
def test_no_card_number_survives_however_it_is_split(digits: str, size: int, before: str) -> None:
    """Whatever the pauses (down to one digit an utterance), no more than the first two
    digits ever stay in clear."""
    pieces = [digits[i : i + size] for i in range(0, len(digits), size)]
    carried = 0
    clear = ""
    for index, piece in enumerate(pieces):
        text, carried = domain.call_transcript(
            (before if index == 0 else "") + said(piece), carried
        )
        clear += spoken_digits(LABEL.sub("", text))
    assert len(clear) <= 2
    assert clear == digits[: len(clear)]


# --- the setting ------------------------------------------------------------------------------


def test_the_setting_takes_a_strict_boolean_and_nothing_else() -> None:
    assert SettingsIn.model_validate({"transcribe_calls": True}).transcribe_calls is True
    for bad in ({"transcribe_calls": "true"}, {"transcribe_calls": 1}, {}, {"record": True}):
        with pytest.raises(ValidationError):
            SettingsIn.model_validate(bad)


# --- who reads a transcript ------------------------------------------------------------------


def user(role: Role, user_id: str = "usr_alice") -> Principal:
    return Principal("user", user_id, "ten_1", user_id, role=role)


@pytest.mark.parametrize(
    ("principal", "holder", "may"),
    [
        (user(Role.AGENT), "usr_alice", True),
        (user(Role.AGENT), "usr_bob", False),
        (user(Role.AGENT), None, False),  # nobody holds it yet: supervisors only
        (user(Role.SUPERVISOR, "usr_sue"), "usr_alice", True),
        (user(Role.ADMIN, "usr_root"), None, True),
        (
            Principal("client", "cli_1", "ten_1", "crm", scopes=frozenset({"calls:read"})),
            None,
            True,
        ),
    ],
)
def test_the_agent_holding_the_call_or_a_supervisor_reads_it(
    principal: Principal, holder: str | None, may: bool
) -> None:
    call = CallRow("ten_1", "CA-1", holder, transcribed=True)
    assert CallTranscription._may_read(principal, call) is may
