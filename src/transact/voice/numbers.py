"""Spoken numbers to digits, and card data out of transcripts. Pure functions, no I/O.

`spoken_digits` reads what a recognizer heard ("four one one one", "double one",
"twelve twenty eight", "4111 1111") as the digit string the caller meant. Card
digits are spoken one by one, in pairs ("twelve twenty eight") or with scale words
("one hundred"), so number words are read the way people say digits, not as
arithmetic: "one two" is "12", "twenty eight" is "28", "twenty" alone is "20".

`redact` removes anything in a transcript that may be card data: runs of digits or
number words long enough to be a card number, expiry or security code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

ZERO_WORDS: Final = frozenset({"zero", "oh", "o", "nought", "naught", "nil"})
UNITS: Final = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
TEENS: Final = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS: Final = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES: Final = {"hundred": 100, "thousand": 1000}
REPEATS: Final = {"double": 2, "triple": 3, "treble": 3}
# Every word that carries a digit; the recognizer's digits mode allows exactly these.
NUMBER_WORDS: Final = frozenset(
    ZERO_WORDS | UNITS.keys() | TEENS.keys() | TENS.keys() | SCALES.keys() | REPEATS.keys()
)
# Words that may sit inside a spoken number without ending it ("one hundred and five",
# "four one one one, um, one one one one").
_GLUE: Final = frozenset({"and", "um", "umm", "uh", "er", "erm", "ah", "hmm"})
_EXPIRY_CUES: Final = (
    "expir",
    "exp",
    "valid",
    "until",
    "thru",
    "through",
    "end date",
    "good through",
    "month",
    "year",
)
_CUE_WINDOW_CHARS: Final = 40  # how far before a number an expiry cue may stand

_TOKEN: Final = re.compile(r"[0-9]+|[a-z]+(?:'[a-z]+)?", re.IGNORECASE)
# Typed expiry: 12/28, 12-2028, 1/28
_TYPED_EXPIRY: Final = re.compile(r"^(0?[1-9]|1[0-2])\s*[/\-.]\s*(\d{2}|\d{4})$")
# What may stand between two parts of one number: spaces and separators only.
_SEPARATOR: Final = re.compile(r"^[\s,.\-/:;]*$")

MIN_CARD_DIGITS: Final = 13
MAX_CARD_DIGITS: Final = 19
MIN_REDACTED_DIGITS: Final = 3  # "three items" stays; "one two three" may be a code


@dataclass(frozen=True)
class _Token:
    text: str  # lower case
    start: int
    end: int

    @property
    def numeric(self) -> bool:
        return self.text.isdigit() or self.text in NUMBER_WORDS


def _tokens(text: str) -> list[_Token]:
    return [
        _Token(match.group().lower(), match.start(), match.end()) for match in _TOKEN.finditer(text)
    ]


def spoken_digits(text: str) -> str:
    """The digits a caller said: number words and numerals in order, all else ignored.

    >>> spoken_digits("my card number is four one one one, double one, triple seven")
    '411111777'
    >>> spoken_digits("twelve twenty eight")
    '1228'
    """
    # "and" stays for "one hundred and five"; filler ("um") goes, so "double, um, one" is 11.
    words = [token.text for token in _tokens(text) if token.numeric or token.text == "and"]
    return "".join(_read(words))


def _read(words: Sequence[str]) -> Iterator[str]:
    """Digit strings for `words` (number words, numerals and glue words), left to right."""
    position = 0
    while position < len(words):
        word = words[position]
        if word in REPEATS and position + 1 < len(words):
            digit = _single_digit(words[position + 1])
            if digit is not None:
                yield digit * REPEATS[word]
                position += 2
                continue
        value, position_after = _cardinal(words, position)
        if value is not None:
            yield value
            position = position_after
            continue
        if word.isdigit():
            yield word
        elif word in UNITS or word in ZERO_WORDS:
            yield str(UNITS.get(word, 0))
        position += 1


def _single_digit(word: str) -> str | None:
    if word in UNITS:
        return str(UNITS[word])
    if word in ZERO_WORDS:
        return "0"
    if len(word) == 1 and word.isdigit():
        return word
    return None


def _below_hundred(words: Sequence[str], position: int) -> tuple[int | None, int]:
    """A number word phrase of 1-99 at `position` ("seven", "twelve", "twenty eight")."""
    if position >= len(words):
        return None, position
    word = words[position]
    if word in UNITS:
        return UNITS[word], position + 1
    if word in TEENS:
        return TEENS[word], position + 1
    if word in TENS:
        following = words[position + 1] if position + 1 < len(words) else ""
        if following in UNITS:
            return TENS[word] + UNITS[following], position + 2
        return TENS[word], position + 1
    return None, position


def _cardinal(words: Sequence[str], position: int) -> tuple[str | None, int]:
    """A spoken number that is not one digit per word: "twenty eight", "nineteen",
    "one hundred and five", "two thousand twenty". None for a plain unit ("four"),
    which `_read` takes as one digit."""
    head, after = _below_hundred(words, position)
    word = words[position]
    if head is None and word not in SCALES:
        return None, position
    if head is None:
        head, after = 1, position  # "hundred" alone, as in "a hundred"
    total, after = _with_scales(words, head, after)
    if total is None:
        return (str(head), after) if word not in UNITS else (None, position)
    return str(total), after


def _with_scales(words: Sequence[str], head: int, position: int) -> tuple[int | None, int]:
    """`head` times the scale words that follow ("five hundred", "two thousand"), plus the
    remainder ("and five"); None when no scale word follows."""
    if position >= len(words) or words[position] not in SCALES:
        return None, position
    total = head * SCALES[words[position]]
    position += 1
    if words[position - 1] == "thousand" and position < len(words):
        hundreds, after = _below_hundred(words, position)
        if hundreds is not None and after < len(words) and words[after] == "hundred":
            total += hundreds * 100
            position = after + 1
    if position < len(words) and words[position] == "and":
        position += 1
    rest, after = _below_hundred(words, position)
    if rest is not None:
        total += rest
        position = after
    return total, position


# A miscounted run is a digit or two off; an alternative further off from the best
# reading is another reading altogether (a whole card heard one digit short must not
# become the 12 digits of a worse reading). Chosen on the tuning speakers and espeak
# voices the benchmark does not use (docs/voice.md).
MAX_COUNT_SHIFT: Final = 2


def likely_digits(
    readings: Sequence[str],
    lengths: Container[int],
    plausible: Callable[[str], bool] = lambda _digits: True,
    read: Callable[[str], str] = spoken_digits,
) -> str:
    """The digits of the first reading (best first) with an expected digit count, e.g.
    4 for a card number's group, and at most `MAX_COUNT_SHIFT` digits more or fewer
    than the best reading's; of those, the first that is `plausible` (a whole card
    number passes Luhn), else the first; the best reading's when none has the count.
    A recognizer that miscounts "one one one one" or mishears one word usually has the
    right reading among its alternatives. `read` turns a reading into its digits."""
    candidates = [read(reading) for reading in readings]
    if not candidates:
        return ""
    best = len(candidates[0])
    counted = [
        digits
        for digits in candidates
        if len(digits) in lengths and abs(len(digits) - best) <= MAX_COUNT_SHIFT
    ]
    return next(filter(plausible, counted), counted[0] if counted else candidates[0])


# --- redaction ------------------------------------------------------------------------------


def redact(text: str) -> str:
    """`text` with every possible card number, expiry or security code replaced by a label.

    A run is numerals and number words separated only by spaces, punctuation or filler
    ("um", "and"). Runs of 13-19 digits become "[card number: N digits]", a month/year
    (typed 12/28, or four digits after words like "expires") "[expiry]", 3-4 digits
    "[security code]", any other run of 3 or more digits "[number: N digits]".
    """
    return redact_continuing(text, 0)[0]


def redact_continuing(text: str, carried: int) -> tuple[str, int]:
    """`redact` for one utterance of a conversation: a number may be split over several
    (a caller pausing between "four one" and "one one"). `carried` is how many digits
    the previous utterances ended with; a run that opens this one continues them, and is
    redacted once the whole run is long enough. Also returns the digits this utterance
    ends with (0 when words follow its last number), for the next one."""
    tokens = _tokens(text)
    pieces: list[str] = []
    cursor = 0
    trailing = 0
    for run in _numeric_runs(text, tokens):
        start, end = run[0].start, run[-1].end
        count = len(spoken_digits(text[start:end]))
        before = carried if _only_glue(tokens, 0, start) else 0
        label = _label(text, start, end)
        if label is None and before and before + count >= MIN_REDACTED_DIGITS:
            label = f"[number: {count} more digit{'s' if count != 1 else ''}]"
        trailing = before + count if _only_glue(tokens, end, len(text)) else 0
        if label is None:
            continue
        pieces.append(text[cursor:start])
        pieces.append(label)
        cursor = end
    pieces.append(text[cursor:])
    if not any(token.numeric for token in tokens):
        trailing = carried if _only_glue(tokens, 0, len(text)) else 0
    return "".join(pieces), trailing


def _only_glue(tokens: Sequence[_Token], start: int, end: int) -> bool:
    """Nothing but separators and filler between `start` and `end` of the text."""
    return all(token.text in _GLUE for token in tokens if start <= token.start < end)


def _numeric_runs(text: str, tokens: Sequence[_Token]) -> Iterator[list[_Token]]:
    """Maximal runs of numeric tokens; glue words inside a run belong to it, at its ends not."""
    run: list[_Token] = []
    pending_glue: list[_Token] = []
    for token in tokens:
        joined = bool(run) and _SEPARATOR.match(text[(pending_glue or run)[-1].end : token.start])
        if token.numeric:
            if run and joined:
                run.extend(pending_glue)
            elif run:
                yield run
                run = []
            run.append(token)
            pending_glue = []
        elif token.text in _GLUE and run and joined:
            pending_glue.append(token)
        elif run:
            yield run
            run, pending_glue = [], []
    if run:
        yield run


def _label(text: str, start: int, end: int) -> str | None:
    span = text[start:end]
    digits = spoken_digits(span)
    count = len(digits)
    if count < MIN_REDACTED_DIGITS and not _TYPED_EXPIRY.match(span.strip()):
        return None
    if MIN_CARD_DIGITS <= count <= MAX_CARD_DIGITS:
        return f"[card number: {count} digits]"
    if _TYPED_EXPIRY.match(span.strip()) or (
        count == 4 and (_expiry_cue(text, start) or _spoken_month_year(span))
    ):
        return "[expiry]"
    if count in (3, 4):
        return "[security code]"
    return f"[number: {count} digits]"


def _spoken_month_year(span: str) -> bool:
    """Said the way an expiry is: a month, then a two-digit year as one number word
    ("twelve twenty eight", "oh five thirty", "one two twenty nine", "12 28")."""
    words = [token.text for token in _tokens(span) if token.numeric or token.text == "and"]
    pieces = list(_read(words))
    if len(pieces) < 2 or len(pieces[-1]) != 2:
        return False
    return is_month("".join(pieces[:-1])) and 20 <= int(pieces[-1]) <= 49


def is_month(digits: str) -> bool:
    """Two digits that name a month, 01-12."""
    return len(digits) == 2 and digits.isdigit() and 1 <= int(digits) <= 12


def _expiry_cue(text: str, start: int) -> bool:
    before = text[max(0, start - _CUE_WINDOW_CHARS) : start].lower()
    return any(cue in before for cue in _EXPIRY_CUES)
