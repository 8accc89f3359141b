"""Payment link rules, free of I/O: tokens, expiry, who may still pay, card attempts, what
the page shows, and the words and numbers it shows them in.

A link's URL carries only its token: 256 random bits, stored as a hash. Amount,
currency, reference and tenant are bound to the link on the server; nothing a
customer can change in a URL changes what they pay. Time and randomness come in
as arguments; nothing here reads a clock.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from transact.contracts.money import currency_exponent

TOKEN_BYTES: Final = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{43}")
CHANNELS: Final = ("sms", "email", "chat")
MIN_EXPIRES_IN: Final = 60
DEFAULT_EXPIRES_IN: Final = 30 * 60
LONGEST_EXPIRES_IN: Final = 7 * 24 * 3600
DEFAULT_MAX_ATTEMPTS: Final = 3
MAX_REFERENCE: Final = 128


def token_hash(token: str) -> str:
    """What is stored of a token. 256 random bits need no salt or slow hash: nobody can
    search that space, so a plain SHA-256 is a safe verifier."""
    return hashlib.sha256(b"transact-pay-link:" + token.encode()).hexdigest()


def looks_like_token(text: str) -> bool:
    return bool(_TOKEN.fullmatch(text))


class LinkError(ValueError):
    """A rule refused: `status` and `code` for the API, the message for a person."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class LinkStatus(StrEnum):
    ACTIVE = "active"  # created (and sent), not opened yet
    OPENED = "opened"  # the customer has the page
    COMPLETED = "completed"  # paid: dead for good
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    FAILED = "failed"  # no card attempts left


OPEN: Final = frozenset({LinkStatus.ACTIVE, LinkStatus.OPENED})


class Submitter(StrEnum):
    CUSTOMER = "customer"  # the customer's Pay button authorizes
    AGENT = "agent"  # the card waits, validated, for the agent's submit


# --- tenant settings --------------------------------------------------------------------


@dataclass(frozen=True)
class LinkSettings:
    merchant_name: str | None = None
    default_expires_in: int = DEFAULT_EXPIRES_IN
    max_expires_in: int = LONGEST_EXPIRES_IN
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    submitter: Submitter = Submitter.CUSTOMER
    ask_postcode: bool = False
    ask_name: bool = False  # the cardholder's name, as on the card
    # Card posts one address may make per hour, across the tenant's links (card testing).
    card_posts_per_ip_per_hour: int = 20

    def __post_init__(self) -> None:
        object.__setattr__(self, "submitter", Submitter(self.submitter))
        if self.merchant_name is not None and not (
            0 < len(self.merchant_name) <= 100 and self.merchant_name.isprintable()
        ):
            raise LinkError(422, "invalid_settings", "merchant_name: 1-100 printable characters")
        if not MIN_EXPIRES_IN <= self.max_expires_in <= LONGEST_EXPIRES_IN:
            raise LinkError(
                422,
                "invalid_settings",
                f"max_expires_in: {MIN_EXPIRES_IN}-{LONGEST_EXPIRES_IN} seconds (7 days)",
            )
        if not MIN_EXPIRES_IN <= self.default_expires_in <= self.max_expires_in:
            raise LinkError(
                422, "invalid_settings", "default_expires_in: at least 60 s, at most max_expires_in"
            )
        if not 1 <= self.max_attempts <= 10:
            raise LinkError(422, "invalid_settings", "max_attempts: 1-10")
        if not 1 <= self.card_posts_per_ip_per_hour <= 1000:
            raise LinkError(422, "invalid_settings", "card_posts_per_ip_per_hour: 1-1000")

    def to_dict(self) -> dict[str, Any]:
        return {
            "merchant_name": self.merchant_name,
            "default_expires_in": self.default_expires_in,
            "max_expires_in": self.max_expires_in,
            "max_attempts": self.max_attempts,
            "submitter": self.submitter.value,
            "ask_postcode": self.ask_postcode,
            "ask_name": self.ask_name,
            "card_posts_per_ip_per_hour": self.card_posts_per_ip_per_hour,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LinkSettings:
        try:
            return cls(**data)
        except (TypeError, ValueError) as problem:
            if isinstance(problem, LinkError):
                raise
            raise LinkError(422, "invalid_settings", f"unknown or bad setting: {problem}") from None

    @property
    def fields(self) -> list[str]:
        """The card fields the page asks for, named as card capture names them."""
        return ["pan", "expiry", "cvv", *(["postcode"] if self.ask_postcode else [])]


def expiry(settings: LinkSettings, expires_in: int | None, now: datetime) -> datetime:
    """When a new link dies: the tenant's default, or what was asked within its limits."""
    seconds = settings.default_expires_in if expires_in is None else expires_in
    if not MIN_EXPIRES_IN <= seconds <= settings.max_expires_in:
        raise LinkError(
            422,
            "invalid_expiry",
            f"expires_in must be {MIN_EXPIRES_IN}-{settings.max_expires_in} seconds",
        )
    return now + timedelta(seconds=seconds)


def check_channel(channel: str, to: str | None) -> None:
    if channel not in CHANNELS:
        raise LinkError(422, "invalid_channel", f"channel must be one of {', '.join(CHANNELS)}")
    if channel == "chat" and to is not None:
        raise LinkError(
            422, "unexpected_destination", "a chat link is pasted by the agent: leave 'to' out"
        )
    if channel != "chat" and not to:
        what = "an e-mail address" if channel == "email" else "a mobile number in E.164"
        raise LinkError(422, "missing_destination", f"'to' is required: {what}")


def check_reference(reference: str) -> str:
    reference = reference.strip()
    if not 0 < len(reference) <= MAX_REFERENCE or not reference.isprintable():
        raise LinkError(
            422, "invalid_reference", f"reference: 1-{MAX_REFERENCE} printable characters"
        )
    return reference


# --- links and attempts -------------------------------------------------------------------


@dataclass(frozen=True)
class Link:
    id: str
    tenant_id: str
    agent_id: str | None
    created_by: str
    amount: int
    currency: str
    reference: str
    channel: str
    to_masked: str | None
    status: LinkStatus
    attempts: int
    max_attempts: int
    expires_at: datetime
    created_at: datetime
    opened_at: datetime | None = None
    completed_at: datetime | None = None
    payment_id: str | None = None  # the authorized payment
    current_attempt: str | None = None  # the capture of the latest card posted
    message_id: str | None = None
    message_status: str | None = None
    message_reason: str | None = None
    source_payment_id: str | None = None  # the phone capture this link took the place of

    @property
    def open(self) -> bool:
        return self.status in OPEN


def status_at(link: Link, now: datetime) -> LinkStatus:
    """The link's status as of `now`: an open link past its expiry is expired even before
    the sweep records it."""
    if link.open and now >= link.expires_at:
        return LinkStatus.EXPIRED
    return link.status


class AttemptStatus(StrEnum):
    POSTED = "posted"  # sent to card capture, no verdict yet
    READY = "ready"  # valid, waiting for the agent's submit
    SUBMITTED = "submitted"  # with the PSP
    CHALLENGE = "challenge"  # the bank wants 3-D Secure
    INVALID = "invalid"  # card capture's rules refused it
    AUTHORIZED = "authorized"
    DECLINED = "declined"
    FAILED = "failed"
    EXPIRED = "expired"  # the capture ran out of time (e.g. the agent never submitted)


_RANK: Final = {
    AttemptStatus.POSTED: 0,
    AttemptStatus.READY: 1,
    AttemptStatus.SUBMITTED: 2,
    AttemptStatus.CHALLENGE: 3,
}
UNSUCCESSFUL: Final = frozenset(
    {AttemptStatus.INVALID, AttemptStatus.DECLINED, AttemptStatus.FAILED, AttemptStatus.EXPIRED}
)


@dataclass(frozen=True)
class Attempt:
    id: str  # the capture id, which is also the payment id
    link_id: str
    tenant_id: str
    status: AttemptStatus
    agent_submits: bool = False
    errors: Mapping[str, str] = field(default_factory=dict)
    action_url: str | None = None
    decline_code: str | None = None

    @property
    def in_flight(self) -> bool:
        return self.status in _RANK


def moves_to(current: AttemptStatus, new: AttemptStatus) -> bool:
    """Whether an attempt at `current` takes `new`. Events of different topics arrive in
    any order and more than once: an attempt only moves forward, and an outcome is final."""
    if current not in _RANK:
        return False
    return new not in _RANK or _RANK[new] > _RANK[current]


def link_after(link: Link, attempt: AttemptStatus) -> LinkStatus | None:
    """The link's next status once an attempt ends, or None when it stays as it is."""
    if attempt is AttemptStatus.AUTHORIZED:
        # Money moved: the link is paid even if it expired or was cancelled meanwhile.
        return None if link.status is LinkStatus.COMPLETED else LinkStatus.COMPLETED
    if not link.open:
        return None
    if attempt in UNSUCCESSFUL and link.attempts >= link.max_attempts:
        return LinkStatus.FAILED
    return None


# What each dead link tells the customer, in plain words.
ENDED: Final = {
    LinkStatus.COMPLETED: ("paid", "This payment has been made. There is nothing more to do."),
    LinkStatus.EXPIRED: (
        "expired",
        "This payment link has expired. Please ask for a new one if you still want to pay.",
    ),
    LinkStatus.CANCELLED: (
        "cancelled",
        "This payment link was cancelled. Please ask for a new one if you still want to pay.",
    ),
    LinkStatus.FAILED: (
        "too_many_attempts",
        "This payment link can no longer be used after several unsuccessful tries. "
        "Please contact us for a new one.",
    ),
}


def may_post_card(link: Link, attempt: Attempt | None, now: datetime) -> None:
    """Raise `LinkError` when the page must not take another card now."""
    status = status_at(link, now)
    if status not in OPEN:
        code, message = ENDED[status]
        raise LinkError(410, code, message)
    if attempt is not None and attempt.in_flight:
        raise LinkError(409, "attempt_in_progress", "Your card is already being checked.")
    if link.attempts >= link.max_attempts:
        code, message = ENDED[LinkStatus.FAILED]
        raise LinkError(410, code, message)


# --- phone captures an agent turns into links ------------------------------------------


class PhoneStatus(StrEnum):
    """Remote's view of a phone capture, told by capture's events (never read from
    capture's tables): open, with the PSP, or ended."""

    CAPTURING = "capturing"  # open: keys being typed, or all valid and not yet submitted
    SUBMITTED = "submitted"  # the card went to the PSP: too late for a link
    CANCELLED = "cancelled"
    EXPIRED = "expired"


_PHONE_RANK: Final = {
    PhoneStatus.CAPTURING: 0,
    PhoneStatus.SUBMITTED: 1,
    PhoneStatus.CANCELLED: 2,
    PhoneStatus.EXPIRED: 2,
}


@dataclass(frozen=True)
class PhoneCapture:
    id: str  # the capture id, which is also the payment id
    tenant_id: str
    call_id: str | None
    agent_id: str | None
    # None while only a later event (cancelled, say) has been seen, not the start.
    amount: int | None
    currency: str | None
    reference: str | None
    status: PhoneStatus
    link_id: str | None = None  # the link it was turned into


def phone_moves_to(current: PhoneStatus, new: PhoneStatus) -> bool:
    """Capture's events arrive in any order and more than once: a phone capture only
    moves forward (open, submitted, ended) and an end is final."""
    return _PHONE_RANK[new] > _PHONE_RANK[current]


def phone_status_after_cancel(reason: str) -> PhoneStatus:
    return PhoneStatus.EXPIRED if reason == "expired" else PhoneStatus.CANCELLED


@dataclass(frozen=True)
class LinkTerms:
    amount: int
    currency: str
    reference: str


def terms_from_phone(
    capture: PhoneCapture, amount: int | None, currency: str | None, reference: str | None
) -> LinkTerms:
    """What a link made from an open phone capture binds: the capture's own amount,
    currency and reference. A request may repeat them, never change them.

    Raises `LinkError`: 409 `not_capturing` once the capture was submitted, ended or
    already turned into a link; 422 `source_mismatch` for a different sum or reference.
    """
    if capture.link_id is not None:
        raise LinkError(
            409, "not_capturing", "this payment has already been turned into a payment link"
        )
    if capture.status is not PhoneStatus.CAPTURING:
        raise LinkError(409, "not_capturing", f"the payment is {capture.status.value}")
    if capture.amount is None or capture.currency is None or capture.reference is None:
        raise LinkError(409, "not_capturing", "the payment's amount is not known yet")
    bound = LinkTerms(capture.amount, capture.currency, capture.reference)
    given = {"amount": amount, "currency": currency, "reference": reference}
    for name, value in given.items():
        theirs = getattr(bound, name)
        if isinstance(value, str) and isinstance(theirs, str):
            same = value.strip() == theirs.strip()
        else:
            same = value == theirs
        if value is not None and not same:
            raise LinkError(
                422,
                "source_mismatch",
                f"{name} differs from the payment's; leave it out to use the payment's own",
            )
    return bound


class PageState(StrEnum):
    FORM = "form"  # enter a card (again)
    WAITING = "waiting"  # the card is being checked or authorized
    AGENT = "agent"  # valid; the agent will take the payment
    CHALLENGE = "challenge"  # off to the bank's check
    PAID = "paid"
    ENDED = "ended"  # expired, cancelled, no attempts left


def page_state(link: Link, attempt: Attempt | None, now: datetime) -> PageState:
    status = status_at(link, now)
    if status is LinkStatus.COMPLETED:
        return PageState.PAID
    if status not in OPEN:
        return PageState.ENDED
    if attempt is None or not attempt.in_flight:
        return PageState.FORM
    if attempt.status is AttemptStatus.READY:
        return PageState.AGENT
    if attempt.status is AttemptStatus.CHALLENGE and attempt.action_url:
        return PageState.CHALLENGE
    return PageState.WAITING


# Why the last attempt did not work, for the customer (a decline code's plain meaning).
_OUTCOME_WORDS: Final = {
    "insufficient_funds": "Your bank declined the payment: there are not enough funds.",
    "expired_card": "Your bank says the card has expired.",
    "incorrect_cvc": "Your bank says the security code is wrong.",
    "authentication_required": "The bank's security check was not completed.",
    "processing_error": "Something went wrong while contacting your bank. Please try again.",
}


def last_outcome(attempt: Attempt | None) -> str | None:
    """What to tell a customer back at the form after an attempt that did not succeed."""
    if attempt is None or attempt.status not in UNSUCCESSFUL:
        return None
    if attempt.status is AttemptStatus.INVALID:
        return "Please check the card details below."
    if attempt.status is AttemptStatus.EXPIRED:
        return "That took too long. Please enter your card details again."
    if attempt.decline_code in _OUTCOME_WORDS:
        return _OUTCOME_WORDS[attempt.decline_code]
    if attempt.status is AttemptStatus.FAILED:
        return _OUTCOME_WORDS["processing_error"]
    return "Your bank declined the payment. You can try another card."


# Card capture's reasons, said to a customer (capture speaks to agents).
_FIELD_WORDS: Final = {
    "pan": "Enter a valid card number.",
    "expiry": "Enter the expiry date as MM/YY, not in the past.",
    "cvv": "Enter the security code from the back of the card.",
    "postcode": "Enter the postcode of the card's billing address.",
}
NAME_MESSAGE: Final = "Enter your name as it is written on the card."
POSTCODE_MESSAGE: Final = (
    "Enter the postcode of the card's billing address: 3 to 10 letters, numbers, "
    "spaces or hyphens, such as SW1A 1AA or 90210."
)


def field_message(name: str, reason: str) -> str:
    if name == "pan" and reason.endswith("is not accepted"):
        return "We cannot accept this type of card. Please use another card."
    if name == "expiry" and reason == "card has expired":
        return "This card has expired."
    return _FIELD_WORDS.get(name, "Check this field.")


# --- what the page posts ----------------------------------------------------------------

_SEPARATORS: Final = re.compile(r"[\s\-./]+")
MAX_POSTED: Final = 32  # characters per field: anything longer is not a card field


def posted_card(form: Mapping[str, str], fields: list[str]) -> dict[str, str]:
    """The page's fields as card capture names them, with the separators a person types
    (spaces, dashes, the slash of MM/YY) taken out of the card's digits; a postcode keeps
    its own ("SW1A 1AA"), as typed. Judging them is capture's job."""
    names = {"pan": "number", "expiry": "expiry", "cvv": "cvc", "postcode": "postcode"}
    card: dict[str, str] = {}
    for name in fields:
        raw = form.get(names[name], "")[:MAX_POSTED]
        if name == "postcode":
            card[name] = raw
            continue
        value = _SEPARATORS.sub("", raw)
        if name == "expiry" and len(value) == 6 and value.isdigit():
            value = value[:2] + value[4:]  # MM/YYYY
        card[name] = value
    return card


# --- words and numbers --------------------------------------------------------------------

SYMBOLS: Final = {"GBP": "£", "EUR": "€", "USD": "$", "JPY": "¥", "AUD": "A$", "CAD": "C$"}


def money(amount: int, currency: str) -> str:
    """`£12.50`, `€1,000.00`, `1,234 ISK`: amounts as people read them."""
    exponent = currency_exponent(currency) or 0
    major, minor = divmod(amount, 10**exponent)
    text = f"{major:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{text}" if symbol else f"{text} {currency}"


def duration(seconds: float) -> str:
    """`30 minutes`, `2 hours`, `7 days`: how long a link works, rounded down."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = int(seconds // size)
        if count >= 1 and (unit == "minute" or seconds % size < 60 or count >= 2):
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return "1 minute"
