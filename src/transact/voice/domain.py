"""Speech capture rules, free of I/O: what an utterance means for card capture, what the
agent may read of it, and the read-back of a spoken card number.

An utterance is what the recognizer heard up to a caller's pause. During a capture it
becomes keys exactly like a keypad's: its digits, `*` first when the caller starts the
field again ("scratch that"), `#` last when they say they are done ("that's it"). A
field ends the way a keyed one does: by its length (capture completes a 16-digit card
number, a 4-digit expiry, a 3- or 4-digit code on their own) or by the `#`.

What the agent sees of it is a label ("[card number: 4 digits]"), never a digit the
caller said; outside a capture, the whole text with card-like runs redacted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

from transact.kernel.sensitive import CARD_MIN_DIGITS, luhn_valid
from transact.voice.numbers import (
    is_month,
    likely_digits,
    redact,
    redact_continuing,
    spoken_digits,
)

Answer = Literal["yes", "no"]

FIELD_ORDER: Final = ("pan", "expiry", "cvv", "postcode")
DEFAULT_FIELDS: Final = ("pan", "expiry", "cvv")
FIELD_LABELS: Final = {
    "pan": "card number",
    "expiry": "expiry",
    "cvv": "security code",
    "postcode": "postcode",
}

_WORDS: Final = re.compile(r"[a-z]+(?:'[a-z]+)?")
# Said to end a field early (a card number shorter than its brand's usual length).
_DONE: Final = (
    ("that's", "it"),
    ("that", "is", "it"),
    ("that's", "all"),
    ("done",),
    ("finished",),
    ("hash",),
    ("pound",),
)
# Said to start the field again.
_CLEAR: Final = (
    ("scratch", "that"),
    ("start", "again"),
    ("start", "over"),
    ("let", "me", "start", "again"),
    ("clear",),
    ("star",),
    ("sorry", "no"),
)
_YES: Final = frozenset(
    {"yes", "yeah", "yep", "yup", "correct", "right", "affirmative", "confirm", "sure"}
)
_NO: Final = frozenset({"no", "nope", "wrong", "incorrect", "not"})
_KEY_ANSWERS: Final[dict[str, Answer]] = {"1": "yes", "2": "no"}

MAX_CONFIRM_PROMPTS: Final = 2  # the read-back's question, asked at most this often


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower().replace("\u2019", "'"))


def _says(words: Sequence[str], phrases: Sequence[tuple[str, ...]]) -> bool:
    for phrase in phrases:
        n = len(phrase)
        if any(tuple(words[i : i + n]) == phrase for i in range(len(words) - n + 1)):
            return True
    return False


EXPIRY_DIGITS: Final = 4  # MMYY
# How many digits one utterance of a field usually holds: a card number is asked for in
# groups of four (or said whole), an expiry is four, a security code three or four.
EXPECTED_DIGITS: Final = {
    "pan": frozenset({4, 8, 12, 16, 13, 15, 19}),
    "expiry": frozenset({4}),
    "cvv": frozenset({3, 4}),
}


def keys_from_speech(text: str, alternatives: Sequence[str] = (), field: str | None = None) -> str:
    """The keys an utterance stands for: "*" if the caller started again, the digits
    they said, "#" if they said they were done. The digits come from the first of the
    recognizer's readings (best first) with a count `field` expects, and of those the
    first `plausible` one: Whisper miscounts a run of one digit or mishears a word, and
    the right reading is usually among its others.

    >>> keys_from_speech("four one one one")
    '4111'
    >>> keys_from_speech("sorry, no, start again: four two")
    '*42'
    >>> keys_from_speech("one two three, that's it")
    '123#'
    """
    words = _words(text)
    expected = EXPECTED_DIGITS.get(field or "")
    read = expiry_digits if field == "expiry" else spoken_digits
    digits = (
        likely_digits([text, *alternatives], expected, lambda said: plausible(field, said), read)
        if expected
        else spoken_digits(text)
    )
    if field == "expiry":
        digits = _with_leading_oh(digits)
    clear = "*" if _says(words, _CLEAR) else ""
    done = "#" if _says(words, _DONE) else ""
    return clear + digits + done


def expiry_digits(text: str) -> str:
    """The digits of a spoken expiry, a year said in full ("twelve twenty twenty eight",
    "oh five twenty thirty") shortened to its last two, as capture takes MMYY.

    >>> expiry_digits("twelve twenty twenty eight"), expiry_digits("oh five thirty")
    ('1228', '0530')
    """
    digits = spoken_digits(text)
    if len(digits) == EXPIRY_DIGITS + 2 and is_month(digits[:2]) and digits[2:4] == "20":
        return digits[:2] + digits[4:]
    return digits


def _with_leading_oh(digits: str) -> str:
    """Three digits for an expiry, when no reading had four, are a month said without
    its "oh" ("five twenty eight"), or an "oh" the recognizer lost: 528 is 0528. Only
    then: a reading that has four digits is taken first."""
    if len(digits) == EXPIRY_DIGITS - 1 and is_month("0" + digits[0]):
        return "0" + digits
    return digits


def plausible(field: str | None, digits: str) -> bool:
    """Whether one utterance's digits could be what `field` asks for: a whole card
    number passes Luhn, and an expiry's month is 01-12. A group, or a code, always could.

    >>> plausible("pan", "4111111111111111"), plausible("pan", "4111111111111112")
    (True, False)
    >>> plausible("expiry", "4930"), plausible("expiry", "0930")
    (False, True)
    """
    if field == "pan" and len(digits) >= CARD_MIN_DIGITS:
        return luhn_valid(digits)
    if field == "expiry" and len(digits) == EXPIRY_DIGITS:
        return is_month(digits[:2])
    return True


def answer_of(text: str) -> Answer | None:
    """Yes or no to the read-back; None when the caller said neither, or both."""
    words = set(_words(text))
    yes, no = bool(words & _YES), bool(words & _NO)
    if yes == no:
        return None
    return "yes" if yes else "no"


def key_answer(key: str) -> Answer | None:
    """The read-back's keypad answer: 1 yes, 2 no."""
    return _KEY_ANSWERS.get(key)


def after_answer(text: str) -> str:
    """What follows the yes in "yes, twelve twenty eight": the next field's keys."""
    match = re.search(r"\b(yes|yeah|yep|yup|correct|right)\b[\s,.!]*", text, re.IGNORECASE)
    return keys_from_speech(text[match.end() :]) if match else ""


def field_label(field_name: str | None) -> str:
    """How the agent's labels name a field ("card number")."""
    return FIELD_LABELS.get(field_name or "", "card details")


def capture_transcript(field_name: str | None, keys: str) -> str:
    """What the agent reads of an utterance during a capture: a label, never its digits."""
    digits = sum(key.isdigit() for key in keys)
    what = field_label(field_name)
    parts: list[str] = []
    if keys.startswith("*"):
        parts.append(f"[{what}: started again]")
    if digits:
        parts.append(f"[{what}: {digits} digit{'s' if digits != 1 else ''}]")
    if keys.endswith("#"):
        parts.append(f"[{what}: done]")
    return " ".join(parts) or "[no card details heard]"


def free_transcript(text: str) -> str:
    """A call's transcript outside a capture, every card-like run replaced by a label."""
    return redact(text).strip()


MAX_TRANSCRIPT_CHARS: Final = 2000  # an utterance stored and pushed (`voice.transcript`)


def call_transcript(text: str, carried: int = 0) -> tuple[str, int]:
    """One utterance of a tenant's call transcription, redacted, and the digits it ends
    with: a number split over utterances ("four one" / "one one") is redacted as one
    (`redact_continuing`). Cut to `MAX_TRANSCRIPT_CHARS` only after redaction, so a cut
    never leaves part of a number unlabelled."""
    redacted, trailing = redact_continuing(text, carried)
    return redacted.strip()[:MAX_TRANSCRIPT_CHARS], trailing


def readback_phrases(last4: str) -> list[str]:
    """The standard phrases of the read-back: "You entered a card ending in four two four
    two. If that is right, say yes, or press 1. ..." (`None` marks a pause)."""
    if not (len(last4) == 4 and last4.isascii() and last4.isdigit()):
        raise ValueError("last4 must be 4 digits")
    words = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    return ["readback_card", *(words[int(d)] for d in last4), PAUSE, "speech_confirm"]


PAUSE: Final = "_pause"

# What the customer hears when capture refuses a spoken field (a standard phrase each).
# Capture's reasons are text for the agent: the two that saying it again cannot mend
# are told apart by their words (a unit test holds them to capture's validators).
REFUSAL_PHRASES: Final = {
    "pan": "invalid_pan",
    "expiry": "invalid_expiry",
    "cvv": "invalid_cvv",
    "postcode": "invalid_postcode",
}


# A field refused this often is likely heard wrong (an accent, a noisy line): the keypad
# is offered, since keys pressed in a speech capture reach capture too.
KEYPAD_HINT_AFTER: Final = 2


def refusal_phrases(field_name: str, reason: str | None, refusals: int) -> list[str]:
    """What the customer hears when capture refused a spoken field the `refusals`-th time:
    "That card number is not valid. Please try again.", and from the second time on
    "You can also key it in on your telephone keypad."; where saying it again cannot
    help (an expired card, a brand not taken), why, and nothing more."""
    if reason == "card has expired":
        return ["card_expired"]
    if reason is not None and reason.endswith(" is not accepted"):
        return ["card_not_accepted"]
    phrase = REFUSAL_PHRASES.get(field_name)
    if phrase is None:
        return []
    return [phrase, "speech_keypad"] if refusals >= KEYPAD_HINT_AFTER else [phrase]


# --- what capture has told us about one capture ---------------------------------------------


@dataclass
class CaptureView:
    """Which field a capture is asking for, followed from its progress events, so a
    transcript names the field and the read-back comes once the card number is valid."""

    fields: tuple[str, ...] = DEFAULT_FIELDS
    complete: set[str] = field(default_factory=set)
    current: str | None = "pan"
    refusals: dict[str, int] = field(default_factory=dict)  # capture's refusals, by field

    def progress(self, name: str, event: str, complete: bool, valid: bool | None) -> None:
        if name not in self.fields:
            return
        if event == "rejected":
            self.refusals[name] = self.refusals.get(name, 0) + 1
        if event == "completed" and complete and valid:
            self.complete.add(name)
            self.current = next((f for f in self.fields if f not in self.complete), None)
        elif event in ("recapture", "key", "rejected", "cleared") and not complete:
            self.complete.discard(name)
            if event != "cleared" or self.current is None:
                self.current = name

    def pan_confirmable(self, name: str, event: str, valid: bool | None, last4: str | None) -> bool:
        """This event is the card number becoming complete and valid: read it back."""
        return name == "pan" and event == "completed" and bool(valid) and bool(last4)
