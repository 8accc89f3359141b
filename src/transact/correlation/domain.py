"""Correlation rules, free of I/O: the live call registry, who may hold a call, and the
shapes of what people type (call references, phone numbers, moments, link codes).

A `Call` is one row of the registry. `started` and `ended` fold telephony's facts into
it in any order and any number of times, so redelivery and out-of-order delivery end
in the same record. Time comes in as arguments; nothing here reads a clock or draws a
random number.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, TypeVar

MAX_TENANT_ID: Final = 64
MAX_CALL_ID: Final = 128
MAX_REFERENCE: Final = 32
MAX_MASKED: Final = 32
MAX_EXTERNAL: Final = 255  # SIP Call-IDs and CTI correlation ids
MAX_USERNAME: Final = 64

CODE_DIGITS: Final = 6


class CallState(StrEnum):
    LIVE = "live"
    ENDED = "ended"


@dataclass(frozen=True)
class Facts:
    """What `call.started` tells about a call, already checked (see `started_facts`)."""

    reference: str | None
    from_masked: str | None
    to_masked: str | None
    from_digest: str | None
    to_digest: str | None
    sip_call_id: str | None
    external_id: str | None
    started_at: datetime


@dataclass(frozen=True)
class Call:
    tenant_id: str
    call_id: str
    state: CallState
    reference: str | None = None
    from_masked: str | None = None
    to_masked: str | None = None
    from_digest: str | None = None
    to_digest: str | None = None
    sip_call_id: str | None = None
    external_id: str | None = None
    started_at: datetime | None = None  # None while only the end is known
    ended_at: datetime | None = None
    end_reason: str | None = None
    agent_id: str | None = None
    assigned_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.state is CallState.LIVE

    @property
    def reference_key(self) -> str | None:
        return reference_key(self.reference) if self.reference else None


# --- the registry -------------------------------------------------------------------


def started(existing: Call | None, tenant_id: str, call_id: str, facts: Facts) -> Call:
    """The call after `call.started`.

    New calls are live. A repeat never overwrites what the first delivery recorded
    (it only fills gaps), and a call whose end arrived first stays ended: a late
    start must not bring a finished call back to the agents' screens.
    """
    base = existing or Call(tenant_id=tenant_id, call_id=call_id, state=CallState.LIVE)
    return dataclasses.replace(
        base,
        reference=_first(base.reference, facts.reference),
        from_masked=_first(base.from_masked, facts.from_masked),
        to_masked=_first(base.to_masked, facts.to_masked),
        from_digest=_first(base.from_digest, facts.from_digest),
        to_digest=_first(base.to_digest, facts.to_digest),
        sip_call_id=_first(base.sip_call_id, facts.sip_call_id),
        external_id=_first(base.external_id, facts.external_id),
        started_at=_first(base.started_at, facts.started_at),
    )


T = TypeVar("T")


def _first(recorded: T | None, reported: T | None) -> T | None:
    return recorded if recorded is not None else reported


def ended(existing: Call | None, tenant_id: str, call_id: str, at: datetime, reason: str) -> Call:
    """The call after `call.ended`: ended for good; the first end recorded wins.

    An end that overtakes its start leaves a record with no start yet, which the
    late `call.started` fills in without reviving it.
    """
    if existing is None:
        return Call(
            tenant_id=tenant_id,
            call_id=call_id,
            state=CallState.ENDED,
            ended_at=at,
            end_reason=reason,
        )
    if not existing.live:
        return existing
    return dataclasses.replace(existing, state=CallState.ENDED, ended_at=at, end_reason=reason)


class Verdict(StrEnum):
    ASSIGN = "assign"  # the call moves to the agent
    ALREADY_YOURS = "already_yours"  # nothing to do: answer as if it had just been done
    TAKEN = "taken"  # another agent holds it
    ENDED = "ended"  # nobody takes a finished call


def claim_verdict(call: Call, agent_id: str) -> Verdict:
    """An agent asking for a call for themselves: never takes it from another agent."""
    if not call.live:
        return Verdict.ENDED
    if call.agent_id == agent_id:
        return Verdict.ALREADY_YOURS
    if call.agent_id is not None:
        return Verdict.TAKEN
    return Verdict.ASSIGN


def transfer_verdict(call: Call, agent_id: str) -> Verdict:
    """A supervisor, a CTI client or proof of presence on the agent leg (a keyed link
    code) moving a call: it may take the call from whoever holds it."""
    if not call.live:
        return Verdict.ENDED
    if call.agent_id == agent_id:
        return Verdict.ALREADY_YOURS
    return Verdict.ASSIGN


def assigned(call: Call, agent_id: str, at: datetime) -> Call:
    return dataclasses.replace(call, agent_id=agent_id, assigned_at=at)


def may_see(call: Call, tenant_id: str, agent_id: str, *, sees_all: bool) -> bool:
    """Own tenant only; agents see the calls they hold, supervisors and clients all."""
    if call.tenant_id != tenant_id:
        return False
    return sees_all or call.agent_id == agent_id


def may_find(call: Call, tenant_id: str, agent_id: str, *, sees_all: bool) -> bool:
    """What a search may show: an agent also finds calls nobody holds yet (the call
    they are on, before they claim it)."""
    if call.tenant_id != tenant_id:
        return False
    return sees_all or call.agent_id in (None, agent_id)


# --- checking what telephony sends -----------------------------------------------------

_HEX_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


def storable(text: str, limit: int) -> bool:
    """Whether `text` fits a column: not empty, not too long, and printable (PostgreSQL
    refuses a NUL in text, and control characters are nobody's id)."""
    return 0 < len(text) <= limit and text.isprintable()


def acceptable_ids(tenant_id: str, call_id: str) -> bool:
    """Whether a message's ids fit the registry."""
    return storable(tenant_id, MAX_TENANT_ID) and storable(call_id, MAX_CALL_ID)


def started_facts(
    *,
    reference: str | None,
    from_masked: str | None,
    to_masked: str | None,
    from_digest: str | None,
    to_digest: str | None,
    sip_call_id: str | None,
    external_id: str | None,
    started_at: datetime,
) -> Facts:
    """The facts of a `call.started`, each dropped when it is not what we store.

    A bad field loses that field, never the call: the registry must know every call.
    """
    return Facts(
        reference=_bounded(reference.strip() if reference else None, MAX_REFERENCE),
        from_masked=safe_masked(from_masked),
        to_masked=safe_masked(to_masked),
        from_digest=from_digest if from_digest and _HEX_DIGEST.fullmatch(from_digest) else None,
        to_digest=to_digest if to_digest and _HEX_DIGEST.fullmatch(to_digest) else None,
        sip_call_id=_bounded(sip_call_id, MAX_EXTERNAL),
        external_id=_bounded(external_id, MAX_EXTERNAL),
        started_at=aware(started_at),
    )


def aware(moment: datetime) -> datetime:
    """A message's time with its zone: a publisher that left it out meant UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _bounded(value: str | None, limit: int) -> str | None:
    return value if value is not None and storable(value, limit) else None


def usable_hint(hint: str | None) -> str | None:
    """A stream's `agent` parameter worth looking up, or None."""
    if hint is None:
        return None
    hint = hint.strip()
    return hint if 0 < len(hint) <= MAX_USERNAME else None


# --- call references -------------------------------------------------------------------

# Read out over a phone or copied from a screen, these get mixed up; the registry and
# the people typing fold them the same way, so either spelling finds the call.
_CONFUSABLE: Final = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS: Final = re.compile(r"[\s\-\u2010-\u2015_.]+")
_REFERENCE_KEY: Final = re.compile(r"[0-9A-Z]{1,16}")


def reference_key(text: str) -> str | None:
    """The form a reference is matched by: `k7 3q9`, `K73Q9` and `K7-3Q9` are all
    `K73Q9`. None when what is left is not 1-16 letters and digits."""
    if not isinstance(text, str) or len(text) > 2 * MAX_REFERENCE:
        return None
    folded = _SEPARATORS.sub("", text).upper().translate(_CONFUSABLE)
    return folded if folded.isascii() and _REFERENCE_KEY.fullmatch(folded) else None


# --- phone numbers ---------------------------------------------------------------------

E164_MIN_DIGITS: Final = 7
E164_MAX_DIGITS: Final = 15
# What a display of a number may show: enough to recognise it, not to dial it.
VISIBLE_LEADING: Final = 2
VISIBLE_TRAILING: Final = 4
_NUMBER_PUNCTUATION: Final = re.compile(r"[\s\-.()/]+")


class InvalidNumber(ValueError):
    """The message says what is wrong, never repeating the number."""


def e164(text: str) -> str:
    """`+442079460958` from `+44 20 7946-0958` or `+44 (20) 7946 0958`; raises
    `InvalidNumber` for anything that is not an E.164 number."""
    compact = _NUMBER_PUNCTUATION.sub("", text)
    if not compact.startswith("+"):
        raise InvalidNumber("use E.164: '+', the country code and the number, e.g. +441632960961")
    digits = compact[1:]
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidNumber("only digits, spaces, dashes and brackets may follow '+'")
    if digits.startswith("0"):
        raise InvalidNumber("a country code never starts with 0")
    if not E164_MIN_DIGITS <= len(digits) <= E164_MAX_DIGITS:
        raise InvalidNumber(
            f"an E.164 number has {E164_MIN_DIGITS} to {E164_MAX_DIGITS} digits after '+'"
        )
    return "+" + digits


def mask_number(number: str) -> str:
    """`+44******0958`: the country code's first two digits and the last four (the
    form telephony publishes)."""
    digits = [c for c in number if c.isdigit()]
    if len(digits) <= VISIBLE_LEADING + VISIBLE_TRAILING:
        return "".join("*" if c.isdigit() else c for c in number)
    masked: list[str] = []
    seen = 0
    for char in number:
        if char.isdigit():
            shown = seen < VISIBLE_LEADING or seen >= len(digits) - VISIBLE_TRAILING
            masked.append(char if shown else "*")
            seen += 1
        else:
            masked.append(char)
    return "".join(masked)


def safe_masked(text: str | None) -> str | None:
    """A masked number from telephony, masked again if it shows too much.

    Telephony masks before publishing; this is the second wall, so a clear number
    sent by mistake never reaches our table or an agent's screen.
    """
    if text is None:
        return None
    text = text.strip()[:MAX_MASKED]
    if not storable(text, MAX_MASKED):
        return None
    if sum(c.isdigit() for c in text) > VISIBLE_LEADING + VISIBLE_TRAILING:
        return mask_number(text)
    return text


# --- moments ---------------------------------------------------------------------------


class InvalidMoment(ValueError):
    pass


def moment(text: str) -> datetime:
    """An ISO 8601 date and time with its offset, such as `2026-11-27T10:15:00Z`."""
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidMoment(
            "use an ISO 8601 date and time with an offset, e.g. 2026-11-27T10:15:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidMoment("give the time zone, e.g. 2026-11-27T10:15:00Z or +01:00")
    try:
        # In UTC, as stored; the first and last hours of the calendar have no UTC form.
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidMoment("that moment is outside the calendar") from None


def check_window(after: datetime | None, before: datetime | None) -> None:
    if after is not None and before is not None and after > before:
        raise InvalidMoment("started_after must not be later than started_before")


# --- link codes ------------------------------------------------------------------------


def format_code(number: int) -> str:
    """A code as shown and keyed: always six digits, leading zeros kept."""
    if not 0 <= number < 10**CODE_DIGITS:
        raise ValueError(f"a link code is a number below {10**CODE_DIGITS}")
    return f"{number:0{CODE_DIGITS}d}"


def keyed_code(keys: str) -> str | None:
    """The code in the keys the agent pressed (`#` or `*` may end it), or None when
    they cannot be one."""
    code = keys.strip().rstrip("#*")
    if len(code) == CODE_DIGITS and code.isascii() and code.isdigit():
        return code
    return None
