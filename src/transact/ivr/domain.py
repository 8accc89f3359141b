"""Self-service payment flows, free of I/O: the flow settings and the call's state machine.

A call driven by a flow is a `Session`: which stage it is in, what is known (amount,
reference, the card's brand and last four once capture has them), the counters that
end it after too many tries, and the number of the last prompt. Every input (a key,
a prompt heard to its end, a capture or payment fact, a timeout) goes through
`advance`, which returns the next session and the `Action`s to carry out: prompts to
play, an account to look up, a capture to open or submit, the call to end.

Card digits never reach this module: they go from telephony to capture sealed, and
what comes back is counts and verdicts. The only digits a session keeps are those of
an account number being keyed, and the store seals them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal

from transact.contracts.money import check_money
from transact.ivr import speech
from transact.ivr.phrases import LANGUAGES, PAUSE

CARD_FIELDS: Final = ("pan", "expiry", "cvv", "postcode")
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
PROMPT_PATTERN: Final = re.compile(r"[a-z0-9_]{1,48}")
MAX_ACCOUNT_DIGITS: Final = 24
MAX_ATTEMPTS_LIMIT: Final = 10
MIN_INPUT_TIMEOUT: Final = 2.0
MAX_INPUT_TIMEOUT: Final = 60.0
CONFIRMATION_DIGITS: Final = 6
# Seconds to wait for another service (capture opening, the merchant's lookup) before
# telling the caller something went wrong.
SERVICE_WAIT: Final = 15.0

# `agent`: the amount and reference are handed over by the agent who sends the call.
AmountSource = Literal["fixed", "account", "agent"]
# Where the caller goes when the flow is over. A call an agent handed over always goes
# back to that agent; `agent` on a self-service call keeps it open for an agent leg.
After = Literal["hangup", "agent"]


# --- flow settings --------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    """What a tenant configures: how the amount is found, what to ask, what to say."""

    name: str
    amount_source: AmountSource = "fixed"
    amount: int | None = None  # minor units, for "fixed"
    currency: str = "GBP"
    reference: str | None = None  # for "fixed"
    lookup_url: str | None = None  # the merchant's account lookup, for "account"
    account_min_digits: int = 4
    account_max_digits: int = 12
    fields: tuple[str, ...] = ("pan", "expiry", "cvv")
    language: str = "en"
    max_attempts: int = 3
    input_timeout: float = 8.0  # seconds of silence after a question before asking again
    # Phrase names to say instead of the standard ones (a tenant's own recordings),
    # e.g. {"greeting": "acme_welcome", "approved": "acme_thanks"}.
    prompts: Mapping[str, str] = dataclasses.field(default_factory=dict)
    after: After = "hangup"

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(problem)
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "prompts", dict(self.prompts))

    def _problem(self) -> str | None:
        if not NAME_PATTERN.fullmatch(self.name):
            return "name: 1-64 letters, digits, '_' or '-'"
        if self.amount_source not in ("fixed", "account", "agent"):
            return "amount_source must be fixed, account or agent"
        if self.after not in ("hangup", "agent"):
            return "after must be hangup or agent"
        if self.amount_source == "fixed":
            if self.amount is None or not self.reference:
                return "a fixed flow needs amount and reference"
            money = check_money(self.amount, self.currency)
            if money:
                return money
        elif check_money(100, self.currency):
            return "currency must be an ISO 4217 code such as GBP, EUR or USD"
        if self.reference is not None and not 1 <= len(self.reference) <= 128:
            return "reference: 1-128 characters"
        if self.amount_source == "account" and not self.lookup_url:
            return "an account flow needs lookup_url (the merchant's account lookup)"
        if not 1 <= self.account_min_digits <= self.account_max_digits <= MAX_ACCOUNT_DIGITS:
            return (
                "account digits: 1 <= account_min_digits <= account_max_digits"
                f" <= {MAX_ACCOUNT_DIGITS}"
            )
        return self._capture_problem() or self._voice_problem()

    def _capture_problem(self) -> str | None:
        fields = tuple(self.fields)
        if not fields or fields[0] != "pan":
            return "fields must start with pan"
        if any(f not in CARD_FIELDS for f in fields) or len(set(fields)) != len(fields):
            return f"fields: each once, among {', '.join(CARD_FIELDS)}"
        if not _count(self.max_attempts) or not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            return f"max_attempts: 1-{MAX_ATTEMPTS_LIMIT}"
        return None

    def _voice_problem(self) -> str | None:
        if self.language not in LANGUAGES:
            return f"language must be one of {', '.join(LANGUAGES)}"
        if not MIN_INPUT_TIMEOUT <= self.input_timeout <= MAX_INPUT_TIMEOUT:
            return f"input_timeout: {MIN_INPUT_TIMEOUT:g}-{MAX_INPUT_TIMEOUT:g} seconds"
        for standard, own in dict(self.prompts).items():
            if not PROMPT_PATTERN.fullmatch(standard) or not PROMPT_PATTERN.fullmatch(own):
                return "prompts: names of 1-48 lower-case letters, digits or '_'"
        return None

    def say(self, phrase: str) -> str:
        """The recording to play for a standard phrase: the tenant's own, if it chose one."""
        return self.prompts.get(phrase, phrase)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["fields"] = list(self.fields)
        data["prompts"] = dict(self.prompts)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flow:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown flow settings: {', '.join(unknown)}")
        values = dict(data)
        if "fields" in values:
            if not isinstance(values["fields"], list | tuple):
                raise ValueError("fields must be a list")
            values["fields"] = tuple(values["fields"])
        if not isinstance(values.get("prompts", {}), Mapping):
            raise ValueError("prompts must be an object")
        try:
            return cls(**values)
        except TypeError as exc:
            raise ValueError(f"invalid flow settings: {exc}") from None


# --- the call's state ----------------------------------------------------------------


class Stage(StrEnum):
    GREETING = "greeting"  # the greeting plays
    ACCOUNT = "account"  # the caller keys an account number
    LOOKUP = "lookup"  # the merchant is asked for the amount
    OPENING = "opening"  # capture is asked to open; secure mode follows
    CARD = "card"  # the caller keys the card (capture has the keys)
    CONFIRM = "confirm"  # read-back done: 1 pays, 2 keys the card again
    PAYING = "paying"  # the PSP adapter has the payment
    RETRY = "retry"  # declined: 1 tries another card, 2 ends
    OUTCOME = "outcome"  # the outcome and its confirmation number play
    GOODBYE = "goodbye"  # the last words play; then the call ends
    ENDED = "ended"


# Stages waiting for the caller: a timeout there counts as a try with no answer.
ASKING: Final = frozenset({Stage.ACCOUNT, Stage.CARD, Stage.CONFIRM, Stage.RETRY})
# Stages waiting for a prompt to end; a timeout there means its mark never came back.
SPEAKING: Final = frozenset({Stage.GREETING, Stage.OUTCOME, Stage.GOODBYE})

Outcome = Literal[
    "paid",
    "declined",
    "failed",
    "abandoned",
    "too_many_attempts",
    "account_not_found",
    "lookup_failed",
    "unavailable",
]


@dataclass(frozen=True)
class Session:
    id: str
    stage: Stage
    amount: int | None = None
    currency: str | None = None
    reference: str | None = None
    attempts: int = 0  # tries at the current question
    cards: int = 0  # captures opened
    payments: int = 0  # payments tried
    prompt: int = 0  # number of the last prompt sent; its mark is `mark_of(prompt)`
    typed: str = ""  # account digits keyed so far (sealed by the store)
    capture_id: str | None = None
    field: str | None = None  # the card field being keyed
    brand: str | None = None
    last4: str | None = None
    outcome: Outcome | None = None
    confirmation: str | None = None
    deadline: datetime | None = None
    agent_id: str | None = None  # the agent who handed the call over, who gets it back

    @property
    def handed_over(self) -> bool:
        return self.agent_id is not None

    @property
    def mark(self) -> str:
        return mark_of(self.prompt)

    @property
    def amount_known(self) -> bool:
        return self.amount is not None and self.currency is not None and bool(self.reference)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["stage"] = self.stage.value
        data["deadline"] = self.deadline.isoformat() if self.deadline else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Session:
        values = dict(data)
        values["stage"] = Stage(values["stage"])
        deadline = values.get("deadline")
        values["deadline"] = datetime.fromisoformat(deadline) if deadline else None
        return cls(**values)


def mark_of(prompt: int) -> str:
    return f"ivr-{prompt}"


def capture_id_for(session_id: str, card: int) -> str:
    """The id of the session's n-th capture: derived, so a retried step asks for the same."""
    digest = hashlib.sha256(f"{session_id}:{card}".encode()).hexdigest()
    return "pay_" + digest[:24]


# --- inputs ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Began:
    """The call arrived; `unavailable` when it named no flow the tenant has.

    A call an agent hands over names that agent (`agent_id`) and may bring the amount
    (`amount`, `currency`, `reference`), which then replaces the flow's own source.
    """

    unavailable: bool = False
    agent_id: str | None = None
    amount: int | None = None
    currency: str | None = None
    reference: str | None = None


@dataclass(frozen=True)
class PromptDone:
    mark: str
    interrupted: bool = False


@dataclass(frozen=True)
class Key:
    key: str


@dataclass(frozen=True)
class Timeout:
    pass


@dataclass(frozen=True)
class AccountFound:
    amount: int
    currency: str
    reference: str


@dataclass(frozen=True)
class AccountNotFound:
    pass


@dataclass(frozen=True)
class LookupFailed:
    pass


@dataclass(frozen=True)
class CaptureOpened:
    capture_id: str


@dataclass(frozen=True)
class CardProgress:
    """One `capture.progress` fact: `event` is capture's (key, cleared, completed,
    rejected, recapture, failed, ignored); `reason` says why a field was rejected."""

    capture_id: str
    field: str
    event: str
    valid: bool | None
    reason: str | None = None


@dataclass(frozen=True)
class CardReady:
    capture_id: str
    brand: str
    last4: str


@dataclass(frozen=True)
class CaptureEnded:
    capture_id: str
    reason: str  # capture's cancel reason: failed, expired, call_ended, call_busy, ivr, ...


PaymentStatus = Literal["authorized", "declined", "failed"]


@dataclass(frozen=True)
class PaymentDone:
    payment_id: str
    status: PaymentStatus
    confirmation: str  # the number the caller is told, chosen by the caller of `advance`


@dataclass(frozen=True)
class HungUp:
    pass


Input = (
    Began
    | PromptDone
    | Key
    | Timeout
    | AccountFound
    | AccountNotFound
    | LookupFailed
    | CaptureOpened
    | CardProgress
    | CardReady
    | CaptureEnded
    | PaymentDone
    | HungUp
)


# --- actions --------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    """Play these phrases (names of recordings, `PAUSE` for a short silence), then `mark`."""

    phrases: tuple[str, ...]
    mark: str
    barge_in: bool = True


@dataclass(frozen=True)
class LookUp:
    account: str


@dataclass(frozen=True)
class OpenCapture:
    capture_id: str
    replaces: str | None = None


@dataclass(frozen=True)
class Submit:
    capture_id: str


@dataclass(frozen=True)
class HangUp:
    pass


@dataclass(frozen=True)
class Handover:
    """Take the call from its agent (`on`: the flow has the customer, the agent hears
    hold) or give it back (off: the bridge again; a call with no agent leg ends)."""

    on: bool


Action = Say | LookUp | OpenCapture | Submit | HangUp | Handover


@dataclass(frozen=True)
class Step:
    session: Session
    actions: tuple[Action, ...] = ()

    @property
    def said(self) -> Say | None:
        return next((a for a in self.actions if isinstance(a, Say)), None)


# --- transitions ----------------------------------------------------------------------


def begin(flow: Flow, session_id: str, event: Began) -> Step:
    """A new session: the greeting (and the amount, when it is known already). A call
    an agent hands over is taken from the agent first."""
    session = Session(id=session_id, stage=Stage.GREETING, agent_id=event.agent_id)
    taken: tuple[Action, ...] = (Handover(on=True),) if event.agent_id else ()
    step = _greet(flow, session, event)
    return Step(step.session, (*taken, *step.actions))


def _greet(flow: Flow, session: Session, event: Began) -> Step:
    if event.unavailable:
        return _goodbye(flow, session, "unavailable", "unavailable")
    if event.amount is not None:
        currency = event.currency or flow.currency
        session = _with_amount(session, event.amount, currency, event.reference)
    elif flow.amount_source == "fixed":
        session = _with_amount(session, flow.amount, flow.currency, flow.reference)
    elif flow.amount_source == "agent":
        # Only an agent can say how much: a caller dialling such a flow cannot pay.
        return _goodbye(flow, session, "unavailable", "unavailable")
    phrases = ["greeting"]
    if session.amount_known:
        phrases += [PAUSE, *_amount_due(session)]
    return _say(flow, session, phrases)


def returns_to_agent(flow: Flow, session: Session) -> bool:
    """Whether the end of the flow gives the call back rather than hanging up."""
    return session.handed_over or flow.after == "agent"


def advance(flow: Flow, session: Session, event: Input, now: datetime) -> Step:
    """The session after one input, and what to do about it."""
    if isinstance(event, HungUp):
        return _hung_up(session)
    if session.stage is Stage.ENDED:
        return _after_the_end(session, event)
    if isinstance(event, PromptDone):
        return _prompt_done(flow, session, event, now)
    if isinstance(event, Timeout):
        return _timeout(flow, session, now)
    if isinstance(event, Key):
        return _key(flow, session, event.key, now)
    if isinstance(event, AccountFound | AccountNotFound | LookupFailed):
        return _looked_up(flow, session, event)
    if isinstance(event, PaymentDone):
        return _paid(flow, session, event)
    if isinstance(event, Began):
        return Step(session)  # a repeated arrival: the session is under way
    return _card(flow, session, event, now)


def expect_by(flow: Flow, session: Session, prompt_seconds: float | None, now: datetime) -> Session:
    """After a step: when to stop waiting (a `Timeout` is due then).

    When a prompt was sent (`prompt_seconds` long), the platform's echo of its mark
    normally comes first and restarts the clock; this bound keeps a call from waiting
    forever on a platform that never echoes. A stage waiting for another service gets
    `SERVICE_WAIT`. A payment with the PSP is waited for as long as it takes: the
    caller may hang up, the outcome is recorded either way.
    """
    if session.stage in (Stage.ENDED, Stage.PAYING):
        return dataclasses.replace(session, deadline=None)
    if prompt_seconds is not None and session.stage not in (Stage.OPENING, Stage.LOOKUP):
        slack = timedelta(seconds=prompt_seconds + flow.input_timeout + 2)
        return dataclasses.replace(session, deadline=now + slack)
    if session.deadline is None and session.stage in (Stage.OPENING, Stage.LOOKUP):
        return dataclasses.replace(session, deadline=now + timedelta(seconds=SERVICE_WAIT))
    return session


# --- one function per kind of input ----------------------------------------------------


def _prompt_done(flow: Flow, session: Session, event: PromptDone, now: datetime) -> Step:
    if event.mark != session.mark:
        return Step(session)  # an older prompt, cut short by a newer one
    if session.stage in SPEAKING:
        return _spoken(flow, session)
    if session.stage in ASKING:
        return Step(_wait_for_answer(flow, session, now))
    return Step(session)


def _spoken(flow: Flow, session: Session) -> Step:
    """The prompt of a speaking stage ended: on to what follows it."""
    if session.stage is Stage.GREETING:
        if session.amount_known:
            return _open_capture(session, replaces=None)
        return _ask_account(flow, session, ())
    if session.stage is Stage.OUTCOME:
        return _goodbye(flow, session, session.outcome or "paid")
    ended = dataclasses.replace(session, stage=Stage.ENDED, deadline=None)
    last: Action = Handover(on=False) if returns_to_agent(flow, session) else HangUp()
    return Step(ended, (last,))


def _timeout(flow: Flow, session: Session, now: datetime) -> Step:
    if session.stage in SPEAKING:
        return _spoken(flow, session)  # the mark never came back; go on regardless
    if session.stage is Stage.LOOKUP:
        return _goodbye(flow, session, "lookup_failed", "lookup_failed")
    if session.stage is Stage.OPENING:
        return _goodbye(flow, session, "failed", "payment_failed")
    if session.stage is Stage.ACCOUNT and session.typed:
        return _account_keyed(flow, session)  # keyed, then waited: as good as '#'
    if session.stage in ASKING:
        return _try_again(flow, session, ("no_input",), now)
    return Step(dataclasses.replace(session, deadline=None))


def _key(flow: Flow, session: Session, key: str, now: datetime) -> Step:
    if session.stage is Stage.ACCOUNT:
        return _account_key(flow, session, key, now)
    if session.stage is Stage.CONFIRM:
        if key == "1":
            return _submit(flow, session)
        if key == "2":
            return _key_card_again(flow, session, replaces=session.capture_id)
        return _try_again(flow, session, ("invalid_choice",), now)
    if session.stage is Stage.RETRY:
        if key == "1":
            return _key_card_again(flow, session, replaces=None)
        if key == "2":
            return _goodbye(flow, session, "declined")
        return _try_again(flow, session, ("invalid_choice",), now)
    return Step(session)  # nothing is asked of the keypad now (or capture has the keys)


def _account_key(flow: Flow, session: Session, key: str, now: datetime) -> Step:
    if key == "#":
        return _account_keyed(flow, session)
    if key == "*":
        return Step(_wait_for_answer(flow, dataclasses.replace(session, typed=""), now))
    if not key.isdigit():
        return Step(session)
    typed = session.typed + key
    session = _wait_for_answer(flow, dataclasses.replace(session, typed=typed), now)
    if len(typed) >= flow.account_max_digits:
        return _account_keyed(flow, session)
    return Step(session)


def _account_keyed(flow: Flow, session: Session) -> Step:
    account, session = session.typed, dataclasses.replace(session, typed="")
    if len(account) < flow.account_min_digits:
        return _account_refused(flow, session)
    looking = dataclasses.replace(session, stage=Stage.LOOKUP, deadline=None)
    return Step(looking, (LookUp(account),))


def _looked_up(
    flow: Flow, session: Session, event: AccountFound | AccountNotFound | LookupFailed
) -> Step:
    if session.stage is not Stage.LOOKUP:
        return Step(session)  # a late answer after the lookup timed out
    if isinstance(event, LookupFailed):
        return _goodbye(flow, session, "lookup_failed", "lookup_failed")
    if isinstance(event, AccountNotFound):
        return _account_refused(flow, session)
    session = _with_amount(session, event.amount, event.currency, event.reference)
    opening = _open_capture(session, replaces=None)
    said = _say(flow, opening.session, _amount_due(session))
    return Step(said.session, (*opening.actions, *said.actions))


def _account_refused(flow: Flow, session: Session) -> Step:
    attempts = session.attempts + 1
    if attempts >= flow.max_attempts:
        return _goodbye(flow, session, "account_not_found", "account_not_found")
    return _ask_account(
        flow, dataclasses.replace(session, attempts=attempts), ("account_not_found",)
    )


def _card(
    flow: Flow,
    session: Session,
    event: CaptureOpened | CardProgress | CardReady | CaptureEnded,
    now: datetime,
) -> Step:
    """A fact from capture; only the session's current capture counts."""
    if event.capture_id != session.capture_id:
        return Step(session)
    if isinstance(event, CaptureOpened):
        if session.stage is not Stage.OPENING:
            return Step(session)
        keying = dataclasses.replace(session, stage=Stage.CARD, field=flow.fields[0], attempts=0)
        return _say(flow, keying, [f"enter_{flow.fields[0]}"])
    if isinstance(event, CaptureEnded):
        return _capture_ended(flow, session, event)
    if isinstance(event, CardReady):
        if session.stage is not Stage.CARD:
            return Step(session)
        ready = dataclasses.replace(
            session,
            stage=Stage.CONFIRM,
            field=None,
            attempts=0,
            brand=event.brand,
            last4=event.last4,
        )
        return _say(flow, ready, _read_back(ready))
    if session.stage is not Stage.CARD:
        return Step(session)
    return _card_progress(flow, session, event, now)


def _card_progress(flow: Flow, session: Session, event: CardProgress, now: datetime) -> Step:
    if event.event in ("key", "cleared"):
        return Step(_wait_for_answer(flow, session, now))  # the caller is keying: wait on
    if event.event == "completed" and event.valid:
        following = _field_after(flow, event.field)
        if following is None:
            return Step(dataclasses.replace(session, deadline=None))  # capture.completed next
        return _say(
            flow, dataclasses.replace(session, field=following, attempts=0), [f"enter_{following}"]
        )
    if event.event == "rejected" or (event.event == "completed" and event.valid is False):
        return _say(
            flow,
            dataclasses.replace(session, field=event.field),
            [_why_rejected(event.field, event.reason)],
        )
    if event.event == "recapture":
        # Capture asks for a field again (a security code that does not fit the new card).
        return _say(flow, dataclasses.replace(session, field=event.field), [f"enter_{event.field}"])
    return Step(session)  # "failed" is followed by capture.cancelled, which ends it


def _capture_ended(flow: Flow, session: Session, event: CaptureEnded) -> Step:
    if session.stage not in (Stage.OPENING, Stage.CARD, Stage.CONFIRM):
        return Step(session)  # submitted already
    if event.reason == "call_ended":
        return Step(session)  # the caller hung up: `HungUp` ends the session
    if event.reason == "failed":
        return _goodbye(flow, session, "too_many_attempts", "too_many_attempts")
    if event.reason == "expired":
        return _goodbye(flow, session, "abandoned", "no_input")
    return _goodbye(flow, session, "failed", "payment_failed")


def _submit(flow: Flow, session: Session) -> Step:
    assert session.capture_id is not None
    paying = dataclasses.replace(
        session, stage=Stage.PAYING, attempts=0, payments=session.payments + 1
    )
    said = _say(flow, paying, ["processing"], barge_in=False)
    return Step(said.session, (Submit(session.capture_id), *said.actions))


def _key_card_again(flow: Flow, session: Session, *, replaces: str | None) -> Step:
    if session.cards >= flow.max_attempts:
        return _goodbye(flow, session, "too_many_attempts", "too_many_attempts")
    return _open_capture(session, replaces=replaces)


def _paid(flow: Flow, session: Session, event: PaymentDone) -> Step:
    if session.stage is not Stage.PAYING or event.payment_id != session.capture_id:
        return Step(session)
    if event.status == "authorized":
        done = dataclasses.replace(
            session, stage=Stage.OUTCOME, outcome="paid", confirmation=event.confirmation
        )
        number = speech.digits(event.confirmation)
        phrases = [
            "approved",
            PAUSE,
            "confirmation_is",
            *number,
            PAUSE,
            "again",
            "confirmation_is",
            *number,
        ]
        return _say(flow, done, phrases, barge_in=False)
    if event.status == "declined":
        if session.payments < flow.max_attempts and session.cards < flow.max_attempts:
            retry = dataclasses.replace(session, stage=Stage.RETRY, attempts=0)
            return _say(flow, retry, ["declined", PAUSE, "retry_menu"])
        return _goodbye(flow, session, "declined", "declined")
    return _goodbye(flow, session, "failed", "payment_failed")


def _hung_up(session: Session) -> Step:
    if session.stage is Stage.ENDED:
        return Step(session)
    # A payment already with the PSP goes on; its outcome is still recorded.
    outcome = session.outcome if session.stage in (Stage.OUTCOME, Stage.GOODBYE) else None
    return Step(
        dataclasses.replace(
            session, stage=Stage.ENDED, outcome=outcome or "abandoned", typed="", deadline=None
        )
    )


def _after_the_end(session: Session, event: Input) -> Step:
    """The caller left while the PSP was deciding: the outcome still counts."""
    if (
        isinstance(event, PaymentDone)
        and event.payment_id == session.capture_id
        and session.outcome == "abandoned"
        and session.payments
    ):
        outcome: Outcome = "paid" if event.status == "authorized" else event.status
        return Step(dataclasses.replace(session, outcome=outcome))
    return Step(session)


# --- building blocks ------------------------------------------------------------------


def _say(flow: Flow, session: Session, phrases: list[str], *, barge_in: bool = True) -> Step:
    """A new prompt: its number is the session's next, and the clock waits for its mark.
    Phrases are standard names; the prompt library plays the tenant's own recordings
    where the flow chose some."""
    prompt = session.prompt + 1
    session = dataclasses.replace(session, prompt=prompt, deadline=None)
    return Step(session, (Say(tuple(phrases), mark_of(prompt), barge_in),))


def _wait_for_answer(flow: Flow, session: Session, now: datetime) -> Session:
    return dataclasses.replace(session, deadline=now + timedelta(seconds=flow.input_timeout))


def _try_again(flow: Flow, session: Session, why: tuple[str, ...], now: datetime) -> Step:
    """A wrong or missing answer: ask again, or say goodbye after too many."""
    attempts = session.attempts + 1
    if attempts >= flow.max_attempts:
        if session.stage is Stage.RETRY:
            return _goodbye(flow, session, "declined", *why)
        return _goodbye(flow, session, "too_many_attempts", *why, "too_many_attempts")
    session = dataclasses.replace(session, attempts=attempts)
    if session.stage is Stage.ACCOUNT:
        return _ask_account(flow, session, why)
    if session.stage is Stage.CONFIRM:
        return _say(flow, session, [*why, PAUSE, *_read_back(session)])
    if session.stage is Stage.RETRY:
        return _say(flow, session, [*why, PAUSE, "retry_menu"])
    assert session.field is not None
    return _say(flow, session, [*why, PAUSE, f"enter_{session.field}"])


def _ask_account(flow: Flow, session: Session, before: tuple[str, ...]) -> Step:
    asking = dataclasses.replace(session, stage=Stage.ACCOUNT, typed="")
    return _say(flow, asking, [*before, *([PAUSE] if before else []), "enter_account"])


def _open_capture(session: Session, *, replaces: str | None) -> Step:
    cards = session.cards + 1
    capture_id = capture_id_for(session.id, cards)
    opening = dataclasses.replace(
        session,
        stage=Stage.OPENING,
        cards=cards,
        capture_id=capture_id,
        field=None,
        brand=None,
        last4=None,
        attempts=0,
        deadline=None,
    )
    return Step(opening, (OpenCapture(capture_id, replaces),))


def _goodbye(flow: Flow, session: Session, outcome: Outcome, *before: str) -> Step:
    leaving = dataclasses.replace(session, stage=Stage.GOODBYE, outcome=outcome, typed="")
    last = "returning" if returns_to_agent(flow, session) else "goodbye"
    return _say(flow, leaving, [*before, *([PAUSE] if before else []), last], barge_in=False)


def _with_amount(
    session: Session, amount: int | None, currency: str | None, reference: str | None
) -> Session:
    return dataclasses.replace(session, amount=amount, currency=currency, reference=reference)


def _amount_due(session: Session) -> list[str]:
    assert session.amount is not None
    assert session.currency is not None
    return ["amount_due", *speech.amount(session.amount, session.currency)]


def _read_back(session: Session) -> list[str]:
    assert session.last4 is not None
    assert session.amount is not None
    assert session.currency is not None
    return [
        "readback_card",
        *speech.digits(session.last4),
        PAUSE,
        "readback_amount",
        *speech.amount(session.amount, session.currency),
        PAUSE,
        "confirm_menu",
    ]


def _field_after(flow: Flow, field: str) -> str | None:
    if field not in flow.fields:
        return None
    index = flow.fields.index(field) + 1
    return flow.fields[index] if index < len(flow.fields) else None


def _why_rejected(field: str, reason: str | None) -> str:
    """What to tell the caller about a rejected field, from capture's reason."""
    if reason and field == "pan" and reason.endswith("is not accepted"):
        return "card_not_accepted"
    if reason == "card has expired":
        return "card_expired"
    return f"invalid_{field}"


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
