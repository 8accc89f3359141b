"""What the standard prompts say: one recording per phrase, per language.

A phrase is named by a short key (`enter_pan`, `twelve`, `letter_k`); a prompt is a
sequence of keys. `transact ivr render-prompts` records every key of `TEXTS` once with
an offline speech synthesizer; a tenant may replace any of them with its own recording
under the same name. Numbers, amounts and the last four digits are said by joining
the word recordings (`speech.py`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

LANGUAGES: Final = ("en",)

SENTENCES: Final = MappingProxyType(
    {
        "greeting": "Welcome to our secure payment line.",
        "unavailable": "Sorry, this payment line is not available right now.",
        "enter_account": "Please enter your account number, followed by the hash key.",
        "account_not_found": "Sorry, we could not find that account.",
        "lookup_failed": "Sorry, we cannot look up your account right now.",
        "amount_due": "The amount to pay is",
        "enter_pan": "Please enter your card number, followed by the hash key.",
        "enter_expiry": "Please enter the expiry date: two digits for the month, "
        "and two for the year.",
        "enter_cvv": "Please enter the security code from the back of your card.",
        "enter_postcode": "Please enter the numbers in your billing postcode, "
        "followed by the hash key.",
        "invalid_pan": "That card number is not valid. Please try again.",
        "invalid_expiry": "That expiry date is not valid. Please try again.",
        "invalid_cvv": "That security code is not valid. Please try again.",
        "invalid_postcode": "That postcode is not valid. Please try again.",
        "card_expired": "That card has expired. Please use another card.",
        "card_not_accepted": "Sorry, we do not accept that type of card. Please use another card.",
        "readback_card": "You entered a card ending in",
        "readback_amount": "The amount is",
        "confirm_menu": "To pay now, press 1. To enter your card again, press 2.",
        "invalid_choice": "Sorry, that is not one of the choices.",
        "no_input": "Sorry, we did not hear anything.",
        "processing": "Thank you. Please wait while we process your payment.",
        "approved": "Your payment was successful.",
        "confirmation_is": "Your confirmation number is",
        "again": "Again,",
        "declined": "Sorry, your payment was declined.",
        "retry_menu": "To try another card, press 1. To end this call, press 2.",
        "payment_failed": "Sorry, we could not take your payment. No money has been taken.",
        "too_many_attempts": "Sorry, there have been too many attempts.",
        "goodbye": "Thank you for calling. Goodbye.",
        # The end of a flow an agent handed the call to: the agent takes it back.
        "returning": "Please hold while we return you to your agent.",
        # Played by voice after a card number is spoken (read-back); on the shared shelf.
        "speech_confirm": "If that is right, say yes, or press 1. "
        "If it is not, say no, or press 2.",
        "speech_again": "Please say the card number again.",
        # After a spoken field was refused twice: keys reach capture in speech mode too.
        "speech_keypad": "You can also key it in on your telephone keypad.",
    }
)

_ONES: Final = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS: Final = "twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALE: Final = ("hundred", "thousand", "million", "billion", "and", "point")
_MONEY: Final = "pound pounds penny pence dollar dollars cent cents euro euros".split()
LETTERS: Final = tuple(f"letter_{c}" for c in "abcdefghijklmnopqrstuvwxyz")

WORDS: Final = MappingProxyType(
    {
        **{word: word for word in (*_ONES, *_TENS, *_SCALE, *_MONEY)},
        # A letter alone is read as its name ("ay", "bee"); capitals make espeak spell it.
        **{key: key[-1].upper() for key in LETTERS},
    }
)

TEXTS: Final = MappingProxyType({**SENTENCES, **WORDS})
"""Every standard phrase and its words: what `render-prompts` records."""

ONES: Final = tuple(_ONES)
TENS: Final = tuple(_TENS)

PAUSE: Final = "_pause"  # silence between sentences; not a recording
PAUSE_MS: Final = 350
WORD_GAP_MS: Final = 60  # between the words of a number or an amount


def is_phrase(name: str) -> bool:
    return name in TEXTS
