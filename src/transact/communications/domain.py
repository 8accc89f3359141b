"""Communications rules, free of I/O: tenant settings, templates, SMS length, retries,
provider answers and Twilio's request signatures.

Nothing here reads a clock, opens a socket or draws a random number; time and the
providers' answers come in as arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from transact.contracts.messages import InvalidDestination, e164, email_address

# --- settings -------------------------------------------------------------------------

Security = Literal["starttls", "tls", "none"]
SECURITIES: Final = ("starttls", "tls", "none")
SMS_PROVIDERS: Final = ("twilio",)
TWILIO_API: Final = "https://api.twilio.com"
TEMPLATE_NAMES: Final = ("payment_link",)
TEMPLATE_PARTS: Final = ("subject", "text", "html", "sms")
MAX_TEMPLATE: Final = 20_000
MAX_SENDER_ID: Final = 11  # alphanumeric SMS sender ids


class SettingsError(ValueError):
    """A tenant's settings break a rule; the message names the field."""


@dataclass(frozen=True)
class EmailConfig:
    host: str
    port: int = 587
    security: Security = "starttls"
    username: str | None = None
    timeout: float = 10.0

    def __post_init__(self) -> None:
        if not self.host or len(self.host) > 255 or not self.host.isprintable():
            raise SettingsError("email.host: give the SMTP server's host name")
        if not 1 <= self.port <= 65535:
            raise SettingsError("email.port must be 1-65535")
        if self.security not in SECURITIES:
            raise SettingsError(f"email.security must be one of {', '.join(SECURITIES)}")
        if not 1 <= self.timeout <= 120:
            raise SettingsError("email.timeout must be 1-120 seconds")


@dataclass(frozen=True)
class SmsConfig:
    account_sid: str
    sender: str  # an E.164 number or an alphanumeric sender id
    provider: str = "twilio"
    base_url: str = TWILIO_API
    status_callback_base: str | None = None

    def __post_init__(self) -> None:
        if self.provider not in SMS_PROVIDERS:
            raise SettingsError(f"sms.provider must be one of {', '.join(SMS_PROVIDERS)}")
        if not (self.account_sid.isascii() and self.account_sid.isalnum()):
            raise SettingsError("sms.account_sid must be letters and digits")
        _check_url(self.base_url, "sms.base_url")
        if self.status_callback_base is not None:
            _check_url(self.status_callback_base, "sms.status_callback_base")
        try:
            e164(self.sender)
        except InvalidDestination:
            if not (
                0 < len(self.sender) <= MAX_SENDER_ID
                and self.sender.isascii()
                and self.sender.replace(" ", "").isalnum()
                and not self.sender.isdigit()
            ):
                raise SettingsError(
                    "sms.from must be an E.164 number or a sender id of 1-11 letters and digits"
                ) from None


def _check_url(url: str, name: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise SettingsError(f"{name} must be an http(s) URL without a query")


@dataclass(frozen=True)
class Sender:
    name: str | None = None
    email: str | None = None

    def __post_init__(self) -> None:
        if self.name is not None and not (0 < len(self.name) <= 100 and self.name.isprintable()):
            raise SettingsError("sender.name must be 1-100 printable characters")
        if self.email is not None:
            try:
                email_address(self.email)
            except InvalidDestination as problem:
                raise SettingsError(f"sender.email: {problem}") from None


@dataclass(frozen=True)
class Settings:
    """A tenant's channels. A channel without a provider goes to the outbox."""

    sender: Sender = field(default_factory=Sender)
    email: EmailConfig | None = None
    sms: SmsConfig | None = None
    templates: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.email is not None and self.sender.email is None:
            raise SettingsError("sender.email is required to send e-mail over SMTP")
        for name, parts in self.templates.items():
            check_template(name, parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sender": {"name": self.sender.name, "email": self.sender.email},
            "email": None if self.email is None else _public(self.email),
            "sms": None if self.sms is None else _public(self.sms),
            "templates": {name: dict(parts) for name, parts in self.templates.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Settings:
        try:
            sms = data.get("sms")
            if sms is not None:
                sms = {("sender" if k == "from" else k): v for k, v in sms.items()}
            return cls(
                sender=Sender(**(data.get("sender") or {})),
                email=EmailConfig(**data["email"]) if data.get("email") else None,
                sms=SmsConfig(**sms) if sms else None,
                templates=dict(data.get("templates") or {}),
            )
        except TypeError as problem:
            raise SettingsError(f"unknown or missing setting: {problem}") from None


def _public(config: EmailConfig | SmsConfig) -> dict[str, Any]:
    values = dict(config.__dict__)
    if "sender" in values:
        values["from"] = values.pop("sender")
    return values


# --- templates --------------------------------------------------------------------------

_ENVIRONMENT: Final = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_HTML_ENVIRONMENT: Final = SandboxedEnvironment(undefined=StrictUndefined, autoescape=True)

DEFAULTS: Final[Mapping[str, Mapping[str, str]]] = {
    "payment_link": {
        "subject": "Your payment link from {{ merchant }}",
        "text": (
            "Hello,\n\n"
            "{{ merchant }} asks you to pay {{ amount }} for {{ reference }}.\n"
            "Pay securely here: {{ url }}\n\n"
            "The link works for {{ expires }}. Nobody from {{ merchant }} will ever ask you "
            "to read your card details out loud.\n"
        ),
        "html": (
            '<!doctype html><html lang="en"><body style="font-family:sans-serif">'
            "<p>Hello,</p>"
            "<p>{{ merchant }} asks you to pay <strong>{{ amount }}</strong> "
            "for {{ reference }}.</p>"
            '<p><a href="{{ url }}" style="font-size:1.2em">Pay {{ amount }} securely</a></p>'
            "<p>The link works for {{ expires }}.</p>"
            "</body></html>"
        ),
        "sms": "{{ merchant }}: pay {{ amount }} for {{ reference }} at {{ url }} "
        "(valid {{ expires }})",
    }
}
# Shorter SMS forms, tried in turn when a template's text does not fit one message.
SMS_FALLBACKS: Final = (
    "{{ merchant }}: pay {{ amount }} at {{ url }}",
    "Pay {{ amount }}: {{ url }}",
)
SAMPLE: Final = {
    "merchant": "Example Shop",
    "amount": "£12.50",
    "reference": "INV-1",
    "url": "https://pay.example.com/pay/" + "x" * 43,
    "expires": "30 minutes",
}


def check_template(name: str, parts: Mapping[str, str]) -> None:
    """A tenant's template: known name and parts, compiles, and shows the link."""
    if name not in TEMPLATE_NAMES:
        raise SettingsError(f"templates: unknown template {name!r}; known: payment_link")
    for part, source in parts.items():
        if part not in TEMPLATE_PARTS:
            raise SettingsError(f"templates.{name}: parts are {', '.join(TEMPLATE_PARTS)}")
        if not isinstance(source, str) or not 0 < len(source) <= MAX_TEMPLATE:
            raise SettingsError(f"templates.{name}.{part}: 1-{MAX_TEMPLATE} characters")
        try:
            rendered = _render(source, SAMPLE, html=part == "html")
        except TemplateError as problem:
            raise SettingsError(f"templates.{name}.{part}: {problem.message}") from None
        if part != "subject" and SAMPLE["url"] not in rendered:
            raise SettingsError(f"templates.{name}.{part} must show the link: {{{{ url }}}}")


def _render(source: str, values: Mapping[str, str], *, html: bool) -> str:
    environment = _HTML_ENVIRONMENT if html else _ENVIRONMENT
    return environment.from_string(source).render(**values)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    sms: str


def render(settings: Settings, template: str, values: Mapping[str, str]) -> Rendered:
    """Every form of one message, from the tenant's template or ours."""
    defaults = DEFAULTS.get(template)
    if defaults is None:
        raise SettingsError(f"unknown template {template!r}")
    own = settings.templates.get(template, {})
    part = {name: own.get(name, defaults[name]) for name in TEMPLATE_PARTS}
    subject = " ".join(_render(part["subject"], values, html=False).split())
    sms_candidates = [_render(s, values, html=False) for s in (part["sms"], *SMS_FALLBACKS)]
    return Rendered(
        subject=subject[:200],
        text=_render(part["text"], values, html=False),
        html=_render(part["html"], values, html=True),
        sms=fit_sms(sms_candidates),
    )


# --- SMS length -------------------------------------------------------------------------

GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION: Final = frozenset("^{}\\[~]|€\f")  # two septets each
SINGLE_GSM7: Final = 160
SINGLE_UCS2: Final = 70
_TO_GSM7: Final = str.maketrans(
    {
        "\u2018": "'",  # typographic quotes and dashes: one of them makes a text UCS-2,
        "\u2019": "'",  # which halves what one SMS holds
        "\u201c": '"',
        "\u201d": '"',
        "\u2013": "-",
        "\u2014": "-",
        "\u2026": "...",
        "\u00a0": " ",
    }
)


def gsm7(text: str) -> bool:
    return all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text)


def septets(text: str) -> int:
    return sum(2 if c in GSM7_EXTENSION else 1 for c in text)


def segments(text: str) -> int:
    """How many SMS a text is sent as (GSM-7 when it can be, else UCS-2)."""
    if gsm7(text):
        length, single, multi = septets(text), SINGLE_GSM7, 153
    else:
        length, single, multi = len(text.encode("utf-16-le")) // 2, SINGLE_UCS2, 67
    return 1 if length <= single else math.ceil(length / multi)


def fit_sms(candidates: list[str]) -> str:
    """The first candidate that is one GSM-7 message (typographic quotes and dashes made
    plain first); when none is, the one sent as the fewest messages."""
    plain = [" ".join(c.translate(_TO_GSM7).split()) for c in candidates]
    for text in plain:
        if gsm7(text) and septets(text) <= SINGLE_GSM7:
            return text
    return min(plain, key=segments)


# --- delivery ---------------------------------------------------------------------------

MAX_ATTEMPTS: Final = 5
FIRST_RETRY: Final = 2.0  # seconds; doubles every attempt
LONGEST_WAIT: Final = 300.0


class Result(StrEnum):
    SENT = "sent"  # the provider took it
    DELIVERED = "delivered"  # it is where it was going (the outbox)
    RETRY = "retry"  # a passing failure: try again later
    FAILED = "failed"  # it will never go: do not try again


@dataclass(frozen=True)
class Delivery:
    result: Result
    provider: str
    provider_id: str | None = None
    reason: str | None = None


def retry_delay(attempts: int) -> timedelta:
    """How long to wait after the `attempts`-th failed try: 2 s, 4 s, 8 s, ... at most 5 min."""
    return timedelta(seconds=min(LONGEST_WAIT, FIRST_RETRY * 2 ** max(0, attempts - 1)))


def after_failure(delivery: Delivery, attempts: int) -> Result:
    """A passing failure is retried until the attempts run out."""
    if delivery.result is Result.RETRY and attempts < MAX_ATTEMPTS:
        return Result.RETRY
    return Result.FAILED


def smtp_reply(code: int, provider: str = "smtp") -> Delivery:
    """An SMTP server's refusal: 4xx is passing (try later), 5xx is final."""
    if 400 <= code < 500:
        return Delivery(Result.RETRY, provider, reason=f"the mail server deferred it ({code})")
    return Delivery(Result.FAILED, provider, reason=f"the mail server refused it ({code})")


# Twilio error codes an agent can act on, in their words.
TWILIO_ERRORS: Final = {
    21211: "the number is not a valid phone number",
    21408: "SMS to that country is not enabled for this account",
    21610: "the recipient has opted out of messages (STOP)",
    21612: "the number cannot be reached from this sender",
    21614: "the number cannot receive SMS (a landline?)",
    30003: "the handset is switched off or unreachable",
    30004: "the recipient blocks messages",
    30005: "the number is unknown or no longer in service",
    30006: "the number is a landline or cannot receive SMS",
    30007: "the carrier filtered the message",
    30008: "the carrier could not deliver it",
}


def twilio_reason(code: object, fallback: str) -> str:
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and code in TWILIO_ERRORS:
        return TWILIO_ERRORS[code]
    return fallback


def twilio_answer(status: int, body: Any) -> Delivery:
    """Twilio's answer to `POST .../Messages.json`."""
    data = body if isinstance(body, Mapping) else {}
    if status in (200, 201) and isinstance(data.get("sid"), str):
        return Delivery(Result.SENT, "twilio", provider_id=str(data["sid"]))
    if status == 429 or status >= 500:
        return Delivery(Result.RETRY, "twilio", reason=f"the SMS provider is busy ({status})")
    if status in (401, 403):
        return Delivery(Result.FAILED, "twilio", reason="the SMS provider refused our credentials")
    return Delivery(
        Result.FAILED,
        "twilio",
        reason=twilio_reason(data.get("code"), f"the SMS provider refused it ({status})"),
    )


def twilio_sent_before(listing: Any, body: str, sender: str, since: datetime) -> Delivery | None:
    """Our message in Twilio's `GET .../Messages.json` listing, if it is there: the same
    text (it carries the link's unique URL) from our number, created since we first tried.
    A try whose answer was lost may have been sent; this says whether it was, and how
    far it got, since its status callbacks came while we did not know its sid."""
    data = listing if isinstance(listing, Mapping) else {}
    found = data.get("messages")
    for item in found if isinstance(found, list) else []:
        if not isinstance(item, Mapping) or not isinstance(item.get("sid"), str):
            continue
        if item.get("body") != body or item.get("from") != sender:
            continue
        try:
            created = parsedate_to_datetime(str(item.get("date_created")))
        except (TypeError, ValueError):
            continue
        # Twilio's dates have whole seconds: a message sent in our first try's second counts.
        if created >= since.replace(microsecond=0):
            return _listed(item)
    return None


def _listed(item: Mapping[str, Any]) -> Delivery:
    sid = str(item["sid"])
    status = callback_status(str(item.get("status")))
    if status is Status.DELIVERED:
        return Delivery(Result.DELIVERED, "twilio", provider_id=sid)
    if status is Status.FAILED:
        reason = twilio_reason(item.get("error_code"), "the SMS could not be delivered")
        return Delivery(Result.FAILED, "twilio", provider_id=sid, reason=reason)
    return Delivery(Result.SENT, "twilio", provider_id=sid)


class Status(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


FINAL: Final = frozenset({Status.DELIVERED, Status.FAILED})


def callback_status(reported: str) -> Status | None:
    """What a Twilio status callback's `MessageStatus` means for our message, if anything."""
    if reported in ("delivered", "read"):
        return Status.DELIVERED
    if reported in ("undelivered", "failed"):
        return Status.FAILED
    return None  # queued, accepted, sending, sent: nothing new


def may_become(current: Status, new: Status) -> bool:
    """Callbacks arrive late, twice and out of order; a final status is never undone."""
    return current not in FINAL and current != new


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """`X-Twilio-Signature`: base64 HMAC-SHA1 of the URL followed by each POST parameter,
    name then value, in name order, keyed with the account's auth token."""
    payload = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def signature_valid(auth_token: str, url: str, params: Mapping[str, str], given: str) -> bool:
    return bool(given) and hmac.compare_digest(twilio_signature(auth_token, url, params), given)
