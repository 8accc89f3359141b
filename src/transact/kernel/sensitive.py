"""Types that hold card data and refuse to show it, and the Luhn rules behind masking."""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

MASK = "***"

# 13-19 digits, optionally split by single spaces or dashes, not glued to other digits.
CARD_LIKE = re.compile(r"(?<![0-9])(?:[0-9][ -]?){12,18}[0-9](?![0-9])")


def luhn_valid(digits: str) -> bool:
    if not digits.isdigit():
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
    if len(digits) < 13:
        return MASK
    return f"{digits[:6]}{'*' * (len(digits) - 10)}{digits[-4:]}"


def redact_card_numbers(text: str) -> str:
    """Mask every Luhn-valid 13-19 digit run in free text (separators allowed)."""

    def _replace(match: re.Match[str]) -> str:
        digits = re.sub(r"[ -]", "", match.group(0))
        if 13 <= len(digits) <= 19 and luhn_valid(digits):
            return mask_pan(digits)
        return match.group(0)

    return CARD_LIKE.sub(_replace, text)


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
        if isinstance(other, SensitiveStr):
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
        return core_schema.no_info_after_validator_function(
            cls,
            core_schema.str_schema(),
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
