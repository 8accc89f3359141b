"""Types that hold card data and refuse to show it, and the Luhn rules behind masking."""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MASK = "***"

# Groups of digits joined by single spaces or dashes; a group is never split.
DIGIT_RUN = re.compile(r"(?<![0-9])[0-9]++(?:[ -][0-9]++)*+")
_DIGIT_GROUP = re.compile(r"[0-9]+")
# The fewest digits of a card number: card schemes issue 13 to 19.
CARD_MIN_DIGITS = 13


def luhn_valid(digits: str) -> bool:
    if not (digits.isascii() and digits.isdigit()):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def mask_pan(digits: str) -> str:
    """BIN (first 6) and last 4, the most PCI DSS allows to be displayed."""
    if len(digits) < CARD_MIN_DIGITS:
        return MASK
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


def _card_spans(run: str) -> list[tuple[int, int]]:
    """Character spans of `run` (one DIGIT_RUN match) that hold card-like numbers.

    Every window of whole groups holding a Luhn-valid 13-19 digits is card-like:
    a card number followed by more spoken digits ("... 1111 12 30 737") is still
    one. Overlapping windows merge, so no card-like window keeps its middle in clear.
    """
    groups = [(g.start(), g.end()) for g in _DIGIT_GROUP.finditer(run)]
    spans: list[list[int]] = []
    for i in range(len(groups)):
        digits, longest = "", -1
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= CARD_MIN_DIGITS and luhn_valid(digits):
                longest = j
        if longest < 0:
            continue
        if spans and i <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], longest)
        else:
            spans.append([i, longest])
    return [(groups[first][0], groups[last][1]) for first, last in spans]


def _digits(text: str) -> str:
    return re.sub(r"[ -]", "", text)


def find_card_numbers(text: str) -> list[str]:
    """The digits of every card-like number in free text (what redaction would mask)."""
    found = []
    for match in DIGIT_RUN.finditer(text):
        run = match.group(0)
        found += [_digits(run[start:end]) for start, end in _card_spans(run)]
    return found


def redact_card_numbers(text: str) -> str:
    """Mask every Luhn-valid 13-19 digit run in free text (separators allowed)."""

    def _replace(match: re.Match[str]) -> str:
        run = match.group(0)
        if len(run) < CARD_MIN_DIGITS:  # too short to hold a card number's digits
            return run
        out: list[str] = []
        pos = 0
        for start, end in _card_spans(run):
            out += [run[pos:start], mask_pan(_digits(run[start:end]))]
            pos = end
        out.append(run[pos:])
        return "".join(out)

    return DIGIT_RUN.sub(_replace, text)


class SensitiveStr:
    """A secret string: `str`, `repr`, formatting and pydantic serialization all mask it.

    Not a `str` subclass on purpose: an f-string or a concatenation must not
    quietly turn it back into clear text. Call `reveal()` where the clear value
    is truly needed (the vault, the wire to the PSP).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, SensitiveStr):
            value = value.reveal()
        self._value = str(value)

    def reveal(self) -> str:
        return self._value

    def masked(self) -> str:
        return MASK

    def __str__(self) -> str:
        return self.masked()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.masked()!r})"

    def __format__(self, spec: str) -> str:
        return format(self.masked(), spec)

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            return self._value == other._value
        return NotImplemented

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._value))

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the clear value wherever the pickle goes.
        raise TypeError(f"{type(self).__name__} cannot be pickled")

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        from_str = core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
        return core_schema.union_schema(
            [core_schema.is_instance_schema(cls), from_str],
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.masked(), when_used="always"
            ),
        )


class Pan(SensitiveStr):
    """A primary account number; it shows at most BIN and last 4."""

    __slots__ = ()

    def __init__(self, value: str) -> None:
        super().__init__(value)
        self._value = re.sub(r"[ -]", "", self._value)

    def masked(self) -> str:
        return mask_pan(self._value) if self._value.isdigit() else MASK

    @property
    def bin(self) -> str:
        return self._value[:6]

    @property
    def last4(self) -> str:
        return self._value[-4:]
