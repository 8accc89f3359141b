"""Push rules, free of I/O: which event concerns which agent, what of it a browser may see,
the messages of the `/ws/agent` protocol, and the arithmetic of resuming a stream.

Every pushed event belongs to numbered *streams*: one per agent (`agent:<tenant>:<user>`)
and one per tenant (`tenant:<tenant>`, what supervisors watch). Ids are numbered from 1
within a stream, with no gaps, so a client that knows the last id it saw can ask for
exactly what it missed. Nothing here reads a clock; time comes in as arguments.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from transact.contracts import Message
from transact.kernel.sensitive import luhn_valid, redact_card_numbers

MAX_TENANT_ID: Final = 64
MAX_AGENT_ID: Final = 64
MAX_REF: Final = 128  # call, capture and payment ids
MAX_STREAM: Final = 160
MAX_TEXT: Final = 128  # longest string value a browser is shown
MAX_CLIENT_MESSAGE: Final = 4096  # characters; an auth token is well under
MAX_ID: Final = 2**63 - 1

# Close codes. 4xxx are ours (4000-4999 are the application's); each reason says why.
GOING_AWAY: Final = 1001
UNSUPPORTED_DATA: Final = 1003
INVALID_DATA: Final = 1007
POLICY_VIOLATION: Final = 1008
MESSAGE_TOO_BIG: Final = 1009
INTERNAL_ERROR: Final = 1011
UNAUTHENTICATED: Final = 4401
FORBIDDEN: Final = 4403
TOO_SLOW: Final = 4408
TOO_MANY: Final = 4429

# Query parameters that would put a credential in a URL, where proxies and logs keep it.
TOKEN_PARAMETERS: Final = frozenset(
    {"token", "access_token", "accesstoken", "auth", "authorization", "jwt", "bearer", "session"}
)


# --- routing: one row per topic -------------------------------------------------------


class Kind(StrEnum):
    """What an event can name whose holder decides who sees it."""

    CALL = "call"
    CAPTURE = "capture"
    PAYMENT = "payment"
    LINK = "link"


@dataclass(frozen=True)
class Ref:
    """The field of an event that names a call, capture, payment or link."""

    kind: Kind
    field: str


@dataclass(frozen=True)
class Rule:
    """How one topic is pushed.

    `fields` is the allow-list: nothing else of the event ever reaches a browser.
    The agents an event concerns are those its `agents` fields name; an event that
    names none goes to the holder of the first `owner` ref that has one. An event with
    `owns` makes the first agent it concerns the holder of that ref, for the events
    that follow (payment outcomes name only the payment). `await_owner` lets an event
    wait a moment for a holder that the event before it is about to record.
    The tenant's stream gets every pushed event.
    """

    fields: tuple[str, ...]
    agents: tuple[str, ...] = ()
    owner: tuple[Ref, ...] = ()
    owns: Ref | None = None
    await_owner: bool = False


_CALL = Ref(Kind.CALL, "call_id")
_CAPTURE = Ref(Kind.CAPTURE, "capture_id")
_PAYMENT = Ref(Kind.PAYMENT, "payment_id")
_AGENT = ("agent_id",)
_LINK = Ref(Kind.LINK, "link_id")
_LINK_FIELDS = ("link_id", "agent_id", "status")
_MESSAGE_FIELDS = ("message_id", "channel", "to_masked", "template", "about", "agent_id")
_OUTCOME = (
    "payment_id",
    "connector",
    "psp_reference",
    "decline_code",
    "attempts",
    "stored_card_id",
)

# The push table. A new topic (`link.opened`, `message.sent`, ...) is one row, e.g.
#   "link.opened": Rule(("link_id", "status"), agents=_AGENT, owner=(Ref(Kind.LINK, "link_id"),)),
# A topic without a row is never pushed: `call.keypad` (sealed keys) and
# `call.agent_code` (a one-time code) are left out on purpose.
RULES: Mapping[str, Rule] = MappingProxyType(
    {
        # A new call has no holder yet: supervisors see it; its agent sees `call.assigned`.
        "call.started": Rule(("call_id", "reference")),
        # Both the new holder and the one it came from (a transfer) are told.
        "call.assigned": Rule(
            ("call_id", "agent_id", "previous_agent_id"),
            agents=("agent_id", "previous_agent_id"),
            owns=_CALL,
        ),
        "call.ended": Rule(("call_id", "reason"), owner=(_CALL,)),
        "call.secure_mode": Rule(("call_id", "on", "capture_id", "input"), owner=(_CALL,)),
        "call.keys_outside_capture": Rule(("call_id", "source"), owner=(_CALL,)),
        "capture.started": Rule(
            ("capture_id", "call_id", "channel", "agent_id", "fields", "input"),
            agents=_AGENT,
            owner=(_CALL,),
            owns=_CAPTURE,
        ),
        "capture.progress": Rule(
            (
                "capture_id",
                "call_id",
                "field",
                "event",
                "digits",
                "complete",
                "valid",
                "reason",
                "brand",
                "last4",
            ),
            agents=_AGENT,
            owner=(_CAPTURE,),
        ),
        "capture.input_changed": Rule(
            ("capture_id", "call_id", "input"), agents=_AGENT, owner=(_CAPTURE,)
        ),
        # What the customer said: during a capture only labels ("[card number: 4 digits]"),
        # outside one the text with card-like runs redacted (voice's `redact`), `source`
        # `call` for the tenant's call transcription.
        "voice.transcript": Rule(
            ("call_id", "capture_id", "field", "text", "final", "source", "seq"),
            owner=(_CALL,),
        ),
        "capture.completed": Rule(
            ("capture_id", "call_id", "brand", "bin", "last4"), agents=_AGENT, owner=(_CAPTURE,)
        ),
        # `link_id`: the payment link that took its place (reason `replaced_by_link`).
        "capture.cancelled": Rule(
            ("capture_id", "call_id", "reason", "link_id"), agents=_AGENT, owner=(_CAPTURE,)
        ),
        # Never the vault reference or the idempotency key: only what the screen shows.
        "payment.requested": Rule(
            ("payment_id", "capture_id", "amount", "currency", "reference", "channel", "brand"),
            agents=_AGENT,
            owner=(_CAPTURE,),
            owns=_PAYMENT,
        ),
        "payment.authorized": Rule(_OUTCOME, owner=(_PAYMENT,), await_owner=True),
        "payment.declined": Rule(_OUTCOME, owner=(_PAYMENT,), await_owner=True),
        "payment.failed": Rule(_OUTCOME, owner=(_PAYMENT,), await_owner=True),
        # Not `action_url`: the 3-D Secure page is the cardholder's, not the agent's.
        "payment.pending": Rule((*_OUTCOME, "action"), owner=(_PAYMENT,), await_owner=True),
        "payment.refunded": Rule(
            ("payment_id", "amount", "refunded_total", "fully", "connector", "psp_reference"),
            owner=(_PAYMENT,),
        ),
        "payment.captured": Rule(
            ("payment_id", "amount", "captured_total", "connector", "psp_reference"),
            owner=(_PAYMENT,),
        ),
        "payment.voided": Rule(("payment_id", "connector", "psp_reference"), owner=(_PAYMENT,)),
        # Pay by link: the agent who sent it watches it; never the URL or its token.
        "link.created": Rule(
            (
                *_LINK_FIELDS,
                "channel",
                "amount",
                "currency",
                "reference",
                "expires_at",
                "to_masked",
                "source_payment_id",  # the phone capture this link took the place of
            ),
            agents=_AGENT,
            owns=_LINK,
        ),
        "link.opened": Rule(_LINK_FIELDS, agents=_AGENT, owner=(_LINK,)),
        "link.progress": Rule(
            (*_LINK_FIELDS, "field", "complete", "valid"), agents=_AGENT, owner=(_LINK,)
        ),
        "link.completed": Rule((*_LINK_FIELDS, "payment_id"), agents=_AGENT, owner=(_LINK,)),
        "link.expired": Rule(_LINK_FIELDS, agents=_AGENT, owner=(_LINK,)),
        "link.cancelled": Rule((*_LINK_FIELDS, "reason"), agents=_AGENT, owner=(_LINK,)),
        "link.failed": Rule((*_LINK_FIELDS, "attempts"), agents=_AGENT, owner=(_LINK,)),
        # A self-service session's steps: supervisors follow every one (tenant stream);
        # a call an agent handed over is followed by that agent too, who is shown the
        # stage and, at the end, the outcome. Stages, counts and outcomes, never a key.
        "ivr.step": Rule(
            (
                "session_id",
                "call_id",
                "flow",
                "stage",
                "previous",
                "attempts",
                "cards",
                "payments",
                "capture_id",
                "amount",
                "currency",
                "reference",
                "outcome",
                "confirmation",
                "agent_id",
                "brand",
                "last4",
            ),
            agents=_AGENT,
        ),
        "message.sent": Rule(_MESSAGE_FIELDS, agents=_AGENT),
        "message.delivered": Rule(_MESSAGE_FIELDS, agents=_AGENT),
        "message.failed": Rule((*_MESSAGE_FIELDS, "reason", "attempts"), agents=_AGENT),
    }
)

# How long an outcome waits for its payment's holder, and for how old an outcome that
# is still worth it (a replayed old outcome must not hold the consumer up).
OWNER_WAIT_SECONDS: Final = 1.0
OWNER_WAIT_FRESH_SECONDS: Final = 30.0


def rule_for(topic: str) -> Rule | None:
    return RULES.get(topic)


def _text_field(message: Message, name: str, limit: int) -> str | None:
    value = getattr(message, name, None)
    if isinstance(value, str) and 0 < len(value) <= limit:
        return value
    return None


def named_agents(rule: Rule, message: Message) -> tuple[str, ...]:
    """The agents the event names itself, first the one it concerns most, no repeats."""
    found: list[str] = []
    for name in rule.agents:
        agent = _text_field(message, name, MAX_AGENT_ID)
        if agent is not None and agent not in found:
            found.append(agent)
    return tuple(found)


def owner_refs(rule: Rule, message: Message) -> list[tuple[Kind, str]]:
    """The refs whose holder the event goes to (when it names no agent), in order."""
    refs = []
    for ref in rule.owner:
        value = _text_field(message, ref.field, MAX_REF)
        if value is not None:
            refs.append((ref.kind, value))
    return refs


@dataclass(frozen=True)
class Claim:
    """`agent_id` (None: nobody) holds `kind`/`ref` of the tenant as of `since`."""

    tenant_id: str
    kind: Kind
    ref: str
    agent_id: str | None
    since: datetime


def claim(rule: Rule, message: Message, audience: tuple[str, ...]) -> Claim | None:
    """What the event says about who holds what. "Nobody" is recorded too, so a payment
    taken without an agent is known as such and its outcome need not wait."""
    if rule.owns is None:
        return None
    ref = _text_field(message, rule.owns.field, MAX_REF)
    if ref is None:
        return None
    agent = audience[0] if audience else None
    return Claim(message.tenant_id, rule.owns.kind, ref, agent, utc(message.occurred_at))


def should_wait_for_owner(rule: Rule, occurred_at: datetime, now: datetime, waited: float) -> bool:
    if not rule.await_owner or waited >= OWNER_WAIT_SECONDS:
        return False
    return (now - utc(occurred_at)).total_seconds() <= OWNER_WAIT_FRESH_SECONDS


def acceptable(message: Message) -> bool:
    """Whether the tenant id fits a stream name; anything else too long is skipped."""
    return 0 < len(message.tenant_id) <= MAX_TENANT_ID


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- streams --------------------------------------------------------------------------


class Scope(StrEnum):
    AGENT = "agent"  # the events that concern me
    TENANT = "tenant"  # every event of my tenant (supervisors and admins)


def agent_stream(tenant_id: str, agent_id: str) -> str:
    return f"agent:{tenant_id}:{agent_id}"


def tenant_stream(tenant_id: str) -> str:
    return f"tenant:{tenant_id}"


def stream_for(scope: Scope, tenant_id: str, user_id: str) -> str:
    return tenant_stream(tenant_id) if scope is Scope.TENANT else agent_stream(tenant_id, user_id)


def streams_for(tenant_id: str, agents: Iterable[str]) -> list[str]:
    """Every stream an event goes to, sorted: appenders lock streams in this one order,
    so two of them never wait for each other in a circle."""
    return sorted({tenant_stream(tenant_id), *(agent_stream(tenant_id, a) for a in agents)})


def may_watch(scope: Scope, supervises: bool) -> bool:
    """Agents see their own events only; supervisors and admins may watch the tenant."""
    return scope is Scope.AGENT or supervises


# --- what a browser sees ----------------------------------------------------------------

# A second wall behind the allow-list: whatever looks like a card number is masked.
# In ids, digits glued to letters or underscores are part of the id (hex ids hold long
# digit runs, a tenth of them Luhn-valid by chance) and are left whole; in any other
# text (a reference an agent typed, a PSP's decline reason) every card-like run goes.
_WORD = re.compile(r"[A-Za-z0-9_]*[0-9][0-9 -]*[0-9][A-Za-z0-9_]*")


def _scrub_id(text: str) -> str:
    def mask(found: re.Match[str]) -> str:
        word = found.group(0)
        if any(ch.isalpha() or ch == "_" for ch in word):
            return word
        return redact_card_numbers(word)

    return _WORD.sub(mask, text)


def _scrub(name: str, text: str) -> str:
    # Masked before it is cut short: a cut could leave most of a number unmasked.
    clean = _scrub_id(text) if name.endswith("_id") else redact_card_numbers(text)
    return clean[:MAX_TEXT]


def _card_like_number(value: int) -> bool:
    digits = str(abs(value))
    return 13 <= len(digits) <= 19 and luhn_valid(digits)


def _safe_value(name: str, value: Any) -> Any:
    """A JSON scalar (or list of strings) fit for a browser; anything else is dropped."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return None if _card_like_number(value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _scrub(name, value)
    if isinstance(value, list | tuple):
        return [_scrub(name, v) for v in value[:16] if isinstance(v, str)]
    return None


def view(message: Message) -> dict[str, Any] | None:
    """The event as pushed, without its stream id: only the rule's allow-listed fields.
    None for a topic that is never pushed."""
    rule = rule_for(message.topic)
    if rule is None:
        return None
    data = {name: _safe_value(name, getattr(message, name, None)) for name in rule.fields}
    return {
        "topic": message.topic,
        "occurred_at": utc(message.occurred_at).isoformat(),
        "data": data,
    }


def body_text(event: Mapping[str, Any]) -> str:
    """The stored form of a pushed event: a JSON object that `event_text` numbers."""
    return json.dumps(event, separators=(",", ":"))


def event_text(seq: int, body: str) -> str:
    """The message for id `seq`: `{"type":"event","id":seq,"topic":...,"data":...}`.
    Spliced rather than re-encoded: one event is rendered once for all its sockets."""
    assert body.startswith("{")
    return f'{{"type":"event","id":{seq},{body[1:]}'


def control(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))


def error(code: str, message: str) -> str:
    return control("error", code=code, message=message)


# --- what a client sends ----------------------------------------------------------------


class Malformed(ValueError):
    """Not a JSON object: the socket is closed (1007)."""


class Rejected(ValueError):
    """A well-formed message we cannot act on: an `error` reply, the socket stays."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Auth:
    token: str
    after: int | None = None


@dataclass(frozen=True)
class Resume:
    after: int


@dataclass(frozen=True)
class Subscribe:
    scope: Scope
    after: int | None = None


@dataclass(frozen=True)
class Ping:
    pass


@dataclass(frozen=True)
class Pong:
    pass


ClientMessage = Auth | Resume | Subscribe | Ping | Pong


def parse_id(value: object, what: str = "after") -> int:
    """A stream id a client sent: a whole number from 0."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_ID:
        raise Rejected("invalid_id", f"{what} must be a whole number from 0")
    return value


def _optional_id(raw: Mapping[str, Any], name: str) -> int | None:
    return None if raw.get(name) is None else parse_id(raw[name], name)


def parse_scope(value: object) -> Scope:
    try:
        return Scope(str(value))
    except ValueError:
        raise Rejected("invalid_scope", "scope is 'agent' or 'tenant'") from None


def parse_client_message(text: str) -> ClientMessage:
    try:
        raw = json.loads(text)
    except ValueError:
        raise Malformed("messages are JSON objects") from None
    if not isinstance(raw, dict):
        raise Malformed("messages are JSON objects")
    kind = raw.get("type")
    if kind == "auth":
        token = raw.get("token")
        if not isinstance(token, str) or not token.strip():
            raise Rejected("invalid_token", "auth needs a token")
        return Auth(token.strip(), _optional_id(raw, "after"))
    if kind == "resume":
        if raw.get("after") is None:
            raise Rejected("invalid_id", "resume needs `after`, the last id received")
        return Resume(parse_id(raw["after"]))
    if kind == "subscribe":
        return Subscribe(parse_scope(raw.get("scope", "agent")), _optional_id(raw, "after"))
    if kind == "ping":
        return Ping()
    if kind == "pong":
        return Pong()
    raise Rejected("unknown_type", "type is one of auth, resume, subscribe, ping, pong")


def token_in_query(names: Iterable[str]) -> bool:
    return any(name.lower() in TOKEN_PARAMETERS for name in names)


# --- origins ----------------------------------------------------------------------------

_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _host_port(netloc: str, scheme: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(f"//{netloc}")
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname or parts.username is not None:
        return None
    default = _DEFAULT_PORTS.get(scheme)
    if port is None and default is None:
        return None
    return parts.hostname.lower(), port if port is not None else int(default or 0)


def origin_allowed(origin: str | None, host: str | None, public_url: str = "") -> bool:
    """Whether a browser page at `origin` may use the session cookie on this socket.

    Browsers send cookies on any site's WebSocket upgrade to us (cross-site WebSocket
    hijacking); they also always send the page's Origin, which script cannot forge.
    Allowed: the origin the request was addressed to (its Host; a port left out is the
    default of the page's scheme) and that of `TRANSACT_PUBLIC_URL`.
    """
    if not origin or origin == "null":
        return False
    try:
        page = urlsplit(origin)
    except ValueError:
        return False
    if page.scheme not in ("http", "https") or page.path not in ("", "/"):
        return False
    mine = _host_port(page.netloc, page.scheme)
    if mine is None:
        return False
    allowed = []
    if host:
        allowed.append(_host_port(host, page.scheme))
    if public_url:
        public = urlsplit(public_url)
        if public.scheme == page.scheme:
            allowed.append(_host_port(public.netloc, public.scheme))
    return mine in allowed


# --- positions in a stream --------------------------------------------------------------

MAX_BACKLOG: Final = 2000  # events one resume sends; more missed than that is a reset


@dataclass
class Position:
    """What one connection delivered of its stream: every id in [low, last], nothing else.

    Both ends move: live events extend `last`, a resume extends `low` downwards. So a
    resume never repeats what this connection delivered, however it interleaves with
    live events.
    """

    low: int
    last: int

    @classmethod
    def at(cls, head: int) -> Position:
        """Nothing delivered yet; what comes after `head` is new."""
        return cls(head + 1, head)

    def classify(self, seq: int) -> Literal["next", "gap", "seen"]:
        """A live event: the one expected, one after a gap to fill from the log first, or
        one delivered already or from before this connection began (dropped)."""
        if seq == self.last + 1:
            return "next"
        if seq > self.last + 1:
            return "gap"
        return "seen"


@dataclass(frozen=True)
class Backfill:
    first: int
    last: int


@dataclass(frozen=True)
class Reset:
    reason: str


def plan_resume(
    position: Position, after: int, head: int, max_backlog: int = MAX_BACKLOG
) -> Backfill | Reset | None:
    """What a client that has every id up to `after` is missing from this connection."""
    if after > max(head, position.last):
        return Reset("unknown id: the stream has not reached it")
    if after >= position.low - 1:
        return None
    if position.low - 1 - after > max_backlog:
        return Reset("too many events missed")
    return Backfill(after + 1, position.low - 1)


def consecutive(first: int, seqs: list[int]) -> bool:
    """Whether `seqs` are exactly first, first + 1, ... (nothing pruned from the log)."""
    return seqs == list(range(first, first + len(seqs)))
