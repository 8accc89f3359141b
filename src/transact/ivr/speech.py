"""Numbers, amounts, digits and letters as sequences of phrase names.

Pure: `amount(1250, "GBP")` is `["twelve", "pounds", "fifty"]`; the prompt library
turns names into audio.
"""

from __future__ import annotations

from typing import Final

from transact.contracts.money import currency_exponent
from transact.ivr.phrases import LETTERS, ONES, TENS

_SCALES: Final = ((10**9, "billion"), (10**6, "million"), (10**3, "thousand"))

# Currencies with words: (one major, many major, one minor, many minor).
_UNITS: Final = {
    "GBP": ("pound", "pounds", "penny", "pence"),
    "USD": ("dollar", "dollars", "cent", "cents"),
    "EUR": ("euro", "euros", "cent", "cents"),
}


def digits(text: str) -> list[str]:
    """Each digit by itself: "4242" is four two four two."""
    return [ONES[int(ch)] for ch in text if ch.isascii() and ch.isdigit()]


def letters(text: str) -> list[str]:
    """Letters spelled out and digits said one by one; anything else is skipped."""
    out: list[str] = []
    for ch in text.lower():
        if "a" <= ch <= "z":
            out.append(LETTERS[ord(ch) - ord("a")])
        elif ch.isascii() and ch.isdigit():
            out.append(ONES[int(ch)])
    return out


def number(n: int) -> list[str]:
    """A whole number in British English: 105 is "one hundred and five"."""
    if n < 0:
        raise ValueError("only numbers of zero or more are said")
    if n == 0:
        return ["zero"]
    words: list[str] = []
    for size, name in _SCALES:
        if n >= size:
            words += [*_below_thousand(n // size), name]
            n %= size
    if n:
        if words and n < 100:
            words.append("and")  # "one thousand and five"
        words += _below_thousand(n)
    return words


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [ONES[n // 100], "hundred"]
        n %= 100
        if n:
            words.append("and")
    if n >= 20:
        words.append(TENS[n // 10 - 2])
        n %= 10
        if n:
            words.append(ONES[n])
    elif n:
        words.append(ONES[n])
    return words


def amount(minor: int, currency: str) -> list[str]:
    """A sum of money as a person says it: "twelve pounds fifty", "five dollars and ten
    cents". Currencies without words: the number, then the code spelled out."""
    exponent = currency_exponent(currency)
    if exponent is None:
        raise ValueError("not an ISO 4217 currency")
    major, rest = divmod(minor, 10**exponent)
    units = _UNITS.get(currency)
    if units is None:
        said = number(major)
        if rest:
            said += ["point", *digits(str(rest).rjust(exponent, "0"))]
        return [*said, *letters(currency)]
    one, many, one_minor, many_minor = units
    said = [*number(major), one if major == 1 else many] if major else []
    if rest:
        cents = [*number(rest), one_minor if rest == 1 else many_minor]
        if not said:
            return cents
        if currency == "GBP" and rest >= 10:
            return [*said, *number(rest)]  # "twelve pounds fifty"
        return [*said, "and", *cents]
    return said or ["zero", many]
