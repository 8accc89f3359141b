"""Card capture rules, free of I/O: brands, validation and the keypad state machine.

A capture is a `Session` (what may be stored and published: counts, statuses,
brand, BIN and last 4) plus a `Card` (the digits, which live nowhere else and
only ever travel sealed). Every transition is a pure function that takes both
and returns a `Step`: the new session, the new card and the `Progress` events
to publish. Time comes in as arguments; nothing here reads a clock.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from transact.contracts.capture import billing_postcode, holder_name
from transact.kernel.sensitive import luhn_valid

FIELD_NAMES: Final = ("pan", "expiry", "cvv", "postcode")
KEYS: Final = frozenset("0123456789*#")
EVENTS: Final = frozenset(
    {"key", "cleared", "rejected", "completed", "failed", "recapture", "ignored"}
)

MIN_PAN_LENGTH: Final = 13
MAX_PAN_LENGTH: Final = 19
EXPIRY_LENGTH: Final = 4
MAX_YEARS_AHEAD: Final = 20
MIN_POSTCODE_LENGTH: Final = 3
MAX_POSTCODE_LENGTH: Final = 10

# The longest value any field may hold (the Card refuses anything longer).
_MAX_LENGTH: Final = MappingProxyType(
    {"pan": MAX_PAN_LENGTH, "expiry": EXPIRY_LENGTH, "cvv": 4, "postcode": MAX_POSTCODE_LENGTH}
)


class Brand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    DINERS = "diners"
    JCB = "jcb"
    UNIONPAY = "unionpay"
    MAESTRO = "maestro"


# --- brands ------------------------------------------------------------------------

# IIN ranges as (brand, first prefix, last prefix), both ends included. The ranges
# of different brands never overlap: UnionPay's 62 is split around Discover's
# 622126-622925 co-brand range.
_IIN_RANGES: Final[tuple[tuple[Brand, str, str], ...]] = (
    (Brand.VISA, "4", "4"),
    (Brand.MASTERCARD, "51", "55"),
    (Brand.MASTERCARD, "2221", "2720"),
    (Brand.AMEX, "34", "34"),
    (Brand.AMEX, "37", "37"),
    (Brand.DISCOVER, "6011", "6011"),
    (Brand.DISCOVER, "644", "649"),
    (Brand.DISCOVER, "65", "65"),
    (Brand.DISCOVER, "622126", "622925"),
    (Brand.DINERS, "300", "305"),
    (Brand.DINERS, "3095", "3095"),
    (Brand.DINERS, "36", "36"),
    (Brand.DINERS, "38", "39"),
    (Brand.JCB, "3528", "3589"),
    (Brand.UNIONPAY, "620000", "622125"),
    (Brand.UNIONPAY, "622926", "629999"),
    (Brand.UNIONPAY, "81", "81"),
    (Brand.MAESTRO, "5018", "5018"),
    (Brand.MAESTRO, "5020", "5020"),
    (Brand.MAESTRO, "5038", "5038"),
    (Brand.MAESTRO, "5893", "5893"),
    (Brand.MAESTRO, "6304", "6304"),
    (Brand.MAESTRO, "6759", "6759"),
    (Brand.MAESTRO, "6761", "6763"),
)
_IIN_DIGITS: Final = 6

# The same ranges as closed intervals of 6-digit IINs.
_INTERVALS: Final[tuple[tuple[Brand, int, int], ...]] = tuple(
    (brand, int(lo.ljust(_IIN_DIGITS, "0")), int(hi.ljust(_IIN_DIGITS, "9")))
    for brand, lo, hi in _IIN_RANGES
)

LENGTHS: Final[Mapping[Brand, tuple[int, ...]]] = MappingProxyType(
    {
        Brand.VISA: (13, 16, 19),
        Brand.MASTERCARD: (16,),
        Brand.AMEX: (15,),
        Brand.DISCOVER: tuple(range(16, 20)),
        Brand.DINERS: tuple(range(14, 20)),
        Brand.JCB: tuple(range(16, 20)),
        Brand.UNIONPAY: tuple(range(16, 20)),
        Brand.MAESTRO: tuple(range(13, 20)),
    }
)

# The length at which a valid card number ends its field on its own; Maestro has
# no typical length, so it always waits for `#` (or 19 digits).
TYPICAL_LENGTH: Final[Mapping[Brand, int | None]] = MappingProxyType(
    {
        Brand.VISA: 16,
        Brand.MASTERCARD: 16,
        Brand.AMEX: 15,
        Brand.DISCOVER: 16,
        Brand.DINERS: 14,
        Brand.JCB: 16,
        Brand.UNIONPAY: 16,
        Brand.MAESTRO: None,
    }
)


def _is_digits(text: object) -> bool:
    return isinstance(text, str) and text.isascii() and text.isdigit()


def brand_of(digits: str) -> Brand | None:
    """The brand of a card number or of the start of one.

    A prefix gets a brand only once every number that starts with it belongs to
    that brand ("4" is Visa, "3" is not yet anything, "34" is Amex, "35" is not
    yet JCB but "353" is), so the answer never changes as more digits arrive.
    None for unknown numbers, undecided prefixes, empty or non-digit input.
    """
    if not _is_digits(digits):
        return None
    prefix = digits[:_IIN_DIGITS]
    first = int(prefix.ljust(_IIN_DIGITS, "0"))
    last = int(prefix.ljust(_IIN_DIGITS, "9"))
    covered: dict[Brand, int] = {}
    for brand, lo, hi in _INTERVALS:
        overlap = min(hi, last) - max(lo, first) + 1
        if overlap > 0:
            covered[brand] = covered.get(brand, 0) + overlap
    for brand, count in covered.items():
        if count == last - first + 1:
            return brand
    return None


def cvv_length(brand: Brand | None) -> int:
    return 4 if brand is Brand.AMEX else 3


# --- validation ----------------------------------------------------------------------
# Each validator returns None when the value is valid, else a short reason for the
# agent. A reason never repeats the value.


def validate_pan(digits: str, accepted: frozenset[Brand]) -> str | None:
    if not _is_digits(digits):
        return "digits only"
    if len(digits) < MIN_PAN_LENGTH:
        return "too short"
    if len(digits) > MAX_PAN_LENGTH:
        return "too long"
    brand = brand_of(digits)
    if brand is None:
        return "unknown card brand"
    if len(digits) not in LENGTHS[brand]:
        return "length does not match the brand"
    if not luhn_valid(digits):
        return "fails the Luhn check"
    if brand not in accepted:
        return f"{brand.value} is not accepted"
    return None


def _expiry_year(yy: int, today: date) -> int:
    """The four-digit year of a two-digit one: the one nearest to today's."""
    year = today.year // 100 * 100 + yy
    if year < today.year - 50:
        year += 100
    elif year >= today.year + 50:
        year -= 100
    return year


def validate_expiry(mmyy: str, today: date) -> str | None:
    """MMYY; from the current month up to the same month 20 years ahead."""
    if not _is_digits(mmyy) or len(mmyy) != EXPIRY_LENGTH:
        return "use 4 digits, MMYY"
    month = int(mmyy[:2])
    if not 1 <= month <= 12:
        return "month must be 01-12"
    months = _expiry_year(int(mmyy[2:]), today) * 12 + month
    this_month = today.year * 12 + today.month
    if months < this_month:
        return "card has expired"
    if months > this_month + MAX_YEARS_AHEAD * 12:
        return f"expiry is more than {MAX_YEARS_AHEAD} years ahead"
    return None


def validate_cvv(digits: str, brand: Brand | None) -> str | None:
    """4 digits for Amex, 3 for every other brand (and while the brand is unknown)."""
    if not _is_digits(digits):
        return "digits only"
    length = cvv_length(brand)
    if len(digits) != length:
        if brand is Brand.AMEX:
            return "amex security codes have 4 digits"
        return "security codes have 3 digits"
    return None


def validate_postcode(text: str) -> str | None:
    """What a keypad can key: 3-10 digits (US ZIP codes and other numeric postcodes)."""
    if not _is_digits(text):
        return "digits only"
    if not MIN_POSTCODE_LENGTH <= len(text) <= MAX_POSTCODE_LENGTH:
        return f"postcode has {MIN_POSTCODE_LENGTH}-{MAX_POSTCODE_LENGTH} digits"
    return None


TYPED_POSTCODE_REASON: Final = (
    f"postcode has {MIN_POSTCODE_LENGTH}-{MAX_POSTCODE_LENGTH} letters, digits, spaces or hyphens"
)


def validate_typed_postcode(text: str) -> str | None:
    """What a payment page may give: a postcode in `billing_postcode`'s form ("SW1A 1AA",
    "EC1A 1BB", "90210-1234"), already normalized (upper case, single spaces)."""
    if not isinstance(text, str) or billing_postcode(text) != text:
        return TYPED_POSTCODE_REASON
    return None


def _is_postcode_value(text: str) -> bool:
    """Keypad digits (any number of them so far) or a complete typed postcode."""
    return _is_digits(text) or billing_postcode(text) == text


# --- policy and state ---------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    fields: tuple[str, ...] = ("pan", "expiry", "cvv")
    accepted_brands: frozenset[Brand] = frozenset(Brand)
    max_attempts: int = 3  # rejections per field before the session fails
    ttl: timedelta = timedelta(minutes=10)

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        if not fields:
            raise ValueError("a capture policy needs at least one field")
        unknown = [name for name in fields if name not in FIELD_NAMES]
        if unknown:
            raise ValueError(
                f"unknown capture fields {unknown!r}; fields are {', '.join(FIELD_NAMES)}"
            )
        if len(set(fields)) != len(fields):
            raise ValueError("capture fields must not repeat")
        if fields[0] != "pan":
            raise ValueError("the first capture field must be 'pan'")
        try:
            brands = frozenset(Brand(brand) for brand in self.accepted_brands)
        except ValueError:
            raise ValueError(
                f"accepted brands must be among {', '.join(b.value for b in Brand)}"
            ) from None
        if not brands:
            raise ValueError("a capture policy must accept at least one brand")
        if (
            not isinstance(self.max_attempts, int)
            or isinstance(self.max_attempts, bool)
            or self.max_attempts < 1
        ):
            raise ValueError("max_attempts must be an integer of at least 1")
        if not isinstance(self.ttl, timedelta) or self.ttl <= timedelta(0):
            raise ValueError("ttl must be a positive timedelta")
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "accepted_brands", brands)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fields": list(self.fields),
            "accepted_brands": sorted(brand.value for brand in self.accepted_brands),
            "max_attempts": self.max_attempts,
            "ttl_seconds": self.ttl.total_seconds(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        try:
            return cls(
                fields=tuple(_list_of_str(data["fields"], "policy fields")),
                accepted_brands=frozenset(
                    Brand(b) for b in _list_of_str(data["accepted_brands"], "accepted brands")
                ),
                max_attempts=data["max_attempts"],
                ttl=timedelta(seconds=_number(data["ttl_seconds"], "ttl_seconds")),
            )
        except KeyError as missing:
            raise ValueError(f"policy is missing {missing}") from None


class FieldStatus(StrEnum):
    PENDING = "pending"  # not reached yet
    KEYING = "keying"  # the current field; also right after a rejection, asked again
    VALID = "valid"  # complete and valid
    REJECTED = "rejected"  # kept for the published vocabulary; a rejected field is KEYING
    FAILED = "failed"  # max_attempts rejections


@dataclass(frozen=True)
class FieldState:
    name: str
    status: FieldStatus
    digits: int
    attempts: int
    reason: str | None

    def __post_init__(self) -> None:
        if self.name not in FIELD_NAMES:
            raise ValueError(f"unknown capture field {self.name!r}")
        object.__setattr__(self, "status", FieldStatus(self.status))
        if not _count(self.digits) or self.digits > _MAX_LENGTH[self.name]:
            raise ValueError(f"{self.name}: digits must be 0-{_MAX_LENGTH[self.name]}")
        if not _count(self.attempts):
            raise ValueError(f"{self.name}: attempts must be a count")
        if self.reason is not None and not isinstance(self.reason, str):
            raise ValueError(f"{self.name}: reason must be text or None")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "digits": self.digits,
            "attempts": self.attempts,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldState:
        try:
            return cls(
                name=data["name"],
                status=FieldStatus(data["status"]),
                digits=data["digits"],
                attempts=data["attempts"],
                reason=data["reason"],
            )
        except KeyError as missing:
            raise ValueError(f"field state is missing {missing}") from None


class SessionStatus(StrEnum):
    CAPTURING = "capturing"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class Session:
    """A capture's state without its digits: safe for the database and the bus."""

    policy: Policy
    fields: tuple[FieldState, ...]
    current: str | None
    status: SessionStatus
    started_at: datetime
    brand: Brand | None
    bin: str | None
    last4: str | None

    def __post_init__(self) -> None:
        fields = tuple(self.fields)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "status", SessionStatus(self.status))
        if self.brand is not None:
            object.__setattr__(self, "brand", Brand(self.brand))
        if tuple(f.name for f in fields) != self.policy.fields:
            raise ValueError("session fields must be the policy's fields, in order")
        keying = [f.name for f in fields if f.status is FieldStatus.KEYING]
        if self.status is SessionStatus.CAPTURING:
            if keying != [self.current]:
                raise ValueError("a capturing session keys exactly its current field")
        elif self.current is not None or keying:
            raise ValueError(f"a {self.status.value} session has no current field")
        failed = [f.name for f in fields if f.status is FieldStatus.FAILED]
        if (self.status is SessionStatus.FAILED) != bool(failed) or len(failed) > 1:
            raise ValueError("a session fails when, and only when, one field has failed")
        if self.status is SessionStatus.READY and any(
            f.status is not FieldStatus.VALID for f in fields
        ):
            raise ValueError("a ready session has every field valid")
        # The only digits a session may hold: BIN (first 6) and last 4, never more.
        if self.bin is not None and not (_is_digits(self.bin) and len(self.bin) == 6):
            raise ValueError("bin must be 6 digits")
        if self.last4 is not None and not (_is_digits(self.last4) and len(self.last4) == 4):
            raise ValueError("last4 must be 4 digits")
        if not isinstance(self.started_at, datetime):
            raise ValueError("started_at must be a datetime")

    def field(self, name: str) -> FieldState:
        for state in self.fields:
            if state.name == name:
                return state
        raise KeyError(f"no field {name!r} in this capture")

    def expires_at(self) -> datetime:
        return self.started_at + self.policy.ttl

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at()

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "fields": [state.to_dict() for state in self.fields],
            "current": self.current,
            "status": self.status.value,
            "started_at": self.started_at.isoformat(),
            "brand": None if self.brand is None else self.brand.value,
            "bin": self.bin,
            "last4": self.last4,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        try:
            fields = data["fields"]
            if not isinstance(fields, list | tuple) or not all(
                isinstance(f, Mapping) for f in fields
            ):
                raise ValueError("session fields must be a list of objects")
            started_at = data["started_at"]
            if not isinstance(started_at, str):
                raise ValueError("started_at must be an ISO 8601 string")
            return cls(
                policy=Policy.from_dict(data["policy"]),
                fields=tuple(FieldState.from_dict(f) for f in fields),
                current=data["current"],
                status=SessionStatus(data["status"]),
                started_at=datetime.fromisoformat(started_at),
                brand=None if data["brand"] is None else Brand(data["brand"]),
                bin=data["bin"],
                last4=data["last4"],
            )
        except KeyError as missing:
            raise ValueError(f"session is missing {missing}") from None
        except (TypeError, AttributeError):
            raise ValueError("session data is malformed") from None


@dataclass(frozen=True)
class Card:
    """The digits of a capture: the only place they live. Shows counts, never digits.

    Immutable; refuses pickling (like `SensitiveStr`): it leaves the process only
    through `to_bytes`, sealed in the vault.
    """

    values: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # The name on the card, when the payment page asked for it: typed, never keyed,
    # so it is no field of the keypad's rules; it goes to the PSP with the card.
    holder: str | None = None

    __hash__ = None  # type: ignore[assignment]  # a mapping of digits: not hashable

    def __post_init__(self) -> None:
        values = dict(self.values)
        for name, value in values.items():
            # Messages never show what they refuse: it may be card digits.
            if name not in FIELD_NAMES:
                raise ValueError(f"unknown capture field; fields are {', '.join(FIELD_NAMES)}")
            well_formed = _is_postcode_value(value) if name == "postcode" else _is_digits(value)
            if not well_formed or len(value) > _MAX_LENGTH[name]:
                raise ValueError(f"{name} must be 1-{_MAX_LENGTH[name]} digits")
        object.__setattr__(self, "values", MappingProxyType(values))
        object.__setattr__(self, "holder", holder_name(self.holder))

    def value(self, name: str) -> str:
        """The digits keyed so far (or the completed value) of a field; "" when none."""
        if name not in FIELD_NAMES:
            raise KeyError(f"no capture field {name!r}")
        return self.values.get(name, "")

    def with_value(self, name: str, digits: str) -> Card:
        values = dict(self.values)
        if digits:
            values[name] = digits
        else:
            values.pop(name, None)
        return Card(values, self.holder)

    def to_bytes(self) -> bytes:
        data = dict(self.values) | ({"holder": self.holder} if self.holder else {})
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Card:
        # Parse outside any `except`, so no exception chain keeps the clear bytes.
        try:
            data = json.loads(raw)
        except ValueError:  # JSONDecodeError and UnicodeDecodeError
            data = None
        if not isinstance(data, dict):
            raise ValueError("card bytes are not a JSON object")
        holder = data.pop("holder", None)
        return cls(data, holder if isinstance(holder, str) else None)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}=<{len(self.values[name])} {'characters' if name == 'postcode' else 'digits'}>"
            for name in self.values
        )
        return f"Card({shown}{', holder=<name>' if self.holder else ''})"

    def __reduce__(self) -> Any:
        # Pickling would write the clear digits wherever the pickle goes.
        raise TypeError("Card cannot be pickled")


@dataclass(frozen=True)
class Progress:
    """One `capture.progress` event: counts and verdicts about one field, never digits."""

    field: str
    digits: int
    complete: bool
    valid: bool | None
    reason: str | None
    brand: Brand | None
    last4: str | None
    event: str

    def __post_init__(self) -> None:
        if self.event not in EVENTS:
            raise ValueError(f"unknown progress event {self.event!r}")
        if self.field not in FIELD_NAMES:
            raise ValueError(f"unknown capture field {self.field!r}")
        if self.last4 is not None and not (_is_digits(self.last4) and len(self.last4) == 4):
            raise ValueError("last4 must be 4 digits")


@dataclass(frozen=True)
class Step:
    session: Session
    card: Card
    progress: tuple[Progress, ...]


# --- transitions ------------------------------------------------------------------


def start(policy: Policy, now: datetime) -> Step:
    """A new capture: the first field (always pan) is being keyed, the others wait."""
    fields = tuple(
        FieldState(
            name,
            FieldStatus.KEYING if i == 0 else FieldStatus.PENDING,
            digits=0,
            attempts=0,
            reason=None,
        )
        for i, name in enumerate(policy.fields)
    )
    session = Session(
        policy=policy,
        fields=fields,
        current=policy.fields[0],
        status=SessionStatus.CAPTURING,
        started_at=now,
        brand=None,
        bin=None,
        last4=None,
    )
    return Step(session, Card(), ())


def press(session: Session, card: Card, key: str, today: date) -> Step:
    """One keypad key. `today` is the date expiry is judged against."""
    if not isinstance(key, str) or key not in KEYS:
        raise ValueError("a key is one of 0-9, * and #")  # never echo: it may be digits
    if session.status is not SessionStatus.CAPTURING or session.current is None:
        return Step(session, card, (_ignored(session, card),))
    name = session.current
    state = session.field(name)
    value = card.value(name)

    if key == "*":
        session = _replace_field(session, state, digits=0, reason=None)
        card = card.with_value(name, "")
        return Step(session, card, (_progress(session, card, name, "cleared"),))

    if key == "#":
        if not value:
            return Step(session, card, (_ignored(session, card),))
        return _end_field(session, card, today)

    value += key
    session = _replace_field(session, state, digits=len(value), reason=None)
    card = card.with_value(name, value)
    keyed = _progress(session, card, name, "key")
    if not _ends_on_its_own(session, value, name):
        return Step(session, card, (keyed,))
    step = _end_field(session, card, today)
    return Step(step.session, step.card, (keyed, *step.progress))


def recapture(session: Session, card: Card, field: str) -> Step:
    """The agent asks for one field again.

    The field is keyed afresh (its digits cleared, its attempts kept); fields
    already valid stay valid; a field that was half keyed goes back to waiting,
    its digits cleared. A ready session is capturing again. Recapturing the pan
    forgets brand, BIN and last 4 until it is valid again. A field not reached
    yet is left alone ("ignored"). ValueError for a field outside the policy and
    for a failed session.
    """
    if field not in FIELD_NAMES or field not in session.policy.fields:
        raise ValueError(f"{field!r} is not a field of this capture")
    if session.status is SessionStatus.FAILED:
        raise ValueError("a failed capture cannot recapture a field")
    if session.field(field).status is FieldStatus.PENDING:
        # Not asked yet, so it will be asked in turn: there is nothing to ask again.
        # (Keying it now, out of turn, could key a security code before the card
        # number has told us its brand.)
        return Step(session, card, (_progress(session, card, field, "ignored"),))

    progress: list[Progress] = []
    fields = list(session.fields)
    previous = session.current
    for i, state in enumerate(fields):
        if state.name == field:
            fields[i] = dataclasses.replace(state, status=FieldStatus.KEYING, digits=0, reason=None)
        elif state.name == previous:
            fields[i] = dataclasses.replace(
                state, status=FieldStatus.PENDING, digits=0, reason=None
            )
    card = card.with_value(field, "")
    if previous is not None and previous != field:
        card = card.with_value(previous, "")
    clear_pan = field == "pan"
    session = dataclasses.replace(
        session,
        fields=tuple(fields),
        current=field,
        status=SessionStatus.CAPTURING,
        brand=None if clear_pan else session.brand,
        bin=None if clear_pan else session.bin,
        last4=None if clear_pan else session.last4,
    )
    if previous is not None and previous != field:
        progress.append(_progress(session, card, previous, "cleared"))
    progress.append(_progress(session, card, field, "recapture"))
    return Step(session, card, tuple(progress))


def fill(policy: Policy, values: Mapping[str, str], now: datetime, today: date) -> Step:
    """A whole card typed on a web page: each field of the policy set and ended in turn,
    as if keyed and closed with `#`, so the payment page and the keypad obey one set of
    rules, but for the postcode: a page can type letters, so there it is a billing
    postcode ("SW1A 1AA", normalized by `billing_postcode`), where a keypad keys digits.

    Stops at the first field the rules reject (the session is then still capturing it).
    A value that is not digits (not a postcode, for the postcode), or is longer than any
    value of its field, is judged as an empty field: its reason never depends on, or
    repeats, what was typed. Only the verdicts are reported, not a progress event per
    digit.
    """
    step = start(policy, now)
    session, card = step.session, step.card
    progress: list[Progress] = []
    for name in policy.fields:
        if session.status is not SessionStatus.CAPTURING or session.current != name:
            break
        value = values.get(name, "")
        if name == "postcode":
            value = billing_postcode(value) or ""
        elif not (_is_digits(value) and len(value) <= _MAX_LENGTH[name]):
            value = ""
        card = card.with_value(name, value)
        session = _replace_field(session, session.field(name), digits=len(value), reason=None)
        ended = _end_field(session, card, today, typed=True)
        session, card = ended.session, ended.card
        progress += ended.progress
    return Step(session, card, tuple(progress))


# --- helpers ----------------------------------------------------------------------


def _ends_on_its_own(session: Session, value: str, name: str) -> bool:
    """Whether the digit just keyed completes the field as if `#` followed."""
    n = len(value)
    if name == "pan":
        if n >= MAX_PAN_LENGTH:
            return True
        brand = brand_of(value)
        if brand is None or TYPICAL_LENGTH[brand] != n:
            return False
        reason = validate_pan(value, session.policy.accepted_brands)
        if reason is None or n == max(LENGTHS[brand]):
            return True
        # A longer number of the same brand could still be valid, unless all that
        # is wrong is the brand itself: no more digits will make it acceptable.
        return validate_pan(value, frozenset(Brand)) is None
    if name == "expiry":
        return n >= EXPIRY_LENGTH
    if name == "cvv":
        return n >= cvv_length(session.brand)
    return n >= MAX_POSTCODE_LENGTH


def _validate(session: Session, name: str, value: str, today: date, *, typed: bool) -> str | None:
    if name == "pan":
        return validate_pan(value, session.policy.accepted_brands)
    if name == "expiry":
        return validate_expiry(value, today)
    if name == "cvv":
        return validate_cvv(value, session.brand)
    return validate_typed_postcode(value) if typed else validate_postcode(value)


def _end_field(session: Session, card: Card, today: date, *, typed: bool = False) -> Step:
    """`#` (or a digit that completes it) on the current field: accept or reject it.
    `typed`: the field came from a payment page (`fill`), not a keypad."""
    assert session.current is not None
    name = session.current
    state = session.field(name)
    value = card.value(name)
    reason = _validate(session, name, value, today, typed=typed)

    if reason is not None:
        attempts = state.attempts + 1
        card = card.with_value(name, "")
        if attempts >= session.policy.max_attempts:
            failed = dataclasses.replace(
                state, status=FieldStatus.FAILED, digits=0, attempts=attempts, reason=reason
            )
            session = dataclasses.replace(
                session,
                fields=_with(session.fields, failed),
                current=None,
                status=SessionStatus.FAILED,
            )
            return Step(session, card, (_progress(session, card, name, "failed"),))
        rejected = dataclasses.replace(state, digits=0, attempts=attempts, reason=reason)
        session = dataclasses.replace(session, fields=_with(session.fields, rejected))
        return Step(session, card, (_progress(session, card, name, "rejected"),))

    fields = _with(
        session.fields,
        dataclasses.replace(state, status=FieldStatus.VALID, digits=len(value), reason=None),
    )
    brand, bin_, last4 = session.brand, session.bin, session.last4
    progress: list[Progress] = []
    asked_again: str | None = None
    if name == "pan":
        brand, bin_, last4 = brand_of(value), value[:6], value[-4:]
        # A security code accepted for another card may not fit this one's brand.
        if "cvv" in session.policy.fields:
            cvv = next(f for f in fields if f.name == "cvv")
            misfit = validate_cvv(card.value("cvv"), brand)
            if cvv.status is FieldStatus.VALID and misfit is not None:
                fields = _with(
                    fields,
                    dataclasses.replace(cvv, status=FieldStatus.PENDING, digits=0, reason=misfit),
                )
                card = card.with_value("cvv", "")
                asked_again = "cvv"

    following = next((f for f in fields if f.status is not FieldStatus.VALID), None)
    if following is not None:
        fields = _with(fields, dataclasses.replace(following, status=FieldStatus.KEYING))
    session = dataclasses.replace(
        session,
        fields=fields,
        current=None if following is None else following.name,
        status=SessionStatus.CAPTURING if following is not None else SessionStatus.READY,
        brand=brand,
        bin=bin_,
        last4=last4,
    )
    progress.append(_progress(session, card, name, "completed"))
    if asked_again is not None:
        progress.append(_progress(session, card, asked_again, "recapture"))
    return Step(session, card, tuple(progress))


def _with(fields: Iterable[FieldState], changed: FieldState) -> tuple[FieldState, ...]:
    return tuple(changed if f.name == changed.name else f for f in fields)


def _replace_field(session: Session, state: FieldState, **changes: Any) -> Session:
    return dataclasses.replace(
        session, fields=_with(session.fields, dataclasses.replace(state, **changes))
    )


def _progress(session: Session, card: Card, name: str, event: str) -> Progress:
    """The event about one field, described by its state after the step."""
    state = session.field(name)
    valid: bool | None = None
    if state.status is FieldStatus.VALID:
        valid = True
    elif state.status is FieldStatus.FAILED or state.reason is not None:
        valid = False
    brand = brand_of(card.value("pan")) if name == "pan" else session.brand
    return Progress(
        field=name,
        digits=state.digits,
        complete=state.status is FieldStatus.VALID,
        valid=valid,
        reason=state.reason,
        brand=brand,
        last4=session.last4,
        event=event,
    )


def _ignored(session: Session, card: Card) -> Progress:
    """A key that changed nothing, reported against the field it would have gone to."""
    if session.current is not None:
        name = session.current
    elif session.status is SessionStatus.FAILED:
        name = next(f.name for f in session.fields if f.status is FieldStatus.FAILED)
    else:
        name = session.policy.fields[-1]
    return _progress(session, card, name, "ignored")


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _list_of_str(value: object, what: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return list(value)


def _number(value: object, what: str) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{what} must be a number")
    return float(value)
